//! Self-confinement with Landlock where no service manager confines the
//! daemon: under systemd the units' `ProtectSystem=strict`,
//! `ReadWritePaths=` and friends do it; started any other way (our hosts,
//! containers, `scripts/airlock-up` without systemd) a daemon restricts
//! itself to the paths it needs before it starts any thread, so a bug or a
//! compromise in it cannot write outside its own state.
//!
//! airlock-enforcer does not use this: Landlock also scopes ptrace, and the
//! enforcer's job is reading and holding tasks outside any Landlock domain
//! of its own.

use std::path::{Path, PathBuf};

use anyhow::Context;
use landlock::{
    path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    ABI,
};

/// Read (and execute) below these; the system's own files a daemon reads at
/// run time: user and group names, the resolver, shared libraries NSS
/// loads, and the kernel's views of processes.
const SYSTEM_READ: [&str; 9] = [
    "/etc", "/usr", "/lib", "/lib64", "/bin", "/proc", "/sys", "/dev", "/run",
];

/// What a daemon may touch once confined.
#[derive(Debug, Default)]
pub struct Plan {
    /// Read below these (besides the system's own, [`SYSTEM_READ`]).
    pub read: Vec<PathBuf>,
    /// Read and write below these: its state.
    pub write: Vec<PathBuf>,
}

/// How far the kernel honoured the plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied in full.
    Confined,
    /// Applied with the rights this kernel's Landlock knows.
    Partly,
    /// This kernel has no Landlock (or it is disabled).
    Unsupported,
    /// A service manager confines the daemon; nothing applied.
    ByServiceManager,
}

/// Whether systemd started this process as (part of) a service: it sets
/// `INVOCATION_ID` for every unit it runs.
pub fn under_service_manager() -> bool {
    std::env::var_os("INVOCATION_ID").is_some()
}

/// Applies `plan` to this process unless a service manager confines it.
/// Call before building a multi-threaded runtime: the restriction holds for
/// the calling thread and the threads and children it creates later.
pub fn apply(daemon: &str, plan: &Plan) -> anyhow::Result<Outcome> {
    if under_service_manager() {
        return Ok(Outcome::ByServiceManager);
    }
    let outcome =
        restrict(plan).with_context(|| format!("{daemon}: confining itself with Landlock"))?;
    match outcome {
        Outcome::Confined => tracing::info!(
            "confined with Landlock: writes only below {}",
            list(&plan.write)
        ),
        Outcome::Partly => tracing::warn!(
            "confined with Landlock as far as this kernel allows: writes only below {}",
            list(&plan.write)
        ),
        Outcome::Unsupported => tracing::warn!(
            "NOT confined: this kernel has no Landlock; run {daemon} under systemd (its unit \
             confines it) or on a kernel with CONFIG_SECURITY_LANDLOCK and `landlock` in lsm="
        ),
        Outcome::ByServiceManager => {}
    }
    Ok(outcome)
}

fn restrict(plan: &Plan) -> anyhow::Result<Outcome> {
    // ABI 3 (Linux 6.2) adds truncation; older kernels get what they know.
    let abi = ABI::V3;
    let system = SYSTEM_READ.iter().map(Path::new);
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(
            system.chain(plan.read.iter().map(PathBuf::as_path)),
            AccessFs::from_read(abi),
        ))?
        .add_rules(path_beneath_rules(&plan.write, AccessFs::from_all(abi)))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Outcome::Confined,
        RulesetStatus::PartiallyEnforced => Outcome::Partly,
        RulesetStatus::NotEnforced => Outcome::Unsupported,
    })
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What each daemon does at start-up: with `--confinement-selftest DIR`
/// ([`selftest`]) it shows its confinement and exits, 0 if it held;
/// otherwise it applies `plan` ([`apply`]) and goes on.
pub fn enter(daemon: &str, plan: &Plan, selftest_outside: Option<&Path>) -> anyhow::Result<()> {
    if let Some(outside) = selftest_outside {
        let held = selftest(daemon, plan, outside)?;
        std::process::exit(if held { 0 } else { 1 });
    }
    apply(daemon, plan).map(drop)
}

/// The daemons' `--confinement-selftest DIR`: after [`apply`], tries to
/// create a file in each of `plan.write` (which must work) and in `outside`
/// (which must not), prints one line for each, and says whether the
/// confinement held. Lets an administrator, and the tests, see the
/// confinement of the very code path the daemon runs.
fn selftest(daemon: &str, plan: &Plan, outside: &Path) -> anyhow::Result<bool> {
    let outcome = apply(daemon, plan)?;
    println!("{daemon}: {outcome:?}");
    let try_create = |dir: &Path| {
        let path = dir.join(format!(".airlock-confinement-{}", std::process::id()));
        let result = std::fs::File::create(&path);
        let _ = std::fs::remove_file(&path);
        result
    };
    let mut held = outcome == Outcome::Confined;
    for dir in &plan.write {
        match try_create(dir) {
            Ok(_) => println!("write {}: allowed", dir.display()),
            Err(e) => {
                println!("write {}: REFUSED ({e})", dir.display());
                held = false;
            }
        }
    }
    match try_create(outside) {
        Ok(_) => {
            println!("write {}: ALLOWED", outside.display());
            held = false;
        }
        Err(e) => println!("write {}: refused ({e})", outside.display()),
    }
    Ok(held)
}
