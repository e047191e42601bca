//! Which files a rule head names, and what makes two files the same
//! executable: the same inode, or the same size and first bytes (the bytes
//! the kernel has already read into `bprm->buf` when it judges an exec).
//! Shared by the enforcer (which puts identities into kernel maps) and
//! `airlockctl policy check` (which compares files directly), so that both
//! see the same aliases.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{hash_word, HashKey, BINPRM_BUF};

/// Directories searched for bare heads besides the session's own PATH.
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The kernel's `dev_t` for a `stat` device number (`MKDEV`: major << 20 |
/// minor), which is how `super_block.s_dev` holds it.
pub fn kernel_dev(st_dev: u64) -> u64 {
    // glibc's major()/minor() for the 64-bit encoding.
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    (major << 20) | minor
}

/// The content fingerprint the program computes from `bprm->buf`.
pub fn content_hash(key: &HashKey, path: &Path) -> std::io::Result<(u64, u64)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = [0u8; BINPRM_BUF];
    let mut filled = 0;
    while filled < BINPRM_BUF {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok((size, hash_word(key, &head)))
}

/// The executable files a head names.
pub fn files_for(head: &str, search_path: &[String]) -> Vec<PathBuf> {
    let candidates: Vec<PathBuf> = if head.starts_with('/') {
        vec![PathBuf::from(head)]
    } else {
        search_path
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_DIRS.iter().copied())
            .filter(|dir| dir.starts_with('/'))
            .map(|dir| Path::new(dir).join(head))
            .collect()
    };
    let mut found = Vec::new();
    for path in candidates {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 && !found.contains(&path) {
            found.push(path);
        }
    }
    found
}

/// Whether two paths are the same executable as the kernel sees it: the
/// same inode, or the same size and first [`BINPRM_BUF`] bytes.
pub fn same_executable(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
        return true;
    }
    // Any fixed key compares contents; the kernel uses its own.
    let key = HashKey { k0: 1, k1: 2 };
    matches!((content_hash(&key, a), content_hash(&key, b)), (Ok(x), Ok(y)) if x == y)
}

/// The rule heads `executable` is known by through its identity: heads
/// naming a file that is the same executable.
pub fn aliases<'a>(
    executable: &Path,
    heads: impl IntoIterator<Item = &'a str>,
    search_path: &[String],
) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for head in heads {
        if found.iter().any(|f| f == head) {
            continue;
        }
        if files_for(head, search_path)
            .iter()
            .any(|file| same_executable(executable, file))
        {
            found.push(head.to_owned());
        }
    }
    found
}
