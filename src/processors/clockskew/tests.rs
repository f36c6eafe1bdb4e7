//! Whole-processor tests: time is injected, nothing sleeps.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;
use crate::data::{Resource, ScopeSpans, Span, any_value, attr, span::Event, span::SpanKind};
use domain::kv;

const MS: i64 = 1_000_000;
const US: i64 = 1_000;
/// An arbitrary wall-clock origin (2023-11-14).
const BASE: i64 = 1_700_000_000_000_000_000;

fn span(trace: u8, id: u8, parent: u8, kind: SpanKind, start: i64, end: i64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: format!("span-{id}"),
        kind: kind as i32,
        start_time_unix_nano: (BASE + start) as u64,
        end_time_unix_nano: (BASE + end) as u64,
        ..Default::default()
    }
}

fn on_host(host: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("host.name", host), kv("service.name", host)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

/// Spans of `host` whose clock runs `skew` ahead of true time.
fn skewed(host: &str, skew: i64, spans: Vec<Span>) -> ResourceSpans {
    let spans = spans
        .into_iter()
        .map(|mut s| {
            s.start_time_unix_nano = (s.start_time_unix_nano as i64 + skew) as u64;
            s.end_time_unix_nano = (s.end_time_unix_nano as i64 + skew) as u64;
            for e in &mut s.events {
                e.time_unix_nano = (e.time_unix_nano as i64 + skew) as u64;
            }
            s
        })
        .collect();
    on_host(host, spans)
}

fn processor(cfg: serde_json::Value) -> (ClockSkew, Telemetry) {
    let telemetry = Telemetry::new();
    let cfg = parse(&cfg).expect("valid config");
    (ClockSkew::new(&cfg, "clockskew", &telemetry), telemetry)
}

fn counter(t: &Telemetry, what: &str) -> f64 {
    t.metrics
        .value(
            &format!("weft_processor_clockskew_{what}"),
            &[("component", "clockskew")],
        )
        .unwrap_or(0.0)
}

/// Sends each batch one millisecond apart, then waits out `decision_wait`.
fn run(p: &mut ClockSkew, t0: Instant, batches: Vec<Vec<ResourceSpans>>) -> Vec<ResourceSpans> {
    let mut out = Vec::new();
    let mut now = t0;
    for b in batches {
        for batch in p.process(Batch::Traces(b), now).unwrap() {
            collect(batch, &mut out);
        }
        now += Duration::from_millis(1);
    }
    let deadline = p.next_deadline().expect("traces are held");
    assert!(
        deadline > now,
        "nothing is released before its wait is over"
    );
    for batch in p.on_deadline(deadline) {
        collect(batch, &mut out);
    }
    assert!(p.next_deadline().is_none());
    out
}

fn collect(batch: Batch, out: &mut Vec<ResourceSpans>) {
    match batch {
        Batch::Traces(rs) => out.extend(rs),
        other => panic!("unexpected {other:?}"),
    }
}

/// Spans by their id byte, with true-time start/end relative to BASE.
fn by_id(out: &[ResourceSpans]) -> HashMap<u8, Span> {
    out.iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter())
        .map(|s| (s.span_id[0], s.clone()))
        .collect()
}

fn start(s: &Span) -> i64 {
    s.start_time_unix_nano as i64 - BASE
}
fn end(s: &Span) -> i64 {
    s.end_time_unix_nano as i64 - BASE
}
fn adjustment(s: &Span) -> Option<i64> {
    match attr(&s.attributes, ADJUSTMENT_ATTRIBUTE) {
        Some(any_value::Value::IntValue(v)) => Some(*v),
        _ => None,
    }
}

fn inside(parent: &Span, child: &Span) -> bool {
    start(child) >= start(parent) && end(child) <= end(parent)
}

use SpanKind::{Client, Consumer, Internal, Producer, Server};

#[test]
fn consistent_traces_pass_through_byte_for_byte() {
    let (mut p, t) = processor(serde_json::json!({}));
    let input = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 10 * MS),
                span(1, 2, 1, Client, MS, 9 * MS),
            ],
        ),
        on_host("b", vec![span(1, 3, 2, Server, 2 * MS, 8 * MS)]),
        on_host("c", vec![span(2, 4, 0, Server, 0, MS)]),
    ];
    let out = run(&mut p, Instant::now(), vec![input.clone()]);
    assert_eq!(
        Batch::Traces(out).encode_proto(),
        Batch::Traces(input).encode_proto()
    );
    assert_eq!(counter(&t, "traces_total"), 2.0);
    assert_eq!(counter(&t, "spans_adjusted_total"), 0.0);
}

