//! Traces: merge and link mode, with injected time.

use super::Mode;
use super::rules::FLAG_IS_REMOTE;
use super::testkit::*;
use crate::data::{attr_str, hex};

fn merged_harness() -> Harness {
    Harness::new(Mode::Merge, 100_000)
}

#[test]
fn merge_producer_first_rewrites_the_consumer_trace() {
    let mut h = merged_harness();
    let out = h.send(0.0, order(1, "e1"));
    assert_eq!(
        out.len(),
        2,
        "a complete trace without consumers passes at once"
    );
    out.iter().for_each(|s| assert_untouched(s, 1));

    let out = h.send(2.0, payment(2, "e1"));
    assert_eq!(out.len(), 3);
    for s in &out {
        assert_merged(s, 2, 1, "outbox");
    }
    let root = find(&out, "order.created process");
    assert_eq!(
        root.parent_span_id,
        sid(1, 2),
        "root hangs under the outbox producer span"
    );
    assert_ne!(root.flags & FLAG_IS_REMOTE, 0, "the new parent is remote");
    assert_eq!(
        find(&out, "charge card").parent_span_id,
        sid(2, 1),
        "inner parentage kept"
    );
    assert_eq!(h.metric("matched", "outbox"), 1);
    assert_eq!(h.metric("merged_spans", "outbox"), 3);
    assert_eq!(h.traces.next_deadline(), None, "nothing held");
}

#[test]
fn merge_consumer_first_waits_for_the_producer() {
    let mut h = merged_harness();
    assert!(
        h.send(0.0, payment(2, "e1")).is_empty(),
        "consumer trace is held"
    );
    assert_eq!(h.traces.next_deadline(), Some(h.at(60.0)));
    assert!(h.tick(59.0).is_empty());

    let out = h.send(30.0, order(1, "e1"));
    assert_eq!(out.len(), 5);
    for s in out.iter().filter(|s| s.span_id[0] == 2) {
        assert_merged(s, 2, 1, "outbox");
    }
    for s in out.iter().filter(|s| s.span_id[0] == 1) {
        assert_untouched(s, 1);
    }
    assert_eq!(
        find(&out, "order.created process").parent_span_id,
        sid(1, 2)
    );
    assert_eq!(h.traces.next_deadline(), None);
}

#[test]
fn merge_rewrites_spans_from_other_batches_before_and_after_the_match() {
    let mut h = merged_harness();
    // A child of the consumer trace arrives first, on its own: its trace has no root yet.
    let early = span(2, 5, Some(1), CLIENT, "early child", &[]);
    assert!(h.send(0.0, vec![early]).is_empty());
    assert!(h.send(1.0, order(1, "e1")).len() == 2);
    // The consumer root arrives: matched, so the early child comes out with it.
    let out = h.send(2.0, payment(2, "e1"));
    assert_eq!(out.len(), 4);
    out.iter().for_each(|s| assert_merged(s, 2, 1, "outbox"));
    // A straggler of the merged trace is rewritten at once.
    let late = h.send(3.0, vec![span(2, 6, Some(2), CLIENT, "late child", &[])]);
    assert_eq!(late.len(), 1);
    assert_merged(&late[0], 2, 1, "outbox");
    assert_eq!(late[0].parent_span_id, sid(2, 2));
    assert_eq!(h.metric("merged_spans", "outbox"), 5);
}

#[test]
fn merge_joins_every_fan_out_consumer() {
    let mut h = merged_harness();
    h.send(0.0, order(1, "e1"));
    let mut out = h.send(1.0, payment(2, "e1"));
    // A second service consumes the same message.
    out.extend(h.send(
        2.0,
        vec![span(
            3,
            1,
            None,
            SERVER,
            "audit order.created",
            &[("messaging.message.id", "e1")],
        )],
    ));
    assert_eq!(out.len(), 4);
    for s in &out {
        assert_eq!(s.trace_id, trace(1));
    }
    assert_eq!(find(&out, "audit order.created").parent_span_id, sid(1, 2));
    assert_eq!(
        find(&out, "order.created process").parent_span_id,
        sid(1, 2)
    );
    assert_eq!(h.metric("matched", "outbox"), 2);
}

#[test]
fn merge_joins_both_attempts_of_a_redelivered_message() {
    let mut h = merged_harness();
    // First attempt before the producer is seen, the retry after.
    assert!(h.send(0.0, payment(2, "e1")).is_empty());
    let first = h.send(1.0, order(1, "e1"));
    let retry = h.send(5.0, payment(3, "e1"));
    assert_eq!(first.len(), 5);
    assert_eq!(retry.len(), 3);
    for s in first.iter().chain(&retry) {
        assert_eq!(s.trace_id, trace(1), "{}", s.name);
    }
    retry.iter().for_each(|s| assert_merged(s, 3, 1, "outbox"));
    assert_eq!(h.metric("matched", "outbox"), 2);
}

