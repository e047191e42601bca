//! Small file helpers for the state directory, where secrets live.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

/// Replaces `path` with `bytes` so that a crash leaves either the old or the
/// new content, never a mix.
///
/// The temporary file is created with `mode` (so it is never wider than
/// `mode`, whatever the umask) and then set to exactly `mode` (so a strict
/// umask cannot narrow a public file either) before any byte is written.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover from a crashed write of ours; `create_new` below refuses
    // anything that is still there (including a planted symlink).
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Make the rename itself durable.
    File::open(dir)?.sync_all()
}

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

/// The permission bits of `path` (tests and start-up checks).
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{umask, Mode};

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
