//! The `otlp` exporter's two send paths against real gRPC servers. Uncompressed sends write
//! the message's chunks as they are, with weft's own unary call
//! (src/exporters/grpc_unary.rs); compressed sends go through tonic's client codec. Both
//! must deliver identical content, send the same headers, and classify every answer the
//! same way — including HTTP errors that carry no gRPC status at all (one documented
//! exception: a trailers-only OK).

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use support::otlp_sink::Sink;
use support::samples;
use weft::data::raw::RawBatch;
use weft::data::*;
use weft::exporters::otlp::{OtlpGrpcConfig, OtlpGrpcExporter, build_from};
use weft::exporters::{ExportError, Exporter};

/// `compression` may carry a gzip level after a colon (`gzip:9`): `compression_params`.
fn exporter(endpoint: &str, compression: &str) -> OtlpGrpcExporter {
    let (compression, level) = match compression.split_once(':') {
        Some((c, l)) => (c, serde_json::json!({"level": l.parse::<i32>().unwrap()})),
        None => (compression, serde_json::json!({})),
    };
    let cfg: OtlpGrpcConfig = serde_json::from_value(serde_json::json!({
        "endpoint": endpoint,
        "compression": compression,
        "compression_params": level,
        "tls": {"insecure": true},
        "headers": {"X-Tenant": "shop-eu"},
    }))
    .unwrap();
    build_from(&cfg, "otlp/test").unwrap()
}

/// Two requests' bytes back to back: what the fast path's batch holds after a merge.
fn raw(a: &Batch, b: &Batch) -> Batch {
    let mut bytes = a.encode_proto();
    bytes.extend(b.encode_proto());
    Batch::Raw(RawBatch::new(Signal::Traces, Bytes::from(bytes)).unwrap())
}

