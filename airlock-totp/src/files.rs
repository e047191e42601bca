//! Small file helpers for the state directory, where secrets live.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

pub use airlock_common::fsutil::write_atomic;

/// Reads `path` into a buffer that is wiped when dropped, or `None` if the
/// file does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Size the buffer up front so that reading does not reallocate and leave
    // an unwiped copy of a secret behind.
    let len = file.metadata()?.len();
    let capacity = usize::try_from(len).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Removes `path` (if there) and makes the removal durable.
pub fn remove_synced(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// The permission bits of `path` (tests and start-up checks).
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{umask, Mode};
    use std::fs::Permissions;

    #[test]
    fn replaces_content_with_exactly_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path).unwrap(), 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );

        // An existing file's wider mode does not survive the replacement.
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"three", 0o600).unwrap();
        assert_eq!(mode_of(&path).unwrap(), 0o600);
    }

    #[test]
    fn public_files_get_their_mode_despite_a_strict_umask() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pub");
        // Only ever narrows what other tests create, so it is safe to change
        // the process-wide umask here.
        let old = umask(Mode::from_bits_truncate(0o077));
        let result = write_atomic(&path, b"pub\n", 0o644);
        umask(old);
        result.unwrap();
        assert_eq!(mode_of(&path).unwrap(), 0o644);
    }

    #[test]
    fn read_optional_distinguishes_missing_from_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        assert!(read_optional(&path).unwrap().is_none());
        fs::write(&path, b"").unwrap();
        assert_eq!(read_optional(&path).unwrap().unwrap().as_slice(), b"");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(read_optional(&path).unwrap().unwrap().as_slice(), b"abc");
    }
}
