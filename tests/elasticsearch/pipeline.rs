//! The ready-made pipeline `pipelines/otlp-to-elasticsearch.yaml`.

use super::*;

fn pipeline_source() -> Source {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/otlp-to-elasticsearch.yaml"
    );
    Source {
        name: path.into(),
        text: std::fs::read_to_string(path).unwrap(),
    }
}

#[test]
fn pipeline_file_is_valid() {
    weft::config::load_and_validate(&[pipeline_source()], &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_file_carries_otlp_logs_and_spans_into_elasticsearch() {
    init();
    let es = Elasticsearch::start(0.2, 3).await;
    let env: HashMap<&str, String> = HashMap::from([
        ("ELASTICSEARCH_URL", es.url()),
        ("OTLP_GRPC_ENDPOINT", "127.0.0.1:0".to_string()),
        ("OTLP_HTTP_ENDPOINT", "127.0.0.1:0".to_string()),
        ("HEALTH_ENDPOINT", "127.0.0.1:0".to_string()),
    ]);
    let overrides = Source {
        name: "test-overrides.yaml".into(),
        text: "exporters:\n  elasticsearch:\n    retry_on_failure:\n      initial_interval: 10ms\n      max_interval: 50ms\nprocessors:\n  batch:\n    timeout: 20ms\n".into(),
    };
    let cfg =
        weft::config::load_and_validate(&[pipeline_source(), overrides], &|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("{e}"));
    let service = weft::pipeline::Service::start(&cfg, Telemetry::new())
        .await
        .unwrap();
    let http = service.bound["otlp/http"];
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/v1/logs", logs(0, 30).encode_proto()),
        ("/v1/traces", span_batch().encode_proto()),
    ] {
        let resp = client
            .post(format!("http://{http}{path}"))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    wait_for("31 documents", || es.doc_count() >= 31).await;
    service.shutdown().await;
    assert_eq!(stored_bodies(&es, LOGS_INDEX), expected_bodies(30));
    let spans = es.docs("traces-checkout.otel-default");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["name"], "POST /pay");
    assert_eq!(es.stats().conflicts_409, 0);
}
