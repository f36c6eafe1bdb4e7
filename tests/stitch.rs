//! The stitch processor through a whole weft: the real OpenTelemetry SDK emits the order,
//! payment and notification services' spans and logs as three separate traces (context
//! lost at the outbox/CDC hop and at the Kafka hop); what weft sends on over OTLP is one
//! trace with correct parentage, and the logs carry its trace id.

mod support;

use std::time::Duration;

use opentelemetry::KeyValue as SdkKv;
use opentelemetry::logs::{AnyValue as SdkAny, LogRecord as _, Logger as _, LoggerProvider as _};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, TraceContextExt, TraceFlags, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource as SdkResource;
use support::otlp_sink::Sink;
use support::weft::{config, start};
use weft::data::*;

fn stitch_config(sink: &Sink) -> String {
    config(
        concat!(
            "  batch:\n    timeout: 50ms\n",
            "  stitch:\n    window: 30s\n    mode: merge\n    rules:\n",
            "      - name: outbox\n",
            "        producer: {span_kind: [producer, client, internal], attributes: [outbox.event_id]}\n",
            "        consumer: {span_kind: [consumer, server], attributes: [messaging.message.id]}\n",
            "      - name: kafka-offset\n",
            "        producer: {span_kind: [producer], attributes: [messaging.destination.name, messaging.destination.partition.id, messaging.kafka.offset]}\n",
            "        consumer: {span_kind: [consumer], attributes: [messaging.destination.name, messaging.destination.partition.id, messaging.kafka.offset]}\n",
        ),
        &format!(
            "  otlp:\n    endpoint: {}\n    tls:\n      insecure: true\n",
            sink.endpoint()
        ),
        concat!(
            "    traces:\n      receivers: [otlp]\n      processors: [stitch, batch]\n      exporters: [otlp]\n",
            "    logs:\n      receivers: [otlp]\n      processors: [stitch, batch]\n      exporters: [otlp]\n",
        ),
    )
}

fn resource(service: &str) -> SdkResource {
    SdkResource::builder()
        .with_service_name(service.to_string())
        .build()
}

fn tracer_provider(weft_grpc: &str, service: &str) -> opentelemetry_sdk::trace::SdkTracerProvider {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(weft_grpc)
        .build()
        .unwrap();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(service))
        .build()
}

async fn flush_traces(p: opentelemetry_sdk::trace::SdkTracerProvider) {
    tokio::task::spawn_blocking(move || {
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .unwrap();
}

/// Each service's spans: a root and children, as a fresh trace (the context was lost).
/// Returns the span context of the root, for its log record.
fn emit(
    provider: &opentelemetry_sdk::trace::SdkTracerProvider,
    root: (&str, SpanKind, Vec<SdkKv>),
    children: Vec<(&str, SpanKind, Vec<SdkKv>)>,
) -> SpanContext {
    let tracer = provider.tracer("io.opentelemetry.test");
    let span = tracer
        .span_builder(root.0.to_string())
        .with_kind(root.1)
        .with_attributes(root.2)
        .start(&tracer);
    let cx = opentelemetry::Context::current_with_span(span);
    for (name, kind, attrs) in children {
        let mut child = tracer
            .span_builder(name.to_string())
            .with_kind(kind)
            .with_attributes(attrs)
            .start_with_context(&tracer, &cx);
        child.end();
    }
    let sc = cx.span().span_context().clone();
    cx.span().end();
    sc
}

fn kafka_payment_done() -> Vec<SdkKv> {
    vec![
        SdkKv::new("messaging.system", "kafka"),
        SdkKv::new("messaging.destination.name", "payment.done"),
        SdkKv::new("messaging.destination.partition.id", "2"),
        SdkKv::new("messaging.kafka.offset", 4711_i64),
    ]
}

fn all_spans(batches: &[Batch]) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for b in batches {
        if let Batch::Traces(v) = b {
            for rs in v {
                let svc = rs
                    .resource
                    .as_ref()
                    .and_then(|r| attr_str(&r.attributes, "service.name"))
                    .unwrap_or("")
                    .to_string();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push((svc.clone(), s.clone()));
                    }
                }
            }
        }
    }
    out
}

