//! The Wing-Gong-Lowe linearizability search.
//!
//! The history becomes a list of call and return events in time order (a return before a
//! call at the same instant: operations that only touch are not concurrent). The search
//! walks the list: at a call it tries to linearize that operation now (if the model accepts
//! its answer in the current state), removing its call and return from the list and going
//! back to the front; at a return whose operation is not yet linearized it must undo the
//! last choice and try the next call instead. A (set of linearized operations, state) pair
//! already explored is never explored again (Lowe's memoization), which makes the usual
//! histories fast.

use std::collections::HashSet;

use crate::{Model, Operation};

/// The answer for a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An order exists.
    Linearizable,
    /// No order exists; `longest` is the longest prefix of operations (indexes into the
    /// history) that could be linearized, for the report.
    NotLinearizable {
        /// Indexes of the operations in the longest linearizable prefix found.
        longest: Vec<usize>,
    },
}

impl Verdict {
    /// Whether the history is linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
}

/// A doubly linked list over the events, so an operation's two events are taken out and put
/// back in O(1).
struct Events {
    events: Vec<Event>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Index of each operation's return event.
    ret_of: Vec<usize>,
    /// Index of each operation's call event.
    call_of: Vec<usize>,
}

const HEAD: usize = usize::MAX;

impl Events {
    fn new<I, O>(history: &[Operation<I, O>]) -> Self {
        let end = history
            .iter()
            .filter_map(|o| o.ret)
            .chain(history.iter().map(|o| o.call))
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        // (time, returns first, op)
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
        for (i, o) in history.iter().enumerate() {
            order.push((o.call, true, i));
            order.push((o.ret.unwrap_or(end), false, i));
        }
        order.sort_by_key(|&(t, is_call, i)| (t, is_call, i));
        let n = order.len();
        let events: Vec<Event> = order
            .iter()
            .map(|&(_, is_call, op)| Event { op, is_call })
            .collect();
        let mut ret_of = vec![0; history.len()];
        let mut call_of = vec![0; history.len()];
        for (i, e) in events.iter().enumerate() {
            if e.is_call {
                call_of[e.op] = i;
            } else {
                ret_of[e.op] = i;
            }
        }
        Self {
            events,
            next: (0..n)
                .map(|i| if i + 1 < n { i + 1 } else { HEAD })
                .collect(),
            prev: (0..n).map(|i| if i == 0 { HEAD } else { i - 1 }).collect(),
            ret_of,
            call_of,
        }
    }

    fn unlink(&mut self, i: usize, head: &mut usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        if p == HEAD {
            *head = n;
        } else {
            self.next[p] = n;
        }
        if n != HEAD {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize, head: &mut usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        if p == HEAD {
            *head = i;
        } else {
            self.next[p] = i;
        }
        if n != HEAD {
            self.prev[n] = i;
        }
    }
}

/// Whether `history` is linearizable with respect to `model`.
pub fn linearizable<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> Verdict {
    let n = history.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    let mut ev = Events::new(history);
    let mut head = 0usize;
    let mut state = model.init();
    // `at` walks the list; it never runs off the end while events remain, because every
    // call's return comes after it (the last event is a return).
    let mut taken = vec![false; n];
    // The choices made so far: (operation, state before it).
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut at = head;
    loop {
        if head == HEAD {
            return Verdict::Linearizable;
        }
        let e = ev.events[at];
        if e.is_call {
            let op = &history[e.op];
            let next = model.step(&state, &op.input, op.output.as_ref());
            let mut advanced = false;
            if let Some(next) = next {
                taken[e.op] = true;
                let key = (bits(&taken), next.clone());
                if seen.insert(key) {
                    stack.push((e.op, std::mem::replace(&mut state, next)));
                    let (c, r) = (ev.call_of[e.op], ev.ret_of[e.op]);
                    ev.unlink(c, &mut head);
                    ev.unlink(r, &mut head);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(o, _)| *o).collect();
                    }
                    at = head;
                    advanced = true;
                } else {
                    taken[e.op] = false;
                }
            }
            if !advanced {
                at = ev.next[at];
            }
        } else {
            // A return whose operation was not linearized: undo the last choice and try the
            // call after it.
            let Some((op, before)) = stack.pop() else {
                return Verdict::NotLinearizable { longest };
            };
            taken[op] = false;
            state = before;
            let (c, r) = (ev.call_of[op], ev.ret_of[op]);
            ev.relink(r, &mut head);
            ev.relink(c, &mut head);
            at = ev.next[c];
        }
        // Never past the end while events remain: the last event is always a return.
    }
}

fn bits(taken: &[bool]) -> Vec<u64> {
    let mut out = vec![0u64; taken.len().div_ceil(64)];
    for (i, &t) in taken.iter().enumerate() {
        if t {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

/// [`linearizable`] for each key's operations apart (`key` names an operation's key): a
/// history is linearizable exactly when every key's history is. Returns the first key that
/// is not, with its verdict.
pub fn linearizable_by_key<M, K, F>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    key: F,
) -> Result<(), (K, Verdict)>
where
    M: Model,
    M::Input: Clone,
    M::Output: Clone,
    K: Ord + Clone,
    F: Fn(&Operation<M::Input, M::Output>) -> K,
{
    type History<M> = Vec<Operation<<M as Model>::Input, <M as Model>::Output>>;
    let mut by_key: std::collections::BTreeMap<K, History<M>> = std::collections::BTreeMap::new();
    for op in history {
        by_key.entry(key(op)).or_default().push(op.clone());
    }
    for (k, ops) in by_key {
        let verdict = linearizable(model, &ops);
        if !verdict.is_ok() {
            return Err((k, verdict));
        }
    }
    Ok(())
}
