//! The enforcer's sessions: each one's compiled policy in the kernel maps,
//! and its cgroup or bound uid. A spec's grants reach the maps only through
//! [`grants::admit`]: signed by airlock-totp for this very session.

use std::collections::{BTreeMap, BTreeSet};

use airlock_common::dbus::{RuleSpec, SessionSpec, ToolSpec};
use airlock_common::kernel::compile::{action_code, add_pattern, max_depth, Ending, Tools};
use airlock_common::kernel::{self, IdentKey, LocalPortKey, NodeKey, SessionInfo};
use airlock_common::policy::{basename, Grammar, Source};
use airlock_common::timefmt::now_unix;
use anyhow::{anyhow, Context};

use crate::cgroup::{Cgroups, Layout};
use crate::grants::{self, Admitted};
use crate::identity;
use crate::loader::{boot_ns, Kernel};

/// Where a session's processes are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Cgroup(u64),
    Uid(u32),
}

/// A session's kernel map entries: trie nodes, executable identities and
/// the grammars of its rule heads.
#[derive(Default)]
struct Compiled {
    nodes: BTreeMap<NodeKey, kernel::Node>,
    idents: BTreeMap<IdentKey, kernel::Aliases>,
    tools: Tools,
}

struct Live {
    spec: SessionSpec,
    /// The spec's grants that passed [`grants::admit`], as installed.
    grants: Vec<Admitted>,
    scope: Scope,
    info: SessionInfo,
    /// What is in the kernel maps for the session, kept for the seccomp
    /// supervisor, which judges with the same walk in userspace.
    tables: Compiled,
    /// The seccomp supervisor has the session's listener.
    supervised: bool,
    /// The role's `allow_local_ports`, as installed.
    ports: BTreeSet<LocalPortKey>,
}

/// A session's compiled tables, as the supervisor judges with them.
pub struct Tables<'a> {
    pub info: SessionInfo,
    pub nodes: &'a BTreeMap<NodeKey, kernel::Node>,
    pub idents: &'a BTreeMap<IdentKey, kernel::Aliases>,
    pub tools: &'a Tools,
    pub rules: &'a [RuleSpec],
}

/// A tool grammar as the gateway sent it, validated as the policy loader
/// validates a `[[tool]]` table.
pub fn grammar(tool: &ToolSpec) -> Result<Grammar, String> {
    let style = tool.style.parse()?;
    let source = Source {
        file: "(session spec)".into(),
        line: 1,
    };
    Grammar::new(&tool.name, style, &tool.value_options, source)
}

pub struct Sessions {
    pub kernel: Kernel,
    cgroups: Cgroups,
    live: BTreeMap<String, Live>,
}

fn words(command: &str) -> Vec<String> {
    command.split_whitespace().map(str::to_owned).collect()
}

/// Removes a session's map entries `old`, but those `kept` still has.
fn remove(kernel: &mut Kernel, old: &Compiled, kept: &Compiled) {
    for stale in old.nodes.keys().filter(|k| !kept.nodes.contains_key(k)) {
        let _ = kernel.nodes.remove(stale);
    }
    for stale in old.idents.keys().filter(|k| !kept.idents.contains_key(k)) {
        let _ = kernel.idents.remove(stale);
    }
    for stale in old
        .tools
        .tools
        .keys()
        .filter(|k| !kept.tools.tools.contains_key(k))
    {
        let _ = kernel.tools.remove(stale);
    }
    for stale in old.tools.options.difference(&kept.tools.options) {
        let _ = kernel.options.remove(stale);
    }
}

impl Sessions {
    pub fn new(kernel: Kernel, cgroups: Cgroups) -> Sessions {
        Sessions {
            kernel,
            cgroups,
            live: BTreeMap::new(),
        }
    }

    /// Who makes the session cgroups.
    pub fn cgroups_layout(&self) -> Layout {
        self.cgroups.layout()
    }

    pub fn count(&self) -> usize {
        self.live.len()
    }

    pub fn rules(&self, index: u32) -> Option<(&str, &[RuleSpec])> {
        self.live
            .values()
            .find(|l| l.spec.index == index)
            .map(|l| (l.spec.id.as_str(), l.spec.rules.as_slice()))
    }