#[test]
fn one_skewed_child_is_moved_inside_its_parent() {
    let (mut p, t) = processor(serde_json::json!({"estimator": "per_trace"}));
    let mut server = span(1, 3, 2, Server, 2 * MS, 8 * MS);
    server.events.push(Event {
        time_unix_nano: (BASE + 5 * MS) as u64,
        name: "cache miss".into(),
        ..Default::default()
    });
    let input = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 10 * MS),
                span(1, 2, 1, Client, MS, 9 * MS),
            ],
        ),
        skewed("b", 120 * MS, vec![server]),
    ];
    let out = by_id(&run(&mut p, Instant::now(), vec![input]));
    let s = &out[&3];
    assert!(inside(&out[&2], s));
    // Symmetric latency (1 ms each way) makes the centred estimate exact.
    assert_eq!(adjustment(s), Some(-120 * MS));
    assert_eq!(start(s), 2 * MS);
    assert_eq!(s.events[0].time_unix_nano as i64 - BASE, 5 * MS);
    assert_eq!(adjustment(&out[&1]), None);
    assert_eq!(counter(&t, "spans_adjusted_total"), 1.0);
}

#[test]
fn a_chain_over_three_nodes_is_corrected_relative_to_the_root() {
    let (mut p, _) = processor(serde_json::json!({"estimator": "per_trace"}));
    let input = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 20 * MS),
                span(1, 2, 1, Client, MS, 19 * MS),
            ],
        ),
        skewed(
            "b",
            -80 * MS,
            vec![
                span(1, 3, 2, Server, 2 * MS, 18 * MS),
                span(1, 4, 3, Client, 3 * MS, 17 * MS),
            ],
        ),
        skewed("c", 200 * MS, vec![span(1, 5, 4, Server, 4 * MS, 16 * MS)]),
    ];
    let out = by_id(&run(&mut p, Instant::now(), vec![input]));
    assert_eq!(adjustment(&out[&3]), Some(80 * MS));
    assert_eq!(adjustment(&out[&4]), Some(80 * MS));
    assert_eq!(adjustment(&out[&5]), Some(-200 * MS));
    assert!(inside(&out[&2], &out[&3]) && inside(&out[&4], &out[&5]));
}

#[test]
fn a_node_linked_only_through_another_node_is_solved_through_the_chain() {
    // Trace 1 links a–b and b–c; trace 2 has spans on a and c only, with no edge
    // between them (c's parent span was lost). Cross-trace evidence chains a → b → c.
    let (mut p, _) = processor(serde_json::json!({}));
    let t0 = Instant::now();
    let first = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 20 * MS),
                span(1, 2, 1, Client, MS, 19 * MS),
            ],
        ),
        skewed(
            "b",
            30 * MS,
            vec![
                span(1, 3, 2, Server, 2 * MS, 18 * MS),
                span(1, 4, 3, Client, 3 * MS, 17 * MS),
            ],
        ),
        skewed("c", -50 * MS, vec![span(1, 5, 4, Server, 4 * MS, 16 * MS)]),
    ];
    run(&mut p, t0, vec![first]);
    let second = vec![
        on_host("a", vec![span(2, 11, 0, Server, 0, 20 * MS)]),
        skewed(
            "c",
            -50 * MS,
            vec![span(2, 15, 99, Server, 4 * MS, 16 * MS)],
        ),
    ];
    let out = by_id(&run(&mut p, t0 + Duration::from_secs(10), vec![second]));
    assert_eq!(adjustment(&out[&15]), Some(50 * MS));
    assert_eq!(start(&out[&15]), 4 * MS);
}

#[test]
fn an_async_consumer_is_never_pulled_into_its_producer() {
    let (mut p, _) = processor(serde_json::json!({"estimator": "per_trace"}));
    // The consumer really starts 40 ms after its producer ended; b's clock is right.
    let producer = span(1, 2, 1, Producer, MS, 2 * MS);
    let input = vec![
        on_host(
            "a",
            vec![span(1, 1, 0, Server, 0, 3 * MS), producer.clone()],
        ),
        on_host("b", vec![span(1, 3, 2, Consumer, 42 * MS, 45 * MS)]),
    ];
    let out = by_id(&run(&mut p, Instant::now(), vec![input]));
    assert_eq!(adjustment(&out[&3]), None);
    assert_eq!(start(&out[&3]), 42 * MS);

    // Now b's clock is 100 ms behind: the consumer appears before its producer. It is
    // moved just after the producer's start, not centred inside it.
    let input = vec![
        on_host(
            "a",
            vec![
                span(2, 1, 0, Server, 0, 3 * MS),
                span(2, 2, 1, Producer, MS, 2 * MS),
            ],
        ),
        skewed(
            "b",
            -100 * MS,
            vec![span(2, 3, 2, Consumer, 42 * MS, 45 * MS)],
        ),
    ];
    let out = by_id(&run(&mut p, Instant::now(), vec![input]));
    let consumer = &out[&3];
    assert!(start(consumer) >= start(&out[&2]));
    assert!(start(consumer) <= start(&out[&2]) + 10 * US, "minimal move");
}

