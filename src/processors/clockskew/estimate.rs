//! Offset evidence between two clock domains and how it is combined.
//!
//! An [`Interval`] bounds δ = o_b − o_a, the correction to add to domain `b`'s timestamps
//! relative to domain `a`'s. Every bound is derived with zero network latency, so as long
//! as latencies are non-negative and the clocks did not move, every honest interval
//! contains the true δ. Combining intervals is therefore an intersection problem, not an
//! averaging one: the intersection of many honest intervals shrinks to
//! [δ − min request latency, δ + min response latency] — the minimum-delay idea NTP uses.
//!
//! Dishonest intervals exist (a mis-classified asynchronous call, a stepped clock), so the
//! intersection is Marzullo's: the region covered by the largest number of intervals,
//! which ignores a minority of "falsetickers" instead of collapsing to nothing. Slow clock
//! drift is absorbed by widening every stored interval by [`MAX_DRIFT_PPM`] of its age, so
//! old evidence stays honest while fresh evidence dominates; a stepped clock is recognised
//! when the [`STEP_SAMPLES`] latest intervals all miss the combined region, and the older
//! evidence is dropped.
//!
//! The point estimate is 0 when the region admits 0 (clocks that agree are left alone,
//! byte for byte) and otherwise the region's midpoint (symmetric latency), or its finite
//! end when only one side is bounded (asynchronous evidence: the smallest correction).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Assumed bound on the drift between two clocks, in parts per million: evidence
/// `age` old is widened by `age * MAX_DRIFT_PPM / 1e6` on both sides.
pub const MAX_DRIFT_PPM: u64 = 50;

/// Most recent intervals kept per domain pair (older ones add little once widened).
pub const MAX_SAMPLES_PER_PAIR: usize = 256;

/// When this many most recent intervals of a pair all miss the combined region, the clock
/// was stepped: older evidence is dropped.
pub const STEP_SAMPLES: usize = 16;

/// Bounds on δ = o_b − o_a in nanoseconds; `i64::MIN` / `i64::MAX` mean unbounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub lo: i64,
    pub hi: i64,
}

impl Interval {
    pub fn new(lo: i64, hi: i64) -> Interval {
        Interval { lo, hi }
    }

    /// Only a lower bound (`δ ≥ lo`).
    pub fn at_least(lo: i64) -> Interval {
        Interval { lo, hi: i64::MAX }
    }

    /// The same bound seen from the other domain: bounds on −δ.
    pub fn reversed(self) -> Interval {
        Interval {
            lo: neg(self.hi),
            hi: neg(self.lo),
        }
    }

    pub fn contains(self, x: i64) -> bool {
        self.lo <= x && x <= self.hi
    }

    pub fn covers(self, other: Interval) -> bool {
        self.lo <= other.lo && other.hi <= self.hi
    }

    pub fn is_two_sided(self) -> bool {
        self.lo != i64::MIN && self.hi != i64::MAX
    }

    /// Widened by `by` on both finite sides.
    pub fn widened(self, by: i64) -> Interval {
        Interval {
            lo: if self.lo == i64::MIN {
                i64::MIN
            } else {
                self.lo.saturating_sub(by).max(i64::MIN + 1)
            },
            hi: if self.hi == i64::MAX {
                i64::MAX
            } else {
                self.hi.saturating_add(by).min(i64::MAX - 1)
            },
        }
    }
}

fn neg(x: i64) -> i64 {
    match x {
        i64::MIN => i64::MAX,
        i64::MAX => i64::MIN,
        x => -x,
    }
}

/// The region covered by the most intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub bounds: Interval,
    /// How many intervals cover it.
    pub count: usize,
    /// How many intervals there were.
    pub total: usize,
}

/// Marzullo's algorithm: the region where the largest number of intervals overlap.
/// Touching intervals overlap. Among equally supported regions the one closest to 0
/// wins (the smallest correction the evidence allows).
pub fn marzullo(intervals: impl IntoIterator<Item = Interval>) -> Option<Region> {
    let mut edges: Vec<(i64, i8)> = Vec::new();
    let mut total = 0;
    for iv in intervals {
        if iv.lo > iv.hi {
            continue;
        }
        total += 1;
        edges.push((iv.lo, -1));
        edges.push((iv.hi, 1));
    }
    // Starts (-1) sort before ends (+1) at the same point, so touching intervals overlap.
    edges.sort_unstable();
    let mut best: Option<Region> = None;
    let mut count = 0usize;
    for (i, &(x, kind)) in edges.iter().enumerate() {
        if kind < 0 {
            count += 1;
            // The region starting here ends at the next edge, which must be an end.
            let end = edges.get(i + 1).map_or(i64::MAX, |e| e.0);
            let candidate = Region {
                bounds: Interval::new(x, end),
                count,
                total,
            };
            let better = match best {
                None => true,
                Some(b) if count > b.count => true,
                Some(b) if count == b.count => {
                    distance_to_zero(candidate.bounds) < distance_to_zero(b.bounds)
                }
                Some(_) => false,
            };
            if better {
                best = Some(candidate);
            }
        } else {
            count = count.saturating_sub(1);
        }
    }
    best
}

