//! Gaps seen in a venue's trade ids: a feed whose trades are numbered one
//! by one per symbol (Binance `t`, Coinbase `trade_id`) shows a missed
//! trade as a jump in the ids, even when the socket never dropped.
//!
//! A jump opens a hole of the missing ids. A trade arriving late (out of
//! order) fills its place in the hole; a hole still open after the grace
//! window is a gap ([`SequenceTracker::expired`]). A heartbeat naming a
//! last trade id beyond the last trade seen opens a hole too.

use std::collections::HashMap;

use streamforge_model::{Symbol, Timestamp};

/// Most open holes per symbol; beyond it the oldest is a gap at once.
const MAX_HOLES: usize = 64;

/// What a trade id is to its symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// New: the next id, one after a jump, or a late one filling its hole.
    New,
    /// An id seen before.
    Repeat,
    /// The first trade after a reconnect: the outage took ids
    /// `first..=last` (none when `last < first`).
    Resumed { first: u64, last: u64 },
}

/// Ids `first..=last` of `symbol` never came: trades after `since` (the
/// time of the trade before them) up to `until` were missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missed {
    pub symbol: Symbol,
    pub first: u64,
    pub last: u64,
    pub since: Timestamp,
    pub until: Timestamp,
}

#[derive(Clone, Debug)]
struct Hole {
    first: u64,
    last: u64,
    since: Timestamp,
    until: Timestamp,
    /// When the hole was seen (the receive clock).
    opened: Timestamp,
}

#[derive(Debug)]
struct State {
    /// The highest id seen (or named by a heartbeat).
    id: u64,
    /// The time of that trade.
    at: Timestamp,
    /// The connection was made again since `id`: the next id may jump
    /// over what the outage (a gap of its own) took.
    resumed: bool,
    holes: Vec<Hole>,
}

/// The ids seen per symbol, across reconnects.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    symbols: HashMap<Symbol, State>,
    /// Holes pushed out by newer ones: gaps at the next [`Self::expired`].
    ready: Vec<Missed>,
}

impl SequenceTracker {
    /// A trade `id` of `symbol` with event time `at`, received at `now`.
    pub fn trade(&mut self, symbol: &Symbol, id: u64, at: Timestamp, now: Timestamp) -> Seen {
        let Some(s) = self.symbols.get_mut(symbol) else {
            self.symbols.insert(
                symbol.clone(),
                State {
                    id,
                    at,
                    resumed: false,
                    holes: Vec::new(),
                },
            );
            return Seen::New;
        };
        if id <= s.id {
            return if fill(&mut s.holes, id) {
                Seen::New
            } else {
                Seen::Repeat
            };
        }
        let seen = if s.resumed {
            Seen::Resumed {
                first: s.id + 1,
                last: id - 1,
            }
        } else {
            Seen::New
        };
        if id > s.id + 1 && !s.resumed {
            open(
                &mut self.ready,
                symbol,
                &mut s.holes,
                Hole {
                    first: s.id + 1,
                    last: id - 1,
                    since: s.at,
                    until: at.max(s.at),
                    opened: now,
                },
            );
        }
        s.id = id;
        s.at = at;
        s.resumed = false;
        seen
    }

    /// A heartbeat saying the last trade of `symbol` has id `last_id`
    /// (Coinbase), received at `now`: the ids after the last trade seen
    /// were missed, unless they still come.
    pub fn heartbeat(&mut self, symbol: &Symbol, last_id: u64, now: Timestamp) {
        let Some(s) = self.symbols.get_mut(symbol) else {
            return;
        };
        if last_id <= s.id {
            return;
        }
        if !s.resumed {
            open(
                &mut self.ready,
                symbol,
                &mut s.holes,
                Hole {
                    first: s.id + 1,
                    last: last_id,
                    since: s.at,
                    until: now.max(s.at),
                    opened: now,
                },
            );
            s.id = last_id;
        }
    }

    /// Holes opened before `now - grace` that no late trade filled: gaps.
    pub fn expired(&mut self, now: Timestamp, grace: std::time::Duration) -> Vec<Missed> {
        let cutoff = now.saturating_sub_micros(grace.as_micros() as i64);
        let mut out = std::mem::take(&mut self.ready);
        for (symbol, s) in &mut self.symbols {
            if s.holes.iter().any(|h| h.opened <= cutoff) {
                s.holes.retain(|h| {
                    if h.opened <= cutoff {
                        out.push(missed(symbol, h));
                        false
                    } else {
                        true
                    }
                });
            }
        }
        out
    }