/// order → payment → notification must end in one trace id whatever the arrival order.
#[test]
fn two_hop_chain_ends_in_one_trace_in_every_arrival_order() {
    type Send = fn() -> Vec<crate::data::Span>;
    let o: Send = || order(1, "e1");
    let p: Send = || payment(2, "e1");
    let n: Send = || notification(3);
    let orders: [[Send; 3]; 6] = [
        [o, p, n],
        [o, n, p],
        [p, o, n],
        [p, n, o],
        [n, o, p],
        [n, p, o],
    ];
    for (case, seq) in orders.iter().enumerate() {
        let mut h = merged_harness();
        let mut out = Vec::new();
        for (i, f) in seq.iter().enumerate() {
            out.extend(h.send(i as f64, f()));
        }
        assert_eq!(out.len(), 7, "case {case}: {:?}", names(&out));
        for s in &out {
            assert_eq!(
                s.trace_id,
                trace(1),
                "case {case}: {} in {}",
                s.name,
                hex(&s.trace_id)
            );
        }
        assert_eq!(
            find(&out, "order.created process").parent_span_id,
            sid(1, 2),
            "case {case}"
        );
        assert_eq!(
            find(&out, "payments process").parent_span_id,
            sid(2, 3),
            "case {case}"
        );
        assert_eq!(
            attr_str(
                &find(&out, "send email").attributes,
                super::ATTR_ORIGINAL_TRACE_ID
            ),
            Some(hex(&trace(3)).as_str())
        );
        assert_eq!(h.metric("matched", "kafka-offset"), 1, "case {case}");
        assert_eq!(h.traces.next_deadline(), None, "case {case}");
    }
}

#[test]
fn consumer_with_a_remote_parent_is_left_alone() {
    let mut h = merged_harness();
    h.send(0.0, order(1, "e1"));
    // Context was propagated from somewhere else: the consumer's parent is remote.
    let c = with_remote_parent(
        span(
            4,
            1,
            None,
            CONSUMER,
            "order.created process",
            &[("messaging.message.id", "e1")],
        ),
        sid(9, 9),
    );
    let out = h.send(
        1.0,
        vec![c, span(4, 2, Some(1), CLIENT, "charge card", &[])],
    );
    assert_eq!(out.len(), 2, "released at once");
    out.iter().for_each(|s| assert_untouched(s, 4));
    assert_eq!(out[0].parent_span_id, sid(9, 9));
    assert_eq!(h.metric("matched", "outbox"), 0);
}

#[test]
fn consumer_in_its_producers_own_trace_is_left_alone() {
    let mut h = merged_harness();
    let mut spans = order(1, "e1");
    spans.push(span(
        1,
        3,
        Some(2),
        CONSUMER,
        "consume",
        &[("messaging.message.id", "e1")],
    ));
    let out = h.send(0.0, spans);
    assert_eq!(out.len(), 3);
    out.iter().for_each(|s| assert_untouched(s, 1));
    assert_eq!(h.traces.next_deadline(), None);
}

#[test]
fn unmatched_consumer_is_released_unchanged_after_the_window() {
    let mut h = merged_harness();
    assert!(h.send(0.0, payment(2, "e1")).is_empty());
    assert!(
        h.send(10.0, vec![span(2, 4, Some(1), CLIENT, "later child", &[])])
            .is_empty()
    );
    assert!(h.tick(59.9).is_empty());
    let out = h.tick(60.0);
    assert_eq!(out.len(), 4, "nothing waits longer than the window");
    out.iter().for_each(|s| assert_untouched(s, 2));
    assert_eq!(h.metric("unmatched_expired", "outbox"), 1);
    assert_eq!(h.traces.next_deadline(), None);
    // The producer turning up late changes nothing, and stragglers pass at once.
    h.send(61.0, order(1, "e1"));
    let s = h.send(62.0, vec![span(2, 5, Some(1), CLIENT, "straggler", &[])]);
    assert_eq!(s.len(), 1);
    assert_untouched(&s[0], 2);
}

#[test]
fn rootless_trace_waits_at_most_the_window() {
    let mut h = merged_harness();
    let s = with_remote_parent(span(7, 1, None, SERVER, "downstream", &[]), sid(8, 1));
    assert!(h.send(0.0, vec![s]).is_empty(), "its root may still come");
    let out = h.tick(60.0);
    assert_eq!(out.len(), 1);
    assert_untouched(&out[0], 7);
    assert_eq!(
        h.metric("unmatched_expired", "outbox"),
        0,
        "it was no consumer"
    );
}