fn distance_to_zero(iv: Interval) -> u64 {
    if iv.contains(0) {
        0
    } else if iv.lo > 0 {
        iv.lo.unsigned_abs()
    } else {
        iv.hi.unsigned_abs()
    }
}

/// A combined offset estimate for one domain pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// The δ to apply.
    pub offset: i64,
    /// Width of the supported region in ns (`u64::MAX` when one side is unbounded): the
    /// uncertainty used to prefer well-measured chains.
    pub width: u64,
    pub region: Region,
}

impl Estimate {
    pub fn from_region(region: Region) -> Estimate {
        let Interval { lo, hi } = region.bounds;
        let offset = if region.bounds.contains(0) {
            0
        } else if region.bounds.is_two_sided() {
            ((lo as i128 + hi as i128) / 2) as i64
        } else if lo > 0 {
            lo
        } else {
            hi
        };
        let width = if region.bounds.is_two_sided() {
            hi.abs_diff(lo)
        } else {
            u64::MAX
        };
        Estimate {
            offset,
            width,
            region,
        }
    }

    /// The estimate of −δ (seen from the other domain).
    pub fn reversed(self) -> Estimate {
        Estimate {
            offset: -self.offset,
            width: self.width,
            region: Region {
                bounds: self.region.bounds.reversed(),
                ..self.region
            },
        }
    }
}

/// Marzullo over a pair's samples, each widened by the drift bound times its age.
fn combine(samples: &VecDeque<(Instant, Interval)>, now: Instant) -> Option<Region> {
    marzullo(samples.iter().map(|(at, iv)| {
        let age = now.saturating_duration_since(*at).as_nanos();
        let by = age.saturating_mul(MAX_DRIFT_PPM as u128) / 1_000_000;
        iv.widened(i64::try_from(by).unwrap_or(i64::MAX))
    }))
}

struct PairSamples {
    samples: VecDeque<(Instant, Interval)>,
    cached: Option<(Instant, Estimate)>,
}

/// Cross-trace evidence per unordered pair of domains over a sliding window.
pub struct CrossTraceWindow {
    window: Duration,
    /// Keyed by (smaller name, larger name); intervals bound o_larger − o_smaller.
    pairs: HashMap<Arc<str>, HashMap<Arc<str>, PairSamples>>,
    neighbours: HashMap<Arc<str>, HashSet<Arc<str>>>,
    last_sweep: Option<Instant>,
}

