//! A small immutable DFA for a list's `^regex$` entries, built once per policy load from
//! the NFA of the regex crate's own compiler (same parser, same Unicode classes, so the same
//! matches as `RegexSet::is_match`), and searched with no cache and no allocation.
//!
//! Owns determinization and search only. Supports the assertions `^`/`\A` and `$`/`\z`
//! (text start and end); any other assertion, or a DFA over [`MAX_STATES`] /
//! [`DFA_SIZE_LIMIT`], yields `None` and the caller keeps a `RegexSet`.
//!
//! Search semantics are Go's `regexp.MatchString` and `RegexSet::is_match`: unanchored
//! (a match may start anywhere), so `^a|b$` matches `xxb`. States are sets of NFA states;
//! every step adds the start's closure again (that is the unanchored search), with `^`
//! passable only at position 0, and `$` kept pending until the end of the name.

use std::collections::HashMap;
use std::fmt;

use regex_automata::nfa::thompson::{NFA, State};
use regex_automata::util::look::{Look, LookSet};
use regex_automata::util::primitives::StateID;

/// Bounds one DFA: a hostile or exponential regex falls back to `RegexSet`.
pub(crate) const MAX_STATES: usize = 4096;
/// Bytes of states and transitions one DFA may use.
pub(crate) const DFA_SIZE_LIMIT: usize = 128 << 10;
/// NFA states visited while determinizing, summed: bounds build time.
const WORK_LIMIT: usize = 4_000_000;

/// No state: nothing can match any more.
const DEAD: u16 = 0;
/// Marks the start state's NFA set: at position 0 `^` holds, so it differs from an
/// otherwise equal set reached later.
const AT_START: u32 = u32::MAX;

pub(crate) struct Dfa {
    /// State `s`'s transitions are `trans[firsts[s]..firsts[s + 1]]`, sorted by byte.
    firsts: Box<[u16]>,
    trans: Box<[Trans]>,
    /// States from this id on may match and have an entry in `marks`; the others never do.
    marked: u16,
    marks: Box<[Mark]>,
    start: u16,
    /// Where a byte without a listed transition goes: the start's closure after position 0
    /// ([`DEAD`] when every pattern begins with `^`).
    restart: u16,
}

/// What a state says about matches. Patterns are stored + 1; 0 is none.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Mark {
    /// The lowest pattern that has matched on reaching the state.
    now: u16,
    /// The lowest pattern that matches if the name ends in this state.
    eoi: u16,
}

#[derive(Clone, Copy)]
struct Trans {
    lo: u8,
    hi: u8,
    next: u16,
}

impl fmt::Debug for Dfa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dfa").field("states", &(self.firsts.len() - 1)).field("bytes", &self.memory()).finish()
    }
}

impl Dfa {
    /// Determinizes `nfa` (compiled without captures), or `None` when unsupported or too big.
    pub(crate) fn build(nfa: &NFA) -> Option<Dfa> {
        let supported = LookSet::empty().insert(Look::Start).insert(Look::End);
        if !nfa.look_set_any().subtract(supported).is_empty() || nfa.pattern_len() >= usize::from(u16::MAX) {
            return None;
        }
        Builder::new(nfa).run()
    }

    /// Heap bytes held.
    pub(crate) fn memory(&self) -> usize {
        std::mem::size_of_val(&*self.firsts) + std::mem::size_of_val(&*self.trans) + std::mem::size_of_val(&*self.marks)
    }

    #[inline]
    fn next(&self, s: u16, byte: u8) -> u16 {
        let s = usize::from(s);
        let (from, to) = (usize::from(self.firsts[s]), usize::from(self.firsts[s + 1]));
        for t in &self.trans[from..to] {
            if byte < t.lo {
                break;
            }
            if byte <= t.hi {
                return t.next;
            }
        }
        self.restart
    }

    #[inline]
    fn mark(&self, s: u16) -> Mark {
        match s.checked_sub(self.marked) {
            Some(i) => self.marks[usize::from(i)],
            None => Mark::default(),
        }
    }

    /// Whether any pattern matches somewhere in `hay`.
    pub(crate) fn is_match(&self, hay: &[u8]) -> bool {
        let mut s = self.start;
        if self.mark(s).now != 0 {
            return true;
        }
        for &b in hay {
            s = self.next(s, b);
            if s == DEAD {
                return false;
            }
            if s >= self.marked && self.mark(s).now != 0 {
                return true;
            }
        }
        self.mark(s).eoi != 0
    }

    /// The lowest pattern that matches somewhere in `hay`.
    pub(crate) fn first_match(&self, hay: &[u8]) -> Option<usize> {
        // `wrapping_sub` turns 0 (none) into the largest value.
        let lower = |best: u16, p: u16| if p.wrapping_sub(1) < best.wrapping_sub(1) { p } else { best };
        let mut s = self.start;
        let mut best = self.mark(s).now;
        for &b in hay {
            if best == 1 {
                return Some(0);
            }
            s = self.next(s, b);
            if s == DEAD {
                break;
            }
            best = lower(best, self.mark(s).now);
        }
        best = lower(best, self.mark(s).eoi);
        best.checked_sub(1).map(usize::from)
    }
}

