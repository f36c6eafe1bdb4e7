//! Logs following the remap table, config, the registry path, and a no-loss check.

use std::collections::HashMap;

use serde_json::json;

use super::testkit::*;
use super::{ATTR_ORIGINAL_TRACE_ID, Mode, validate};
use crate::admin::Telemetry;
use crate::components::{BuildContext, SharedState};
use crate::data::{Signal, Span, attr_str, hex};

#[test]
fn logs_of_a_merged_trace_get_the_producers_trace_id() {
    let mut h = Harness::new(Mode::Merge, 100_000);
    h.send(0.0, order(1, "e1"));
    h.send(1.0, payment(2, "e1"));
    let out = h.send_logs(
        2.0,
        vec![
            log(Some(2), "charged"),
            log(Some(1), "order created"),
            log(None, "boot"),
        ],
    );
    assert_eq!(out.len(), 3, "settled or trace-less records pass at once");
    let charged = out
        .iter()
        .find(|r| r.trace_id == trace(1) && r.span_id == sid(2, 1));
    let charged = charged.expect("payment's record rewritten");
    assert_eq!(
        attr_str(&charged.attributes, ATTR_ORIGINAL_TRACE_ID),
        Some(hex(&trace(2)).as_str())
    );
    assert_eq!(h.metric("remapped_log_records", "outbox"), 1);
    assert_eq!(h.logs.next_deadline(), None);
}

#[test]
fn logs_arriving_before_their_trace_settles_wait_for_it() {
    let mut h = Harness::new(Mode::Merge, 100_000);
    // Logs are usually exported before the spans they belong to end.
    assert!(h.send_logs(0.0, vec![log(Some(2), "charging")]).is_empty());
    assert!(h.send(0.5, payment(2, "e1")).is_empty());
    assert!(
        h.tick_logs(1.0).is_empty(),
        "trace 2 still waits for its producer"
    );
    h.send(1.5, order(1, "e1"));
    // The logs pipeline re-reads the shared table on its own schedule.
    let d = h.logs.next_deadline().expect("holding");
    assert!(d <= h.at(2.0));
    let out = h.tick_logs(2.0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trace_id, trace(1));
    assert_eq!(h.logs.next_deadline(), None);
}

#[test]
fn logs_wait_at_most_the_window() {
    let mut h = Harness::new(Mode::Merge, 100_000);
    assert!(
        h.send_logs(0.0, vec![log(Some(5), "no spans ever")])
            .is_empty()
    );
    for s in 1..60 {
        assert!(h.tick_logs(s as f64).is_empty());
    }
    let out = h.tick_logs(60.0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].trace_id, trace(5));
}

#[test]
fn late_logs_after_the_ttl_pass_unchanged_and_are_counted() {
    let mut h = Harness::new(Mode::Merge, 100_000);
    h.send(0.0, order(1, "e1"));
    h.send(1.0, payment(2, "e1"));
    // TTL is 2 × window from the merge.
    let out = h.send_logs(120.9, vec![log(Some(2), "still in time")]);
    assert_eq!(out[0].trace_id, trace(1));
    let out = h.send_logs(121.0, vec![log(Some(2), "too late")]);
    assert_eq!(out.len(), 1, "passes at once");
    assert_eq!(out[0].trace_id, trace(2));
    assert_eq!(h.metric("late_log_records", "outbox"), 1);
    assert_eq!(h.metric("remapped_log_records", "outbox"), 1);
}

#[test]
fn unsampled_logs_and_link_mode_logs_pass_at_once() {
    let mut h = Harness::new(Mode::Merge, 100_000);
    let mut r = log(Some(5), "unsampled");
    r.flags = 0;
    assert_eq!(h.send_logs(0.0, vec![r]).len(), 1);
    let mut h = Harness::new(Mode::Link, 100_000);
    assert_eq!(h.send_logs(0.0, vec![log(Some(5), "x")]).len(), 1);
}

#[test]
fn held_logs_are_bounded_and_flushed() {
    let mut h = Harness::new(Mode::Merge, 2);
    let out = h.send_logs(0.0, (0..3).map(|i| log(Some(10 + i), "x")).collect());
    assert_eq!(
        out.len(),
        1,
        "the oldest goes when more than max_pending wait"
    );
    assert_eq!(out[0].trace_id, trace(10));
    assert_eq!(
        h.component_metric("weft_processor_stitch_overflow_log_records_total"),
        1
    );
    assert_eq!(logs_of(h.logs.flush()).len(), 2);
    assert_eq!(h.logs.next_deadline(), None);
}

fn ctx(shared: &SharedState, telemetry: &Telemetry, signal: Signal) -> BuildContext {
    BuildContext {
        id: "stitch/kafka".into(),
        signal: Some(signal),
        telemetry: telemetry.clone(),
        shared: shared.clone(),
        extensions: Default::default(),
    }
}