fn all_logs(batches: &[Batch]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for b in batches {
        if let Batch::Logs(v) = b {
            for rl in v {
                for sl in &rl.scope_logs {
                    out.extend(sl.log_records.iter().cloned());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_payment_notification_become_one_trace_and_logs_follow() {
    let sink = Sink::start().await;
    let weft = start(&stitch_config(&sink)).await;
    let grpc = weft.grpc();

    // The spans, in the hardest arrival order: the last hop first.
    let notification = tracer_provider(&grpc, "notification");
    let notification_cx = emit(
        &notification,
        (
            "payment.done process",
            SpanKind::Consumer,
            kafka_payment_done(),
        ),
        vec![("send email", SpanKind::Internal, vec![])],
    );
    let payment = tracer_provider(&grpc, "payment");
    let mut publish = kafka_payment_done();
    publish.push(SdkKv::new("messaging.operation.type", "send"));
    let payment_cx = emit(
        &payment,
        (
            "order.created process",
            SpanKind::Consumer,
            vec![
                SdkKv::new("messaging.system", "kafka"),
                SdkKv::new("messaging.message.id", "evt-42"),
            ],
        ),
        vec![
            ("charge card", SpanKind::Client, vec![]),
            ("payment.done publish", SpanKind::Producer, publish),
        ],
    );
    let order = tracer_provider(&grpc, "order");
    let order_cx = emit(
        &order,
        ("create_order", SpanKind::Server, vec![]),
        vec![(
            "INSERT outbox",
            SpanKind::Client,
            vec![SdkKv::new("outbox.event_id", "evt-42")],
        )],
    );

    // Logs are usually exported before the spans they belong to have ended.
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_tonic()
        .with_endpoint(&grpc)
        .build()
        .unwrap();
    let logs = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource("mixed"))
        .build();
    let logger = logs.logger("app");
    for (cx, body) in [
        (&notification_cx, "email sent"),
        (&payment_cx, "card charged"),
        (&order_cx, "order created"),
    ] {
        let mut r = logger.create_log_record();
        r.set_body(SdkAny::String(body.into()));
        r.set_trace_context(cx.trace_id(), cx.span_id(), Some(TraceFlags::SAMPLED));
        logger.emit(r);
    }
    tokio::task::spawn_blocking(move || {
        logs.force_flush().unwrap();
        logs.shutdown().unwrap();
    })
    .await
    .unwrap();
    flush_traces(notification).await;
    flush_traces(payment).await;
    flush_traces(order).await;

    assert_eq!(sink.wait_for_items(10, Duration::from_secs(15)).await, 10);
    let batches = sink.batches();
    let spans = all_spans(&batches);
    assert_eq!(spans.len(), 7);
    let order_trace = order_cx.trace_id().to_bytes().to_vec();
    for (svc, s) in &spans {
        assert_eq!(
            s.trace_id, order_trace,
            "{svc}/{} is not in the order trace",
            s.name
        );
    }
    let by_name = |n: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("no span {n}"))
            .clone()
    };
    let outbox = by_name("INSERT outbox");
    let publish = by_name("payment.done publish");
    let payment_root = by_name("order.created process");
    let notification_root = by_name("payment.done process");
    assert_eq!(payment_root.parent_span_id, outbox.span_id);
    assert_eq!(notification_root.parent_span_id, publish.span_id);
    assert_eq!(
        by_name("send email").parent_span_id,
        notification_root.span_id
    );
    assert_eq!(by_name("create_order").parent_span_id, Vec::<u8>::new());
    assert_eq!(
        attr_str(&payment_root.attributes, "weft.stitch.rule"),
        Some("outbox")
    );
    assert_eq!(
        attr_str(
            &notification_root.attributes,
            "weft.stitch.original_trace_id"
        ),
        Some(hex(&notification_cx.trace_id().to_bytes()).as_str())
    );

    let records = all_logs(&batches);
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(
            r.trace_id, order_trace,
            "log {:?} keeps its old trace id",
            r.body
        );
    }
    let labels = [("component", "stitch"), ("rule", "kafka-offset")];
    let m = |name: &str, labels: &[(&str, &str)]| {
        weft.telemetry.metrics.value(name, labels).unwrap_or(0.0)
    };
    assert_eq!(m("weft_processor_stitch_matched_total", &labels), 1.0);
    assert_eq!(
        m(
            "weft_processor_stitch_remapped_log_records_total",
            &[("component", "stitch"), ("rule", "outbox")]
        ),
        1.0
    );
    weft.service.shutdown().await;
}