    /// The connection of `symbols` was made again: their open holes are
    /// gaps now (returned), and their next ids may jump over the outage.
    pub fn reconnected(&mut self, symbols: &[Symbol]) -> Vec<Missed> {
        let mut out = Vec::new();
        for symbol in symbols {
            if let Some(s) = self.symbols.get_mut(symbol) {
                out.extend(s.holes.drain(..).map(|h| missed(symbol, &h)));
                s.resumed = true;
            }
        }
        out
    }

    /// `symbol` goes on from trade `last_id` of an earlier run, at `at`:
    /// its next trade tells what the time between missed.
    pub fn resume_at(&mut self, symbol: &Symbol, last_id: u64, at: Timestamp) {
        self.symbols.insert(
            symbol.clone(),
            State {
                id: last_id,
                at,
                resumed: true,
                holes: Vec::new(),
            },
        );
    }

    /// The time of the last trade seen of `symbol`.
    pub fn last_at(&self, symbol: &Symbol) -> Option<Timestamp> {
        self.symbols.get(symbol).map(|s| s.at)
    }

    /// The highest trade id seen of `symbol`.
    pub fn last_id(&self, symbol: &Symbol) -> Option<u64> {
        self.symbols.get(symbol).map(|s| s.id)
    }
}

fn missed(symbol: &Symbol, h: &Hole) -> Missed {
    Missed {
        symbol: symbol.clone(),
        first: h.first,
        last: h.last,
        since: h.since,
        until: h.until,
    }
}

fn open(ready: &mut Vec<Missed>, symbol: &Symbol, holes: &mut Vec<Hole>, hole: Hole) {
    if holes.len() >= MAX_HOLES {
        // The oldest would age out first anyway: a gap now.
        ready.push(missed(symbol, &holes.remove(0)));
    }
    holes.push(hole);
}

