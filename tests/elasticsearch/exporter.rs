//! The exporter against the `_bulk` stand-in, directly and through the delivery layer.

use super::*;
use support::elasticsearch::Index;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_30_percent_items_rejected_every_document_is_indexed_exactly_once() {
    init();
    let es = Elasticsearch::start(0.3, 42).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    let d = Delivery::start("elasticsearch", exp, fast_delivery(), None, &t)
        .await
        .unwrap();
    let h = d.handle();
    for b in 0..20 {
        h.push(Arc::new(logs(b * 50, 50)), false).await.unwrap();
    }
    wait_for("1000 documents", || es.doc_count() >= 1000).await;
    drop(h);
    d.shutdown(Instant::now() + Duration::from_secs(5)).await;

    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(1000));
    let st = es.stats();
    assert_eq!(st.created, 1000);
    assert!(
        st.rejected_429 > 200,
        "the stand-in rejected {} items",
        st.rejected_429
    );
    // Only rejected items were sent again: no whole-bulk retries, no duplicates.
    assert_eq!(st.conflicts_409, 0);
    let sent_items: usize = es.requests().iter().map(|r| r.items).sum();
    assert_eq!(sent_items, st.created + st.rejected_429);
    assert!(es.requests().iter().all(|r| r.gzip));
    let sent = t.metrics.value(
        "weft_exporter_sent_log_records_total",
        &[("component", "elasticsearch")],
    );
    assert_eq!(sent, Some(1000.0));
}

#[tokio::test]
async fn partial_answer_holds_exactly_the_rejected_items() {
    init();
    let es = Elasticsearch::start(0.5, 7).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()], "compression": "none"}), &t);
    let batch = logs(0, 20);
    let retry = match exp.send(&batch).await {
        Err(ExportError::Partial { retry, .. }) => retry,
        other => panic!("expected a partial failure, got {other:?}"),
    };
    assert_eq!(retry.item_count(), es.stats().rejected_429);
    assert_eq!(retry.item_count() + es.doc_count(), 20);
    es.set_reject_fraction(0.0);
    exp.send(&retry).await.unwrap();
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(20));
    // Sending everything again is harmless: content ids make it a no-op (409 = indexed).
    exp.send(&batch).await.unwrap();
    assert_eq!(es.doc_count(), 20);
    assert_eq!(es.stats().conflicts_409, 20);
}

#[tokio::test]
async fn a_mapping_error_drops_only_that_document() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    let mut batch = logs(0, 5);
    if let Batch::Logs(v) = &mut batch {
        let recs = &mut v[0].scope_logs[0].log_records;
        recs[0]
            .attributes
            .push(kv("code", any_value::Value::IntValue(1)));
        recs[2].attributes.push(kv("code", s("not-a-number")));
    }
    exp.send(&batch).await.unwrap();
    let mut want = expected_bodies(5);
    want.retain(|b| b != "line 2");
    assert_eq!(stored_bodies(&es, LOGS_INDEX), want);
    assert_eq!(es.stats().mapping_errors, 1);
    let dropped = t.metrics.value(
        "weft_exporter_elasticsearch_dropped_log_records_total",
        &[
            ("component", "elasticsearch"),
            ("error_type", "mapper_parsing_exception"),
        ],
    );
    assert_eq!(dropped, Some(1.0));
}

#[tokio::test]
async fn fails_over_when_one_of_two_endpoints_is_down() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    es.require_auth("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let t = Telemetry::new();
    let exp = exporter(
        json!({"endpoints": [dead, es.url()], "auth": {"user": "elastic", "password": "changeme"}}),
        &t,
    );
    exp.start().await.unwrap();
    for b in 0..4 {
        exp.send(&logs(b * 10, 10)).await.unwrap();
    }
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(40));
    assert!(es.requests().iter().all(|r| r.status == 200));
}

