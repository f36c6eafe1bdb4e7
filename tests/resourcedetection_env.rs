//! The `resourcedetection` processor in a real weft process: the environment the process
//! starts with (the downward-API variables a Kubernetes pod spec sets, and
//! `OTEL_RESOURCE_ATTRIBUTES`) ends up on the resource of the data it forwards.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Kills the weft process when the test ends, passed or not.
struct Weft(Child);

impl Drop for Weft {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn resource_attributes(line: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(line).unwrap();
    v["resourceSpans"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            let value = kv["value"]["stringValue"].as_str().unwrap_or_default();
            (kv["key"].as_str().unwrap().to_string(), value.to_string())
        })
        .collect()
}

#[test]
fn the_pod_environment_is_stamped_on_forwarded_spans() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let (grpc, http, admin) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{grpc}"}}
      http: {{endpoint: "127.0.0.1:{http}"}}
processors:
  resourcedetection:
    detectors: [env]
exporters:
  file:
    path: {out}
extensions:
  health_check: {{endpoint: "127.0.0.1:{admin}"}}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [resourcedetection]
      exporters: [file]
"#,
        out = out.display()
    );
    let config_path = dir.path().join("weft.yaml");
    std::fs::write(&config_path, config).unwrap();

    let mut weft = Weft(
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("--config")
            .arg(&config_path)
            .env("K8S_NODE_NAME", "node-e2e")
            .env("K8S_POD_NAME", "pod-e2e")
            .env("K8S_NAMESPACE", "ns-e2e")
            .env("HOSTNAME", "host-e2e")
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=load%20test",
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("weft starts"),
    );

    weft::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        // Generous bound, only so a broken build fails instead of hanging.
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = format!("http://127.0.0.1:{admin}/health/ready");
        loop {
            let ok = client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "weft did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "order"}},
                {"key": "k8s.node.name", "value": {"stringValue": "from-sdk"}}
            ]},
            "scopeSpans": [{"spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174",
                "name": "checkout",
                "kind": 2,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000100000000"
            }]}]
        }]});
        let resp = client
            .post(format!("http://127.0.0.1:{http}/v1/traces"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{}",
            resp.text().await.unwrap_or_default()
        );

        // SIGTERM: weft drains its queues into the file and exits.
        let pid = weft.0.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        loop {
            if let Some(status) = weft.0.try_wait().unwrap() {
                assert!(status.success(), "weft exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "weft did not exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let line = text.lines().next().expect("one export request written");
        let mut attrs = resource_attributes(line);
        attrs.sort();
        let want = [
            ("deployment.environment", "load test"),
            ("host.name", "host-e2e"),
            // override defaults to true: the detected node name replaces the SDK's.
            ("k8s.namespace.name", "ns-e2e"),
            ("k8s.node.name", "node-e2e"),
            ("k8s.pod.name", "pod-e2e"),
            ("service.name", "order"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(attrs, want);
    });
}