struct Builder<'n> {
    nfa: &'n NFA,
    /// The NFA sets of the DFA states, by id.
    sets: Vec<Box<[u32]>>,
    ids: HashMap<Box<[u32]>, u16>,
    /// Closure scratch: a stamp per NFA state marks it visited in the current closure.
    seen: Vec<u32>,
    stamp: u32,
    stack: Vec<StateID>,
    work: usize,
}

impl<'n> Builder<'n> {
    fn new(nfa: &'n NFA) -> Self {
        Builder {
            nfa,
            sets: Vec::new(),
            ids: HashMap::new(),
            seen: vec![0; nfa.states().len()],
            stamp: 0,
            stack: Vec::new(),
            work: 0,
        }
    }

    fn run(mut self) -> Option<Dfa> {
        let root = self.nfa.start_anchored();
        let dead = self.intern(Vec::new())?;
        debug_assert_eq!(dead, DEAD, "the empty set is state 0 and never matches: it stays 0");
        let mut start = self.closure(&[root], true);
        start.push(AT_START);
        let start = self.intern(start)?;
        let restart = self.closure(&[root], false);
        let restart = self.intern(restart)?;

        // Per state (by build id): its mark and its transitions.
        let mut marks: Vec<Mark> = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut trans: Vec<Trans> = Vec::new();
        let mut ranges: Vec<(u8, u8, StateID)> = Vec::new();
        let mut bounds: Vec<u16> = Vec::new();
        let mut targets: Vec<StateID> = Vec::new();
        let mut id = 0;
        while id < self.sets.len() {
            let set = self.sets[id].clone();
            let at_start = set.last() == Some(&AT_START);
            let first = trans.len();
            marks.push(Mark { now: self.matched(&set), eoi: self.matched_at_end(&set, at_start) });
            // The byte ranges leaving this set, cut into pieces that lead to one target set.
            ranges.clear();
            for &sid in set.iter().filter(|&&s| s != AT_START) {
                self.ranges_of(StateID::new_unchecked(sid as usize), &mut ranges);
            }
            bounds.clear();
            for &(lo, hi, _) in &ranges {
                bounds.push(u16::from(lo));
                bounds.push(u16::from(hi) + 1);
            }
            bounds.sort_unstable();
            bounds.dedup();
            for w in bounds.windows(2) {
                let (lo, hi) = (w[0], w[1] - 1);
                targets.clear();
                targets.extend(ranges.iter().filter(|r| u16::from(r.0) <= lo && hi <= u16::from(r.1)).map(|r| r.2));
                if targets.is_empty() {
                    continue; // goes to `restart`
                }
                targets.push(root);
                let next = self.closure(&targets, false);
                let next = self.intern(next)?;
                if next == restart {
                    continue;
                }
                let (lo, hi) = (lo as u8, hi as u8);
                // Extend this state's previous range when it is adjacent and leads to `next`.
                let own = trans.len() > first;
                match trans.last_mut() {
                    Some(t) if own && t.next == next && u16::from(t.hi) + 1 == u16::from(lo) => t.hi = hi,
                    _ => trans.push(Trans { lo, hi, next }),
                }
            }
            spans.push((first, trans.len()));
            if self.sets.len() * 2 + trans.len() * std::mem::size_of::<Trans>() > DFA_SIZE_LIMIT {
                return None;
            }
            id += 1;
        }
        renumber(&marks, &spans, &trans, start, restart)
    }

    fn intern(&mut self, set: Vec<u32>) -> Option<u16> {
        if let Some(&id) = self.ids.get(&*set) {
            return Some(id);
        }
        if self.sets.len() >= MAX_STATES || self.work > WORK_LIMIT {
            return None;
        }
        let id = u16::try_from(self.sets.len()).ok()?;
        let set: Box<[u32]> = set.into();
        self.ids.insert(set.clone(), id);
        self.sets.push(set);
        Some(id)
    }

    /// The NFA states reachable from `roots` without reading a byte, keeping those that read
    /// a byte, match, or wait for `$`; `^` passes only `at_start`. Sorted: a canonical key.
    fn closure(&mut self, roots: &[StateID], at_start: bool) -> Vec<u32> {
        self.stamp += 1;
        let mut out = Vec::new();
        self.stack.extend(roots.iter().rev());
        while let Some(sid) = self.stack.pop() {
            let slot = &mut self.seen[sid.as_usize()];
            if *slot == self.stamp {
                continue;
            }
            *slot = self.stamp;
            self.work += 1;
            match self.nfa.state(sid) {
                State::ByteRange { .. } | State::Sparse(_) | State::Dense(_) | State::Match { .. } => {
                    out.push(sid.as_u32())
                }
                State::Look { look: Look::End, .. } => out.push(sid.as_u32()),
                State::Look { look: Look::Start, next } if at_start => self.stack.push(*next),
                State::Look { .. } | State::Fail => {}
                State::Union { alternates } => self.stack.extend(alternates.iter().rev()),
                State::BinaryUnion { alt1, alt2 } => self.stack.extend([*alt2, *alt1]),
                State::Capture { next, .. } => self.stack.push(*next),
            }
        }
        out.sort_unstable();
        out
    }

