//! The tool-aware walk: block and approve rules, and grants, matched with
//! the command's options skipped.
//!
//! A command is read as units under the grammar of a rule head: an option
//! with its value (when the grammar says the option takes one), `--`, an
//! operand. A rule matches when deleting some units (options, `--`, an
//! operand right after an option the grammar does not know to take a value,
//! and for a tool not in the table any operand) leaves a command that starts
//! with the rule's words. Because several rules share the trie, the walk
//! follows every partial match at once: a set of [`Position`]s, each a trie
//! node, extended word by word. Each word is read once, whatever the number
//! of rules; a position costs one map lookup per word.
//!
//! The limits are refusals, never silent: more than [`MAX_POSITIONS`] alive
//! at once, a position still alive past the words the kernel reads, or an
//! option too long to classify while a position of its tool is alive refuse
//! the command ([`RULE_UNMATCHABLE`](super::RULE_UNMATCHABLE)). The policy
//! engine applies the same limits, so `airlockctl policy check` says so too.

use super::shape::holds;
use super::walk::{Evaluation, Nodes, Steps};
use super::{
    chain, NodeKey, OptionKey, Tool, ToolKey, MAX_HEADS, MAX_POSITIONS, MAX_WORDS, SHAPE_END,
    SHAPE_LONG, SHAPE_OPERAND, STYLE_GO,
};

const _: () = assert!(MAX_POSITIONS <= 32, "positions are bits of a u32");
const _: () = assert!(
    MAX_POSITIONS.is_power_of_two(),
    "position indices are masked"
);

/// Per-head arrays of the walk have this many slots, a power of two, so
/// that an index masked into range is one the verifier knows is in range.
pub const HEAD_SLOTS: usize = 16;
const _: () = assert!(HEAD_SLOTS >= MAX_HEADS && HEAD_SLOTS.is_power_of_two());

/// What a word is to the positions of one head ([`Aware::class`]).
/// The value of the option before it: skipped by positions that skipped
/// the option, taken by those that took the option.
pub const CLASS_VALUE: u8 = 1;
/// An option whose value is the next word.
pub const CLASS_OPTION_VALUE: u8 = 2;
/// An option without a value in the next word, `--`, or an operand that may
/// be skipped: skipped or taken.
pub const CLASS_SKIPPABLE: u8 = 3;
/// An operand that must be taken.
pub const CLASS_OPERAND: u8 = 4;

/// What an option says of the word after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// It is the option's value.
    Value,
    /// It is not a value (the value was attached).
    Free,
    /// It may be the option's value: the grammar does not list the option.
    Maybe,
    /// A cluster too long to read whose last letter might take a value.
    Unknown,
}

/// One partial match: a node of the trie, reached from head slot `head`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub chain: u64,
    pub depth: u32,
    pub head: u8,
    /// It took an option that takes a value: it must take the value next.
    pub mid: u8,
    pub _pad: [u8; 2],
}

/// The tool-aware walk's state (part of [`Evaluation`], in the kernel a
/// per-CPU map value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Aware {
    pub positions: [Position; MAX_POSITIONS],
    /// Bit s: `positions[s]` is alive.
    pub alive: u32,
    /// Positions reached by the current word, added once every alive one
    /// has seen it.
    pub born: [Position; MAX_POSITIONS],
    pub nborn: u32,
    /// Per head slot, the hash of its name (the trie root).
    pub roots: [u64; HEAD_SLOTS],
    /// Per head slot, its grammar; bit h of `known`: slot h has one.
    pub tools: [Tool; HEAD_SLOTS],
    pub known: u32,
    /// Per head slot, the parse so far: bit h of `expect`: the next word is
    /// an option's value; of `maybe`: it may be; of `ended`: `--` was seen.
    pub expect: u32,
    pub maybe: u32,
    pub ended: u32,
    /// Per head slot, the current word's `CLASS_*`.
    pub class: [u8; HEAD_SLOTS],
    /// The command cannot be matched within the limits: refuse it.
    pub refused: u32,
}

impl Aware {
    /// Forgets an earlier judgement.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.alive = 0;
        self.nborn = 0;
        self.known = 0;
        self.expect = 0;
        self.maybe = 0;
        self.ended = 0;
        self.refused = 0;
    }
}

impl Evaluation {
    /// Starts a partial match at the trie root of head slot `h`
    /// (`aware.roots[h]`: a block or approve rule, or a grant, continues
    /// from it) and loads the head's grammar. A slot with the same name as
    /// an earlier one adds nothing: the position is the same.
    #[inline(always)]
    pub fn start_position<N: Nodes + ?Sized>(&mut self, h: usize, nodes: &N) {
        let h = h & (HEAD_SLOTS - 1);
        let hash = self.aware.roots[h];
        let key = ToolKey {
            session: self.session.index,
            _pad: 0,
            head: hash,
        };
        if let Some(tool) = nodes.tool(&key) {
            self.aware.tools[h] = tool;
            self.aware.known |= 1 << h;
        }
        let position = Position {
            chain: hash,
            depth: 0,
            head: h as u8,
            ..Position::default()
        };
        self.aware.born[0] = position;
        self.aware.nborn = 1;
        self.settle(0);
    }

    /// Feeds the word just read (`self.word`) to every alive position.
    #[inline(always)]
    pub fn aware_word<S: Steps + ?Sized>(&mut self, steps: &S) {
        let mut heads = 0u32;
        for s in 0..MAX_POSITIONS {
            if self.aware.alive & (1 << s) != 0 {
                heads |= 1 << (self.aware.positions[s].head as usize & (HEAD_SLOTS - 1));
            }
        }
        for h in 0..MAX_HEADS {
            if heads & (1 << h) != 0 {
                steps.classify(self, h);
            }
        }
        self.aware.nborn = 0;
        for s in 0..MAX_POSITIONS {
            steps.visit(self, s);
        }
        for k in 0..MAX_POSITIONS {
            steps.settle(self, k);
        }
    }

