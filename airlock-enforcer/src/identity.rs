//! Which files a rule head names, and how the kernel recognises them.
//!
//! A bare head (`terraform`) names every executable of that name in the
//! session's search path and the system directories; an absolute head names
//! one file. Each file is registered by inode (catching hard links and
//! `/proc/self/fd/N`) and by content (size plus a keyed hash of the first
//! 256 bytes, which the kernel has already read into `bprm->buf`: catching
//! copies under other names and memfds).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use airlock_common::kernel::identity::{content_hash, files_for, kernel_dev};
use airlock_common::kernel::{
    compile::word_hash, Aliases, HashKey, IdentKey, IDENT_CONTENT, IDENT_INODE, MAX_ALIASES,
};

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
    use airlock_common::kernel::{hash_word, BINPRM_BUF};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

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
        executable(&bin, "airlock-test-tf", b"\x7fELF fake terraform");
        let copy = executable(dir.path(), "tf-copy", b"\x7fELF fake terraform");
        // Not executable: not a candidate.
        std::fs::write(bin.join("airlock-test-noexec"), b"x").unwrap();

        let search = vec![bin.display().to_string()];
        assert_eq!(
            files_for("airlock-test-tf", &search),
            vec![bin.join("airlock-test-tf")]
        );
        assert!(files_for("airlock-test-noexec", &search).is_empty());

        let (entries, warnings) = resolve(3, &KEY, &["airlock-test-tf".into()], &search);
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
        assert_eq!(aliases.heads[0], word_hash(&KEY, "airlock-test-tf"));
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
