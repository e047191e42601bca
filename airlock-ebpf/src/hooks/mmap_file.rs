//! `lsm/mmap_file`: refuses executable mappings of a governed binary outside
//! its own exec (the dynamic loader run by hand).

use core::ffi::c_void;

use airlock_common::kernel::{
    IdentKey, NodeKey, Nodes, Verdict, EVENT_MMAP_DENIED, IDENT_INODE, OUTCOME_REFUSED, STAGE_MMAP,
};
use aya_ebpf::macros::lsm;
use aya_ebpf::programs::LsmContext;

use super::EPERM;
use crate::identity::{file_identity, file_name_hash, is_governed};
use crate::maps::{config, scratch, OFFSETS};
use crate::report::{report, Report};
use crate::task::{current_session, current_task, kread};
use crate::walk::Trie;

const PROT_EXEC: u64 = 4;

#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let prot: u64 = ctx.arg(2);
    let file = ctx.arg::<*const c_void>(0) as u64;
    if prot & PROT_EXEC == 0 || file == 0 {
        return 0;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    let (Some(config), Some(s)) = (config(), scratch()) else {
        return -EPERM;
    };
    let off = OFFSETS.load();
    // The image's own mapping during its exec is judged by the exec hooks.
    let mm: u64 = kread(current_task(), off.task_mm);
    let exe: u64 = kread(mm, off.mm_exe_file);
    let inode: u64 = kread(file, off.file_inode);
    if exe != 0 && kread::<u64>(exe, off.file_inode) == inode {
        return 0;
    }
    let (dev, ino, _) = file_identity(&off, file);
    let key = IdentKey {
        session: session.index,
        kind: IDENT_INODE,
        a: dev,
        b: ino,
    };
    // A governed binary by inode, or by name. (Tested one after the other:
    // combining the two lookups lets LLVM OR two map pointers, which the
    // verifier refuses.)
    if !is_governed(&key) {
        let Some(hash) = file_name_hash(&mut s.reader, &config.key, &off, file) else {
            return 0;
        };
        let head = NodeKey {
            session: session.index,
            depth: 0,
            hash,
        };
        if Trie.node(&head).is_none() {
            return 0;
        }
    } else {
        file_name_hash(&mut s.reader, &config.key, &off, file);
    }
    let refused = Report {
        kind: EVENT_MMAP_DENIED,
        stage: STAGE_MMAP,
        outcome: OUTCOME_REFUSED,
        session: &session,
        verdict: &Verdict::REFUSED,
        hold: false,
    };
    report(&s.reader, refused);
    -EPERM
}
