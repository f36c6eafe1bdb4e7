//! Client metadata end to end: the `otlp` receiver's `include_metadata` and the
//! `attributes` / `resource` action `from_context`. A tenant sent as an OTLP/HTTP header and
//! as OTLP/gRPC metadata arrives at the backend as an attribute — on the forwarding fast
//! path (attributes edited on the wire) and on the decoded path — and is absent when
//! `include_metadata` is off or when the processor comes after `batch`, unless `batch`
//! partitions by that key (`metadata_keys`).

mod support;

use std::time::Duration;

use support::otlp_sink::Sink;
use support::samples::traces;
use support::weft::{Running, config, grpc_export, start};
use weft::data::*;

/// Sends `body` as the trace Export request over gRPC with `x-tenant` metadata.
async fn grpc_with_tenant(endpoint: String, body: Vec<u8>, tenant: &str, gzip: bool) {
    grpc_export(
        endpoint,
        Signal::Traces,
        body,
        &[("x-tenant", tenant)],
        gzip,
    )
    .await
    .unwrap();
}

/// POSTs `body` as OTLP/HTTP protobuf with an `X-Tenant` header; returns the status.
async fn http_with_tenant(base: &str, body: Vec<u8>, tenant: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .header("X-Tenant", tenant)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn exporter(sink: &Sink) -> String {
    format!(
        "  otlp/sink:\n    endpoint: {}\n    compression: none\n    tls:\n      insecure: true\n",
        sink.endpoint()
    )
}

/// `from_context` only: the attributes processor edits raw batches (no decoding).
const TENANT: &str = "  attributes/tenant:\n    actions:\n      - key: tenant\n        from_context: metadata.x-tenant\n        action: insert\n";
/// A convert the wire path does not take: this processor decodes.
const DECODE: &str = "  attributes/decode:\n    actions:\n      - key: tenant\n        from_context: metadata.x-tenant\n        action: insert\n      - key: n\n        converted_type: int\n        action: convert\n";
/// `resource` with from_context (always on decoded batches).
const RESOURCE: &str = "  resource/tenant:\n    attributes:\n      - key: tenant\n        from_context: x-tenant\n        action: upsert\n";
const BATCH: &str = "  batch:\n    send_batch_size: 1000\n    timeout: 50ms\n";

/// weft with the given processors in one traces pipeline, `include_metadata` on both
/// protocols as given.
async fn weft(processors: &str, chain: &str, sink: &Sink, include_metadata: bool) -> Running {
    let yaml = config(
        processors,
        &exporter(sink),
        &format!(
            "    traces:\n      receivers: [otlp]\n      processors: [{chain}]\n      exporters: [otlp/sink]\n"
        ),
    )
    .replace(
        "endpoint: 127.0.0.1:0\n",
        &format!("endpoint: 127.0.0.1:0\n        include_metadata: {include_metadata}\n"),
    );
    assert_eq!(yaml.matches("include_metadata").count(), 2, "{yaml}");
    start(&yaml).await
}

/// Tenant of every span the sink got, by trace id's first byte group (the sample number).
fn span_tenants(sink: &Sink) -> Vec<(u64, Option<String>)> {
    let resources = sink.resource_spans();
    let mut out: Vec<_> = resources
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| {
            let t = u64::from_be_bytes(s.trace_id[..8].try_into().unwrap());
            (t, attr_str(&s.attributes, "tenant").map(String::from))
        })
        .collect();
    out.sort();
    out
}

fn resource_tenants(sink: &Sink) -> Vec<Option<String>> {
    let mut out: Vec<_> = sink
        .resource_spans()
        .into_iter()
        .map(|r| {
            r.resource
                .and_then(|r| attr_str(&r.attributes, "tenant").map(String::from))
        })
        .collect();
    out.sort();
    out
}

/// Sends trace 1 over HTTP as `acme`, trace 2 over gRPC as `globex` and trace 3 over
/// gzip-compressed gRPC as `initech` (2 spans each); waits for the 6 spans.
async fn send_three(w: &Running, sink: &Sink) {
    assert_eq!(
        http_with_tenant(&w.http(), traces(1, 1, 2).encode_proto(), "acme").await,
        200
    );
    grpc_with_tenant(w.grpc(), traces(2, 1, 2).encode_proto(), "globex", false).await;
    grpc_with_tenant(w.grpc(), traces(3, 1, 2).encode_proto(), "initech", true).await;
    assert_eq!(sink.wait_for_items(6, Duration::from_secs(10)).await, 6);
}

