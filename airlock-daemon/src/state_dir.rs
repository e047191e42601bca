//! The one rule for the directories the daemons keep state in.
//!
//! [`ensure`] creates a missing directory with the given [`Sharing`]; an
//! existing one must be a directory owned by the running user that neither
//! its group nor others can write to (else someone else could already have
//! planted or replaced files in it), and read or search permission beyond
//! the [`Sharing`] is taken away (the owner may always narrow its own
//! directory). Special bits such as the audit directory's setgid stay.
//!
//! That is the strictest rule the three daemons' former checks agree with:
//! the gateway refused world-writable directories, the TOTP verifier forced
//! its directory to 0700, and the enforcer forced its pin directory to 0700.
//! Every directory the packaging, `scripts/airlock-up` and the tests create
//! satisfies it (owned by the service's user, 0700 or 2750).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Who besides the owner may read a state directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Nobody: 0700 (secrets, the gateway's state, bpffs pins).
    OwnerOnly,
    /// The directory's group may read and search it: 0750 (the audit log,
    /// for the approvers' group).
    GroupReadable,
}

impl Sharing {
    /// The permission bits the directory has at most.
    pub fn mode(self) -> u32 {
        match self {
            Sharing::OwnerOnly => 0o700,
            Sharing::GroupReadable => 0o750,
        }
    }
}

/// Creates `dir` (and its parents) if needed, then holds it to the rule in
/// the module documentation.
pub fn ensure(dir: &Path, sharing: Sharing) -> anyhow::Result<()> {
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // Created with the mode, so that it is never wider, then set to it
        // exactly, whatever the umask.
        fs::DirBuilder::new()
            .mode(sharing.mode())
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(sharing.mode()))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    let meta = fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
    let me = nix::unistd::geteuid().as_raw();
    anyhow::ensure!(
        meta.uid() == me,
        "{} belongs to uid {}, not to uid {me} that runs this daemon; refusing to keep state there",
        dir.display(),
        meta.uid()
    );
    let mode = meta.permissions().mode();
    anyhow::ensure!(
        mode & 0o022 == 0,
        "{} is writable by its group or by others (mode {:o}); refusing to keep state there",
        dir.display(),
        mode & 0o7777
    );
    let narrowed = mode & (0o7000 | sharing.mode());
    if narrowed != mode & 0o7777 {
        fs::set_permissions(dir, fs::Permissions::from_mode(narrowed))
            .with_context(|| format!("restricting {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(dir: &Path) -> u32 {
        fs::metadata(dir).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_missing_directory_is_created_with_its_sharing() {
        let base = tempfile::tempdir().unwrap();
        let state = base.path().join("a/state");
        ensure(&state, Sharing::OwnerOnly).unwrap();
        assert_eq!(mode_of(&state), 0o700);
        let audit = base.path().join("audit");
        ensure(&audit, Sharing::GroupReadable).unwrap();
        assert_eq!(mode_of(&audit), 0o750);
    }

    #[test]
    fn wider_read_permission_is_narrowed_and_special_bits_stay() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("audit");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o2755)).unwrap();
        ensure(&dir, Sharing::GroupReadable).unwrap();
        assert_eq!(mode_of(&dir), 0o2750);
        ensure(&dir, Sharing::OwnerOnly).unwrap();
        assert_eq!(mode_of(&dir), 0o2700);
    }

    #[test]
    fn a_narrower_directory_is_left_alone() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("audit");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        ensure(&dir, Sharing::GroupReadable).unwrap();
        assert_eq!(mode_of(&dir), 0o700);
    }

    #[test]
    fn group_or_world_writable_is_refused_and_left_unchanged() {
        for mode in [0o770, 0o702, 0o1777] {
            let base = tempfile::tempdir().unwrap();
            let dir = base.path().join("state");
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let error = ensure(&dir, Sharing::OwnerOnly).unwrap_err().to_string();
            assert!(error.contains("writable"), "{error}");
            assert_eq!(mode_of(&dir), mode);
        }
    }

    #[test]
    fn a_file_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let file = base.path().join("state");
        fs::write(&file, b"").unwrap();
        assert!(ensure(&file, Sharing::OwnerOnly).is_err());
    }

    #[test]
    fn someone_elses_directory_is_refused() {
        // Only root can hand a directory to another user.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let error = ensure(&dir, Sharing::OwnerOnly).unwrap_err().to_string();
        assert!(error.contains("belongs to uid 65534"), "{error}");
    }
}