#[test]
fn spans_of_one_domain_keep_their_relative_timing_exactly() {
    let (mut p, _) = processor(serde_json::json!({"estimator": "per_trace"}));
    let b_spans = vec![
        span(1, 3, 2, Server, 2 * MS, 18 * MS),
        span(1, 4, 3, Internal, 2 * MS + 317, 9 * MS + 5),
        span(1, 5, 3, Internal, 9 * MS + 11, 17 * MS - 3),
    ];
    let input = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 20 * MS),
                span(1, 2, 1, Client, MS, 19 * MS),
            ],
        ),
        skewed("b", 77 * MS + 123, b_spans.clone()),
    ];
    let out = by_id(&run(&mut p, Instant::now(), vec![input]));
    let shift = adjustment(&out[&3]).unwrap();
    for s in &b_spans {
        let o = &out[&s.span_id[0]];
        assert_eq!(adjustment(o), Some(shift));
        assert_eq!(start(o) - start(&out[&3]), start(s) - start(&b_spans[0]));
        assert_eq!(end(o) - start(o), end(s) - start(s));
    }
}

#[test]
fn skew_beyond_max_adjustment_is_left_and_counted() {
    let (mut p, t) =
        processor(serde_json::json!({"max_adjustment": "1h", "estimator": "per_trace"}));
    let two_hours = 7_200_000 * MS;
    let input = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 10 * MS),
                span(1, 2, 1, Client, MS, 9 * MS),
            ],
        ),
        skewed("b", two_hours, vec![span(1, 3, 2, Server, 2 * MS, 8 * MS)]),
    ];
    let out = by_id(&run(&mut p, Instant::now(), vec![input]));
    assert_eq!(adjustment(&out[&3]), None);
    assert_eq!(start(&out[&3]), two_hours + 2 * MS);
    assert_eq!(counter(&t, "adjustments_over_max_total"), 1.0);
}

#[test]
fn a_full_buffer_releases_the_oldest_trace_uncorrected_and_counts_it() {
    let (mut p, t) = processor(serde_json::json!({"num_traces": 1}));
    let t0 = Instant::now();
    let trace = |id: u8| {
        vec![
            on_host(
                "a",
                vec![
                    span(id, 1, 0, Server, 0, 10 * MS),
                    span(id, 2, 1, Client, MS, 9 * MS),
                ],
            ),
            skewed("b", 50 * MS, vec![span(id, 3, 2, Server, 2 * MS, 8 * MS)]),
        ]
    };
    assert!(p.process(Batch::Traces(trace(1)), t0).unwrap().is_empty());
    let released = p
        .process(Batch::Traces(trace(2)), t0 + Duration::from_millis(1))
        .unwrap();
    let mut out = Vec::new();
    for b in released {
        collect(b, &mut out);
    }
    let spans = by_id(&out);
    assert_eq!(spans.len(), 3, "trace 1 whole, nothing dropped");
    assert!(
        spans
            .values()
            .all(|s| s.trace_id[0] == 1 && adjustment(s).is_none())
    );
    assert_eq!(counter(&t, "traces_uncorrected_total"), 1.0);
    // Trace 2 is still corrected normally.
    let rest = p.flush();
    let mut out = Vec::new();
    for b in rest {
        collect(b, &mut out);
    }
    assert_eq!(adjustment(&by_id(&out)[&3]), Some(-50 * MS));
}

