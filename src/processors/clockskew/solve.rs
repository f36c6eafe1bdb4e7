//! From evidence to one offset per domain: per-pair combination, chains from the
//! reference domain, and the final projection onto the trace's own hard constraints.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

use super::estimate::{Estimate, Interval, Region, marzullo};

/// Added per hop so equally certain chains prefer fewer domains.
const HOP_WEIGHT: u64 = 1_000;
/// A correction lands this far inside a bound (when the bound leaves room) so that the
/// projection terminates instead of creeping towards the boundary.
const MARGIN_NS: i64 = 1_000;
const MAX_ROUNDS: usize = 64;

/// A bound on o_b − o_a between two domains of one trace (indices into its domain list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constraint {
    pub a: usize,
    pub b: usize,
    pub iv: Interval,
}

/// The combined bound of one domain pair of a trace.
#[derive(Clone, Copy, Debug)]
pub struct PairBound {
    pub a: usize,
    pub b: usize,
    pub region: Region,
}

/// Combines a trace's constraints per unordered domain pair (Marzullo: a minority of
/// contradicting edges is outvoted). Returns the pairs and whether any edge disagreed.
pub fn combine_pairs(constraints: &[Constraint]) -> (Vec<PairBound>, bool) {
    let mut by_pair: HashMap<(usize, usize), Vec<Interval>> = HashMap::new();
    for c in constraints {
        if c.a == c.b {
            continue;
        }
        let (key, iv) = if c.a < c.b {
            ((c.a, c.b), c.iv)
        } else {
            ((c.b, c.a), c.iv.reversed())
        };
        by_pair.entry(key).or_default().push(iv);
    }
    let mut inconsistent = false;
    let mut pairs: Vec<PairBound> = by_pair
        .into_iter()
        .filter_map(|((a, b), ivs)| {
            let region = marzullo(ivs)?;
            inconsistent |= region.count < region.total;
            Some(PairBound { a, b, region })
        })
        .collect();
    pairs.sort_by_key(|p| (p.a, p.b));
    (pairs, inconsistent)
}

/// The offset of a domain relative to the reference and how uncertain the chain is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chained {
    pub offset: i64,
    pub uncertainty: u64,
}

/// Least-uncertain chains (Dijkstra over estimate widths) from `root` to `targets`;
/// `neighbours(k)` yields the estimates of o_n − o_k. Stops once every target is reached.
/// Only two-sided estimates chain: a one-sided "smallest correction" is relative to an
/// uncorrected neighbour and means nothing once that neighbour moved (see
/// [`one_sided_offsets`]).
pub fn chain_offsets<K, F>(root: K, targets: &[K], mut neighbours: F) -> HashMap<K, Chained>
where
    K: Clone + Eq + Hash,
    F: FnMut(&K) -> Vec<(K, Estimate)>,
{
    let mut nodes: Vec<K> = vec![root.clone()];
    let mut index: HashMap<K, usize> = HashMap::from([(root, 0)]);
    let mut best: Vec<(u64, i64)> = vec![(0, 0)];
    let mut done: Vec<bool> = vec![false];
    let mut heap = BinaryHeap::from([Reverse((0u64, 0usize))]);
    let mut out = HashMap::new();
    let mut remaining = targets.len();
    while let Some(Reverse((dist, at))) = heap.pop() {
        if done[at] || dist > best[at].0 {
            continue;
        }
        done[at] = true;
        let key = nodes[at].clone();
        let offset = best[at].1;
        if targets.contains(&key) {
            remaining = remaining.saturating_sub(1);
        }
        out.insert(
            key.clone(),
            Chained {
                offset,
                uncertainty: dist,
            },
        );
        if remaining == 0 {
            break;
        }
        for (next, est) in neighbours(&key) {
            if !est.region.bounds.is_two_sided() {
                continue;
            }
            let d = dist.saturating_add(est.width).saturating_add(HOP_WEIGHT);
            let o = offset.saturating_add(est.offset);
            let i = *index.entry(next.clone()).or_insert_with(|| {
                nodes.push(next.clone());
                best.push((u64::MAX, 0));
                done.push(false);
                nodes.len() - 1
            });
            if !done[i] && d < best[i].0 {
                best[i] = (d, o);
                heap.push(Reverse((d, i)));
            }
        }
    }
    out
}