/// A late `id`: fills its place in a hole (splitting it). `false` when no
/// hole holds it: a repeat.
fn fill(holes: &mut Vec<Hole>, id: u64) -> bool {
    let Some(i) = holes.iter().position(|h| (h.first..=h.last).contains(&id)) else {
        return false;
    };
    let h = holes[i].clone();
    match (id == h.first, id == h.last) {
        (true, true) => {
            holes.remove(i);
        }
        (true, false) => holes[i].first = id + 1,
        (false, true) => holes[i].last = id - 1,
        (false, false) => {
            holes[i].last = id - 1;
            holes.insert(i + 1, Hole { first: id + 1, ..h });
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    const GRACE: Duration = Duration::from_secs(1);

    #[test]
    fn a_jump_in_ids_is_a_gap_once_the_grace_has_passed() {
        let s = Symbol::parse("BINANCE:BTCUSDT").unwrap();
        let mut q = SequenceTracker::default();
        assert_eq!(q.trade(&s, 10, t(1), t(1)), Seen::New);
        assert_eq!(q.trade(&s, 11, t(2), t(2)), Seen::New);
        assert_eq!(q.trade(&s, 15, t(5), t(5)), Seen::New);
        assert!(q.expired(t(500), GRACE).is_empty(), "within the grace");
        assert_eq!(q.trade(&s, 15, t(5), t(600)), Seen::Repeat);
        assert_eq!(
            q.expired(t(1_005), GRACE),
            [Missed {
                symbol: s.clone(),
                first: 12,
                last: 14,
                since: t(2),
                until: t(5)
            }]
        );
        assert!(q.expired(t(9_000), GRACE).is_empty(), "reported once");
        assert_eq!(q.last_id(&s), Some(15));
    }

    #[test]
    fn late_trades_fill_their_hole() {
        let s = Symbol::parse("BINANCE:BTCUSDT").unwrap();
        let mut q = SequenceTracker::default();
        q.trade(&s, 1, t(1), t(1));
        q.trade(&s, 6, t(6), t(6));
        // 2..=5 missing; 3 and 5 come late, then 2 and 4.
        assert_eq!(q.trade(&s, 3, t(3), t(7)), Seen::New);
        assert_eq!(q.trade(&s, 5, t(5), t(7)), Seen::New);
        assert_eq!(q.trade(&s, 2, t(2), t(7)), Seen::New);
        assert_eq!(q.trade(&s, 2, t(2), t(7)), Seen::Repeat);
        let left = q.expired(t(5_000), GRACE);
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].first, left[0].last), (4, 4));
        // A swapped pair leaves nothing.
        q.trade(&s, 8, t(8), t(8));
        q.trade(&s, 7, t(7), t(8));
        assert!(q.expired(t(9_000), GRACE).is_empty());
    }

    #[test]
    fn after_a_reconnect_the_first_id_may_jump_and_open_holes_are_gaps() {
        let s = Symbol::parse("COINBASE:BTC-USD").unwrap();
        let mut q = SequenceTracker::default();
        q.trade(&s, 1, t(1), t(1));
        q.trade(&s, 3, t(3), t(3));
        let flushed = q.reconnected(std::slice::from_ref(&s));
        assert_eq!((flushed[0].first, flushed[0].last), (2, 2));
        assert_eq!(q.trade(&s, 3, t(3), t(9)), Seen::Repeat, "still resuming");
        assert_eq!(
            q.trade(&s, 40, t(9), t(9)),
            Seen::Resumed { first: 4, last: 39 }
        );
        q.trade(&s, 42, t(10), t(10));
        let gaps = q.expired(t(5_000), GRACE);
        assert_eq!((gaps[0].first, gaps[0].last), (41, 41));
    }

    #[test]
    fn a_symbol_resumed_from_an_earlier_run_tells_what_it_missed() {
        let s = Symbol::parse("BINANCE:BTCUSDT").unwrap();
        let mut q = SequenceTracker::default();
        q.resume_at(&s, 99, t(1));
        assert_eq!(q.last_at(&s), Some(t(1)));
        assert_eq!(
            q.trade(&s, 150, t(9), t(9)),
            Seen::Resumed {
                first: 100,
                last: 149
            }
        );
        assert_eq!(q.trade(&s, 151, t(9), t(9)), Seen::New);
    }

    #[test]
    fn a_heartbeat_ahead_of_the_last_trade_is_a_gap() {
        let s = Symbol::parse("COINBASE:BTC-USD").unwrap();
        let mut q = SequenceTracker::default();
        q.heartbeat(&s, 7, t(0));
        q.trade(&s, 7, t(1), t(1));
        q.heartbeat(&s, 7, t(2));
        q.heartbeat(&s, 9, t(3));
        // Those are accounted for: the next trade follows 9.
        assert_eq!(q.trade(&s, 10, t(4), t(4)), Seen::New);
        let gaps = q.expired(t(5_000), GRACE);
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].first, gaps[0].last, gaps[0].since), (8, 9, t(1)));
    }

    #[test]
    fn ids_at_the_top_of_the_range_never_overflow() {
        let s = Symbol::parse("BINANCE:BTCUSDT").unwrap();
        let mut q = SequenceTracker::default();
        q.trade(&s, 1, t(1), t(1));
        assert_eq!(q.trade(&s, u64::MAX, t(2), t(2)), Seen::New);
        assert_eq!(q.trade(&s, u64::MAX, t(2), t(2)), Seen::Repeat);
        q.heartbeat(&s, u64::MAX, t(3));
        let gaps = q.expired(t(5_000), GRACE);
        assert_eq!((gaps[0].first, gaps[0].last), (2, u64::MAX - 1));
        q.reconnected(std::slice::from_ref(&s));
        assert_eq!(q.trade(&s, 5, t(4), t(4)), Seen::Repeat);
    }

    #[test]
    fn holes_per_symbol_are_bounded() {
        let s = Symbol::parse("BINANCE:BTCUSDT").unwrap();
        let mut q = SequenceTracker::default();
        for i in 0..1_000u64 {
            q.trade(&s, i * 2, t(i as i64), t(0));
        }
        // Every hole is a gap in the end; at most MAX_HOLES wait.
        assert_eq!(q.symbols[&s].holes.len(), MAX_HOLES);
        assert_eq!(q.expired(t(5_000), GRACE).len(), 999);
    }
}
