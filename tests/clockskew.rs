//! The clockskew processor in a whole weft: spans of one trace from three nodes arrive in
//! three requests (gRPC and HTTP) from the OpenTelemetry SDK, wait in the trace buffer,
//! are corrected and leave through the otlp exporter into an in-process OTLP backend.

mod support;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue as SdkKv;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource as SdkResource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use support::otlp_sink::Sink;
use support::weft::{config, start};
use weft::data::*;

const MS: u64 = 1_000_000;

fn provider(
    host: &str,
    service: &str,
    exporter: opentelemetry_otlp::SpanExporter,
) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            SdkResource::builder()
                .with_service_name(service.to_string())
                .with_attributes([SdkKv::new("host.name", host.to_string())])
                .build(),
        )
        .build()
}

fn at(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

async fn shutdown(p: SdkTracerProvider) {
    tokio::task::spawn_blocking(move || {
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skewed_spans_are_corrected_between_otlp_in_and_otlp_out() {
    let sink = Sink::start().await;
    let weft = start(&config(
        "  clockskew:\n    decision_wait: 2s\n",
        &format!(
            "  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n",
            sink.endpoint()
        ),
        "    traces:\n      receivers: [otlp]\n      processors: [clockskew]\n      exporters: [otlp]\n",
    ))
    .await;
    let grpc = || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(weft.grpc())
            .build()
            .unwrap()
    };
    let http = || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", weft.http()))
            .with_protocol(Protocol::HttpBinary)
            .build()
            .unwrap()
    };
    // True time of the trace's start, whole milliseconds; node-b's clock runs 250 ms ahead.
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        * MS;
    let skew_b = 250 * MS;

    let gateway = provider("node-a", "gateway", grpc());
    let tracer = gateway.tracer("test");
    let root = tracer
        .span_builder("GET /checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(at(t0))
        .start(&tracer);
    let root_cx = opentelemetry::Context::new().with_span(root);
    let client = tracer
        .span_builder("POST /orders")
        .with_kind(SpanKind::Client)
        .with_start_time(at(t0 + MS))
        .start_with_context(&tracer, &root_cx);
    let client_sc = client.span_context().clone();
    let mut client = client;
    client.end_with_timestamp(at(t0 + 19 * MS));
    root_cx.span().end_with_timestamp(at(t0 + 20 * MS));
    shutdown(gateway).await;

    let order = provider("node-b", "order", http());
    let tracer = order.tracer("test");
    let server = tracer
        .span_builder("POST /orders")
        .with_kind(SpanKind::Server)
        .with_start_time(at(t0 + 2 * MS + skew_b))
        .start_with_context(
            &tracer,
            &opentelemetry::Context::new().with_remote_span_context(client_sc),
        );
    let server_cx = opentelemetry::Context::new().with_span(server);
    let mut producer = tracer
        .span_builder("orders publish")
        .with_kind(SpanKind::Producer)
        .with_start_time(at(t0 + 10 * MS + skew_b))
        .start_with_context(&tracer, &server_cx);
    let producer_sc = producer.span_context().clone();
    producer.end_with_timestamp(at(t0 + 11 * MS + skew_b));
    server_cx
        .span()
        .end_with_timestamp(at(t0 + 18 * MS + skew_b));
    shutdown(order).await;

    // node-c's clock is right; its consumer starts 29 ms after the producer ended.
    let payment = provider("node-c", "payment", grpc());
    let tracer = payment.tracer("test");
    let mut consumer = tracer
        .span_builder("orders process")
        .with_kind(SpanKind::Consumer)
        .with_start_time(at(t0 + 40 * MS))
        .start_with_context(
            &tracer,
            &opentelemetry::Context::new().with_remote_span_context(producer_sc),
        );
    consumer.end_with_timestamp(at(t0 + 45 * MS));
    shutdown(payment).await;

    assert_eq!(sink.wait_for_items(5, Duration::from_secs(10)).await, 5);
    let mut spans: HashMap<String, Span> = HashMap::new();
    for b in sink.batches() {
        if let Batch::Traces(v) = b {
            for rs in v {
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        spans.insert(s.name.clone() + kind_suffix(s.kind), s);
                    }
                }
            }
        }
    }
    let adjustment = |s: &Span| match attr(&s.attributes, "weft.clock_skew.adjustment_ns") {
        Some(any_value::Value::IntValue(v)) => Some(*v),
        _ => None,
    };
    let client = &spans["POST /orders/client"];
    let server = &spans["POST /orders/server"];
    assert_eq!(
        client.start_time_unix_nano,
        t0 + MS,
        "node-a is the root clock"
    );
    assert_eq!(adjustment(client), None);
    assert_eq!(adjustment(server), Some(-(skew_b as i64)));
    assert_eq!(server.start_time_unix_nano, t0 + 2 * MS);
    assert_eq!(server.end_time_unix_nano, t0 + 18 * MS);
    let producer = &spans["orders publish/producer"];
    assert_eq!(adjustment(producer), Some(-(skew_b as i64)));
    assert_eq!(producer.start_time_unix_nano, t0 + 10 * MS);
    let consumer = &spans["orders process/consumer"];
    assert_eq!(
        adjustment(consumer),
        None,
        "a later consumer is not pulled in"
    );
    assert_eq!(consumer.start_time_unix_nano, t0 + 40 * MS);
    assert_eq!(
        weft.metric("weft_processor_clockskew_spans_adjusted_total", "clockskew"),
        2.0
    );
    assert_eq!(
        weft.metric("weft_processor_clockskew_traces_total", "clockskew"),
        1.0
    );
    weft.service.shutdown().await;
}

fn kind_suffix(kind: i32) -> &'static str {
    match span::SpanKind::try_from(kind) {
        Ok(span::SpanKind::Server) => "/server",
        Ok(span::SpanKind::Client) => "/client",
        Ok(span::SpanKind::Producer) => "/producer",
        Ok(span::SpanKind::Consumer) => "/consumer",
        _ => "",
    }
}
