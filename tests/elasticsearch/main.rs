//! The elasticsearch exporter against the `_bulk` stand-in: exact documents for both
//! mappings, per-item retries through the delivery layer (every document indexed exactly
//! once), mapping errors, failover, whole-request 429 with Retry-After, 413 splitting, and
//! the ready-made pipeline from OTLP in to Elasticsearch out.

#[path = "../support/mod.rs"]
mod support;

mod exporter;
mod fixtures;
mod mapping;
mod pipeline;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::elasticsearch::Elasticsearch;
use weft::admin::Telemetry;
use weft::components::BuildContext;
use weft::config::{Dur, Source};
use weft::data::*;
use weft::delivery::{Delivery, DeliveryConfig, QueueConfig, RetryConfig};
use weft::exporters::elasticsearch::bulk::{Encoder, Op};
use weft::exporters::elasticsearch::mapping::Mode;
use weft::exporters::{ExportError, Exporter};

use fixtures::*;

fn init() {
    weft::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn exporter(cfg: Value, t: &Telemetry) -> Arc<dyn Exporter> {
    let ctx = BuildContext {
        id: "elasticsearch".into(),
        signal: None,
        telemetry: t.clone(),
        shared: Default::default(),
        extensions: Default::default(),
    };
    match weft::exporters::elasticsearch::build(&cfg, &ctx) {
        Ok(e) => e,
        Err(e) => panic!("build: {e}"),
    }
}

/// `n` log records with bodies `line {first}` … `line {first+n-1}`.
fn logs(first: usize, n: usize) -> Batch {
    let recs = (first..first + n)
        .map(|i| LogRecord {
            time_unix_nano: T0 + i as u64,
            body: Some(AnyValue {
                value: Some(s(&format!("line {i}"))),
            }),
            ..Default::default()
        })
        .collect();
    Batch::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s("checkout"))],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: recs,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

/// Bodies of every stored document, sorted.
fn stored_bodies(es: &Elasticsearch, index: &str) -> Vec<String> {
    let mut v: Vec<String> = es
        .docs(index)
        .iter()
        .map(|d| d["body"]["text"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

fn expected_bodies(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
    v.sort();
    v
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fast_delivery() -> DeliveryConfig {
    DeliveryConfig {
        sending_queue: QueueConfig {
            num_consumers: 4,
            ..Default::default()
        },
        retry_on_failure: RetryConfig {
            initial_interval: Dur::millis(10),
            max_interval: Dur::millis(50),
            max_elapsed_time: Dur::secs(120),
            ..Default::default()
        },
        timeout: Some(Dur::secs(10)),
    }
}

const LOGS_INDEX: &str = "logs-generic.otel-default";