/// Offsets for domains no two-sided chain reached, from one-sided evidence (asynchronous
/// edges) against domains that have an offset: the value nearest 0 that all of it allows
/// (a consumer is moved only as far as needed to start after its producer). Repeats so
/// chains of asynchronous hops are followed; contradicting evidence leaves a domain at
/// `None`. `neighbours(d)` yields (n, estimate of o_n − o_d) over local indices.
pub fn one_sided_offsets<F>(known: &mut [Option<i64>], mut neighbours: F)
where
    F: FnMut(usize) -> Vec<(usize, Estimate)>,
{
    loop {
        let mut progress = false;
        for d in 0..known.len() {
            if known[d].is_some() {
                continue;
            }
            let mut allowed = Interval::new(i64::MIN, i64::MAX);
            let mut any = false;
            for (n, est) in neighbours(d) {
                let Some(base) = known.get(n).copied().flatten() else {
                    continue;
                };
                // o_d − o_n is bounded by the reversed region.
                let rel = est.region.bounds.reversed();
                let lo = if rel.lo == i64::MIN {
                    i64::MIN
                } else {
                    base.saturating_add(rel.lo)
                };
                let hi = if rel.hi == i64::MAX {
                    i64::MAX
                } else {
                    base.saturating_add(rel.hi)
                };
                allowed = Interval::new(allowed.lo.max(lo), allowed.hi.min(hi));
                any = true;
            }
            if any && allowed.lo <= allowed.hi {
                known[d] = Some(0i64.clamp(allowed.lo, allowed.hi));
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
}

/// How freely a domain may move in the projection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Freedom {
    /// Never moves (the reference domain; domains over `max_adjustment`).
    Pinned,
    /// Estimated with this uncertainty (ns): moves in proportion to it.
    Estimated(u64),
    /// Nothing known: takes whole corrections.
    Free,
}

/// Moves offsets as little as possible (weighted by freedom) until every bound holds.
/// Returns false when some bound could not be met within the round limit.
pub fn project(offsets: &mut [i64], freedom: &[Freedom], bounds: &[PairBound]) -> bool {
    for _ in 0..MAX_ROUNDS {
        let mut moved = false;
        for p in bounds {
            let iv = p.region.bounds;
            let current = offsets[p.b].saturating_sub(offsets[p.a]);
            if iv.contains(current) {
                continue;
            }
            let target = inside(iv, current);
            let Some(share_b) = share(freedom[p.a], freedom[p.b]) else {
                continue;
            };
            let delta = target.saturating_sub(current);
            let move_b = (delta as f64 * share_b).round() as i64;
            let move_a = delta.saturating_sub(move_b);
            offsets[p.b] = offsets[p.b].saturating_add(move_b);
            offsets[p.a] = offsets[p.a].saturating_sub(move_a);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    bounds.iter().all(|p| {
        p.region
            .bounds
            .contains(offsets[p.b].saturating_sub(offsets[p.a]))
    })
}

/// The point just inside the violated bound of `iv` nearest to `x`.
fn inside(iv: Interval, x: i64) -> i64 {
    let room = if iv.is_two_sided() {
        ((iv.hi as i128 - iv.lo as i128) / 2).min(MARGIN_NS as i128) as i64
    } else {
        MARGIN_NS
    };
    if x < iv.lo {
        iv.lo.saturating_add(room)
    } else {
        iv.hi.saturating_sub(room)
    }
}

/// The part of a correction taken by `b` (the rest by `a`); `None` if neither may move.
fn share(a: Freedom, b: Freedom) -> Option<f64> {
    let weight = |f: Freedom| match f {
        Freedom::Pinned => Some(0.0),
        Freedom::Estimated(u) => Some(u as f64 + 1.0),
        Freedom::Free => None,
    };
    match (weight(a), weight(b)) {
        (Some(wa), Some(wb)) if wa + wb == 0.0 => None,
        (Some(wa), Some(wb)) => Some(wb / (wa + wb)),
        (None, None) => Some(0.5),
        (None, Some(_)) => Some(0.0),
        (Some(_), None) => Some(1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(a: usize, b: usize, lo: i64, hi: i64) -> Constraint {
        Constraint {
            a,
            b,
            iv: Interval::new(lo, hi),
        }
    }

    #[test]
    fn pairs_are_combined_in_either_direction() {
        let (pairs, bad) = combine_pairs(&[c(0, 1, 100, 200), c(1, 0, -180, -120)]);
        assert!(!bad);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].region.bounds, Interval::new(120, 180));
        let (_, bad) = combine_pairs(&[c(0, 1, 100, 200), c(0, 1, 300, 400), c(0, 1, 150, 160)]);
        assert!(bad);
    }

    #[test]
    fn chains_prefer_the_least_uncertain_path() {
        // 0 -> 1 directly is vague; 0 -> 2 -> 1 is precise.
        let est =
            |lo: i64, hi: i64| Estimate::from_region(marzullo([Interval::new(lo, hi)]).unwrap());
        let graph: HashMap<usize, Vec<(usize, Estimate)>> = HashMap::from([
            (
                0,
                vec![(1, est(0, 1_000_000_000)), (2, est(10_000, 10_200))],
            ),
            (2, vec![(1, est(5_000, 5_100)), (0, est(-10_200, -10_000))]),
            (1, vec![]),
        ]);
        let out = chain_offsets(0usize, &[1, 2], |k| graph[k].clone());
        assert_eq!(out[&1].offset, 10_100 + 5_050);
        assert_eq!(out[&2].offset, 10_100);
        assert!(out[&1].uncertainty < 1_000_000);
    }

    #[test]
    fn one_sided_evidence_is_applied_after_the_neighbour_moved() {
        // Domain 1 is corrected by −250; domain 2 (a consumer of 1) has o_2 − o_1 ≥ 220.
        let est = Estimate::from_region(marzullo([Interval::at_least(220)]).unwrap());
        let graph: HashMap<usize, Vec<(usize, Estimate)>> = HashMap::from([
            (1, vec![(2, est)]),
            (2, vec![(1, est.reversed())]),
            (0, vec![]),
        ]);
        let mut known = vec![Some(0), Some(-250), None];
        one_sided_offsets(&mut known, |d| graph[&d].clone());
        assert_eq!(known[2], Some(0), "no move needed once 1 moved");
        let mut known = vec![Some(0), Some(0), None];
        one_sided_offsets(&mut known, |d| graph[&d].clone());
        assert_eq!(known[2], Some(220));
    }

    #[test]
    fn projection_moves_the_free_domain_not_the_pinned_one() {
        let bounds = combine_pairs(&[c(0, 1, 0, i64::MAX)]).0;
        let mut offsets = vec![0, -5_000];
        assert!(project(
            &mut offsets,
            &[Freedom::Pinned, Freedom::Free],
            &bounds
        ));
        assert_eq!(offsets[0], 0);
        assert!(offsets[1] >= 0);
    }

    #[test]
    fn projection_satisfies_a_cycle_of_bounds() {
        let (bounds, _) = combine_pairs(&[
            c(0, 1, 10_000, 20_000),
            c(1, 2, 0, 5_000),
            c(0, 2, 0, 12_000),
        ]);
        let mut offsets = vec![0, 25_000, 40_000];
        let freedom = [
            Freedom::Pinned,
            Freedom::Estimated(500),
            Freedom::Estimated(800),
        ];
        assert!(project(&mut offsets, &freedom, &bounds));
        assert_eq!(offsets[0], 0);
    }

    #[test]
    fn contradictory_bounds_between_pinned_domains_are_reported() {
        let (bounds, _) = combine_pairs(&[c(0, 1, 10, 20)]);
        let mut offsets = vec![0, 0];
        assert!(!project(
            &mut offsets,
            &[Freedom::Pinned, Freedom::Pinned],
            &bounds
        ));
    }
}