    /// What the current word is under head `h`'s grammar, given the words
    /// before it; advances that head's parse.
    #[inline(always)]
    pub fn classify<N: Nodes + ?Sized>(&mut self, h: usize, nodes: &N) {
        let h = h & (HEAD_SLOTS - 1);
        let bit = 1u32 << h;
        let a = &mut self.aware;
        let w = &self.word;
        let class = if a.expect & bit != 0 {
            a.expect &= !bit;
            a.maybe &= !bit;
            CLASS_VALUE
        } else if a.ended & bit != 0 || w.shape == SHAPE_OPERAND {
            let skippable = a.known & bit == 0 || a.maybe & bit != 0;
            a.maybe &= !bit;
            if skippable {
                CLASS_SKIPPABLE
            } else {
                CLASS_OPERAND
            }
        } else if w.shape == SHAPE_END {
            // After an option that may take a value, `--` may be that value.
            if a.maybe & bit == 0 {
                a.ended |= bit;
            }
            a.maybe &= !bit;
            CLASS_SKIPPABLE
        } else {
            let next = if a.known & bit == 0 {
                Next::Maybe
            } else {
                let tool = &a.tools[h];
                if w.shape == SHAPE_LONG || tool.style == STYLE_GO {
                    let key = OptionKey {
                        session: self.session.index,
                        _pad: 0,
                        option: chain(a.roots[h], w.hash),
                    };
                    if w.has_eq != 0 {
                        Next::Free
                    } else if w.hashed != 0 && nodes.takes_value(&key) {
                        Next::Value
                    } else {
                        Next::Maybe
                    }
                } else if w.names_before_last(&tool.short_values) {
                    Next::Free
                } else if w.too_long != 0 {
                    let any = tool.short_values.iter().fold(0, |a, b| a | b);
                    if any != 0 {
                        Next::Unknown
                    } else {
                        Next::Maybe
                    }
                } else if holds(&tool.short_values, w.last) {
                    Next::Value
                } else {
                    Next::Maybe
                }
            };
            if next == Next::Unknown {
                a.refused = 1;
            }
            // After an option that may take a value, this word may be that
            // value: then the next one is not its value for sure.
            let after_maybe = a.maybe & bit != 0;
            let takes_next = next == Next::Value && !after_maybe;
            let may_take = next == Next::Maybe || next == Next::Unknown || next == Next::Value;
            if takes_next {
                a.expect |= bit;
                a.maybe &= !bit;
            } else if may_take {
                a.maybe |= bit;
            } else {
                a.maybe &= !bit;
            }
            if takes_next {
                CLASS_OPTION_VALUE
            } else {
                CLASS_SKIPPABLE
            }
        };
        a.class[h] = class;
    }

    /// Position `s` sees the current word: it stays (skipping the word) if
    /// it may, and the node it reaches by taking the word is judged and,
    /// if a block or approve rule or grant continues from it, born.
    #[inline(always)]
    pub fn visit<N: Nodes + ?Sized>(&mut self, s: usize, nodes: &N) {
        let s = s & (MAX_POSITIONS - 1);
        let bit = 1u32 << s;
        if self.aware.alive & bit == 0 {
            return;
        }
        let p = self.aware.positions[s];
        let class = self.aware.class[p.head as usize & (HEAD_SLOTS - 1)];
        let (stays, takes, mid) = if p.mid != 0 {
            (false, true, false)
        } else {
            match class {
                CLASS_VALUE => (true, false, false),
                CLASS_OPTION_VALUE => (true, true, true),
                CLASS_SKIPPABLE => (true, true, false),
                _ => (false, true, false),
            }
        };
        if !stays {
            self.aware.alive &= !bit;
        }
        let depth = p.depth + 1;
        if !takes || self.word.hashed == 0 || depth as usize >= MAX_WORDS {
            return;
        }
        let hash = chain(p.chain, self.word.hash);
        let key = NodeKey {
            session: self.session.index,
            depth,
            hash,
        };
        let Some(node) = nodes.node(&key) else {
            return;
        };
        self.walk.land(&node, self.now_ns);
        let k = self.aware.nborn as usize;
        if node.aware != 0 && k < MAX_POSITIONS {
            self.aware.born[k & (MAX_POSITIONS - 1)] = Position {
                chain: hash,
                depth,
                head: p.head,
                mid: mid as u8,
                _pad: [0; 2],
            };
            self.aware.nborn += 1;
        }
    }

    /// Adds born position `k` unless it is alive already; with no free
    /// slot the command is refused.
    #[inline(always)]
    pub fn settle(&mut self, k: usize) {
        let a = &mut self.aware;
        if k >= a.nborn as usize {
            return;
        }
        let b = a.born[k & (MAX_POSITIONS - 1)];
        for s in 0..MAX_POSITIONS {
            let p = &a.positions[s];
            if a.alive & (1 << s) != 0 && p.chain == b.chain && p.depth == b.depth && p.mid == b.mid
            {
                return;
            }
        }
        let free = !a.alive & ((1u64 << MAX_POSITIONS) - 1) as u32;
        if free == 0 {
            a.refused = 1;
            return;
        }
        // The lowest free slot (leading_zeros: BPF has no trailing-zero count
        // and LLVM would expand one into a table lookup).
        let lowest = free & free.wrapping_neg();
        let s = (31 - lowest.leading_zeros()) as usize & (MAX_POSITIONS - 1);
        a.positions[s] = b;
        a.alive |= 1 << s;
    }
}
