//! Unit tests of the `loki` exporter module (config, URL, auth, log gate).

use self::encode::LineFormat;
use super::*;
use crate::config::FieldError;

fn cfg(yaml_json: Value) -> Result<LokiConfig, FieldError> {
    parse(&yaml_json)
}

#[test]
fn config_defaults_and_checks() {
    let c = cfg(serde_json::json!({"endpoint": "http://loki:3100"})).unwrap();
    assert_eq!(c.encoding, Encoding::Protobuf);
    assert_eq!(c.line_format, LineFormat::Json);
    assert!(c.structured_metadata && c.labels.defaults && c.labels.level);
    assert!(cfg(serde_json::json!({})).is_err());
    assert!(cfg(serde_json::json!({"endpoint": "loki:3100"})).is_err());
    let e = cfg(serde_json::json!({"endpoint": "http://l", "compression": "gzip"})).unwrap_err();
    assert_eq!(e.path, ["compression"]);
    assert!(
        cfg(serde_json::json!({"endpoint": "http://l", "encoding": "json", "compression": "gzip"}))
            .is_ok()
    );
    let e = cfg(serde_json::json!({"endpoint": "http://l", "line_fromat": "raw"})).unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("line_format"));
    assert!(cfg(serde_json::json!({"endpoint": "http://l", "auth": {"basic": {"username": "u"}, "bearer": {"token": "t"}}})).is_err());
    assert!(cfg(serde_json::json!({"endpoint": "http://l", "tenant": {"source": "attribute", "key": ""}})).is_err());
    assert!(
        cfg(
            serde_json::json!({"endpoint": "http://l", "tenant": {"source": "header", "key": "x"}})
        )
        .is_err()
    );
}

#[test]
fn rejections_are_logged_at_most_once_per_interval() {
    let mut g = LogGate::default();
    let t0 = Instant::now();
    assert_eq!(g.admit(t0), Some(0));
    assert_eq!(g.admit(t0 + Duration::from_secs(1)), None);
    assert_eq!(g.admit(t0 + Duration::from_secs(9)), None);
    assert_eq!(g.admit(t0 + LOG_INTERVAL), Some(2));
    assert_eq!(g.admit(t0 + LOG_INTERVAL), None);
}

#[test]
fn push_url_and_auth_header() {
    let c = cfg(serde_json::json!({"endpoint": "http://loki:3100/", "auth": {"basic": {"username": "Aladdin", "password": "open sesame"}}})).unwrap();
    let e = LokiExporter::new("loki", &c, Metrics::default()).unwrap();
    assert_eq!(e.url, "http://loki:3100/loki/api/v1/push");
    assert_eq!(
        e.headers["authorization"],
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    let c = cfg(serde_json::json!({"endpoint": "https://x/loki/api/v1/push"})).unwrap();
    assert_eq!(
        LokiExporter::new("loki", &c, Metrics::default())
            .unwrap()
            .url,
        "https://x/loki/api/v1/push"
    );
    assert_eq!(base64("ab"), "YWI=");
    assert_eq!(base64("a"), "YQ==");
}