#[test]
fn a_trace_split_over_batches_and_requests_is_corrected_as_one() {
    let (mut p, _) =
        processor(serde_json::json!({"estimator": "per_trace", "decision_wait": "2s"}));
    let t0 = Instant::now();
    let mut now = t0;
    let mut out = Vec::new();
    let parts = vec![
        vec![skewed(
            "b",
            60 * MS,
            vec![span(1, 3, 2, Server, 2 * MS, 8 * MS)],
        )],
        vec![
            on_host("a", vec![span(1, 2, 1, Client, MS, 9 * MS)]),
            on_host("z", vec![span(9, 9, 0, Server, 0, MS)]),
        ],
        vec![on_host("a", vec![span(1, 1, 0, Server, 0, 10 * MS)])],
    ];
    for part in parts {
        for b in p.process(Batch::Traces(part), now).unwrap() {
            collect(b, &mut out);
        }
        now += Duration::from_millis(1500);
    }
    assert!(
        out.is_empty(),
        "each part arrived within decision_wait of the previous"
    );
    // Trace 9 is due 2 s after its only part; trace 1 2 s after its last.
    let d = p.next_deadline().unwrap();
    assert_eq!(d, t0 + Duration::from_millis(3500));
    for b in p.on_deadline(d) {
        collect(b, &mut out);
    }
    assert_eq!(by_id(&out).len(), 1);
    let d = p.next_deadline().unwrap();
    assert_eq!(d, t0 + Duration::from_millis(5000));
    for b in p.on_deadline(d) {
        collect(b, &mut out);
    }
    let spans = by_id(&out);
    assert_eq!(adjustment(&spans[&3]), Some(-60 * MS));
    assert!(inside(&spans[&2], &spans[&3]));
}

#[test]
fn late_spans_are_corrected_against_the_same_reference() {
    let (mut p, _) = processor(serde_json::json!({"decision_wait": "1s"}));
    let t0 = Instant::now();
    let first = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 10 * MS),
                span(1, 2, 1, Client, MS, 9 * MS),
            ],
        ),
        skewed("b", 25 * MS, vec![span(1, 3, 2, Server, 2 * MS, 8 * MS)]),
    ];
    run(&mut p, t0, vec![first]);
    // A straggler from b arrives after the trace was released: no root in sight.
    let late = vec![skewed(
        "b",
        25 * MS,
        vec![span(1, 4, 3, Internal, 3 * MS, 4 * MS)],
    )];
    let out = by_id(&run(&mut p, t0 + Duration::from_secs(5), vec![late]));
    assert_eq!(adjustment(&out[&4]), Some(-25 * MS));
}

/// Sends `n` two-node traces `spacing` apart with b's clock `skew(i)` ahead; latencies are
/// asymmetric (request 0.2–4 ms, response 0.2–0.6 ms). Returns each trace's error and
/// checks every server span lands inside its client.
fn pair_errors(estimator: &str, n: u8, spacing: Duration, skew: impl Fn(u8) -> i64) -> Vec<i64> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut p = processor(serde_json::json!({"estimator": estimator})).0;
    let t0 = Instant::now();
    let mut errors = Vec::new();
    for i in 0..n {
        let up = rng.i64(200 * US..4 * MS);
        let down = rng.i64(200 * US..600 * US);
        let work = rng.i64(MS..5 * MS);
        let trace = vec![
            on_host(
                "a",
                vec![
                    span(i, 1, 0, Server, 0, up + work + down + MS),
                    span(i, 2, 1, Client, 0, up + work + down),
                ],
            ),
            skewed("b", skew(i), vec![span(i, 3, 2, Server, up, up + work)]),
        ];
        let out = by_id(&run(&mut p, t0 + spacing * i as u32, vec![trace]));
        errors.push((adjustment(&out[&3]).unwrap_or(0) + skew(i)).abs());
        assert!(inside(&out[&2], &out[&3]), "trace {i}");
    }
    errors
}

fn worst(errors: &[i64]) -> i64 {
    errors.iter().copied().max().unwrap_or(0)
}

#[test]
fn cross_trace_estimates_converge_on_the_true_offset() {
    // Centring one edge is off by up to ~1.7 ms here; intersecting many edges is not.
    let spacing = Duration::from_millis(50);
    let per_trace = pair_errors("per_trace", 200, spacing, |_| 90 * MS);
    let cross = pair_errors("cross_trace", 200, spacing, |_| 90 * MS);
    assert!(
        worst(&cross[150..]) < 200 * US,
        "cross-trace {}",
        worst(&cross[150..])
    );
    assert!(
        worst(&per_trace[150..]) > 500 * US,
        "per-trace {}",
        worst(&per_trace[150..])
    );
}

#[test]
fn cross_trace_estimates_follow_a_drifting_clock() {
    // 40 ppm over 100 s: b drifts by 4 ms.
    let spacing = Duration::from_millis(400);
    let drift = |i: u8| 90 * MS + (i as i64 * 400 * MS) * 40 / 1_000_000;
    let cross = pair_errors("cross_trace", 250, spacing, drift);
    assert!(worst(&cross[200..]) < 300 * US, "{}", worst(&cross[200..]));
}