#[tokio::test]
async fn refused_credentials_are_permanent_and_named_in_readiness() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    es.require_auth("ApiKey right");
    let t = Telemetry::new();
    t.health.set_started();
    let wrong = exporter(
        json!({"endpoints": [es.url()], "auth": {"api_key": "wrong"}}),
        &t,
    );
    match wrong.send(&logs(0, 3)).await {
        Err(ExportError::Permanent { reason, .. }) => assert_eq!(reason, "http_401"),
        other => panic!("expected permanent, got {other:?}"),
    }
    let r = t.health.readiness();
    assert!(!r.ready);
    assert!(
        r.reasons[0].contains("elasticsearch: Elasticsearch refuses the configured credentials"),
        "{r:?}"
    );
    let right = exporter(json!({"endpoints": [es.url()], "api_key": "right"}), &t);
    right.send(&logs(0, 3)).await.unwrap();
    assert!(t.health.readiness().ready);
    assert_eq!(es.doc_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_429_is_retried_after_retry_after() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);

    es.reject_next_requests(1, 1);
    match exp.send(&logs(0, 10)).await {
        Err(ExportError::Retryable { after, .. }) => {
            assert_eq!(after, Some(Duration::from_secs(1)))
        }
        other => panic!("expected retryable, got {other:?}"),
    }
    assert_eq!(es.doc_count(), 0);

    es.reject_next_requests(1, 1);
    let d = Delivery::start("elasticsearch", exp, fast_delivery(), None, &t)
        .await
        .unwrap();
    d.handle().push(Arc::new(logs(0, 10)), false).await.unwrap();
    wait_for("10 documents", || es.doc_count() >= 10).await;
    d.shutdown(Instant::now() + Duration::from_secs(5)).await;
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(10));
    let reqs = es.requests();
    let i = reqs.iter().rposition(|r| r.status == 429).unwrap();
    let next = &reqs[i + 1];
    // retry_on_failure would wait ~10ms; the server asked for 1s.
    assert!(next.at.duration_since(reqs[i].at) >= Duration::from_millis(990));
}

#[tokio::test]
async fn oversized_bodies_are_split_and_a_single_oversized_document_is_permanent() {
    init();
    // Uncompressed, the halves are slices of the one body buffer; gzip compresses each.
    for compression in ["none", "gzip"] {
        let es = Elasticsearch::start(0.0, 1).await;
        es.set_max_content_length(4000);
        let t = Telemetry::new();
        let exp = exporter(
            json!({"endpoints": [es.url()], "compression": compression}),
            &t,
        );
        exp.send(&logs(0, 40)).await.unwrap();
        assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(40));
        assert!(es.requests().iter().any(|r| r.status == 413));
        // The next batch reuses the buffer the first one was written into.
        exp.send(&logs(40, 20)).await.unwrap();
        assert_eq!(es.doc_count(), 60, "{compression}");
    }
    let es = Elasticsearch::start(0.0, 1).await;
    es.set_max_content_length(4000);
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);

    let mut big = logs(100, 1);
    if let Batch::Logs(v) = &mut big {
        v[0].scope_logs[0].log_records[0].body = Some(AnyValue {
            value: Some(s(&"x".repeat(5000))),
        });
    }
    match exp.send(&big).await {
        Err(ExportError::Permanent { reason, message }) => {
            assert_eq!(reason, "document_too_large");
            assert!(message.contains("http.max_content_length"), "{message}");
        }
        other => panic!("expected permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn static_index_uses_index_actions_and_spans_are_indexed() {
    init();
    let es = Elasticsearch::start(0.0, 1).await;
    let t = Telemetry::new();
    let exp = exporter(
        json!({"endpoints": [es.url()], "traces_index": "spans", "mapping": {"mode": "ecs"}, "pipeline": "otel"}),
        &t,
    );
    exp.send(&span_batch()).await.unwrap();
    let docs = es.docs("spans");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["span.duration.us"], 1500);
    assert_eq!(docs[0]["trace.id"], "0102030405060708090a0b0c0d0e0f10");
    let query = &es.requests()[0].query;
    assert!(query.contains("pipeline=otel"), "{query}");
    assert!(
        query.contains("filter_path=errors,items.*.status"),
        "{query}"
    );
}

/// The stand-in answers the exporter's `filter_path` as Elasticsearch does (compact, only
/// the listed fields), so the exporter reads the answers a cluster sends it: the plain
/// all-succeeded one, and per-item errors with nothing but status and error.
#[tokio::test]
async fn answers_are_filtered_as_the_exporter_asks() {
    init();
    let es = Elasticsearch::start(0.0, 3).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    exp.send(&logs(0, 3)).await.unwrap();
    assert_eq!(
        es.requests()[0].answer,
        r#"{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}},{"create":{"status":201}}]}"#
    );
    // Resent: every document already exists (409, counted as indexed), and the answer
    // carries only what filter_path lists of each error.
    exp.send(&logs(0, 3)).await.unwrap();
    let answer: Value = serde_json::from_str(&es.requests()[1].answer).unwrap();
    let item = &answer["items"][0]["create"];
    assert_eq!(answer["errors"], true);
    assert_eq!(item["status"], 409);
    assert_eq!(item["error"]["type"], "version_conflict_engine_exception");
    assert!(item["error"]["reason"].is_string());
    assert!(item.get("_index").is_none() && item["error"].get("index").is_none());
    assert_eq!(es.docs("logs-generic.otel-default").len(), 3);
}

