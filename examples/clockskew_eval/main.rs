//! Evaluation of the `clockskew` processor against Jaeger's clock-skew adjuster.
//!
//! Generates synthetic e-commerce traces (gateway → order → user/product RPCs → MySQL
//! outbox → Debezium → Kafka → payment → notification) over nodes with known clock offsets
//! (±250 ms) and slow drift (±10 ppm), asymmetric network latencies (0.2–4 ms each way,
//! 0.5 % hiccups of 5–50 ms), Debezium's `db-log-write` span stamped by the MySQL server's
//! clock truncated to the second, and per-service export delays. The spans go through the
//! processor in arrival order with simulated time, and through a re-implementation of
//! Jaeger's adjuster (`model/adjuster/clockskew.go`: per trace, a child on another host is
//! centred in its parent when it does not fit; a longer child is only moved to start no
//! earlier than its parent), on the same traces.
//!
//! Reported per method: the residual error of every span's start against its trace's root
//! clock (median, p99, max; the mixed-clock `db-log-write` spans are left out), synchronous
//! (CLIENT → SERVER) children outside their parents and consumers starting before their
//! producers.
//!
//! `cargo run --release --example clockskew_eval [traces] [seed]` (default 20000 traces,
//! seed 42).

mod jaeger;
mod world;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weft::admin::Telemetry;
use weft::data::{Batch, ResourceSpans, Span, span::SpanKind};
use weft::processors::Processor;
use weft::processors::clockskew::{ClockSkew, parse};

use jaeger::{host_of, jaeger_adjust};
use world::{GATEWAY, GenSpan, Generator, NODE_NAMES, Node, SERVICES, recorded, resource_spans};

const US: i64 = 1_000;
const MS: i64 = 1_000_000;
const SEC: i64 = 1_000_000_000;
/// Wall-clock origin of the simulation (2023-11-14T22:13:20Z).
const EPOCH: i64 = 1_700_000_000 * SEC;

// ---------------------------------------------------------------------------------------
// Scoring

#[derive(Default)]
struct Score {
    residuals: Vec<i64>,
    sync_part: Vec<i64>,
    async_part: Vec<i64>,
    sync_outside: usize,
    consumers_early: usize,
    spans: usize,
}

impl Score {
    fn row(&mut self, name: &str) {
        fn pick(v: &mut [i64], q: f64) -> f64 {
            v.sort_unstable();
            let n = v.len();
            v[((n as f64 - 1.0) * q).round() as usize] as f64 / MS as f64
        }
        println!(
            "| {name:<26} | {:>9.3} | {:>9.3} | {:>9.3} | {:>11.3} | {:>12.3} | {:>12} | {:>14} |",
            pick(&mut self.residuals, 0.5),
            pick(&mut self.residuals, 0.99),
            pick(&mut self.residuals, 1.0),
            pick(&mut self.sync_part, 0.5),
            pick(&mut self.async_part, 0.5),
            self.sync_outside,
            self.consumers_early
        );
    }
}

/// `out`: the spans after correction, by (trace, span id).
fn score(spans_truth: &[GenSpan], nodes: &[Node], out: &HashMap<(u32, u64), Span>) -> Score {
    let truth: HashMap<(u32, u64), &GenSpan> =
        spans_truth.iter().map(|s| ((s.trace, s.id), s)).collect();
    let mut score = Score::default();
    for g in spans_truth {
        let Some(s) = out.get(&(g.trace, g.id)) else {
            panic!("span {}/{} lost", g.trace, g.id);
        };
        score.spans += 1;
        if g.parent != 0 {
            let p = &out[&(g.trace, g.parent)];
            let pk = truth[&(g.trace, g.parent)].kind;
            if g.kind == SpanKind::Server
                && pk == SpanKind::Client
                && (s.start_time_unix_nano < p.start_time_unix_nano
                    || s.end_time_unix_nano > p.end_time_unix_nano)
            {
                score.sync_outside += 1;
            }
            if g.kind == SpanKind::Consumer
                && pk == SpanKind::Producer
                && s.start_time_unix_nano < p.start_time_unix_nano
            {
                score.consumers_early += 1;
            }
        }
        if g.db_log_write {
            continue;
        }
        // Ideal: the root (gateway) node's clock at the span's true start.
        let ideal = nodes[SERVICES[GATEWAY].1].clock(g.start);
        let residual = (s.start_time_unix_nano as i64 - ideal).abs();
        score.residuals.push(residual);
        if g.asynchronous {
            score.async_part.push(residual);
        } else {
            score.sync_part.push(residual);
        }
    }
    score
}