    pub fn session_of_pid(&self, pid: u32) -> Option<String> {
        if let Some(id) = self.cgroups.session_of(pid) {
            if self.live.contains_key(&id) {
                return Some(id);
            }
        }
        let uid = crate::cgroup::uid_of(pid).ok()?;
        self.binding_of(uid).map(|l| l.spec.id.clone())
    }

    /// The session of a socket: the live session whose cgroup is the one
    /// the socket was made in (session cgroups are leaves the enforcer
    /// owns, so a process cannot make a socket there from outside), else
    /// the one that binds its owner `uid`.
    pub fn session_of_socket(&self, cgroup: u64, uid: u32) -> Option<String> {
        self.live
            .values()
            .find(|l| cgroup != 0 && l.scope == Scope::Cgroup(cgroup))
            .or_else(|| self.binding_of(uid))
            .map(|l| l.spec.id.clone())
    }

    /// The live session that binds `uid`, if any.
    fn binding_of(&self, uid: u32) -> Option<&Live> {
        self.live.values().find(|l| l.scope == Scope::Uid(uid))
    }

    fn info(spec: &SessionSpec, grants: &[Admitted]) -> anyhow::Result<SessionInfo> {
        let word_counts = spec
            .rules
            .iter()
            .map(|r| r.command.split_whitespace().count())
            .chain(grants.iter().map(|g| g.words.len()));
        Ok(SessionInfo {
            index: spec.index,
            flags: [
                (spec.revoked, kernel::SESSION_REVOKED),
                (spec.allow_debugging, kernel::SESSION_ALLOW_DEBUGGING),
            ]
            .into_iter()
            .filter(|(set, _)| *set)
            .fold(0, |flags, (_, flag)| flags | flag),
            default_action: action_code(spec.default_action) as u32,
            max_depth: max_depth(word_counts),
        })
    }

    /// The grants of `spec` the kernel may honour for the session of `uid`;
    /// each other one is logged with the reason and left out.
    fn admit_grants(spec: &SessionSpec, uid: u32, key: Option<&[u8]>) -> Vec<Admitted> {
        let subject = grants::Subject {
            session: &spec.id,
            uid,
        };
        let now = now_unix();
        spec.grants
            .iter()
            .filter_map(|grant| match grants::admit(grant, key, subject, now) {
                Ok(admitted) => Some(admitted),
                Err(refusal) => {
                    tracing::warn!(
                        "session {}: grant {} refused, not installed: {refusal}",
                        spec.id,
                        grants::claimed_id(grant)
                    );
                    None
                }
            })
            .collect()
    }

    /// Compiles a spec and its admitted grants into node and identity
    /// entries.
    fn compile(&self, spec: &SessionSpec, grants: &[Admitted]) -> anyhow::Result<Compiled> {
        let key = self.kernel.key;
        let mut nodes = BTreeMap::new();
        let mut heads = BTreeSet::new();
        for rule in &spec.rules {
            let words = words(&rule.command);
            let ending = Ending::Rule {
                action: rule.action,
                index: rule.index,
            };
            add_pattern(&mut nodes, spec.index, &key, &words, ending)
                .with_context(|| format!("rule {:?}", rule.command))?;
            heads.insert(words[0].clone());
        }
        let (now, boot) = (now_unix(), boot_ns());
        for grant in grants {
            let left = grant.expires_at - now;
            if left <= 0 {
                continue;
            }
            let until_ns = boot + left as u64 * 1_000_000_000;
            add_pattern(
                &mut nodes,
                spec.index,
                &key,
                &grant.words,
                Ending::Grant { until_ns },
            )
            .with_context(|| format!("grant {}", grant.id))?;
            heads.insert(grant.words[0].clone());
        }
        let mut tools = Tools::default();
        for tool in &spec.tools {
            let grammar = grammar(tool).map_err(|e| anyhow!("tool {:?}: {e}", tool.name))?;
            for head in heads.iter().filter(|h| basename(h) == grammar.name) {
                tools.add(spec.index, &key, head, &grammar);
            }
        }
        let heads: Vec<String> = heads.into_iter().collect();
        let (idents, warnings) = identity::resolve(spec.index, &key, &heads, &spec.search_path);
        for warning in warnings {
            tracing::warn!("session {}: {warning}", spec.id);
        }
        Ok(Compiled {
            nodes,
            idents,
            tools,
        })
    }