/// A short label for an answer, to compare the two paths.
fn kind(r: &Result<(), ExportError>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(ExportError::Retryable { .. }) => "retryable".into(),
        Err(ExportError::Permanent { reason, .. }) => format!("permanent {reason}"),
        Err(ExportError::Partial { .. }) => "partial".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_delivers_decoded_and_raw_batches_intact() {
    let sink = Sink::start().await;
    let (a, b) = (samples::traces(1, 3, 4), samples::traces(10, 2, 5));
    for compression in ["none", "gzip", "gzip:9", "gzip:-1", "zstd"] {
        let e = exporter(&sink.endpoint(), compression);
        let before = sink.batches().len();
        e.send(&a).await.unwrap();
        e.send(&raw(&a, &b)).await.unwrap();
        let got = sink.batches();
        assert_eq!(got.len(), before + 2, "{compression}");
        assert_eq!(got[before], a, "{compression}: decoded batch");
        let mut merged = a.clone();
        merged.merge(b.clone());
        assert_eq!(got[before + 1], merged, "{compression}: raw batch");
    }
}

#[tokio::test]
async fn compression_params_level_is_checked_at_build() {
    let build = |v: serde_json::Value| {
        let cfg: OtlpGrpcConfig = serde_json::from_value(v).unwrap();
        build_from(&cfg, "otlp/test").err().map(|e| e.to_string())
    };
    let ok = build(
        serde_json::json!({"endpoint": "127.0.0.1:4317", "compression_params": {"level": 6}}),
    );
    assert_eq!(ok, None);
    let e = build(
        serde_json::json!({"endpoint": "127.0.0.1:4317", "compression_params": {"level": 0}}),
    );
    assert!(
        e.unwrap()
            .contains("compression_params.level 0 is not a gzip level")
    );
    let e = build(
        serde_json::json!({"endpoint": "127.0.0.1:4317", "compression": "zstd", "compression_params": {"level": 3}}),
    );
    assert!(e.unwrap().contains("supported with compression: gzip only"));
    let e = build(serde_json::json!({"endpoint": "127.0.0.1:4317", "compression": "brotli"}));
    assert!(
        e.unwrap()
            .contains("unsupported compression \"brotli\": use gzip, zstd, none")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_answers_are_classified_alike_with_and_without_compression() {
    let batch = samples::traces(1, 1, 2);
    let mut answers = Vec::new();
    for compression in ["none", "gzip"] {
        let sink = Sink::start().await;
        let e = exporter(&sink.endpoint(), compression);
        let mut got = Vec::new();
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::InvalidArgument,
            tonic::Code::ResourceExhausted,
            tonic::Code::Unauthenticated,
        ] {
            sink.state.lock().unwrap().fail = Some((code, 1));
            got.push(kind(&e.send(&batch).await));
        }
        got.push(kind(&e.send(&batch).await));
        sink.stop();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        got.push(kind(&e.send(&batch).await));
        answers.push(got);
    }
    assert_eq!(
        answers[0],
        vec![
            "retryable",
            "permanent grpc_invalidargument",
            "permanent grpc_resourceexhausted",
            "permanent grpc_unauthenticated",
            "ok",
            "retryable", // the backend is gone: a transport error
        ]
    );
    assert_eq!(answers[0], answers[1], "none vs gzip");
}

/// A plain HTTP/2 server (a proxy in front of the backend, say) answering with what is
/// scripted per request, and recording what it got.
#[derive(Default)]
struct Seen {
    headers: Vec<http::HeaderMap>,
    bodies: Vec<Bytes>,
}

async fn http2_stand_in(answers: Vec<(u16, Option<&'static str>)>) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (s, answers) = (s.clone(), answers.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut seen = s.lock().unwrap();
            seen.headers.push(parts.headers);
            seen.bodies.push(body);
            let (status, grpc_status) = answers.lock().unwrap().next().unwrap_or((500, None));
            let mut r = http::Response::builder()
                .status(status)
                .header("content-type", "application/grpc");
            if let Some(g) = grpc_status {
                // A trailers-only answer: the status is in the headers.
                r = r
                    .header("grpc-status", g)
                    .header("grpc-message", "from%20headers");
            }
            r.body(axum::body::Body::empty()).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_only_answers_and_bare_http_errors_map_per_the_grpc_spec() {
    let batch = samples::traces(1, 1, 3);
    let answers = vec![
        (200, Some("0")),  // trailers-only OK
        (200, Some("14")), // trailers-only UNAVAILABLE
        (200, Some("3")),  // trailers-only INVALID_ARGUMENT
        (503, None),       // a proxy's 503: UNAVAILABLE
        (429, None),       // UNAVAILABLE too
        (404, None),       // UNIMPLEMENTED
        (400, None),       // INTERNAL
        (200, None),       // a stream that ends without any status: UNKNOWN
    ];
    let mut results = Vec::new();
    for compression in ["none", "gzip", "zstd"] {
        let (url, seen) = http2_stand_in(answers.clone()).await;
        let e = exporter(&url, compression);
        let mut got = Vec::new();
        for _ in 0..answers.len() {
            got.push(kind(&e.send(&batch).await));
        }
        results.push(got);
        let seen = seen.lock().unwrap();
        let h = &seen.headers[0];
        assert_eq!(h["content-type"], "application/grpc", "{compression}");
        assert_eq!(h["te"], "trailers", "{compression}");
        assert_eq!(h["x-tenant"], "shop-eu", "{compression}");
        // The gRPC frame: compressed flag, big-endian length, then the request.
        let body = &seen.bodies[0];
        let msg = batch.encode_proto();
        assert_eq!(&body[1..5], &((body.len() - 5) as u32).to_be_bytes());
        if compression == "none" {
            assert_eq!(body[0], 0);
            assert_eq!(&body[5..], &msg[..]);
            assert!(!h.contains_key("grpc-encoding"));
        } else if compression == "zstd" {
            assert_eq!(body[0], 1);
            assert_eq!(h["grpc-encoding"], "zstd");
        } else {
            assert_eq!(body[0], 1);
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[5..]), &mut plain)
                .expect("a gzip message");
            assert_eq!(plain, msg);
            assert_eq!(h["grpc-encoding"], "gzip");
        }
    }
    assert_eq!(
        results[0],
        vec![
            "ok",
            "retryable",
            "permanent grpc_invalidargument",
            "retryable",
            "retryable",
            "permanent grpc_unimplemented",
            "permanent grpc_internal",
            "permanent grpc_unknown",
        ]
    );
    // tonic's client insists on a response message even when the status is OK, and
    // reports a trailers-only OK as INTERNAL ("Missing response message"); weft's own
    // path (uncompressed and gzip) takes the server at its word (OTLP's response carries
    // nothing needed), so the batch is not dropped as failed. zstd still goes through
    // tonic.
    assert_eq!(results[0], results[1], "none vs gzip");
    assert_eq!(results[2][0], "permanent grpc_internal");
    assert_eq!(results[0][1..], results[2][1..], "none vs zstd");
}

/// `batch` with the byte after the first `op-1` span name's prefix made invalid UTF-8: what
/// the fast path's shallow scan lets through.
fn not_utf8(batch: &Batch) -> Vec<u8> {
    let mut bytes = batch.encode_proto();
    let i = bytes.windows(4).position(|w| w == b"op-1").unwrap();
    bytes[i + 3] = 0xff;
    bytes
}

/// A request a real gRPC server cannot unmarshal (a string that is not UTF-8, which the
/// fast path forwards unchecked): tonic answers INTERNAL for the whole request. Through
/// the delivery layer only the resource message that does not decode is dropped (and
/// counted); the requests merged with it are sent again and arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_backend_cannot_unmarshal_costs_only_its_bad_resource() {
    use std::time::{Duration, Instant};
    use weft::admin::Telemetry;
    use weft::delivery::{Delivery, DeliveryConfig};
    let sink = Sink::start().await;
    let (a, bad, c) = (
        samples::traces(1, 2, 3),
        samples::traces(20, 2, 2),
        samples::traces(40, 3, 1),
    );
    let mut bytes = a.encode_proto();
    bytes.extend(not_utf8(&bad));
    bytes.extend(c.encode_proto());
    let merged = Batch::Raw(RawBatch::new(Signal::Traces, Bytes::from(bytes)).unwrap());
    assert_eq!(merged.item_count(), 6 + 4 + 3);

    let e = exporter(&sink.endpoint(), "none");
    let alone = e.send(&merged).await;
    assert_eq!(kind(&alone), "permanent grpc_internal", "{alone:?}");
    assert!(sink.batches().is_empty());

    let t = Telemetry::new();
    let d = Delivery::start("otlp", Arc::new(e), DeliveryConfig::default(), None, &t)
        .await
        .unwrap();
    d.handle().push(Arc::new(merged), false).await.unwrap();
    d.shutdown(Instant::now() + Duration::from_secs(10)).await;
    let mut want = a.clone();
    want.merge(c.clone());
    assert_eq!(sink.batches(), vec![want], "the good requests, once");
    let value = |name: &str, labels: &[(&str, &str)]| t.metrics.value(name, labels);
    assert_eq!(
        value(
            "weft_exporter_send_failed_spans_total",
            &[("component", "otlp"), ("reason", "undecodable")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value("weft_exporter_sent_spans_total", &[("component", "otlp")]),
        Some(9.0)
    );
}