#[test]
fn instances_built_for_one_id_share_the_remap_table() {
    let shared = SharedState::default();
    let t = Telemetry::new();
    let cfg = json!({"rules": [{"name": "outbox",
        "producer": {"span_kind": ["client"], "attributes": ["outbox.event_id"]},
        "consumer": {"attributes": ["messaging.message.id"]}}]});
    let mut traces = super::build(&cfg, &ctx(&shared, &t, Signal::Traces)).unwrap();
    let mut logs = super::build(&cfg, &ctx(&shared, &t, Signal::Logs)).unwrap();
    // Another id does not see this one's table.
    let mut other_ctx = ctx(&shared, &t, Signal::Logs);
    other_ctx.id = "stitch".into();
    let mut other = super::build(&cfg, &other_ctx).unwrap();
    let now = std::time::Instant::now();
    traces.process(traces_batch(order(1, "e1")), now).unwrap();
    traces.process(traces_batch(payment(2, "e1")), now).unwrap();
    let out = logs_of(
        logs.process(logs_batch(vec![log(Some(2), "x")]), now)
            .unwrap(),
    );
    assert_eq!(out[0].trace_id, trace(1));
    let out = logs_of(
        other
            .process(logs_batch(vec![log(Some(2), "x")]), now)
            .unwrap(),
    );
    assert_eq!(
        out[0].trace_id,
        trace(2),
        "no traces instance for that id: passes"
    );
    let err = super::build(&cfg, &ctx(&shared, &t, Signal::Metrics))
        .err()
        .unwrap();
    assert!(err.message.contains("traces and logs"), "{err}");
}

#[test]
fn config_defaults_and_errors() {
    let c = super::parse(&serde_json::Value::Null).unwrap();
    assert_eq!(c.window.get(), W);
    assert_eq!(c.max_pending, 100_000);
    assert_eq!(c.mode, Mode::Merge);
    let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["message-id", "kafka-offset"]);

    let e = validate(&json!({"windw": "5s"})).unwrap_err();
    assert_eq!(e.path, ["windw"]);
    assert_eq!(e.suggestion.as_deref(), Some("window"));
    let e = validate(&json!({"mode": "merj"})).unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("merge"));
    assert!(validate(&json!({"window": "0s"})).is_err());
    assert!(validate(&json!({"window": "25h"})).is_err());
    let e = validate(&json!({"max_pending": 0})).unwrap_err();
    assert_eq!(e.path, ["max_pending"]);
    let e = validate(&json!({"rules": [{"name": "x",
        "producer": {"span_kind": ["prodcer"], "attributes": ["a"]},
        "consumer": {"attributes": ["a"]}}]}))
    .unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("producer"), "{e:?}");
    let e = validate(&json!({"rules": [{"name": "x",
        "producer": {"attributes": ["a", "b"]}, "consumer": {"attributes": ["a"]}}]}))
    .unwrap_err();
    assert_eq!(e.path, ["rules", "0", "consumer", "attributes"]);
}

/// Random services, keys, batch splits and clock steps: every span that goes in comes out
/// exactly once, and all spans of one original trace end in the same trace id.
#[test]
fn nothing_is_lost_or_duplicated_and_traces_stay_whole() {
    for seed in 0..40u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mode = if seed % 4 == 3 {
            Mode::Link
        } else {
            Mode::Merge
        };
        let max_pending = if seed % 5 == 4 { 6 } else { 100_000 };
        let mut h = Harness::new(mode, max_pending);
        let mut input: Vec<Span> = Vec::new();
        for t in 1..=30u8 {
            let event = format!("e{}", rng.u8(0..8));
            let mut spans = match rng.u8(0..5) {
                0 => order(t, &event),
                1 => payment(t, &event),
                2 => notification(t),
                3 => vec![with_remote_parent(
                    span(t, 1, None, SERVER, "downstream", &[]),
                    sid(99, 1),
                )],
                _ => vec![
                    span(t, 1, None, SERVER, "plain", &[]),
                    span(t, 2, Some(1), CLIENT, "db", &[]),
                ],
            };
            for s in &mut spans {
                s.name = format!("{}#{t}", s.name);
            }
            input.extend(spans);
        }
        rng.shuffle(&mut input);
        let mut out = Vec::new();
        let mut secs = 0.0;
        let mut rest = input.clone();
        while !rest.is_empty() {
            let n = rng.usize(1..=rest.len().min(5));
            let batch: Vec<Span> = rest.drain(..n).collect();
            out.extend(h.send(secs, batch));
            // Stay within the remap TTL (2 × window) so that whole traces can be checked.
            secs = (secs + rng.f64() * 5.0).min(110.0);
            if rng.bool() {
                out.extend(h.tick(secs));
            }
        }
        out.extend(spans_of(h.traces.flush()));
        assert_eq!(out.len(), input.len(), "seed {seed}");
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut landed: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for s in &out {
            *seen.entry(s.span_id.clone()).or_default() += 1;
            let original = match attr_str(&s.attributes, ATTR_ORIGINAL_TRACE_ID) {
                Some(h) => crate::data::unhex(h).unwrap(),
                None => s.trace_id.clone(),
            };
            assert_eq!(original, trace(s.span_id[0]), "seed {seed}");
            let to = landed.entry(original).or_insert_with(|| s.trace_id.clone());
            // With a tiny max_pending the remap table forgets merges early, by design.
            if max_pending > 6 {
                assert_eq!(*to, s.trace_id, "seed {seed}: trace {} split", s.span_id[0]);
            }
        }
        assert!(seen.values().all(|n| *n == 1), "seed {seed}: duplicates");
        assert_eq!(h.traces.next_deadline(), None, "seed {seed}");
    }
}