fn index(resource_spans: &[ResourceSpans]) -> HashMap<(u32, u64), Span> {
    let mut out = HashMap::new();
    for rs in resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let trace = u32::from_be_bytes([
                    s.trace_id[12],
                    s.trace_id[13],
                    s.trace_id[14],
                    s.trace_id[15],
                ]);
                let id = u64::from_be_bytes(s.span_id.as_slice().try_into().unwrap_or([0; 8]));
                if out.insert((trace, id), s.clone()).is_some() {
                    panic!("span {trace}/{id} duplicated");
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let traces: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let seed: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(42);
    let mut rng = fastrand::Rng::with_seed(seed);

    let nodes: Vec<Node> = NODE_NAMES
        .iter()
        .map(|&name| Node {
            name,
            offset: rng.i64(-250 * MS..=250 * MS),
            drift_ppm: rng.f64() * 20.0 - 10.0,
        })
        .collect();

    let mut g = Generator {
        rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
        spans: Vec::new(),
        trace: 0,
        next_id: 0,
        asynchronous: false,
    };
    // ~33 checkouts per second.
    let mut t = 0i64;
    for trace in 0..traces {
        g.trace = trace;
        g.next_id = 0;
        t += g.between(MS, 60 * MS);
        g.checkout(t);
    }
    let spans_truth = std::mem::take(&mut g.spans);

    // Each service exports a trace's spans in one request 0.1–2 s after its last span ended.
    let mut groups: HashMap<(u32, usize), (i64, Vec<Span>)> = HashMap::new();
    for s in &spans_truth {
        let e = groups
            .entry((s.trace, s.service))
            .or_insert((0, Vec::new()));
        e.0 = e.0.max(s.end);
        e.1.push(recorded(s, &nodes));
    }
    let mut arrivals: Vec<(i64, usize, Vec<Span>)> = groups
        .into_iter()
        .map(|((_, service), (end, spans))| (end + g.between(100 * MS, 2 * SEC), service, spans))
        .collect();
    arrivals.sort_by_key(|a| (a.0, a.1, a.2[0].span_id.clone(), a.2[0].trace_id.clone()));
    let input: Vec<(i64, ResourceSpans)> = arrivals
        .into_iter()
        .map(|(at, service, spans)| (at, resource_spans(service, spans)))
        .collect();

    println!(
        "# clockskew evaluation: {traces} traces, {} spans, seed {seed}",
        spans_truth.len()
    );
    println!();
    println!("| node | clock offset (ms) | drift (ppm) |");
    println!("|---|---:|---:|");
    for n in &nodes {
        println!(
            "| {} | {:+.3} | {:+.1} |",
            n.name,
            n.offset as f64 / MS as f64,
            n.drift_ppm
        );
    }
    println!();

    // Uncorrected.
    let raw = index(&input.iter().map(|(_, rs)| rs.clone()).collect::<Vec<_>>());

    // Jaeger's adjuster, per complete trace.
    let mut per_trace: HashMap<u32, Vec<(String, Span)>> = HashMap::new();
    for (_, rs) in &input {
        let host = host_of(rs);
        for s in &rs.scope_spans[0].spans {
            let trace = u32::from_be_bytes([
                s.trace_id[12],
                s.trace_id[13],
                s.trace_id[14],
                s.trace_id[15],
            ]);
            per_trace
                .entry(trace)
                .or_default()
                .push((host.clone(), s.clone()));
        }
    }
    let mut jaeger = HashMap::new();
    for (trace, mut spans) in per_trace {
        jaeger_adjust(&mut spans);
        for (_, s) in spans {
            let id = u64::from_be_bytes(s.span_id.as_slice().try_into().unwrap_or([0; 8]));
            jaeger.insert((trace, id), s);
        }
    }

    println!(
        "| method                     | median ms |    p99 ms |    max ms | median sync | median async | sync outside | consumer early |"
    );
    println!(
        "|----------------------------|----------:|----------:|----------:|------------:|-------------:|-------------:|---------------:|"
    );
    score(&spans_truth, &nodes, &raw).row("uncorrected");
    score(&spans_truth, &nodes, &jaeger).row("Jaeger adjuster (baseline)");
    let mut stats = Vec::new();
    for estimator in ["per_trace", "cross_trace"] {
        let (out, s) = run_processor(estimator, &input);
        score(&spans_truth, &nodes, &index(&out)).row(&format!("weft clockskew {estimator}"));
        stats.push(s);
    }
    println!();
    for s in stats {
        println!("Processor metrics, {s}.");
    }
    println!();
    println!(
        "Residual: |corrected start − root node's clock at the true start| over all spans \
         except db-log-write (its start is MySQL's clock truncated to the second). \
         \"sync\": the gateway request's RPC tree; \"async\": spans reached through \
         Debezium and Kafka. \"sync outside\": SERVER spans not inside their CLIENT parent; \
         \"consumer early\": CONSUMER spans starting before their PRODUCER parent."
    );
}

fn take(batches: Vec<Batch>, out: &mut Vec<ResourceSpans>) {
    for b in batches {
        if let Batch::Traces(rs) = b {
            out.extend(rs);
        }
    }
}

/// Feeds the arrivals through the processor in 200 ms batches with simulated time.
fn run_processor(estimator: &str, input: &[(i64, ResourceSpans)]) -> (Vec<ResourceSpans>, String) {
    let cfg = parse(&serde_json::json!({
        "estimator": estimator,
        "domain_overrides": [{
            "span_name": "db-log-write",
            "domain_attribute": "db.server.address",
            "coarse": true,
        }],
    }))
    .expect("valid config");
    let telemetry = Telemetry::new();
    let mut p = ClockSkew::new(&cfg, "clockskew", &telemetry);
    let start = Instant::now();
    let at = |t: i64| start + Duration::from_nanos(t.max(0) as u64);
    let mut out = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let tick = input[i].0 - input[i].0.rem_euclid(200 * MS) + 200 * MS;
        let mut batch = Vec::new();
        while i < input.len() && input[i].0 < tick {
            batch.push(input[i].1.clone());
            i += 1;
        }
        let now = at(tick);
        while let Some(d) = p.next_deadline() {
            if d > now {
                break;
            }
            take(p.on_deadline(d), &mut out);
        }
        take(
            p.process(Batch::Traces(batch), now).unwrap_or_default(),
            &mut out,
        );
    }
    while let Some(d) = p.next_deadline() {
        take(p.on_deadline(d), &mut out);
    }
    take(p.flush(), &mut out);
    let metric = |what: &str| {
        telemetry
            .metrics
            .value(
                &format!("weft_processor_clockskew_{what}"),
                &[("component", "clockskew")],
            )
            .unwrap_or(0.0)
    };
    let stats = format!(
        "{estimator}: traces {} adjusted spans {} inconsistent {} uncorrected {} over max {}",
        metric("traces_total"),
        metric("spans_adjusted_total"),
        metric("traces_inconsistent_total"),
        metric("traces_uncorrected_total"),
        metric("adjustments_over_max_total"),
    );
    (out, stats)
}
