use super::*;
use crate::data::{InstrumentationScope, KeyValueList, Resource};
use crate::exporters::loki::labels::{LabelsConfig, string_kv};

fn opts() -> EncodeOptions {
    EncodeOptions {
        labels: LabelRules::new(&LabelsConfig::default(), 2048),
        line_format: LineFormat::Json,
        structured_metadata: true,
        limits: Limits::default(),
        tenant: TenantRule::Fixed(None),
    }
}

fn batch(resources: Vec<(Vec<KeyValue>, Vec<LogRecord>)>) -> Batch {
    Batch::Logs(
        resources
            .into_iter()
            .map(|(attrs, recs)| ResourceLogs {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.logger".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    log_records: recs,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    )
}

fn svc(name: &str) -> Vec<KeyValue> {
    vec![
        string_kv("service.name", name),
        string_kv("host.name", "node-1"),
    ]
}

#[test]
fn identical_labels_share_a_stream_and_entries_are_time_ordered() {
    let b = batch(vec![
        (svc("b"), vec![text_record(30, "b3"), text_record(10, "b1")]),
        (svc("a"), vec![text_record(5, "a")]),
        (svc("b"), vec![text_record(20, "b2")]),
    ]);
    let pushes = encode(&b, &opts(), 0);
    assert_eq!(pushes.len(), 1);
    let streams = &pushes[0].streams;
    assert_eq!(streams.len(), 2);
    assert_eq!(label_string(&streams[0].labels), r#"{service_name="a"}"#);
    let ts: Vec<u64> = streams[1].entries.iter().map(|e| e.ts_ns).collect();
    assert_eq!(ts, [10, 20, 30]);
    assert_eq!(pushes[0].entry_count(), 4);
    assert!(pushes[0].records.is_none());
}

#[test]
fn records_without_labels_get_unknown_service() {
    let pushes = encode(
        &batch(vec![(vec![], vec![text_record(1, "x")])]),
        &opts(),
        0,
    );
    assert_eq!(
        label_string(&pushes[0].streams[0].labels),
        r#"{service_name="unknown_service"}"#
    );
}

#[test]
fn tenants_from_attributes_split_the_batch() {
    let mut o = opts();
    o.tenant = TenantRule::Attribute {
        key: "tenant".into(),
        fallback: Some("default".into()),
    };
    let mut r1 = text_record(1, "one");
    r1.attributes.push(string_kv("tenant", "team-a"));
    let mut r2 = text_record(2, "two");
    r2.attributes.push(string_kv("tenant", "team-b"));
    let r3 = text_record(3, "three");
    let mut res = svc("api");
    res.push(string_kv("tenant", "team-b"));
    let b = batch(vec![
        (svc("api"), vec![r1, r2, r3]),
        (res, vec![text_record(4, "four")]),
    ]);
    let pushes = encode(&b, &o, 0);
    let got: Vec<(Option<&str>, usize)> = pushes
        .iter()
        .map(|p| {
            (
                p.tenant.as_deref(),
                p.records.as_ref().map(Batch::item_count).unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (Some("default"), 1),
            (Some("team-a"), 1),
            (Some("team-b"), 2)
        ]
    );
    assert_eq!(pushes[2].entry_count(), 2);
}

#[test]
fn structured_metadata_carries_what_is_not_a_label() {
    let mut r = text_record(1, "paid");
    r.trace_id = vec![0xab; 16];
    r.span_id = vec![0xcd; 8];
    r.severity_number = 9;
    r.severity_text = "INFO".into();
    r.attributes.push(string_kv("http.route", "/pay"));
    r.attributes.push(KeyValue {
        key: "user".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![string_kv("id", "42")],
            })),
        }),
        ..Default::default()
    });
    let pushes = encode(&batch(vec![(svc("pay"), vec![r])]), &opts(), 0);
    let s = &pushes[0].streams[0];
    assert_eq!(
        label_string(&s.labels),
        r#"{level="info", service_name="pay"}"#
    );
    let md: Vec<(&str, &str)> = s.entries[0]
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        md,
        [
            ("trace_id", "abababababababababababababababab"),
            ("span_id", "cdcdcdcdcdcdcdcd"),
            ("severity_text", "INFO"),
            ("severity_number", "9"),
            ("scope_name", "app.logger"),
            ("scope_version", "1.2"),
            ("http_route", "/pay"),
            ("user_id", "42"),
            ("host_name", "node-1"),
        ]
    );
    assert_eq!(s.entries[0].line, r#"{"body":"paid"}"#);
}

