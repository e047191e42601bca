//! Which files a rule head names, and how the kernel recognises them.
//!
//! A bare head (`terraform`) names every executable of that name in the
//! session's search path and the system directories; an absolute head names
//! one file. Each file is registered by inode (catching hard links and
//! `/proc/self/fd/N`) and by content (size plus a keyed hash of the first
//! 256 bytes, which the kernel has already read into `bprm->buf`: catching
//! copies under other names and memfds).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use airlock_common::kernel::{
    compile::word_hash, hash_word, Aliases, HashKey, IdentKey, BINPRM_BUF, IDENT_CONTENT,
    IDENT_INODE, MAX_ALIASES,
};

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
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
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

/// The identity entries of a session: which heads each file stands for.
/// Returns the entries and warnings (files that could not be read, or that
/// stand for more heads than an entry holds).
pub fn resolve(
    session: u32,
    key: &HashKey,
    heads: &[String],
    search_path: &[String],
) -> (BTreeMap<IdentKey, Aliases>, Vec<String>) {
    let mut entries: BTreeMap<IdentKey, Aliases> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut add = |ident: IdentKey, head_hash: u64, head: &str, warnings: &mut Vec<String>| {
        let aliases = entries.entry(ident).or_default();
        let known = &aliases.heads[..aliases.count as usize];
        if known.contains(&head_hash) {
            return;
        }
        if aliases.count as usize == MAX_ALIASES {
            warnings.push(format!(
                "a file stands for more than {MAX_ALIASES} rule heads; {head:?} is matched by name only"
            ));
            return;
        }
        aliases.heads[aliases.count as usize] = head_hash;
        aliases.count += 1;
    };
    for head in heads {
        let head_hash = word_hash(key, head);
        for path in files_for(head, search_path) {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let by_inode = IdentKey {
                session,
                kind: IDENT_INODE,
                a: kernel_dev(meta.dev()),
                b: meta.ino(),
            };
            add(by_inode, head_hash, head, &mut warnings);
            match content_hash(key, &path) {
                Ok((size, hash)) => {
                    let by_content = IdentKey {
                        session,
                        kind: IDENT_CONTENT,
                        a: size,
                        b: hash,
                    };
                    add(by_content, head_hash, head, &mut warnings);
                }
                Err(e) => warnings.push(format!(
                    "cannot read {} to recognise copies of it: {e}",
                    path.display()
                )),
            }
        }
    }
    (entries, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY: HashKey = HashKey { k0: 1, k1: 2 };

    fn executable(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn bare_heads_are_found_in_the_search_path_and_copies_share_the_content_entry() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        executable(&bin, "terraform", b"\x7fELF fake terraform");
        let copy = executable(dir.path(), "tf-copy", b"\x7fELF fake terraform");
        // Not executable: not a candidate.
        std::fs::write(bin.join("kubectl"), b"x").unwrap();

        let search = vec![bin.display().to_string()];
        assert_eq!(files_for("terraform", &search), vec![bin.join("terraform")]);
        assert!(files_for("kubectl", &search).is_empty());

        let (entries, warnings) = resolve(3, &KEY, &["terraform".into()], &search);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(entries.len(), 2, "one by inode, one by content");
        let (size, hash) = content_hash(&KEY, &copy).unwrap();
        let by_content = IdentKey {
            session: 3,
            kind: IDENT_CONTENT,
            a: size,
            b: hash,
        };
        let aliases = entries[&by_content];
        assert_eq!(aliases.count, 1);
        assert_eq!(aliases.heads[0], word_hash(&KEY, "terraform"));
    }

    #[test]
    fn content_hash_covers_the_first_256_bytes_zero_padded() {
        let dir = tempfile::tempdir().unwrap();
        let short = executable(dir.path(), "a", b"abc");
        let mut padded = [0u8; BINPRM_BUF];
        padded[..3].copy_from_slice(b"abc");
        assert_eq!(
            content_hash(&KEY, &short).unwrap(),
            (3, hash_word(&KEY, &padded))
        );
        let long = executable(dir.path(), "b", &[7u8; 1000]);
        assert_eq!(
            content_hash(&KEY, &long).unwrap(),
            (1000, hash_word(&KEY, &[7u8; BINPRM_BUF]))
        );
    }

    #[test]
    fn kernel_dev_matches_mkdev() {
        // 8:1 (sda1) is 0x801 for stat and 8 << 20 | 1 for the kernel.
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 300)), (259 << 20) | 300);
    }
}
