//! The enforcer's sessions: each one's compiled policy in the kernel maps,
//! and its cgroup or bound uid.

use std::collections::{BTreeMap, BTreeSet};

use airlock_common::dbus::{RuleSpec, SessionSpec, ToolSpec};
use airlock_common::kernel::compile::{action_code, add_pattern, max_depth, Ending, Tools};
use airlock_common::kernel::{self, IdentKey, NodeKey, OptionKey, SessionInfo, ToolKey};
use airlock_common::policy::{basename, Grammar, Source};
use airlock_common::timefmt::now_unix;
use anyhow::{anyhow, Context};

use crate::cgroup::Cgroups;
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
type Compiled = (
    BTreeMap<NodeKey, kernel::Node>,
    BTreeMap<IdentKey, kernel::Aliases>,
    Tools,
);

/// The keys a session has in the kernel maps.
#[derive(Default)]
struct Installed {
    nodes: BTreeSet<NodeKey>,
    idents: BTreeSet<IdentKey>,
    tools: BTreeSet<ToolKey>,
    options: BTreeSet<OptionKey>,
}

struct Live {
    spec: SessionSpec,
    scope: Scope,
    installed: Installed,
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
fn remove(kernel: &mut Kernel, old: &Installed, kept: &Installed) {
    for stale in old.nodes.difference(&kept.nodes) {
        let _ = kernel.nodes.remove(stale);
    }
    for stale in old.idents.difference(&kept.idents) {
        let _ = kernel.idents.remove(stale);
    }
    for stale in old.tools.difference(&kept.tools) {
        let _ = kernel.tools.remove(stale);
    }
    for stale in old.options.difference(&kept.options) {
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

    /// The live session that binds `uid`, if any.
    fn binding_of(&self, uid: u32) -> Option<&Live> {
        self.live.values().find(|l| l.scope == Scope::Uid(uid))
    }

    fn info(spec: &SessionSpec) -> anyhow::Result<SessionInfo> {
        let word_counts = spec
            .rules
            .iter()
            .map(|r| r.command.as_str())
            .chain(spec.grants.iter().map(|g| g.command.as_str()))
            .map(|c| c.split_whitespace().count());
        Ok(SessionInfo {
            index: spec.index,
            flags: if spec.revoked {
                kernel::SESSION_REVOKED
            } else {
                0
            },
            default_action: action_code(spec.default_action) as u32,
            max_depth: max_depth(word_counts),
        })
    }

    /// Compiles a spec into node and identity entries.
    fn compile(&self, spec: &SessionSpec) -> anyhow::Result<Compiled> {
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
        for grant in &spec.grants {
            let left = grant.expires_at - now;
            if left <= 0 {
                continue;
            }
            let words = words(&grant.command);
            let until_ns = boot + left as u64 * 1_000_000_000;
            add_pattern(
                &mut nodes,
                spec.index,
                &key,
                &words,
                Ending::Grant { until_ns },
            )
            .with_context(|| format!("grant {}", grant.id))?;
            heads.insert(words[0].clone());
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
        Ok((nodes, idents, tools))
    }

    /// Writes the compiled spec, then removes what the previous version had
    /// and this one does not: a rule, grant or grammar never vanishes before
    /// its replacement is in place.
    fn install(&mut self, spec: &SessionSpec) -> anyhow::Result<Installed> {
        let (nodes, idents, tools) = self.compile(spec)?;
        for (key, node) in &nodes {
            self.kernel
                .nodes
                .insert(key, node, 0)
                .context("the kernel rule map is full")?;
        }
        for (key, aliases) in &idents {
            self.kernel
                .idents
                .insert(key, aliases, 0)
                .context("the kernel identity map is full")?;
        }
        for (key, tool) in &tools.tools {
            self.kernel
                .tools
                .insert(key, tool, 0)
                .context("the kernel tool map is full")?;
        }
        for key in &tools.options {
            self.kernel
                .options
                .insert(key, 1u32, 0)
                .context("the kernel option map is full")?;
        }
        let installed = Installed {
            nodes: nodes.into_keys().collect(),
            idents: idents.into_keys().collect(),
            tools: tools.tools.into_keys().collect(),
            options: tools.options,
        };
        if let Some(old) = self.live.get(&spec.id) {
            remove(&mut self.kernel, &old.installed, &installed);
        }
        Ok(installed)
    }

    fn set_scope(&mut self, scope: Scope, info: &SessionInfo) -> anyhow::Result<()> {
        match scope {
            Scope::Cgroup(id) => self.kernel.cgroups.insert(id, info, 0)?,
            Scope::Uid(uid) => self.kernel.uids.insert(uid, info, 0)?,
        }
        Ok(())
    }

    /// Starts a process-tree session and moves `pid` into it.
    pub fn start(&mut self, spec: SessionSpec, pid: u32) -> anyhow::Result<()> {
        let owner = crate::cgroup::uid_of(pid)?;
        if owner != spec.uid {
            anyhow::bail!(
                "process {pid} runs as uid {owner}, not as the session's uid {}",
                spec.uid
            );
        }
        // A governed process may not move into a session of its choosing:
        // the kernel looks at the cgroup first, so a new session would swap
        // its role for a looser one. Any Airlock cgroup counts, live or not.
        if let Some(current) = self.cgroups.session_of(pid) {
            anyhow::bail!(
                "process {pid} is in governed session {current}; a governed process cannot start \
                 another session"
            );
        }
        if let Some(bound) = self.binding_of(owner) {
            anyhow::bail!(
                "uid {owner} is governed by session {}; its processes cannot start another session",
                bound.spec.id
            );
        }
        self.check_index(&spec)?;
        let info = Self::info(&spec)?;
        let installed = self.install(&spec)?;
        let cgroup = self.cgroups.create(&spec.id)?;
        // The session is known to the kernel before its first process is in.
        self.set_scope(Scope::Cgroup(cgroup), &info)?;
        self.live.insert(
            spec.id.clone(),
            Live {
                spec: spec.clone(),
                scope: Scope::Cgroup(cgroup),
                installed,
            },
        );
        if let Err(e) = self.cgroups.add_process(&spec.id, pid) {
            self.forget(&spec.id);
            return Err(e);
        }
        Ok(())
    }

    /// Governs every process of `spec.uid`.
    pub fn bind_user(&mut self, spec: SessionSpec) -> anyhow::Result<()> {
        self.check_index(&spec)?;
        if let Some(other) = self.binding_of(spec.uid).filter(|l| l.spec.id != spec.id) {
            anyhow::bail!(
                "uid {} is already bound to session {}",
                spec.uid,
                other.spec.id
            );
        }
        let info = Self::info(&spec)?;
        let installed = self.install(&spec)?;
        self.set_scope(Scope::Uid(spec.uid), &info)?;
        self.live.insert(
            spec.id.clone(),
            Live {
                spec: spec.clone(),
                scope: Scope::Uid(spec.uid),
                installed,
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

    /// Replaces a live session's policy and grants.
    pub fn update(&mut self, spec: SessionSpec) -> anyhow::Result<()> {
        let scope = self
            .live
            .get(&spec.id)
            .map(|l| l.scope)
            .ok_or_else(|| anyhow!("no session {}", spec.id))?;
        let info = Self::info(&spec)?;
        let installed = self.install(&spec)?;
        self.set_scope(scope, &info)?;
        let live = self.live.get_mut(&spec.id).expect("checked above");
        live.spec = spec;
        live.installed = installed;
        Ok(())
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
        match scope {
            Scope::Cgroup(_) => {
                // Revoked first, so that nothing new starts while the tree
                // is being killed.
                self.set_scope(scope, &Self::info(&spec)?)?;
                if let Some(live) = self.live.get_mut(id) {
                    live.spec.revoked = true;
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
    pub fn sync(&mut self, specs: Vec<SessionSpec>) -> (Vec<String>, Vec<String>) {
        let mut lost = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            let result = if self.live.contains_key(&spec.id) {
                self.update(spec.clone())
            } else if spec.bound_uid {
                self.bind_user(spec.clone())
            } else if self.cgroups.exists(&spec.id) {
                self.adopt(spec.clone())
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
    fn adopt(&mut self, spec: SessionSpec) -> anyhow::Result<()> {
        let cgroup = self.cgroups.id(&spec.id)?;
        let info = Self::info(&spec)?;
        let installed = self.install(&spec)?;
        self.set_scope(Scope::Cgroup(cgroup), &info)?;
        self.live.insert(
            spec.id.clone(),
            Live {
                spec,
                scope: Scope::Cgroup(cgroup),
                installed,
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
        remove(&mut self.kernel, &live.installed, &Installed::default());
    }
}