    /// Writes the compiled spec, then removes what the previous version had
    /// and this one does not: a rule, grant or grammar never vanishes before
    /// its replacement is in place.
    fn install(&mut self, spec: &SessionSpec, grants: &[Admitted]) -> anyhow::Result<Compiled> {
        let compiled = self.compile(spec, grants)?;
        let Compiled {
            nodes,
            idents,
            tools,
        } = &compiled;
        for (key, node) in nodes.iter() {
            self.kernel
                .nodes
                .insert(key, node, 0)
                .context("the kernel rule map is full")?;
        }
        for (key, aliases) in idents.iter() {
            self.kernel
                .idents
                .insert(key, aliases, 0)
                .context("the kernel identity map is full")?;
        }
        for (key, tool) in tools.tools.iter() {
            self.kernel
                .tools
                .insert(key, tool, 0)
                .context("the kernel tool map is full")?;
        }
        for key in tools.options.iter() {
            self.kernel
                .options
                .insert(key, 1u32, 0)
                .context("the kernel option map is full")?;
        }
        if let Some(old) = self.live.get(&spec.id) {
            remove(&mut self.kernel, &old.tables, &compiled);
        }
        Ok(compiled)
    }

    /// The compiled tables of live session `id`, for the supervisor.
    pub fn tables(&self, id: &str) -> Option<Tables<'_>> {
        self.live.get(id).map(|l| Tables {
            info: l.info,
            nodes: &l.tables.nodes,
            idents: &l.tables.idents,
            tools: &l.tables.tools,
            rules: &l.spec.rules,
        })
    }

    /// Marks process-tree session `id` as supervised; refuses a second
    /// supervisor, a uid binding, and a session it does not have.
    pub fn take_supervisor(&mut self, id: &str) -> anyhow::Result<()> {
        let live = self
            .live
            .get_mut(id)
            .ok_or_else(|| anyhow!("no session {id}"))?;
        if !matches!(live.scope, Scope::Cgroup(_)) {
            anyhow::bail!("session {id} binds a user: it has no first process to supervise");
        }
        if live.supervised {
            anyhow::bail!("session {id} already has its supervisor");
        }
        live.supervised = true;
        Ok(())
    }

    /// The session whose cgroup process `pid` is in, if it is live.
    pub fn cgroup_session_of(&self, pid: u32) -> Option<String> {
        self.cgroups
            .session_of(pid)
            .filter(|id| self.live.contains_key(id))
    }

    /// Writes the ports on this machine the session may reach, then removes
    /// those the previous version allowed and this one does not.
    fn install_ports(&mut self, spec: &SessionSpec) -> anyhow::Result<BTreeSet<LocalPortKey>> {
        let ports: BTreeSet<LocalPortKey> = spec
            .allow_local_ports
            .iter()
            .map(|&port| LocalPortKey {
                session: spec.index,
                port: port as u32,
            })
            .collect();
        for key in &ports {
            self.kernel
                .local_ports
                .insert(key, 1, 0)
                .context("the kernel port map is full")?;
        }
        if let Some(old) = self.live.get(&spec.id) {
            for stale in old.ports.difference(&ports) {
                let _ = self.kernel.local_ports.remove(stale);
            }
        }
        Ok(ports)
    }

    fn set_scope(&mut self, scope: Scope, info: &SessionInfo) -> anyhow::Result<()> {
        match scope {
            Scope::Cgroup(id) => self.kernel.cgroups.insert(id, info, 0)?,
            Scope::Uid(uid) => self.kernel.uids.insert(uid, info, 0)?,
        }
        Ok(())
    }

    /// Whether `pid` may become the first process of session `spec`: it
    /// runs as the session's user and is governed by no session yet.
    /// Returns its uid.
    pub fn admit(&self, spec: &SessionSpec, pid: u32) -> anyhow::Result<u32> {
        let owner = crate::cgroup::uid_of(pid)?;
        if owner != spec.uid {
            anyhow::bail!(
                "process {pid} runs as uid {owner}, not as the session's uid {}",
                spec.uid
            );
        }
        // A governed process may not move into a session of its choosing:
        // the kernel looks at the cgroup first, so a new session would swap
        // its role for a looser one. Any Airlock cgroup counts, live or not
        // (under systemd, the session's own new scope is the exception).
        if let Some(current) = self.cgroups.session_of(pid) {
            let own_new_scope = current == spec.id
                && self.cgroups.layout() == Layout::SystemdScopes
                && !self.live.contains_key(&spec.id);
            if !own_new_scope {
                anyhow::bail!(
                    "process {pid} is in governed session {current}; a governed process cannot \
                     start another session"
                );
            }
        }
        if let Some(bound) = self.binding_of(owner) {
            anyhow::bail!(
                "uid {owner} is governed by session {}; its processes cannot start another session",
                bound.spec.id
            );
        }
        Ok(owner)
    }

    /// Starts a process-tree session and moves `pid` into it (under
    /// systemd the caller has started its scope with `pid` in it first);
    /// `key` is airlock-totp's, for the grants.
    pub fn start(&mut self, spec: SessionSpec, pid: u32, key: Option<&[u8]>) -> anyhow::Result<()> {
        let owner = self.admit(&spec, pid)?;
        self.check_index(&spec)?;
        let grants = Self::admit_grants(&spec, owner, key);
        let info = Self::info(&spec, &grants)?;
        let tables = self.install(&spec, &grants)?;
        let ports = self.install_ports(&spec)?;
        let cgroup = self.cgroups.create(&spec.id)?;
        // The session is known to the kernel before its first process is in.
        self.set_scope(Scope::Cgroup(cgroup), &info)?;
        self.live.insert(
            spec.id.clone(),
            Live {
                spec: spec.clone(),
                grants,
                scope: Scope::Cgroup(cgroup),
                info,
                tables,
                supervised: false,
                ports,
            },
        );
        if let Err(e) = self.cgroups.add_process(&spec.id, pid) {
            self.forget(&spec.id);
            return Err(e);
        }
        Ok(())
    }

    /// Governs every process of `spec.uid`.
    pub fn bind_user(&mut self, spec: SessionSpec, key: Option<&[u8]>) -> anyhow::Result<()> {
        self.check_index(&spec)?;
        if let Some(other) = self.binding_of(spec.uid).filter(|l| l.spec.id != spec.id) {
            anyhow::bail!(
                "uid {} is already bound to session {}",
                spec.uid,
                other.spec.id
            );
        }
        let grants = Self::admit_grants(&spec, spec.uid, key);
        let info = Self::info(&spec, &grants)?;
        let tables = self.install(&spec, &grants)?;
        let ports = self.install_ports(&spec)?;
        self.set_scope(Scope::Uid(spec.uid), &info)?;
        self.live.insert(
            spec.id.clone(),
            Live {
                spec: spec.clone(),
                grants,
                scope: Scope::Uid(spec.uid),
                info,
                tables,
                supervised: false,
                ports,
            },
        );
        Ok(())
    }

    fn check_index(&self, spec: &SessionSpec) -> anyhow::Result<()> {
        match self
            .live
            .values()
            .find(|l| l.spec.index == spec.index && l.spec.id != spec.id)
        {
            Some(other) => Err(anyhow!(
                "session index {} is already used by {}",
                spec.index,
                other.spec.id
            )),
            None => Ok(()),
        }
    }

    /// Replaces a live session's policy and grants. Whose session it is
    /// does not change.
    pub fn update(&mut self, spec: SessionSpec, key: Option<&[u8]>) -> anyhow::Result<()> {
        let live = self
            .live
            .get(&spec.id)
            .ok_or_else(|| anyhow!("no session {}", spec.id))?;
        let (scope, uid) = (live.scope, live.spec.uid);
        if spec.uid != uid || spec.bound_uid != live.spec.bound_uid {
            anyhow::bail!(
                "session {} is uid {uid}'s{}; an update cannot change that",
                spec.id,
                if live.spec.bound_uid { ", bound" } else { "" }
            );
        }
        let grants = Self::admit_grants(&spec, uid, key);
        let info = Self::info(&spec, &grants)?;
        let tables = self.install(&spec, &grants)?;
        let ports = self.install_ports(&spec)?;
        self.set_scope(scope, &info)?;
        let live = self.live.get_mut(&spec.id).expect("checked above");
        live.spec = spec;
        live.grants = grants;
        live.info = info;
        live.tables = tables;
        live.ports = ports;
        Ok(())
    }

    /// Checks every live session's grants again with `key` (airlock-totp's
    /// key was learned or changed): grants refused for want of it are
    /// installed, grants its predecessor signed are removed.
    pub fn recheck_grants(&mut self, key: &[u8]) {
        let specs: Vec<SessionSpec> = self
            .live
            .values()
            .filter(|l| !l.spec.grants.is_empty())
            .map(|l| l.spec.clone())
            .collect();
        for spec in specs {
            let id = spec.id.clone();
            match self.update(spec, Some(key)) {
                Ok(()) => tracing::info!(
                    "session {id}: grants checked again with airlock-totp's key, {} installed",
                    self.live.get(&id).map_or(0, |l| l.grants.len())
                ),
                Err(e) => tracing::error!("session {id}: cannot check its grants again: {e:#}"),
            }
        }
    }

    /// Revokes a session; with `kill`, kills its processes. A uid-bound
    /// session is unbound.
    /// Ends session `id`; `false` if there is no such live session.
    pub fn end(&mut self, id: &str, kill: bool) -> anyhow::Result<bool> {
        let Some(live) = self.live.get(id) else {
            return Ok(false);
        };
        let scope = live.scope;
        let mut spec = live.spec.clone();
        spec.revoked = true;
        let info = Self::info(&spec, &live.grants)?;
        match scope {
            Scope::Cgroup(_) => {
                // Revoked first, so that nothing new starts while the tree
                // is being killed.
                self.set_scope(scope, &info)?;
                if let Some(live) = self.live.get_mut(id) {
                    live.spec.revoked = true;
                    live.info = info;
                }
                if kill {
                    self.cgroups.kill(id)?;
                }
            }
            Scope::Uid(_) => self.forget(id),
        }
        Ok(true)
    }

    /// Takes the whole set after a restart of either side. Returns the
    /// process-tree sessions that have no cgroup any more (gone), and
    /// errors. Sessions the gateway no longer knows keep their kernel state
    /// until they exit.
    pub fn sync(
        &mut self,
        specs: Vec<SessionSpec>,
        key: Option<&[u8]>,
    ) -> (Vec<String>, Vec<String>) {
        let mut lost = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            let result = if self.live.contains_key(&spec.id) {
                self.update(spec.clone(), key)
            } else if spec.bound_uid {
                self.bind_user(spec.clone(), key)
            } else if self.cgroups.exists(&spec.id) {
                self.adopt(spec.clone(), key)
            } else {
                lost.push(spec.id.clone());
                Ok(())
            };
            if let Err(e) = result {
                errors.push(format!("session {}: {e:#}", spec.id));
            }
        }
        (lost, errors)
    }

    /// Takes over a session whose cgroup outlived an enforcer restart.
    fn adopt(&mut self, spec: SessionSpec, key: Option<&[u8]>) -> anyhow::Result<()> {
        let cgroup = self.cgroups.id(&spec.id)?;
        let grants = Self::admit_grants(&spec, spec.uid, key);
        let info = Self::info(&spec, &grants)?;
        let tables = self.install(&spec, &grants)?;
        let ports = self.install_ports(&spec)?;
        self.set_scope(Scope::Cgroup(cgroup), &info)?;
        self.live.insert(
            spec.id.clone(),
            Live {
                spec,
                grants,
                scope: Scope::Cgroup(cgroup),
                info,
                tables,
                supervised: false,
                ports,
            },
        );
        Ok(())
    }

    /// Process-tree sessions whose last process has exited; their kernel
    /// state and cgroup are removed.
    pub fn reap_exited(&mut self) -> Vec<String> {
        let exited: Vec<String> = self
            .live
            .values()
            .filter(|l| matches!(l.scope, Scope::Cgroup(_)) && !self.cgroups.populated(&l.spec.id))
            .map(|l| l.spec.id.clone())
            .collect();
        for id in &exited {
            self.forget(id);
        }
        exited
    }

    fn forget(&mut self, id: &str) {
        let Some(live) = self.live.remove(id) else {
            return;
        };
        match live.scope {
            Scope::Cgroup(cgroup) => {
                let _ = self.kernel.cgroups.remove(&cgroup);
                self.cgroups.remove(id);
            }
            Scope::Uid(uid) => {
                let _ = self.kernel.uids.remove(&uid);
            }
        }
        remove(&mut self.kernel, &live.tables, &Compiled::default());
        for key in &live.ports {
            let _ = self.kernel.local_ports.remove(key);
        }
    }
}
