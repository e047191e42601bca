//! The real Unix users the tests run as.

use std::process::Command;

use airlock_common::names;
use nix::unistd::{Gid, Group, Uid, User};

/// A test account: `airlock-test-agent` plays the AI agent,
/// `airlock-test-approver` is a member of `airlock-admin`,
/// `airlock-test-outsider` is neither.
pub struct TestUser {
    pub name: &'static str,
}

pub const AGENT: TestUser = TestUser {
    name: "airlock-test-agent",
};
pub const APPROVER: TestUser = TestUser {
    name: "airlock-test-approver",
};
pub const OUTSIDER: TestUser = TestUser {
    name: "airlock-test-outsider",
};
pub const ROOT: TestUser = TestUser { name: "root" };

fn run(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?} failed");
}

fn ensure_group(name: &str) {
    if Group::from_name(name).unwrap().is_none() {
        // Parallel tests may race to create it; a lost race is fine.
        let _ = Command::new("groupadd").args(["--system", name]).status();
        assert!(
            Group::from_name(name).unwrap().is_some(),
            "cannot create group {name}"
        );
    }
}

fn ensure_user(name: &str, system: bool) {
    if User::from_name(name).unwrap().is_none() {
        let mut args = vec![
            "useradd",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ];
        if system {
            args.push("--system");
        }
        args.push(name);
        let _ = Command::new(args[0]).args(&args[1..]).status();
        assert!(
            User::from_name(name).unwrap().is_some(),
            "cannot create user {name}"
        );
    }
}

/// Creates the service users, the admin group and the test users (once).
pub fn ensure_all() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        ensure_group(names::ADMIN_GROUP);
        ensure_user(names::GATEWAY_USER, true);
        ensure_user(names::TOTP_USER, true);
        ensure_user(names::INTEGRATIONS_USER, true);
        ensure_user(names::PROXY_USER, true);
        ensure_user(AGENT.name, false);
        ensure_user(APPROVER.name, false);
        ensure_user(OUTSIDER.name, false);
        let in_admin = Group::from_name(names::ADMIN_GROUP)
            .unwrap()
            .unwrap()
            .mem
            .iter()
            .any(|m| m == APPROVER.name);
        if !in_admin {
            run(&[
                "usermod",
                "--append",
                "--groups",
                names::ADMIN_GROUP,
                APPROVER.name,
            ]);
        }
    });
}

pub fn uid(name: &str) -> Uid {
    User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {name}"))
        .uid
}

/// The home directory in `name`'s passwd entry (it may not exist).
pub fn home(name: &str) -> std::path::PathBuf {
    User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {name}"))
        .dir
}

pub fn gid(name: &str) -> Gid {
    Group::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no group {name}"))
        .gid
}

/// A command that runs as user `name` (its uid, gid and groups) through
/// `setpriv`; the program and its arguments follow.
pub fn setpriv_as(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new("setpriv");
    command.args(["--reuid", name, "--regid", name, "--init-groups", "--"]);
    command
}
