//! Round trips through a whole weft: the real OpenTelemetry SDK (and hand-built requests
//! over gRPC, HTTP protobuf, HTTP JSON and gzip) into the otlp receiver, out through the
//! otlp exporter into an in-process OTLP backend; content must arrive identical.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::KeyValue as SdkKv;
use opentelemetry::logs::{
    AnyValue as SdkAny, LogRecord as _, Logger as _, LoggerProvider as _, Severity,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource as SdkResource;
use support::otlp_sink::Sink;
use support::samples::full_batches;
use support::weft::{config, start};
use weft::data::*;

fn forward_config(sink: &Sink) -> String {
    config(
        "  batch:\n    timeout: 50ms\n",
        &format!(
            "  otlp:\n    endpoint: {}\n    compression: gzip\n    tls:\n      insecure: true\n    retry_on_failure:\n      initial_interval: 50ms\n",
            sink.endpoint()
        ),
        "    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n    logs:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n    metrics:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [otlp]\n",
    )
}

/// Every span with its resource and scope, keyed by span id (order-independent compare).
fn spans_by_id(
    batches: &[Batch],
) -> BTreeMap<Vec<u8>, (Option<Resource>, Option<InstrumentationScope>, Span)> {
    let mut m = BTreeMap::new();
    for b in batches {
        if let Batch::Traces(v) = b {
            for rs in v {
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        m.insert(
                            s.span_id.clone(),
                            (rs.resource.clone(), ss.scope.clone(), s.clone()),
                        );
                    }
                }
            }
        }
    }
    m
}

fn logs_flat(
    batches: &[Batch],
) -> Vec<(Option<Resource>, Option<InstrumentationScope>, LogRecord)> {
    let mut v = Vec::new();
    for b in batches {
        if let Batch::Logs(r) = b {
            for rl in r {
                for sl in &rl.scope_logs {
                    for l in &sl.log_records {
                        v.push((rl.resource.clone(), sl.scope.clone(), l.clone()));
                    }
                }
            }
        }
    }
    v.sort_by_key(|(_, _, l)| {
        (
            l.time_unix_nano,
            l.observed_time_unix_nano,
            format!("{:?}", l.body),
        )
    });
    v
}

fn emit_spans(provider: &opentelemetry_sdk::trace::SdkTracerProvider, n: usize) {
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("checkout")
            .with_version("1.2.3")
            .with_attributes([SdkKv::new("scope.attr", "s")])
            .build(),
    );
    for i in 0..n {
        let mut parent = tracer
            .span_builder(format!("create_order {i}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                SdkKv::new("http.route", "/orders"),
                SdkKv::new("order.items", i as i64),
                SdkKv::new("ratio", 0.5),
                SdkKv::new("ok", true),
            ])
            .start(&tracer);
        parent.add_event("validated", vec![SdkKv::new("rule", "stock")]);
        let cx = opentelemetry::Context::current_with_span(parent);
        let mut child = tracer
            .span_builder("SELECT orders")
            .with_kind(SpanKind::Client)
            .start_with_context(&tracer, &cx);
        child.set_attribute(SdkKv::new("db.system.name", "mysql"));
        let link_cx = cx.span().span_context().clone();
        child.add_link(link_cx, vec![SdkKv::new("link.kind", "follows")]);
        child.set_status(opentelemetry::trace::Status::error("deadlock"));
        child.end();
        cx.span().end();
    }
}

