//! The decision loop: how a command's heads and words are walked through the
//! compiled trie. The eBPF program runs [`Evaluation::judge`] itself, with
//! its own [`Command`] (argument words read from the task) and [`Steps`]
//! (BPF map lookups, each step in a BPF global function); the property test
//! in `tests.rs` runs the same function on the compiled tables.
//!
//! Two walks share the words: the strict one (every rule, the command's
//! words one by one: a prefix match) and the tool-aware one (block and
//! approve rules and grants, options skipped; [`aware`](super::aware)).

use super::{
    chain, set, volatile, Aliases, Aware, Node, NodeKey, OptionKey, SessionInfo, Tool, ToolKey,
    WordInfo, ACTION_ALLOW, ACTION_APPROVE, ACTION_BLOCK, ACTION_NONE, HEAD_SLOTS, MAX_ALIASES,
    MAX_HEADS, MAX_WORDS, NO_RULE, RULE_UNMATCHABLE, SESSION_REVOKED,
};

const _: () = assert!(MAX_HEADS == 11, "each_head unrolls exactly MAX_HEADS heads");
const _: () = assert!(MAX_WORDS.is_power_of_two(), "word indices are masked");

/// A command as the evaluation sees it: a word count and its words after
/// the executable, read on demand.
pub trait Command {
    fn argc(&self) -> usize;
    /// Reads word `i` (`1 <= i < argc`) into `word`: its hash when it is at
    /// most [`MAX_WORD_LEN`](super::MAX_WORD_LEN) bytes (a longer one
    /// equals no rule word) and its [shape](WordInfo::describe). Returns
    /// false when the word cannot be read at all.
    fn read(&mut self, i: usize, word: &mut WordInfo) -> bool;

    /// [`Evaluation::feed`]: reads word `i` and feeds it to the walks. The
    /// eBPF program overrides it to run the same body in a BPF global
    /// function, so that the verifier checks reading a word once rather
    /// than once per word.
    fn feed<S: Steps + ?Sized>(&mut self, eval: &mut Evaluation, i: usize, steps: &S) -> bool
    where
        Self: Sized,
    {
        eval.feed(self, i, steps)
    }
}

/// Lookups in the session's tables (BPF hash maps in the kernel,
/// `BTreeMap`s in tests).
pub trait Nodes {
    fn node(&self, key: &NodeKey) -> Option<Node>;
    /// The grammar of a rule head, if its tool is in the table.
    fn tool(&self, key: &ToolKey) -> Option<Tool>;
    /// Whether a tool's long option takes a value.
    fn takes_value(&self, key: &OptionKey) -> bool;
}

/// Runs the walk's steps over these nodes. The defaults run them in place.
/// The eBPF program overrides them to call BPF global functions whose bodies
/// are the defaults: the verifier checks a global function once, for any
/// arguments, instead of once per call site and path, which keeps the walk
/// far below its instruction budget.
pub trait Steps: Nodes {
    /// [`Evaluation::step`].
    fn step(&self, eval: &mut Evaluation, depth: usize) -> bool {
        eval.step(depth, self)
    }
    /// [`Evaluation::advance`].
    fn advance(&self, eval: &mut Evaluation, word: usize) -> bool {
        eval.advance(word)
    }
    /// [`Evaluation::start_position`].
    fn start(&self, eval: &mut Evaluation, head: usize) {
        eval.start_position(head, self)
    }
    /// [`Evaluation::aware_word`].
    fn aware(&self, eval: &mut Evaluation) {
        eval.aware_word(self)
    }
    /// [`Evaluation::classify`].
    fn classify(&self, eval: &mut Evaluation, head: usize) {
        eval.classify(head, self)
    }
    /// [`Evaluation::visit`].
    fn visit(&self, eval: &mut Evaluation, slot: usize) {
        eval.visit(slot, self)
    }
    /// [`Evaluation::settle`].
    fn settle(&self, eval: &mut Evaluation, born: usize) {
        eval.settle(born)
    }
}