    fn ranges_of(&self, sid: StateID, out: &mut Vec<(u8, u8, StateID)>) {
        match self.nfa.state(sid) {
            State::ByteRange { trans } => out.push((trans.start, trans.end, trans.next)),
            State::Sparse(s) => out.extend(s.transitions.iter().map(|t| (t.start, t.end, t.next))),
            State::Dense(d) => {
                let mut b = 0usize;
                while b < 256 {
                    let next = d.transitions[b];
                    let mut e = b;
                    while e + 1 < 256 && d.transitions[e + 1] == next {
                        e += 1;
                    }
                    if next != StateID::ZERO {
                        out.push((b as u8, e as u8, next));
                    }
                    b = e + 1;
                }
            }
            _ => {}
        }
    }

    /// 1 + the lowest pattern among the set's match states, or 0.
    fn matched(&self, set: &[u32]) -> u16 {
        let low = set
            .iter()
            .filter(|&&s| s != AT_START)
            .filter_map(|&s| match self.nfa.state(StateID::new_unchecked(s as usize)) {
                State::Match { pattern_id } => Some(pattern_id.as_usize()),
                _ => None,
            })
            .min();
        low.map_or(0, |p| p as u16 + 1)
    }

    /// Like [`Self::matched`], after letting the pending `$` pass: the name ends here.
    fn matched_at_end(&mut self, set: &[u32], at_start: bool) -> u16 {
        let now = self.matched(set);
        let roots: Vec<StateID> = set
            .iter()
            .filter(|&&s| s != AT_START)
            .filter_map(|&s| match self.nfa.state(StateID::new_unchecked(s as usize)) {
                State::Look { look: Look::End, next } => Some(*next),
                _ => None,
            })
            .collect();
        if roots.is_empty() {
            return now;
        }
        // At the end `$` holds everywhere; `^` only if the end is also position 0.
        self.stamp += 1;
        let mut low = None::<usize>;
        self.stack.extend(roots);
        while let Some(sid) = self.stack.pop() {
            let slot = &mut self.seen[sid.as_usize()];
            if *slot == self.stamp {
                continue;
            }
            *slot = self.stamp;
            match self.nfa.state(sid) {
                State::Match { pattern_id } => {
                    low = Some(low.map_or(pattern_id.as_usize(), |l| l.min(pattern_id.as_usize())))
                }
                State::Look { look: Look::End, next } => self.stack.push(*next),
                State::Look { look: Look::Start, next } if at_start => self.stack.push(*next),
                State::Union { alternates } => self.stack.extend(alternates.iter()),
                State::BinaryUnion { alt1, alt2 } => self.stack.extend([*alt1, *alt2]),
                State::Capture { next, .. } => self.stack.push(*next),
                _ => {}
            }
        }
        match (now, low) {
            (0, None) => 0,
            (0, Some(l)) => l as u16 + 1,
            (n, None) => n,
            (n, Some(l)) => n.min(l as u16 + 1),
        }
    }
}

/// The finished automaton: states that can match numbered last, so `mark` needs one
/// comparison and only those states an entry. DEAD (never marked) stays 0. `spans[s]` are
/// state `s`'s transitions in `trans`, by build id.
fn renumber(marks: &[Mark], spans: &[(usize, usize)], trans: &[Trans], start: u16, restart: u16) -> Option<Dfa> {
    let n = marks.len();
    let mut order: Vec<usize> = (0..n).filter(|&s| marks[s] == Mark::default()).collect();
    let marked = order.len();
    order.extend((0..n).filter(|&s| marks[s] != Mark::default()));
    let mut new_id = vec![0u16; n];
    for (new, &old) in order.iter().enumerate() {
        new_id[old] = u16::try_from(new).ok()?;
    }
    let mut firsts = Vec::with_capacity(n + 1);
    let mut out = Vec::with_capacity(trans.len());
    for &old in &order {
        firsts.push(u16::try_from(out.len()).ok()?);
        let (from, to) = spans[old];
        out.extend(trans[from..to].iter().map(|t| Trans { next: new_id[usize::from(t.next)], ..*t }));
    }
    firsts.push(u16::try_from(out.len()).ok()?);
    Some(Dfa {
        firsts: firsts.into(),
        trans: out.into(),
        marked: u16::try_from(marked).ok()?,
        marks: order[marked..].iter().map(|&s| marks[s]).collect(),
        start: new_id[usize::from(start)],
        restart: new_id[usize::from(restart)],
    })
}
