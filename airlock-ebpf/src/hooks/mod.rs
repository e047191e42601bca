//! The programs, one module each. All are scoped to governed sessions: every
//! other task returns at the first map lookup.

mod exec_check;
mod exec_commit;
mod file_open;
mod inet;
mod mmap_file;
mod ptrace;
mod signal;
mod unix;

/// The errno of a refusal.
const EPERM: i32 = 1;