/// The outcome of [`Evaluation::judge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `ACTION_ALLOW`, `ACTION_APPROVE` or `ACTION_BLOCK`.
    pub action: u8,
    /// The deciding rule's index, `NO_RULE` for the role default.
    pub rule: u32,
    /// A live grant of the session covers this command. With `action ==
    /// ACTION_APPROVE` the command runs.
    pub granted: bool,
}

impl Verdict {
    /// The verdict of a refusal no rule made (revoked session, loader,
    /// cgroup).
    pub const REFUSED: Verdict = Verdict {
        action: ACTION_BLOCK,
        rule: NO_RULE,
        granted: false,
    };

    /// The verdict on a command the kernel cannot match within its limits.
    pub const UNMATCHABLE: Verdict = Verdict {
        action: ACTION_BLOCK,
        rule: RULE_UNMATCHABLE,
        granted: false,
    };

    /// Whether the command may run.
    pub fn permits(&self) -> bool {
        self.action == ACTION_ALLOW || (self.action == ACTION_APPROVE && self.granted)
    }
}

/// Everything one judgement works on: its heads, its word hashes and the
/// walk. Plain memory: in the kernel it lives in a per-CPU map value (the
/// BPF stack is 512 bytes), whose contents the verifier does not track.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Evaluation {
    pub session: SessionInfo,
    pub now_ns: u64,
    /// Per head slot (`HEAD_*`), the hash of a name the executable is
    /// judged by; bit h of `valid`: slot h holds one.
    pub heads: [u64; MAX_HEADS],
    pub valid: u32,
    /// Bit i: `hashes[i]` is word i's hash.
    pub hashed: u32,
    pub hashes: [u64; MAX_WORDS],
    pub walk: Walk,
    /// The word read last, described.
    pub word: WordInfo,
    pub aware: Aware,
}

impl Evaluation {
    /// Forgets the heads and words of an earlier judgement.
    #[inline(always)]
    pub fn clear(&mut self) {
        self.valid = 0;
        self.hashed = 0;
        self.aware.reset();
    }

    /// Judges the executable by `hash` in head slot `slot`.
    #[inline(always)]
    pub fn set_head(&mut self, slot: usize, hash: u64) {
        let slot = slot % MAX_HEADS;
        self.heads[slot] = hash;
        self.valid |= 1 << slot;
    }

    /// Fills the head slots from `first` with the heads an identity stands
    /// for.
    #[inline(always)]
    pub fn add_aliases(&mut self, first: usize, aliases: &Aliases) {
        for i in 0..MAX_ALIASES {
            self.heads[(first + i) % MAX_HEADS] = aliases.heads[i];
            // Branch-free `i < count`, as everywhere the verifier walks.
            let present = ((i as i64 - aliases.count as i64) >> 63) as u32 & 1;
            self.valid |= present << (first + i);
        }
    }

    /// Judges a command: the strongest action among the rules that match it
    /// under any of its valid heads (block > approve > allow, the lowest
    /// rule index among equals), or the session's default action; nothing
    /// runs in a revoked session. Allow rules match as prefixes of the
    /// command's words; block and approve rules, and grants, also
    /// tool-aware ([`aware`](super::aware)).
    ///
    /// The words are read once, in order (one short loop keeps the
    /// verifier's work linear), and only if some rule names the executable:
    /// as far as the longest rule reaches, and further while a tool-aware
    /// match is alive. Then the strict walk goes word by word, all heads at
    /// once.
    #[inline(always)]
    pub fn judge<C: Command, S: Steps + ?Sized>(
        &mut self,
        session: &SessionInfo,
        now_ns: u64,
        cmd: &mut C,
        steps: &S,
    ) -> Verdict {
        if session.flags & SESSION_REVOKED != 0 {
            return Verdict::REFUSED;
        }
        self.session = *session;
        self.now_ns = now_ns;
        self.walk.start(&self.heads, self.valid);
        self.aware.reset();
        let argc = cmd.argc();
        if self.find_roots(steps) {
            let depth = (session.max_depth as usize).min(MAX_WORDS - 1);
            for i in 1..MAX_WORDS {
                let aware = self.aware.alive != 0;
                if i >= argc || (i > depth && !aware) || !cmd.feed(self, i, steps) {
                    break;
                }
            }
            // A tool-aware match could still complete past the words read.
            if argc > MAX_WORDS && self.aware.alive != 0 {
                self.aware.refused = 1;
            }
        }
        if self.aware.refused != 0 {
            return Verdict::UNMATCHABLE;
        }
        for depth in 0..MAX_WORDS {
            if !steps.step(self, depth) || depth + 1 >= argc {
                break;
            }
            if !steps.advance(self, depth + 1) {
                break;
            }
        }
        self.walk.verdict(session.default_action)
    }

