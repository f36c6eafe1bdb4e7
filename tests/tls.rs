//! TLS and mutual TLS on both receivers and both OTLP exporters: weft → weft over gRPC and
//! over HTTP with client certificates, and a client without a certificate refused.
//! Certificates in tests/support/tls/ (a test CA, valid for 100 years, localhost/127.0.0.1).

mod support;

use std::time::Duration;

use support::otlp_sink::Sink;
use support::weft::{post, start};
use weft::data::*;

fn tls_dir() -> String {
    format!("{}/tests/support/tls", env!("CARGO_MANIFEST_DIR"))
}

fn spans(n: usize) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: (0..n)
                .map(|i| Span {
                    trace_id: vec![5; 16],
                    span_id: (i as u64 + 1).to_be_bytes().to_vec(),
                    name: "tls".into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// A weft that receives over TLS (gRPC and HTTP, client certificates required) and forwards
/// to the sink.
fn backend_yaml(sink: &Sink) -> String {
    let d = tls_dir();
    format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:0\n        tls:\n          cert_file: {d}/server.pem\n          key_file: {d}/server.key\n          client_ca_file: {d}/ca.pem\n      http:\n        endpoint: 127.0.0.1:0\n        tls:\n          cert_file: {d}/server.pem\n          key_file: {d}/server.key\n          client_ca_file: {d}/ca.pem\nexporters:\n  otlp:\n    endpoint: {}\n    tls: {{insecure: true}}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [otlp]\n",
        sink.endpoint()
    )
}

fn front_yaml(exporter: &str) -> String {
    format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\nexporters:\n{exporter}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [{}]\n",
        exporter.trim().split(':').next().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_between_two_wefts_over_grpc_and_http() {
    let sink = Sink::start().await;
    let back = start(&backend_yaml(&sink)).await;
    let d = tls_dir();
    let grpc = back.addr("otlp/grpc");
    let https = back.addr("otlp/http");

    // otlp (gRPC) exporter with a client certificate.
    let front = start(&front_yaml(&format!(
        "  otlp:\n    endpoint: https://127.0.0.1:{}\n    tls:\n      ca_file: {d}/ca.pem\n      cert_file: {d}/client.pem\n      key_file: {d}/client.key\n",
        grpc.port()
    )))
    .await;
    assert_eq!(post(&front.http(), &spans(3)).await, 200);
    assert_eq!(
        sink.wait_for_items(3, Duration::from_secs(10)).await,
        3,
        "gRPC over mutual TLS"
    );
    front.service.shutdown().await;

    // otlphttp exporter with a client certificate.
    let front = start(&front_yaml(&format!(
        "  otlphttp:\n    endpoint: https://127.0.0.1:{}\n    tls:\n      ca_file: {d}/ca.pem\n      cert_file: {d}/client.pem\n      key_file: {d}/client.key\n",
        https.port()
    )))
    .await;
    assert_eq!(post(&front.http(), &spans(4)).await, 200);
    assert_eq!(
        sink.wait_for_items(7, Duration::from_secs(10)).await,
        7,
        "HTTP over mutual TLS"
    );
    front.service.shutdown().await;

    // A client that trusts the CA but has no certificate is refused at the handshake.
    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(format!("{d}/ca.pem")).unwrap()).unwrap();
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let r = anonymous
        .post(format!("https://127.0.0.1:{}/v1/traces", https.port()))
        .header("content-type", "application/x-protobuf")
        .body(spans(1).encode_proto())
        .send()
        .await;
    assert!(r.is_err(), "no client certificate, no service: {r:?}");
    // Plain text to the TLS port fails too.
    assert!(
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/v1/traces", https.port()))
            .send()
            .await
            .map(|r| r.status().as_u16() >= 400)
            .unwrap_or(true)
    );
    assert_eq!(sink.item_count(), 7);
    back.service.shutdown().await;
}

#[tokio::test]
async fn bad_tls_files_are_clear_startup_errors() {
    support::weft::init();
    let d = tls_dir();
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:0\n        tls:\n          cert_file: {d}/missing.pem\n          key_file: {d}/server.key\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
    );
    let cfg = support::weft::valid(&yaml);
    let err = weft::pipeline::Service::start(&cfg, weft::admin::Telemetry::new())
        .await
        .err()
        .expect("fails to start");
    assert!(
        err.to_string().contains("cannot read tls.cert_file"),
        "{err}"
    );
    let yaml = yaml.replace("missing.pem", "client.pem");
    let cfg = support::weft::valid(&yaml);
    let err = weft::pipeline::Service::start(&cfg, weft::admin::Telemetry::new())
        .await
        .err()
        .expect("fails to start");
    assert!(err.to_string().contains("do not match"), "{err}");
}
