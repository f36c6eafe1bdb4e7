//! The forwarding fast path in a running weft: requests a pipeline only forwards (batch →
//! otlp) arrive at the backend exactly as sent, without being decoded on the way (shown by
//! data only a full decode rejects going through; `attributes` edits such data on the wire),
//! while a pipeline with a content processor that needs decoded spans, or a receiver shared
//! with one, still decodes and sees the spans.

mod support;

use std::time::Duration;

use support::otlp_sink::Sink;
use support::weft::{config, start};
use weft::data::*;

fn spans(n: usize, first: u64, service: &str) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(string_value(service)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            spans: (0..n as u64)
                .map(|i| Span {
                    trace_id: vec![3; 16],
                    span_id: (first + i).to_be_bytes().to_vec(),
                    parent_span_id: if i > 0 {
                        first.to_be_bytes().to_vec()
                    } else {
                        vec![]
                    },
                    name: format!("op{i}"),
                    kind: 2,
                    start_time_unix_nano: 1_000_000 + i,
                    end_time_unix_nano: 2_000_000 + i,
                    attributes: vec![KeyValue {
                        key: "http.route".into(),
                        value: Some(AnyValue {
                            value: Some(string_value("/x")),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        }],
        schema_url: String::new(),
    }])
}

/// Sends bytes as the trace Export request over gRPC.
async fn grpc_raw(endpoint: String, body: Vec<u8>) -> Result<(), tonic::Status> {
    support::weft::grpc_export(endpoint, Signal::Traces, body, &[], false).await
}

async fn http_proto(base: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn exporter(name: &str, sink: &Sink) -> String {
    format!(
        "  otlp/{name}:\n    endpoint: {}\n    compression: none\n    tls:\n      insecure: true\n",
        sink.endpoint()
    )
}

const BATCH: &str = "  batch:\n    send_batch_size: 1000\n    timeout: 50ms\n";
/// `attributes` with an insert: edits raw batches on the wire (no decoding).
const ATTRIBUTES: &str =
    "  attributes:\n    actions:\n      - key: env\n        value: test\n        action: insert\n";
/// `attributes` with a convert: only on decoded spans, so its pipeline decodes.
const CONVERT: &str = "  attributes/convert:\n    actions:\n      - key: n\n        converted_type: int\n        action: convert\n";

/// The resource messages of every batch the sink got, each re-encoded: prost's encoding is
/// canonical, so equal bytes here mean equal messages, field for field.
fn resources_as_bytes(batches: &[Batch]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = batches
        .iter()
        .flat_map(|b| match b {
            Batch::Traces(v) => v.clone(),
            _ => vec![],
        })
        .map(|r| Batch::Traces(vec![r]).encode_proto())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_requests_arrive_as_sent() {
    let sink = Sink::start().await;
    let yaml = config(
        BATCH,
        &exporter("sink", &sink),
        "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp/sink]\n",
    );
    let weft = start(&yaml).await;
    let sent = [spans(3, 1, "a"), spans(5, 10, "b"), spans(2, 100, "c")];
    grpc_raw(weft.grpc(), sent[0].encode_proto()).await.unwrap();
    grpc_raw(weft.grpc(), sent[1].encode_proto()).await.unwrap();
    assert_eq!(http_proto(&weft.http(), sent[2].encode_proto()).await, 200);
    assert_eq!(sink.wait_for_items(10, Duration::from_secs(10)).await, 10);
    assert_eq!(
        resources_as_bytes(&sink.batches()),
        resources_as_bytes(&sent),
        "every resource message arrives byte for byte"
    );
    // The batch processor merged the requests by concatenation: what the sink decoded
    // re-encodes to the concatenated requests (in arrival order when it was one batch).
    let got = sink.batches();
    if got.len() == 1 {
        let concatenated: Vec<u8> = sent.iter().flat_map(|b| b.encode_proto()).collect();
        assert_eq!(got[0].encode_proto(), concatenated);
    }
    weft.service.shutdown().await;
}

/// A span whose name is not UTF-8: well-framed, so the wire scan accepts it, but a full
/// decode refuses it.
fn invalid_utf8_request() -> Vec<u8> {
    let mut bytes = spans(1, 1, "zzzz").encode_proto();
    let i = bytes.windows(4).position(|w| w == b"zzzz").unwrap();
    bytes[i] = 0xff;
    assert!(Batch::decode_proto(Signal::Traces, &bytes).is_err());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_pipeline_does_not_decode_but_a_content_pipeline_does() {
    let sink = Sink::start().await;
    let forward = start(&config(
        BATCH,
        &exporter("sink", &sink),
        "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp/sink]\n",
    ))
    .await;
    // Forwarded undecoded: accepted (the backend, which decodes, is the one to refuse it).
    assert_eq!(
        http_proto(&forward.http(), invalid_utf8_request()).await,
        200
    );
    grpc_raw(forward.grpc(), invalid_utf8_request())
        .await
        .unwrap();
    forward.service.shutdown().await;

    // `attributes` editing on the wire keeps the pipeline undecoded too.
    let wire = start(&config(
        &format!("{ATTRIBUTES}{BATCH}"),
        &exporter("sink", &sink),
        "    traces:\n      receivers: [otlp]\n      processors: [attributes, batch]\n      exporters: [otlp/sink]\n",
    ))
    .await;
    assert_eq!(http_proto(&wire.http(), invalid_utf8_request()).await, 200);
    wire.service.shutdown().await;

    let content = start(&config(
        &format!("{CONVERT}{BATCH}"),
        &exporter("sink", &sink),
        "    traces:\n      receivers: [otlp]\n      processors: [attributes/convert, batch]\n      exporters: [otlp/sink]\n",
    ))
    .await;
    assert_eq!(
        http_proto(&content.http(), invalid_utf8_request()).await,
        400
    );
    let err = grpc_raw(content.grpc(), invalid_utf8_request())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    content.service.shutdown().await;
}

fn has_env(b: &Batch) -> bool {
    match b {
        Batch::Traces(v) => v
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .all(|s| attr_str(&s.attributes, "env") == Some("test")),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_processors_see_decoded_spans_even_beside_a_forwarding_pipeline() {
    let (plain, stamped) = (Sink::start().await, Sink::start().await);
    // One receiver feeding a forwarding pipeline and one with `attributes`.
    let yaml = config(
        &format!("{ATTRIBUTES}{BATCH}"),
        &format!(
            "{}{}",
            exporter("plain", &plain),
            exporter("stamped", &stamped)
        ),
        "    traces/forward:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp/plain]\n    traces/stamp:\n      receivers: [otlp]\n      processors: [attributes, batch]\n      exporters: [otlp/stamped]\n",
    );
    let weft = start(&yaml).await;
    let sent = spans(4, 1, "svc");
    grpc_raw(weft.grpc(), sent.encode_proto()).await.unwrap();
    assert_eq!(http_proto(&weft.http(), sent.encode_proto()).await, 200);
    assert_eq!(stamped.wait_for_items(8, Duration::from_secs(10)).await, 8);
    assert_eq!(plain.wait_for_items(8, Duration::from_secs(10)).await, 8);
    assert!(
        stamped.batches().iter().all(has_env),
        "attributes saw every span"
    );
    assert!(
        !plain.batches().iter().any(has_env),
        "the other pipeline is untouched"
    );
    assert_eq!(
        resources_as_bytes(&plain.batches()),
        resources_as_bytes(&[sent.clone(), sent])
    );
    weft.service.shutdown().await;
}