#[tokio::test]
async fn metric_points_are_retried_individually() {
    init();
    let es = Elasticsearch::start(0.5, 11).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    let mut batch = metric_batch();
    let mut rounds = 0;
    loop {
        match exp.send(&batch).await {
            Ok(()) => break,
            Err(ExportError::Partial { retry, .. }) => {
                assert!(retry.item_count() < batch.item_count());
                batch = retry;
            }
            Err(e) => panic!("unexpected {e}"),
        }
        rounds += 1;
        assert!(rounds < 50);
    }
    assert!(es.stats().rejected_429 > 0);
    assert_eq!(es.docs("metrics-checkout.otel-default").len(), 6);
}

#[test]
fn the_stand_in_maps_fields_dynamically_like_elasticsearch() {
    let mut ix = Index::default();
    assert!(
        ix.map("1", &json!({"attributes": {"code": 1, "ok": true}}))
            .is_ok()
    );
    assert!(
        ix.map("2", &json!({"attributes": {"code": "2", "ok": "false"}}))
            .is_ok()
    );
    let e = ix
        .map("3", &json!({"attributes": {"code": "abc"}}))
        .unwrap_err();
    assert!(e.contains("[attributes.code] of type [long]"), "{e}");
    assert!(ix.map("4", &json!({"attributes.code.x": 1})).is_err());
    assert!(ix.map("5", &json!({"attributes": 3})).is_err());
}

/// `batch` as the forwarding fast path hands it over (request bytes, not decoded).
fn raw(batch: &Batch) -> Batch {
    Batch::from_proto_bytes(Signal::Logs, batch.encode_proto().into()).unwrap()
}

#[tokio::test]
async fn raw_batches_are_indexed_exactly_like_decoded_ones_and_partial_retries_hold_the_rejected_items()
 {
    init();
    let es = Elasticsearch::start(0.5, 7).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()], "compression": "none"}), &t);
    assert!(exp.accepts_raw());
    let batch = raw(&logs(0, 20));
    let retry = match exp.send(&batch).await {
        Err(ExportError::Partial { retry, .. }) => retry,
        other => panic!("expected a partial failure, got {other:?}"),
    };
    assert_eq!(retry.item_count(), es.stats().rejected_429);
    es.set_reject_fraction(0.0);
    exp.send(&retry).await.unwrap();
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(20));
    // The decoded batch has the same content ids: all conflicts, nothing new.
    exp.send(&logs(0, 20)).await.unwrap();
    assert_eq!(es.doc_count(), 20);
    assert_eq!(es.stats().conflicts_409, 20);
}

#[tokio::test]
async fn a_raw_resource_that_cannot_be_decoded_is_dropped_and_counted_and_the_rest_indexed() {
    init();
    let es = Elasticsearch::start(0.0, 7).await;
    let t = Telemetry::new();
    let exp = exporter(json!({"endpoints": [es.url()]}), &t);
    // Three resources; the middle one's records carry a body that is not UTF-8 (the
    // receiver's shallow scan lets that pass).
    let mut bytes = logs(0, 3).encode_proto();
    let mut bad = logs(100, 2);
    if let Batch::Logs(v) = &mut bad {
        v[0].scope_logs[0].log_records[0].body = Some(AnyValue {
            value: Some(s("zzzz")),
        });
    }
    let mut bad = bad.encode_proto();
    let i = bad.windows(4).position(|w| w == b"zzzz").unwrap();
    bad[i] = 0xff;
    bytes.extend(bad);
    bytes.extend(logs(3, 2).encode_proto());
    let batch = Batch::from_proto_bytes(Signal::Logs, bytes.into()).unwrap();
    exp.send(&batch).await.unwrap();
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(5));
    let dropped = |t: &Telemetry| {
        t.metrics.value(
            "weft_exporter_elasticsearch_dropped_log_records_total",
            &[("component", "elasticsearch"), ("error_type", "malformed")],
        )
    };
    assert_eq!(dropped(&t), Some(2.0));
    // Nothing readable: permanent.
    let mut only_bad = logs(7, 1);
    if let Batch::Logs(v) = &mut only_bad {
        v[0].scope_logs[0].log_records[0].severity_text = "zzzz".into();
    }
    let mut b = only_bad.encode_proto();
    let i = b.windows(4).position(|w| w == b"zzzz").unwrap();
    b[i] = 0xc3;
    let r = exp
        .send(&Batch::from_proto_bytes(Signal::Logs, b.into()).unwrap())
        .await;
    assert!(
        matches!(r, Err(ExportError::Permanent { ref reason, .. }) if reason == "malformed"),
        "{r:?}"
    );
    assert_eq!(dropped(&t), Some(3.0));
}
