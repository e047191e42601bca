//! `lsm/file_open`: refuses governed tasks writing to cgroup files, so that
//! no task (root included) moves itself out of its session.

use core::ffi::c_void;

use airlock_common::kernel::{
    Verdict, EVENT_CGROUP_WRITE_DENIED, OUTCOME_REFUSED, STAGE_FILE_OPEN,
};
use aya_ebpf::macros::lsm;
use aya_ebpf::programs::LsmContext;

use super::EPERM;
use crate::identity::file_name_hash;
use crate::maps::{config, scratch, OFFSETS};
use crate::report::{report, Report};
use crate::task::{current_session, kread};

const FMODE_WRITE: u32 = 2;
const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let Some(session) = current_session() else {
        return 0;
    };
    let off = OFFSETS.load();
    let file = ctx.arg::<*const c_void>(0) as u64;
    let mode: u32 = kread(file, off.file_mode);
    if mode & FMODE_WRITE == 0 {
        return 0;
    }
    let inode: u64 = kread(file, off.file_inode);
    let sb: u64 = kread(inode, off.inode_sb);
    let magic: u64 = kread(sb, off.sb_magic);
    if magic != CGROUP2_SUPER_MAGIC && magic != CGROUP_SUPER_MAGIC {
        return 0;
    }
    if let (Some(config), Some(s)) = (config(), scratch()) {
        file_name_hash(&mut s.reader, &config.key, &off, file);
        let refused = Report {
            kind: EVENT_CGROUP_WRITE_DENIED,
            stage: STAGE_FILE_OPEN,
            outcome: OUTCOME_REFUSED,
            session: &session,
            verdict: &Verdict::REFUSED,
            hold: false,
        };
        report(&s.reader, refused);
    }
    -EPERM
}