#[test]
fn overflow_releases_the_oldest_held_trace_and_counts_it() {
    let mut h = Harness::new(Mode::Merge, 4);
    assert!(h.send(0.0, payment(2, "a")).is_empty());
    let out = h.send(1.0, payment(3, "b"));
    assert_eq!(out.len(), 3, "6 held > 4: the oldest trace goes");
    out.iter().for_each(|s| assert_untouched(s, 2));
    assert_eq!(h.metric("overflow", "outbox"), 1);
    assert_eq!(
        h.component_metric("weft_processor_stitch_overflow_spans_total"),
        3
    );
    assert_eq!(h.component_metric("weft_processor_stitch_held_spans"), 3);
    assert_eq!(h.traces.next_deadline(), Some(h.at(61.0)));
    // The overflowed trace is settled: its stragglers pass unchanged.
    let s = h.send(2.0, vec![span(2, 9, Some(1), CLIENT, "straggler", &[])]);
    assert_untouched(&s[0], 2);
}

#[test]
fn links_to_merged_traces_follow_them() {
    let mut h = merged_harness();
    h.send(0.0, order(1, "e1"));
    h.send(1.0, payment(2, "e1"));
    let mut s = span(5, 1, None, SERVER, "report", &[]);
    s.links.push(crate::data::span::Link {
        trace_id: trace(2),
        span_id: sid(2, 1),
        ..Default::default()
    });
    let out = h.send(2.0, vec![s]);
    assert_eq!(out[0].links[0].trace_id, trace(1));
}

#[test]
fn flush_releases_everything_held() {
    let mut h = merged_harness();
    h.send(0.0, payment(2, "e1"));
    h.send(1.0, vec![span(6, 2, Some(1), CLIENT, "rootless", &[])]);
    let out = spans_of(h.traces.flush());
    assert_eq!(out.len(), 4);
    assert_eq!(h.traces.next_deadline(), None);
}

#[test]
fn link_mode_adds_a_link_in_either_arrival_order() {
    for producer_first in [true, false] {
        let mut h = Harness::new(Mode::Link, 100_000);
        let mut out = Vec::new();
        if producer_first {
            out.extend(h.send(0.0, order(1, "e1")));
            out.extend(h.send(1.0, payment(2, "e1")));
        } else {
            let held = h.send(0.0, payment(2, "e1"));
            assert_eq!(held.len(), 2, "only the consumer span waits");
            out.extend(held);
            assert_eq!(h.traces.next_deadline(), Some(h.at(60.0)));
            out.extend(h.send(1.0, order(1, "e1")));
        }
        assert_eq!(out.len(), 5);
        for s in &out {
            assert_eq!(s.trace_id, trace(s.span_id[0]), "trace ids stay");
            assert!(attr_str(&s.attributes, super::ATTR_RULE).is_none());
        }
        let c = find(&out, "order.created process");
        assert!(c.parent_span_id.is_empty(), "parentage stays");
        assert_eq!(c.links.len(), 1);
        assert_eq!(c.links[0].trace_id, trace(1));
        assert_eq!(c.links[0].span_id, sid(1, 2));
        assert_eq!(
            attr_str(&c.links[0].attributes, super::ATTR_RULE),
            Some("outbox")
        );
        assert_eq!(h.metric("links_added", "outbox"), 1);
        assert_eq!(h.traces.next_deadline(), None);
    }
}

#[test]
fn link_mode_links_fan_out_and_redelivery_and_expires_the_unmatched() {
    let mut h = Harness::new(Mode::Link, 100_000);
    h.send(0.0, order(1, "e1"));
    let a = h.send(1.0, payment(2, "e1"));
    let b = h.send(2.0, payment(3, "e1"));
    for out in [&a, &b] {
        assert_eq!(find(out, "order.created process").links.len(), 1);
    }
    assert_eq!(h.metric("links_added", "outbox"), 2);
    // No producer: released unchanged after the window.
    assert_eq!(h.send(3.0, payment(4, "zz")).len(), 2);
    let out = h.tick(63.0);
    assert_eq!(out.len(), 1);
    assert_untouched(&out[0], 4);
    assert_eq!(h.metric("unmatched_expired", "outbox"), 1);
    // A consumer with a remote parent is left alone.
    let c = with_remote_parent(
        span(5, 1, None, CONSUMER, "c", &[("messaging.message.id", "e1")]),
        sid(9, 9),
    );
    let out = h.send(4.0, vec![c]);
    assert_untouched(&out[0], 5);
}