    /// Reads word `i` (`1 <= i < MAX_WORDS`), keeps its hash for the strict
    /// walk and feeds it to the tool-aware one; false when it cannot be
    /// read (then nothing after it is either).
    #[inline(always)]
    pub fn feed<C: Command, S: Steps + ?Sized>(
        &mut self,
        cmd: &mut C,
        i: usize,
        steps: &S,
    ) -> bool {
        let read = i & (MAX_WORDS - 1) != 0 && cmd.read(i & (MAX_WORDS - 1), &mut self.word);
        self.take_word(read, i, steps)
    }

    /// The part of [`feed`](Self::feed) after reading word `i` into
    /// `self.word` (`read`: whether it could be read).
    #[inline(always)]
    pub fn take_word<S: Steps + ?Sized>(&mut self, read: bool, i: usize, steps: &S) -> bool {
        let i = i & (MAX_WORDS - 1);
        let aware = self.aware.alive != 0;
        if i == 0 || !read {
            // A word that cannot be read cannot be skipped either.
            if aware {
                self.aware.refused = 1;
            }
            return false;
        }
        if self.word.hashed != 0 {
            self.hashes[i] = self.word.hash;
            self.hashed |= 1 << i;
        }
        if aware {
            steps.aware(self);
        }
        true
    }

    /// Whether a rule or grant starts at one of the heads (an executable no
    /// rule names needs no argument read); starts a tool-aware match at
    /// each head a block or approve rule or a grant continues from.
    #[inline(always)]
    fn find_roots<S: Steps + ?Sized>(&mut self, nodes: &S) -> bool {
        let mut named = false;
        for h in 0..MAX_HEADS {
            if self.valid & (1 << h) == 0 {
                continue;
            }
            let key = NodeKey {
                session: self.session.index,
                depth: 0,
                hash: self.heads[h],
            };
            if let Some(root) = nodes.node(&key) {
                named = true;
                if root.aware != 0 {
                    self.aware.roots[h & (HEAD_SLOTS - 1)] = key.hash;
                    nodes.start(self, h);
                }
            }
        }
        named
    }

    /// One depth of the walk for every head (see [`Walk::step`]); returns
    /// whether any chain continues.
    #[inline(always)]
    pub fn step<N: Nodes + ?Sized>(&mut self, depth: usize, nodes: &N) -> bool {
        let (session, now_ns) = (self.session.index, self.now_ns);
        self.walk
            .step(session, depth & (MAX_WORDS - 1), nodes, now_ns)
    }

    /// Extends the walk's chains by word `i`; returns false when that word
    /// was not hashed (unreadable, too long, or past what any rule reaches).
    #[inline(always)]
    pub fn advance(&mut self, i: usize) -> bool {
        let i = i & (MAX_WORDS - 1);
        if self.hashed & (1u32 << i) == 0 {
            return false;
        }
        let word = self.hashes[i];
        self.walk.advance(word);
        true
    }
}