#[test]
fn oversized_metadata_is_truncated_not_rejected() {
    let mut r = text_record(1, "boom");
    r.attributes
        .push(string_kv("exception.stacktrace", &"x".repeat(100_000)));
    for i in 0..200 {
        r.attributes.push(string_kv(&format!("a{i}"), "v"));
    }
    let pushes = encode(&batch(vec![(svc("api"), vec![r])]), &opts(), 0);
    let md = &pushes[0].streams[0].entries[0].metadata;
    assert_eq!(md.len(), 128);
    let size: usize = md.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(size, 64 * 1024);
    assert_eq!(md[2].0, "exception_stacktrace");
    assert_eq!(
        pushes[0].stats,
        Stats {
            label_values: 0,
            metadata_size: 1,
            metadata_entries: 1
        }
    );
}

#[test]
fn metadata_size_limit_cuts_the_longest_values_first() {
    let mut md = vec![
        ("a".to_string(), "12345".to_string()),
        ("b".to_string(), "1234567890".to_string()),
    ];
    let limits = Limits {
        max_structured_metadata_size: 10,
        ..Limits::default()
    };
    let mut stats = Stats::default();
    limit_metadata(&mut md, &limits, &mut stats);
    assert_eq!(
        md,
        [
            ("a".to_string(), "12345".to_string()),
            ("b".to_string(), "123".to_string())
        ]
    );
    assert_eq!(stats.metadata_size, 1);
}

#[test]
fn line_formats() {
    let mut r = text_record(1, "hello world");
    r.trace_id = vec![1; 16];
    r.severity_text = "WARN".into();
    r.attributes.push(string_kv("k", "v"));
    let b = batch(vec![(svc("api"), vec![r])]);
    let line = |fmt: LineFormat, md: bool| {
        let mut o = opts();
        o.line_format = fmt;
        o.structured_metadata = md;
        encode(&b, &o, 0)[0].streams[0].entries[0].line.clone()
    };
    assert_eq!(line(LineFormat::Raw, true), "hello world");
    assert_eq!(line(LineFormat::Raw, false), "hello world");
    assert_eq!(line(LineFormat::Json, true), r#"{"body":"hello world"}"#);
    assert_eq!(
        line(LineFormat::Json, false),
        r#"{"attributes":{"k":"v"},"body":"hello world","instrumentation_scope":{"name":"app.logger","version":"1.2"},"resources":{"host.name":"node-1"},"severity":"WARN","traceid":"01010101010101010101010101010101"}"#
    );
    assert_eq!(line(LineFormat::Logfmt, true), r#"msg="hello world""#);
    assert_eq!(
        line(LineFormat::Logfmt, false),
        r#"msg="hello world" traceID=01010101010101010101010101010101 severity=WARN k=v resource_host_name=node-1"#
    );
}

#[test]
fn timestamps_fall_back_to_observed_then_now() {
    let mut observed = text_record(0, "o");
    observed.observed_time_unix_nano = 7;
    let b = batch(vec![(svc("api"), vec![observed, text_record(0, "n")])]);
    let ts: Vec<u64> = encode(&b, &opts(), 99)[0].streams[0]
        .entries
        .iter()
        .map(|e| e.ts_ns)
        .collect();
    assert_eq!(ts, [7, 99]);
}

#[test]
fn json_and_proto_bodies() {
    let mut r = text_record(1_500_000_000, "hi");
    r.span_id = vec![2; 8];
    let pushes = encode(&batch(vec![(svc("api"), vec![r])]), &opts(), 0);
    let json: Json = serde_json::from_slice(&pushes[0].to_json()).unwrap();
    assert_eq!(json["streams"][0]["stream"]["service_name"], "api");
    assert_eq!(json["streams"][0]["values"][0][0], "1500000000");
    assert_eq!(json["streams"][0]["values"][0][1], r#"{"body":"hi"}"#);
    assert_eq!(
        json["streams"][0]["values"][0][2]["span_id"],
        "0202020202020202"
    );
    let proto = pushes[0].to_proto();
    assert_eq!(proto.streams[0].labels, r#"{service_name="api"}"#);
    let ts = proto.streams[0].entries[0].timestamp.unwrap();
    assert_eq!((ts.seconds, ts.nanos), (1, 500_000_000));
}