impl CrossTraceWindow {
    pub fn new(window: Duration) -> CrossTraceWindow {
        CrossTraceWindow {
            window,
            pairs: HashMap::new(),
            neighbours: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Number of domain pairs with evidence.
    pub fn pair_count(&self) -> usize {
        self.pairs.values().map(HashMap::len).sum()
    }

    /// Records evidence on o_b − o_a.
    pub fn add(&mut self, a: &Arc<str>, b: &Arc<str>, iv: Interval, now: Instant) {
        if a == b {
            return;
        }
        let (x, y, iv) = if a < b {
            (a, b, iv)
        } else {
            (b, a, iv.reversed())
        };
        let pair = self
            .pairs
            .entry(x.clone())
            .or_default()
            .entry(y.clone())
            .or_insert_with(|| PairSamples {
                samples: VecDeque::new(),
                cached: None,
            });
        if pair.samples.len() >= MAX_SAMPLES_PER_PAIR {
            pair.samples.pop_front();
        }
        pair.samples.push_back((now, iv));
        pair.cached = None;
        self.neighbours
            .entry(x.clone())
            .or_default()
            .insert(y.clone());
        self.neighbours
            .entry(y.clone())
            .or_default()
            .insert(x.clone());
        self.maybe_sweep(now);
    }

    /// Domains with evidence against `a`.
    pub fn neighbours(&self, a: &str) -> Vec<Arc<str>> {
        self.neighbours
            .get(a)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The combined estimate of o_b − o_a at `now`.
    pub fn estimate(&mut self, a: &str, b: &str, now: Instant) -> Option<Estimate> {
        let (x, y, flip) = if a < b { (a, b, false) } else { (b, a, true) };
        let window = self.window;
        let pair = self.pairs.get_mut(x)?.get_mut(y)?;
        let est = match pair.cached {
            Some((at, est)) if at == now => est,
            _ => {
                while let Some((at, _)) = pair.samples.front() {
                    if now.saturating_duration_since(*at) > window {
                        pair.samples.pop_front();
                    } else {
                        break;
                    }
                }
                let mut region = combine(&pair.samples, now)?;
                // A stepped clock: the latest evidence all disagrees with the majority, so
                // the older evidence describes a clock that no longer exists.
                if pair.samples.len() > STEP_SAMPLES
                    && pair
                        .samples
                        .iter()
                        .rev()
                        .take(STEP_SAMPLES)
                        .all(|(_, iv)| iv.lo > region.bounds.hi || iv.hi < region.bounds.lo)
                {
                    let stale = pair.samples.len() - STEP_SAMPLES;
                    pair.samples.drain(..stale);
                    region = combine(&pair.samples, now)?;
                }
                let est = Estimate::from_region(region);
                pair.cached = Some((now, est));
                est
            }
        };
        Some(if flip { est.reversed() } else { est })
    }

    /// Drops expired evidence, at most once per window.
    fn maybe_sweep(&mut self, now: Instant) {
        match self.last_sweep {
            Some(at) if now.saturating_duration_since(at) < self.window => return,
            _ => self.last_sweep = Some(now),
        }
        let window = self.window;
        let mut emptied = Vec::new();
        for (x, inner) in self.pairs.iter_mut() {
            inner.retain(|y, pair| {
                pair.samples
                    .retain(|(at, _)| now.saturating_duration_since(*at) <= window);
                let keep = !pair.samples.is_empty();
                if !keep {
                    emptied.push((x.clone(), y.clone()));
                }
                keep
            });
        }
        self.pairs.retain(|_, inner| !inner.is_empty());
        for (x, y) in emptied {
            for (p, q) in [(&x, &y), (&y, &x)] {
                if let Some(set) = self.neighbours.get_mut(p) {
                    set.remove(q);
                    if set.is_empty() {
                        self.neighbours.remove(p);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marzullo_intersects_consistent_intervals() {
        let r = marzullo([
            Interval::new(10, 30),
            Interval::new(15, 40),
            Interval::new(5, 20),
        ])
        .unwrap();
        assert_eq!(r.bounds, Interval::new(15, 20));
        assert_eq!(r.count, 3);
    }

    #[test]
    fn marzullo_ignores_a_minority_of_outliers() {
        let r = marzullo([
            Interval::new(10, 30),
            Interval::new(15, 40),
            Interval::new(500, 600),
            Interval::new(12, 22),
        ])
        .unwrap();
        assert_eq!(r.bounds, Interval::new(15, 22));
        assert_eq!((r.count, r.total), (3, 4));
    }

    #[test]
    fn one_sided_evidence_gives_the_smallest_correction() {
        let e = Estimate::from_region(
            marzullo([Interval::at_least(40), Interval::at_least(70)]).unwrap(),
        );
        assert_eq!(e.offset, 70);
        assert_eq!(e.width, u64::MAX);
        let e = Estimate::from_region(marzullo([Interval::at_least(-40)]).unwrap());
        assert_eq!(e.offset, 0);
    }

    #[test]
    fn zero_is_kept_when_the_evidence_admits_it() {
        let e = Estimate::from_region(marzullo([Interval::new(-3, 9)]).unwrap());
        assert_eq!(e.offset, 0);
        let e = Estimate::from_region(marzullo([Interval::new(100, 110)]).unwrap());
        assert_eq!(e.offset, 105);
        assert_eq!(e.reversed().offset, -105);
        assert_eq!(e.reversed().region.bounds, Interval::new(-110, -100));
    }

    #[test]
    fn window_keys_pairs_in_either_direction_and_expires() {
        let t0 = Instant::now();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let mut w = CrossTraceWindow::new(Duration::from_secs(10));
        w.add(&a, &b, Interval::new(1000, 1200), t0);
        w.add(&b, &a, Interval::new(-1150, -1050), t0);
        assert_eq!(w.estimate("a", "b", t0).unwrap().offset, 1100);
        assert_eq!(w.estimate("b", "a", t0).unwrap().offset, -1100);
        assert_eq!(w.neighbours("a"), vec![b.clone()]);
        assert!(w.estimate("a", "b", t0 + Duration::from_secs(11)).is_none());
        w.add(
            &a,
            &Arc::from("c"),
            Interval::new(1, 2),
            t0 + Duration::from_secs(21),
        );
        assert!(w.neighbours("b").is_empty());
        assert_eq!(w.pair_count(), 1);
    }

    #[test]
    fn old_evidence_is_widened_by_the_drift_bound() {
        let t0 = Instant::now();
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let mut w = CrossTraceWindow::new(Duration::from_secs(60));
        w.add(&a, &b, Interval::new(1_000_000, 1_000_100), t0);
        // 20 s later at 50 ppm: ±1 ms.
        let e = w.estimate("a", "b", t0 + Duration::from_secs(20)).unwrap();
        assert_eq!(e.region.bounds, Interval::new(0, 2_000_100));
        assert_eq!(e.offset, 0);
    }
}
