//! Exact documents for both mapping modes.

use super::*;

#[test]
fn otel_mapping_snapshot() {
    let enc = Encoder::default();
    let (resource, scope) = otel_resource_scope();

    let logs = enc.documents(&log_batch());
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].index, "logs-checkout.otel-default");
    assert_eq!(logs[0].op, Op::Create);
    assert_eq!(
        logs[0].source,
        json!({
            "@timestamp": "2023-11-14T22:13:20.123456789Z",
            "observed_timestamp": "2023-11-14T22:13:20.123457789Z",
            "data_stream": {"type": "logs", "dataset": "checkout.otel", "namespace": "default"},
            "severity_text": "ERROR",
            "severity_number": 17,
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "span_id": "1112131415161718",
            "attributes": {
                "http.status_code": 402,
                "retry": false,
                "ratio": 0.25,
                "tags": ["a", "b"],
                "user": {"id": "u1"}
            },
            "resource": resource,
            "scope": scope,
            "body": {"text": "payment declined"}
        })
    );

    let spans = enc.documents(&span_batch());
    assert_eq!(spans[0].index, "traces-checkout.otel-default");
    assert_eq!(
        spans[0].source,
        json!({
            "@timestamp": "2023-11-14T22:13:20.000000000Z",
            "data_stream": {"type": "traces", "dataset": "checkout.otel", "namespace": "default"},
            "trace_id": "0102030405060708090a0b0c0d0e0f10",
            "span_id": "2122232425262728",
            "trace_state": "vendor=x",
            "parent_span_id": "3132333435363738",
            "name": "POST /pay",
            "kind": "Server",
            "duration": 1_500_000,
            "attributes": {"http.request.method": "POST", "http.response.status_code": 402},
            "events": [{
                "@timestamp": "2023-11-14T22:13:20.001000000Z",
                "name": "exception",
                "attributes": {"exception.type": "CardDeclined"}
            }],
            "links": [{
                "trace_id": "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0",
                "span_id": "f1f1f1f1f1f1f1f1",
                "trace_state": "k=v",
                "attributes": {"link.kind": "follows"}
            }],
            "status": {"message": "declined", "code": "Error"},
            "resource": resource,
            "scope": scope
        })
    );
}

#[test]
fn ecs_mapping_snapshot() {
    let enc = Encoder {
        mode: Mode::Ecs,
        ..Default::default()
    };
    let resource = json!({
        "service.name": "checkout",
        "service.version": "1.4.2",
        "host.name": "node-7",
        "host.hostname": "node-7",
        "kubernetes.pod.name": "checkout-7d9f",
        "service.environment": "prod",
    });
    let with_resource = |mut v: Value| {
        let m = v.as_object_mut().unwrap();
        m.extend(resource.as_object().unwrap().clone());
        v
    };

    let logs = enc.documents(&log_batch());
    assert_eq!(logs[0].index, "logs-checkout-default");
    assert_eq!(
        logs[0].source,
        with_resource(json!({
            "@timestamp": "2023-11-14T22:13:20.123456789Z",
            "event.created": "2023-11-14T22:13:20.123457789Z",
            "message": "payment declined",
            "log.level": "ERROR",
            "event.severity": 17,
            "trace.id": "0102030405060708090a0b0c0d0e0f10",
            "span.id": "1112131415161718",
            "log.logger": "io.weft.test",
            "data_stream.type": "logs",
            "data_stream.dataset": "checkout",
            "data_stream.namespace": "default",
            "event.dataset": "checkout",
            "http.status_code": 402,
            "retry": false,
            "ratio": 0.25,
            "tags": ["a", "b"],
            "user": {"id": "u1"}
        }))
    );

    let spans = enc.documents(&span_batch());
    assert_eq!(spans[0].index, "traces-checkout-default");
    assert_eq!(
        spans[0].source,
        with_resource(json!({
            "@timestamp": "2023-11-14T22:13:20.000000000Z",
            "processor.event": "span",
            "trace.id": "0102030405060708090a0b0c0d0e0f10",
            "span.id": "2122232425262728",
            "parent.id": "3132333435363738",
            "span.name": "POST /pay",
            "span.kind": "SERVER",
            "span.duration.us": 1500,
            "event.outcome": "failure",
            "span.status.code": "Error",
            "span.status.message": "declined",
            "service.framework.name": "io.weft.test",
            "service.framework.version": "0.3.0",
            "span.events": [{
                "@timestamp": "2023-11-14T22:13:20.001000000Z",
                "name": "exception",
                "exception.type": "CardDeclined"
            }],
            "span.links": [{"trace.id": "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0", "span.id": "f1f1f1f1f1f1f1f1"}],
            "data_stream.type": "traces",
            "data_stream.dataset": "checkout",
            "data_stream.namespace": "default",
            "event.dataset": "checkout",
            "http.request.method": "POST",
            "http.response.status_code": 402
        }))
    );
}

#[test]
fn metric_points_become_one_document_each() {
    let docs = Encoder::default().documents(&metric_batch());
    assert_eq!(docs.len(), 6);
    // Time series data streams choose their own ids.
    assert!(
        docs.iter()
            .all(|d| d.id.is_none() && d.index == "metrics-checkout.otel-default")
    );
    let (resource, scope) = otel_resource_scope();
    assert_eq!(
        docs[4].source,
        json!({
            "@timestamp": "2023-11-14T22:13:20.000000000Z",
            "start_timestamp": "2023-11-14T22:12:20.000000000Z",
            "data_stream": {"type": "metrics", "dataset": "checkout.otel", "namespace": "default"},
            "resource": resource,
            "scope": scope,
            "unit": "s",
            "metrics": {"http.server.request.duration": {"counts": [1, 3, 2], "values": [0.05, 0.30000000000000004, 0.4]}}
        })
    );
    assert_eq!(docs[1].source["metrics"]["system.cpu.utilization"], 1.5);
    assert_eq!(docs[1].source["attributes"]["cpu"], 1);
    assert_eq!(
        docs[5].source["metrics"]["rpc.latency"],
        json!({"sum": 1.5, "value_count": 3})
    );
    let ecs = Encoder {
        mode: Mode::Ecs,
        ..Default::default()
    }
    .documents(&metric_batch());
    assert_eq!(ecs[0].index, "metrics-checkout-default");
    assert_eq!(ecs[0].source["system.cpu.utilization"], 0.5);
    assert_eq!(ecs[0].source["service.name"], "checkout");
}
