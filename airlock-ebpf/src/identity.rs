//! What the executable is: the names it is judged by and the identities
//! (inode, content) the enforcer registered for governed binaries.

use core::ffi::c_void;

use airlock_common::kernel::{
    Evaluation, HashKey, IdentKey, KernelOffsets, SessionInfo, BINPRM_BUF, HEAD_CONTENT_ALIASES,
    HEAD_FILE_NAME, HEAD_INODE_ALIASES, HEAD_INVOKED_AS, IDENT_CONTENT, IDENT_INODE,
};
use aya_ebpf::helpers::generated as h;

use crate::hash::{basename_of, hash_buf};
use crate::maps::{Reader, IDENTS};
use crate::task::{kread, read_prefix, read_str};

/// Identity of a `struct file`: (device, inode) and size.
#[inline(always)]
pub fn file_identity(off: &KernelOffsets, file: u64) -> (u64, u64, u64) {
    let inode: u64 = kread(file, off.file_inode);
    let ino: u64 = kread(inode, off.inode_ino);
    let sb: u64 = kread(inode, off.inode_sb);
    let dev: u32 = kread(sb, off.sb_dev);
    let size: i64 = kread(inode, off.inode_size);
    (dev as u64, ino, size as u64)
}

/// Whether the enforcer registered this identity for the session.
#[inline(always)]
pub fn is_governed(key: &IdentKey) -> bool {
    // SAFETY: a presence test; the value is not read.
    unsafe { IDENTS.get(key) }.is_some()
}

/// Name of a `struct file`'s dentry into `r.file` (for the event) and
/// `r.word`; returns its hash.
#[inline(always)]
pub fn file_name_hash(
    r: &mut Reader,
    key: &HashKey,
    off: &KernelOffsets,
    file: u64,
) -> Option<u64> {
    let dentry: u64 = kread(file, off.file_dentry);
    let name: u64 = kread(dentry, off.dentry_name);
    read_prefix(&mut r.file, name, false);
    let len = read_str(&mut r.word, name, false)?;
    Some(hash_buf(key, &r.word, 0, len))
}

/// Adds the heads an identity stands for, from head slot `first`.
#[inline(always)]
fn add_aliases(eval: &mut Evaluation, first: usize, key: &IdentKey) {
    // SAFETY: the value is copied out at once, before anything could delete
    // the entry; it is plain data.
    if let Some(aliases) = (unsafe { IDENTS.get(key) }).copied() {
        eval.add_aliases(first, &aliases);
    }
}

/// Fills the head slots of the executable of `bprm` other than argv[0]'s:
/// the real file's name, the name it was invoked by, and the aliases of its
/// inode and its content.
#[inline(always)]
pub fn exec_heads(
    r: &mut Reader,
    eval: &mut Evaluation,
    key: &HashKey,
    off: &KernelOffsets,
    session: &SessionInfo,
    bprm: u64,
) {
    let file: u64 = kread(bprm, off.binprm_file);
    if let Some(hash) = file_name_hash(r, key, off, file) {
        eval.set_head(HEAD_FILE_NAME, hash);
    }
    // The path it was invoked by (the script's, for an interpreter).
    let filename: u64 = kread(bprm, off.binprm_filename);
    if let Some(len) = read_str(&mut r.word, filename, false) {
        let start = basename_of(&r.word, len);
        eval.set_head(HEAD_INVOKED_AS, hash_buf(key, &r.word, start, len));
    }
    let (dev, ino, size) = file_identity(off, file);
    let by_inode = IdentKey {
        session: session.index,
        kind: IDENT_INODE,
        a: dev,
        b: ino,
    };
    add_aliases(eval, HEAD_INODE_ALIASES, &by_inode);
    // SAFETY: the helper checks the source address and copies BINPRM_BUF
    // bytes of bprm->buf into `r.binprm`, which has exactly that many.
    unsafe {
        h::bpf_probe_read_kernel(
            r.binprm.as_mut_ptr().cast(),
            BINPRM_BUF as u32,
            (bprm + off.binprm_buf as u64) as *const c_void,
        );
    }
    let content = hash_buf(key, &r.binprm, 0, BINPRM_BUF);
    let by_content = IdentKey {
        session: session.index,
        kind: IDENT_CONTENT,
        a: size,
        b: content,
    };
    add_aliases(eval, HEAD_CONTENT_ALIASES, &by_content);
}
