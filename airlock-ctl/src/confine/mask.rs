//! Mounting the masks, inside the session's own mount namespace.
//!
//! A hidden directory gets a fresh read-only tmpfs of mode 000; a hidden
//! file (or socket) gets a read-only bind of an empty mode-000 file. Either
//! way the agent (the owner, but without capabilities) cannot read, list,
//! write, chmod, link (`EXDEV`), rename or unlink (`EBUSY`: a mount point)
//! it, nor unmount it. A private directory gets a fresh writable tmpfs.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::Context;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::targets::{Mask, Target};

/// Where the empty file that hidden files are bound to is made. `/proc` is
/// never a target and is replaced by the session's own procfs later; the
/// staging tmpfs over it is detached once the binds exist.
const STAGING: &str = "/proc";
const EMPTY: &str = "/proc/airlock-empty";

/// Fixed for every mask: no device nodes, no setuid.
fn base_flags() -> MsFlags {
    MsFlags::MS_NOSUID | MsFlags::MS_NODEV
}

/// Masks every target. Must run in the session's mount namespace.
pub fn apply(targets: &[Target], uid: u32) -> anyhow::Result<()> {
    let files: Vec<&Target> = targets
        .iter()
        .filter(|t| !t.is_dir && t.mask == Mask::Hidden)
        .collect();
    if !files.is_empty() {
        hide_files(&files)?;
    }
    for target in targets.iter().filter(|t| t.is_dir) {
        let path = &target.path;
        match target.mask {
            Mask::Hidden => tmpfs(
                path,
                MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC,
                "mode=000,size=4k",
            ),
            Mask::Private { mode } => {
                tmpfs(path, MsFlags::empty(), &format!("mode={mode:o},size=16m"))
            }
            Mask::RuntimeRoot => {
                tmpfs(path, MsFlags::empty(), "mode=755,size=16m")?;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(path.join(uid.to_string()))
                    .with_context(|| format!("creating {}/{uid}", path.display()))
            }
        }
        .with_context(|| format!("masking {}", path.display()))?;
    }
    Ok(())
}

fn tmpfs(path: &Path, flags: MsFlags, options: &str) -> anyhow::Result<()> {
    mount(
        Some("airlock-mask"),
        path,
        Some("tmpfs"),
        base_flags() | flags,
        Some(options),
    )?;
    Ok(())
}

/// Binds an empty, mode-000 file read-only over each of `files`.
fn hide_files(files: &[&Target]) -> anyhow::Result<()> {
    tmpfs(Path::new(STAGING), MsFlags::MS_NOEXEC, "mode=700,size=4k")
        .context("mounting a staging tmpfs for the file masks")?;
    let result = (|| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o000)
            .open(EMPTY)
            .context("creating the empty file")?;
        for target in files {
            bind_read_only(Path::new(EMPTY), &target.path)
                .with_context(|| format!("masking {}", target.path.display()))?;
        }
        Ok(())
    })();
    // The binds keep the staging file system alive; its mount goes.
    umount2(STAGING, MntFlags::MNT_DETACH).context("detaching the staging tmpfs")?;
    result
}

fn bind_read_only(source: &Path, target: &Path) -> anyhow::Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOEXEC
            | base_flags(),
        None::<&str>,
    )?;
    Ok(())
}