#[test]
fn cross_trace_estimates_recover_from_a_clock_step() {
    // b's clock is stepped by 20 ms at trace 100 (an NTP step).
    let step = |i: u8| if i < 100 { 90 * MS } else { 110 * MS };
    let cross = pair_errors("cross_trace", 200, Duration::from_millis(50), step);
    assert!(worst(&cross[150..]) < 200 * US, "{}", worst(&cross[150..]));
}

#[test]
fn a_domain_override_keeps_coarse_database_timestamps_from_dragging_a_clock() {
    // Order (a) commits at 5.7 s; Debezium on the Connect worker (b, clock right) emits
    // db-log-write starting at the commit time as MySQL stamped it, truncated to the
    // second (5.0 s): before its parent started.
    let order = span(1, 1, 0, Server, 5_600 * MS, 5_800 * MS);
    let mut log_write = span(1, 2, 1, Internal, 5_000 * MS, 5_950 * MS);
    log_write.name = "db-log-write".into();
    log_write
        .attributes
        .push(kv("db.server.address", "mysql-0"));
    let read = span(1, 3, 2, Internal, 5_940 * MS, 5_945 * MS);
    let trace = || {
        vec![
            on_host("a", vec![order.clone()]),
            on_host("b", vec![log_write.clone(), read.clone()]),
        ]
    };

    let (mut plain, _) = processor(serde_json::json!({"estimator": "per_trace"}));
    let out = by_id(&run(&mut plain, Instant::now(), vec![trace()]));
    assert_eq!(
        adjustment(&out[&3]),
        Some(600 * MS),
        "without the rule b is dragged"
    );

    let (mut ruled, _) = processor(serde_json::json!({
        "estimator": "per_trace",
        "domain_overrides": [{"span_name": "db-log-write", "domain_attribute": "db.server.address", "coarse": true}],
    }));
    let out = by_id(&run(&mut ruled, Instant::now(), vec![trace()]));
    assert!(out.values().all(|s| adjustment(s).is_none()));
}

#[test]
fn contradicting_edges_are_outvoted_and_counted() {
    let (mut p, t) = processor(serde_json::json!({"estimator": "per_trace"}));
    let input = vec![
        on_host(
            "a",
            vec![
                span(1, 1, 0, Server, 0, 100 * MS),
                span(1, 2, 1, Client, MS, 9 * MS),
                span(1, 4, 1, Client, 11 * MS, 19 * MS),
                span(1, 6, 1, Client, 21 * MS, 29 * MS),
            ],
        ),
        skewed(
            "b",
            40 * MS,
            vec![
                span(1, 3, 2, Server, 2 * MS, 8 * MS),
                span(1, 5, 4, Server, 12 * MS, 18 * MS),
                // A mis-parented span that ran much later.
                span(1, 7, 6, Server, 60 * MS, 62 * MS),
            ],
        ),
    ];
    let out = by_id(&run(&mut p, Instant::now(), vec![input]));
    assert_eq!(adjustment(&out[&3]), Some(-40 * MS));
    assert_eq!(counter(&t, "traces_inconsistent_total"), 1.0);
}

#[test]
fn logs_and_metrics_pass_through() {
    let (mut p, _) = processor(serde_json::json!({}));
    let logs = Batch::Logs(Vec::new());
    assert_eq!(p.process(logs.clone(), Instant::now()).unwrap(), vec![logs]);
}

#[test]
fn config_defaults_and_errors() {
    let cfg = parse(&serde_json::Value::Null).unwrap();
    assert_eq!(cfg.decision_wait, Dur::secs(5));
    assert_eq!(cfg.max_adjustment, Dur::secs(3600));
    assert_eq!(cfg.estimator, Estimator::CrossTrace);
    assert_eq!(cfg.clock_domain_attributes[0], "host.id");
    let e = parse(&serde_json::json!({"decision_wiat": "1s"})).unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("decision_wait"));
    assert!(parse(&serde_json::json!({"estimator": "median"})).is_err());
    assert!(parse(&serde_json::json!({"num_traces": 0})).is_err());
    let e = parse(&serde_json::json!({"domain_overrides": [{"coarse": true}]})).unwrap_err();
    assert_eq!(e.path, vec!["domain_overrides", "0", "span_name"]);
    assert!(validate(&serde_json::json!({"window": "30s", "estimator": "per_trace"})).is_ok());
}