/// The state of a walk through the trie, kept in memory rather than in
/// registers (see [`Evaluation`]), so that the many branches of a walk do
/// not make the verifier consider each combination of outcomes separately.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Walk {
    /// Per head slot, the hash of the prefix walked so far.
    pub chains: [u64; MAX_HEADS],
    /// Bit h: head h is known and its chain still has a node at this depth.
    pub alive: u32,
    pub best_action: u32,
    pub best_rule: u32,
    pub granted: u32,
}

impl Walk {
    /// A walk from the heads whose bit is set in `valid`.
    #[inline(always)]
    pub fn start(&mut self, heads: &[u64; MAX_HEADS], valid: u32) {
        self.chains = *heads;
        self.alive = valid & ((1u32 << MAX_HEADS) - 1);
        self.best_action = ACTION_NONE as u32;
        self.best_rule = NO_RULE;
        self.granted = 0;
    }

    /// Looks up every live chain at `depth`; returns whether any continues.
    #[inline(always)]
    pub fn step<N: Nodes + ?Sized>(
        &mut self,
        session: u32,
        depth: usize,
        nodes: &N,
        now_ns: u64,
    ) -> bool {
        let mut continues = false;
        each_head(|h| continues |= self.step_head(h, session, depth, nodes, now_ns));
        continues
    }

    #[inline(always)]
    fn step_head<N: Nodes + ?Sized>(
        &mut self,
        h: usize,
        session: u32,
        depth: usize,
        nodes: &N,
        now_ns: u64,
    ) -> bool {
        let bit = 1u32 << h;
        if volatile(&self.alive) & bit == 0 {
            return false;
        }
        let key = NodeKey {
            session,
            depth: depth as u32,
            hash: volatile(&self.chains[h]),
        };
        let Some(node) = nodes.node(&key) else {
            let alive = volatile(&self.alive) & !bit;
            set(&mut self.alive, alive);
            return false;
        };
        let (action, best) = (node.action as u32, volatile(&self.best_action));
        if action > best || (action == best && node.rule < volatile(&self.best_rule)) {
            set(&mut self.best_action, action);
            set(&mut self.best_rule, node.rule);
        }
        if node.grant_until_ns > now_ns {
            set(&mut self.granted, 1);
        }
        if node.has_children == 0 {
            let alive = volatile(&self.alive) & !bit;
            set(&mut self.alive, alive);
            return false;
        }
        true
    }

    /// Judges a node the tool-aware walk reached: its block or approve rule
    /// (an allow rule only ever matches strictly) and its grant.
    #[inline(always)]
    pub fn land(&mut self, node: &Node, now_ns: u64) {
        let (action, best) = (node.action as u32, volatile(&self.best_action));
        if action >= ACTION_APPROVE as u32
            && (action > best || (action == best && node.rule < volatile(&self.best_rule)))
        {
            set(&mut self.best_action, action);
            set(&mut self.best_rule, node.rule);
        }
        if node.grant_until_ns > now_ns {
            set(&mut self.granted, 1);
        }
    }

    /// Extends every chain by the next word.
    #[inline(always)]
    pub fn advance(&mut self, word: u64) {
        each_head(|h| {
            let next = chain(volatile(&self.chains[h]), word);
            set(&mut self.chains[h], next);
        });
    }

    /// The verdict, with `default_action` when no rule matched.
    pub fn verdict(&self, default_action: u32) -> Verdict {
        let best = volatile(&self.best_action);
        let granted = volatile(&self.granted) != 0;
        if best == ACTION_NONE as u32 {
            Verdict {
                action: default_action as u8,
                rule: NO_RULE,
                granted,
            }
        } else {
            Verdict {
                action: best as u8,
                rule: volatile(&self.best_rule),
                granted,
            }
        }
    }
}

/// Calls `f` for head slots 0..MAX_HEADS, unrolled.
#[inline(always)]
fn each_head(mut f: impl FnMut(usize)) {
    macro_rules! calls {
        ($($n:literal)*) => { $( f($n); )* };
    }
    calls!(0 1 2 3 4 5 6 7 8 9 10);
}