async fn flush_traces(p: opentelemetry_sdk::trace::SdkTracerProvider) {
    tokio::task::spawn_blocking(move || {
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .unwrap();
}

fn resource() -> SdkResource {
    SdkResource::builder()
        .with_service_name("order")
        .with_attributes([
            SdkKv::new("deployment.environment.name", "test"),
            SdkKv::new("host.name", "node-1"),
        ])
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_spans_over_grpc_and_http_arrive_identical() {
    let sink = Sink::start().await;
    let reference = Sink::start().await;
    let weft = start(&forward_config(&sink)).await;

    for transport in ["grpc", "http-proto", "http-json", "http-gzip"] {
        let to_weft = match transport {
            "grpc" => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(weft.grpc())
                .build()
                .unwrap(),
            "http-proto" => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", weft.http()))
                .with_protocol(Protocol::HttpBinary)
                .build()
                .unwrap(),
            "http-json" => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", weft.http()))
                .with_protocol(Protocol::HttpJson)
                .build()
                .unwrap(),
            _ => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", weft.http()))
                .with_protocol(Protocol::HttpBinary)
                .with_compression(opentelemetry_otlp::Compression::Gzip)
                .build()
                .unwrap(),
        };
        let direct = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(reference.endpoint())
            .build()
            .unwrap();
        let before = sink.item_count();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(to_weft)
            .with_batch_exporter(direct)
            .with_resource(resource())
            .build();
        emit_spans(&provider, 20);
        flush_traces(provider).await;
        let got = sink
            .wait_for_items(before + 40, Duration::from_secs(10))
            .await;
        assert_eq!(got, before + 40, "{transport}: every span arrives");
    }
    let sent = spans_by_id(&reference.batches());
    let received = spans_by_id(&sink.batches());
    assert_eq!(sent.len(), 160);
    assert_eq!(received.len(), sent.len());
    for (id, s) in &sent {
        assert_eq!(received.get(id), Some(s), "span {} differs", hex(id));
    }
    assert_eq!(
        weft.metric("weft_receiver_accepted_spans_total", "otlp"),
        160.0
    );
    assert_eq!(weft.metric("weft_exporter_sent_spans_total", "otlp"), 160.0);
    weft.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_logs_arrive_identical() {
    let sink = Sink::start().await;
    let reference = Sink::start().await;
    let weft = start(&forward_config(&sink)).await;
    for transport in ["grpc", "http-json"] {
        let to_weft = match transport {
            "grpc" => opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(weft.grpc())
                .build()
                .unwrap(),
            _ => opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/logs", weft.http()))
                .with_protocol(Protocol::HttpJson)
                .build()
                .unwrap(),
        };
        let direct = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(reference.endpoint())
            .build()
            .unwrap();
        let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_batch_exporter(to_weft)
            .with_batch_exporter(direct)
            .with_resource(resource())
            .build();
        let logger = provider.logger("payment");
        for i in 0..25 {
            let mut r = logger.create_log_record();
            r.set_body(SdkAny::String(
                format!("payment {i} captured ({transport})").into(),
            ));
            r.set_severity_number(if i % 5 == 0 {
                Severity::Error
            } else {
                Severity::Info
            });
            r.set_severity_text(if i % 5 == 0 { "ERROR" } else { "INFO" });
            r.set_timestamp(
                std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i),
            );
            r.add_attribute("payment.id", format!("p-{i}"));
            r.add_attribute("amount", i as f64 * 1.5);
            r.set_trace_context(
                opentelemetry::trace::TraceId::from_bytes([7; 16]),
                opentelemetry::trace::SpanId::from_bytes([(i + 1) as u8; 8]),
                None,
            );
            logger.emit(r);
        }
        tokio::task::spawn_blocking(move || {
            provider.force_flush().unwrap();
            provider.shutdown().unwrap();
        })
        .await
        .unwrap();
    }
    assert_eq!(sink.wait_for_items(50, Duration::from_secs(10)).await, 50);
    assert_eq!(logs_flat(&sink.batches()), logs_flat(&reference.batches()));
    weft.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_metrics_arrive() {
    let sink = Sink::start().await;
    let weft = start(&forward_config(&sink)).await;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(weft.grpc())
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(resource())
        .build();
    let meter = provider.meter("inventory");
    let c = meter.u64_counter("orders_total").build();
    let h = meter.f64_histogram("order_value").build();
    for i in 0..10 {
        c.add(
            1,
            &[SdkKv::new("shop", if i % 2 == 0 { "eu" } else { "us" })],
        );
        h.record(i as f64, &[]);
    }
    tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
    // Two counter series and one histogram series.
    assert!(sink.wait_for_items(3, Duration::from_secs(10)).await >= 3);
    let mut names = Vec::new();
    for b in sink.batches() {
        if let Batch::Metrics(v) = b {
            for rm in v {
                assert_eq!(
                    attr_str(&rm.resource.as_ref().unwrap().attributes, "service.name"),
                    Some("order")
                );
                for sm in rm.scope_metrics {
                    for m in sm.metrics {
                        names.push(m.name.clone());
                    }
                }
            }
        }
    }
    assert!(
        names.contains(&"orders_total".to_string()) && names.contains(&"order_value".to_string()),
        "{names:?}"
    );
    weft.service.shutdown().await;
}

/// A request with every field set, for exact comparisons of all three signals.
fn path(s: Signal) -> &'static str {
    match s {
        Signal::Traces => "/v1/traces",
        Signal::Logs => "/v1/logs",
        Signal::Metrics => "/v1/metrics",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_survives_each_transport_and_encoding() {
    let sink = Sink::start().await;
    let weft = start(&forward_config(&sink)).await;
    let http = reqwest::Client::new();
    let mut expected = 0;
    for b in full_batches() {
        for variant in ["proto", "json", "proto+gzip", "json+zstd"] {
            let (body, ct) = if variant.starts_with("proto") {
                (b.encode_proto(), "application/x-protobuf")
            } else {
                (b.encode_json(), "application/json")
            };
            let mut req = http
                .post(format!("{}{}", weft.http(), path(b.signal())))
                .header("content-type", ct);
            let body = if variant.ends_with("gzip") {
                req = req.header("content-encoding", "gzip");
                weft::exporters::http_client::gzip(&body)
            } else if variant.ends_with("zstd") {
                req = req.header("content-encoding", "zstd");
                zstd::encode_all(&body[..], 1).unwrap()
            } else {
                body
            };
            let resp = req.body(body).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{variant} {}", b.signal());
            assert_eq!(resp.headers()["content-type"], ct);
            expected += b.item_count();
        }
        // And over gRPC, with the tonic client from opentelemetry-proto.
        let ch = tonic::transport::Channel::from_shared(weft.grpc())
            .unwrap()
            .connect()
            .await
            .unwrap();
        match &b {
            Batch::Traces(v) => {
                use opentelemetry_proto::tonic::collector::trace::v1::{
                    ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
                };
                TraceServiceClient::new(ch)
                    .send_compressed(tonic::codec::CompressionEncoding::Gzip)
                    .export(ExportTraceServiceRequest {
                        resource_spans: v.clone(),
                    })
                    .await
                    .unwrap();
            }
            Batch::Logs(v) => {
                use opentelemetry_proto::tonic::collector::logs::v1::{
                    ExportLogsServiceRequest, logs_service_client::LogsServiceClient,
                };
                LogsServiceClient::new(ch)
                    .export(ExportLogsServiceRequest {
                        resource_logs: v.clone(),
                    })
                    .await
                    .unwrap();
            }
            Batch::Metrics(v) => {
                use opentelemetry_proto::tonic::collector::metrics::v1::{
                    ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
                };
                MetricsServiceClient::new(ch)
                    .export(ExportMetricsServiceRequest {
                        resource_metrics: v.clone(),
                    })
                    .await
                    .unwrap();
            }
            Batch::Raw(_) => unreachable!("the fixtures are decoded batches"),
        }
        expected += b.item_count();
    }
    assert_eq!(
        sink.wait_for_items(expected, Duration::from_secs(10)).await,
        expected
    );
    // Each received batch holds copies of exactly the one request of its signal.
    let originals = full_batches();
    for got in sink.batches() {
        let orig = originals
            .iter()
            .find(|o| o.signal() == got.signal())
            .unwrap();
        let want_bytes = orig.encode_proto();
        let mut rest = got.clone();
        while !rest.is_empty() {
            let one = rest.split_front(orig.item_count());
            assert_eq!(
                one.encode_proto(),
                want_bytes,
                "{} differs after the round trip",
                got.signal()
            );
            assert_eq!(
                Batch::decode_proto(one.signal(), &one.encode_proto())
                    .unwrap()
                    .encode_proto(),
                orig.encode_proto()
            );
        }
    }
    weft.service.shutdown().await;
}