fn tenants(t: &[(u64, &str)]) -> Vec<(u64, Option<String>)> {
    let mut out: Vec<_> = t
        .iter()
        .flat_map(|(n, s)| [(*n, Some(s.to_string())), (*n, Some(s.to_string()))])
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_header_becomes_an_attribute_on_the_fast_path() {
    let sink = Sink::start().await;
    let w = weft(
        &format!("{TENANT}{BATCH}"),
        "attributes/tenant, batch",
        &sink,
        true,
    )
    .await;
    send_three(&w, &sink).await;
    assert_eq!(
        span_tenants(&sink),
        tenants(&[(1, "acme"), (2, "globex"), (3, "initech")])
    );
    // The pipeline stayed undecoded: a request only a full decode refuses (a span name
    // that is not UTF-8) is accepted.
    let mut bad = traces(4, 1, 1).encode_proto();
    let i = bad.windows(4).position(|w| w == b"op-0").unwrap();
    bad[i] = 0xff;
    assert!(Batch::decode_proto(Signal::Traces, &bad).is_err());
    assert_eq!(http_with_tenant(&w.http(), bad, "acme").await, 200);
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_header_becomes_an_attribute_on_decoded_data() {
    let sink = Sink::start().await;
    let w = weft(
        &format!("{DECODE}{RESOURCE}{BATCH}"),
        "attributes/decode, resource/tenant, batch",
        &sink,
        true,
    )
    .await;
    send_three(&w, &sink).await;
    assert_eq!(
        span_tenants(&sink),
        tenants(&[(1, "acme"), (2, "globex"), (3, "initech")])
    );
    assert_eq!(
        resource_tenants(&sink),
        [
            Some("acme".to_string()),
            Some("globex".to_string()),
            Some("initech".to_string())
        ]
    );
    w.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_include_metadata_or_after_batch_there_is_no_tenant() {
    let sink = Sink::start().await;
    let off = weft(
        &format!("{TENANT}{DECODE}{BATCH}"),
        "attributes/tenant, attributes/decode, batch",
        &sink,
        false,
    )
    .await;
    send_three(&off, &sink).await;
    assert_eq!(span_tenants(&sink).len(), 6);
    assert!(
        span_tenants(&sink).iter().all(|(_, t)| t.is_none()),
        "include_metadata off: {:?}",
        span_tenants(&sink)
    );
    off.service.shutdown().await;

    let sink = Sink::start().await;
    let after = weft(
        &format!("{TENANT}{BATCH}"),
        "batch, attributes/tenant",
        &sink,
        true,
    )
    .await;
    send_three(&after, &sink).await;
    assert!(
        span_tenants(&sink).iter().all(|(_, t)| t.is_none()),
        "batch merges clients: the context ends there: {:?}",
        span_tenants(&sink)
    );
    after.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_metadata_keys_keeps_tenants_apart_and_passes_them_on() {
    let sink = Sink::start().await;
    let keyed =
        "  batch:\n    send_batch_size: 1000\n    timeout: 50ms\n    metadata_keys: [X-Tenant]\n";
    let w = weft(
        &format!("{TENANT}{keyed}"),
        "batch, attributes/tenant",
        &sink,
        true,
    )
    .await;
    send_three(&w, &sink).await;
    assert_eq!(
        span_tenants(&sink),
        tenants(&[(1, "acme"), (2, "globex"), (3, "initech")]),
        "the partition's key reaches the processor after batch"
    );
    for b in sink.batches() {
        let Batch::Traces(v) = &b else { continue };
        let mut seen: Vec<_> = v
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| attr_str(&s.attributes, "tenant").map(String::from))
            .collect();
        seen.dedup();
        assert_eq!(seen.len(), 1, "one tenant per exported batch: {seen:?}");
    }
    w.service.shutdown().await;
}
