use super::*;
use serde_json::json;

fn compile(v: serde_json::Value) -> Result<Actions, FieldError> {
    let list: Vec<ActionConfig> = serde_json::from_value(v).expect("shape");
    Actions::compile(&list)
}

fn attrs(pairs: &[(&str, serde_json::Value)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| KeyValue {
            key: k.to_string(),
            value: Some(json_to_any(v)),
            ..Default::default()
        })
        .collect()
}

fn get(a: &[KeyValue], k: &str) -> Option<serde_json::Value> {
    crate::data::attr(a, k).map(crate::data::value_to_json)
}

fn run(actions: serde_json::Value, input: &[(&str, serde_json::Value)]) -> Vec<KeyValue> {
    let mut a = attrs(input);
    compile(actions).expect("valid").apply(&mut a);
    a
}

#[test]
fn insert_only_when_absent() {
    let a = run(
        json!([{"key": "env", "value": "prod", "action": "insert"},
               {"key": "keep", "value": "new", "action": "INSERT"}]),
        &[("keep", json!("old"))],
    );
    assert_eq!(get(&a, "env"), Some(json!("prod")));
    assert_eq!(get(&a, "keep"), Some(json!("old")));
}

#[test]
fn update_only_when_present() {
    let a = run(
        json!([{"key": "a", "value": 2245, "action": "update"},
               {"key": "missing", "value": 1, "action": "update"}]),
        &[("a", json!("x"))],
    );
    assert_eq!(get(&a, "a"), Some(json!(2245)));
    assert_eq!(get(&a, "missing"), None);
}

#[test]
fn upsert_and_from_attribute() {
    let a = run(
        json!([{"key": "a", "value": true, "action": "upsert"},
               {"key": "b", "value": {"x": [1, 1.5]}, "action": "upsert"},
               {"key": "http.request.method", "from_attribute": "http.method", "action": "upsert"},
               {"key": "copy", "from_attribute": "absent", "action": "upsert"}]),
        &[("a", json!(1)), ("http.method", json!("GET"))],
    );
    assert_eq!(get(&a, "a"), Some(json!(true)));
    assert_eq!(get(&a, "b"), Some(json!({"x": [1, 1.5]})));
    assert_eq!(get(&a, "http.request.method"), Some(json!("GET")));
    assert_eq!(get(&a, "copy"), None, "absent source: no action");
}

#[test]
fn delete_by_key_and_pattern() {
    let a = run(
        json!([{"key": "password", "action": "delete"},
               {"pattern": "(?i)^http\\.request\\.header\\.(authorization|cookie)$", "action": "delete"}]),
        &[
            ("password", json!("p")),
            ("http.request.header.Authorization", json!("Bearer x")),
            ("http.request.header.cookie", json!("c")),
            ("http.route", json!("/x")),
        ],
    );
    let keys: Vec<&str> = a.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, vec!["http.route"]);
}

#[test]
fn hash_is_sha256_hex_of_the_value_bytes() {
    let a = run(
        json!([{"key": "email", "action": "hash"},
               {"pattern": "^n", "action": "hash"},
               {"key": "empty", "action": "hash"}]),
        &[
            ("email", json!("abc")),
            ("n", json!(1)),
            ("empty", json!("")),
        ],
    );
    // sha256("abc")
    assert_eq!(
        get(&a, "email"),
        Some(json!(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ))
    );
    let expected = hex(&Sha256::digest(1i64.to_le_bytes()));
    assert_eq!(get(&a, "n"), Some(json!(expected)));
    assert_eq!(get(&a, "empty"), Some(json!("")));
}

#[test]
fn extract_named_groups() {
    let a = run(
        json!([{"key": "http.url", "action": "extract",
                "pattern": "^(?P<http_protocol>.*):\\/\\/(?P<http_domain>[^/]*)(?P<http_path>.*)$"}]),
        &[
            ("http.url", json!("https://example.com/a/b")),
            ("http_path", json!("old")),
        ],
    );
    assert_eq!(get(&a, "http.url"), Some(json!("https://example.com/a/b")));
    assert_eq!(get(&a, "http_protocol"), Some(json!("https")));
    assert_eq!(get(&a, "http_domain"), Some(json!("example.com")));
    assert_eq!(
        get(&a, "http_path"),
        Some(json!("/a/b")),
        "existing targets are overwritten"
    );
    // Non-string sources and non-matching values change nothing.
    let a = run(
        json!([{"key": "n", "action": "extract", "pattern": "(?P<x>\\d)"}]),
        &[("n", json!(5))],
    );
    assert_eq!(get(&a, "x"), None);
}

#[test]
fn convert_between_types() {
    let a = run(
        json!([{"key": "code", "action": "convert", "converted_type": "int"},
               {"key": "ratio", "action": "convert", "converted_type": "double"},
               {"key": "n", "action": "convert", "converted_type": "string"},
               {"key": "bad", "action": "convert", "converted_type": "int"},
               {"key": "flag", "action": "convert", "converted_type": "int"},
               {"key": "f", "action": "convert", "converted_type": "int"}]),
        &[
            ("code", json!("200")),
            ("ratio", json!("0.25")),
            ("n", json!(42)),
            ("bad", json!("abc")),
            ("flag", json!(true)),
            ("f", json!(2.9)),
        ],
    );
    assert_eq!(get(&a, "code"), Some(json!(200)));
    assert_eq!(get(&a, "ratio"), Some(json!(0.25)));
    assert_eq!(get(&a, "n"), Some(json!("42")));
    assert_eq!(
        get(&a, "bad"),
        Some(json!("abc")),
        "unconvertible values are left as is"
    );
    assert_eq!(get(&a, "flag"), Some(json!(1)));
    assert_eq!(get(&a, "f"), Some(json!(2)));
}

#[test]
fn config_errors_name_the_field() {
    let cases = [
        (
            json!([{"key": "a", "action": "upsrt", "value": 1}]),
            "action",
            "unsupported action",
        ),
        (
            json!([{"action": "insert", "value": 1}]),
            "key",
            "requires key",
        ),
        (json!([{"action": "delete"}]), "key", "key and pattern"),
        (
            json!([{"key": "a", "action": "insert"}]),
            "value",
            "exactly one",
        ),
        (
            json!([{"key": "a", "action": "insert", "value": 1, "from_attribute": "b"}]),
            "value",
            "exactly one",
        ),
        (
            json!([{"key": "a", "action": "insert", "from_context": "auth.subject"}]),
            "from_context",
            "no authenticator extensions",
        ),
        (
            json!([{"key": "a", "action": "insert", "from_context": "client.address"}]),
            "from_context",
            "client's address",
        ),
        (
            json!([{"key": "a", "action": "insert", "from_context": "metadata."}]),
            "from_context",
            "names no metadata key",
        ),
        (
            json!([{"key": "a", "action": "upsert", "value": 1, "from_context": "metadata.x"}]),
            "value",
            "exactly one of value, from_attribute and from_context",
        ),
        (
            json!([{"key": "a", "action": "delete", "from_context": "metadata.x"}]),
            "from_context",
            "does not use",
        ),
        (
            json!([{"key": "a", "action": "delete", "pattern": "("}]),
            "pattern",
            "invalid pattern",
        ),
        (
            json!([{"key": "a", "action": "extract"}]),
            "pattern",
            "requires pattern",
        ),
        (
            json!([{"key": "a", "action": "extract", "pattern": "(\\d+)"}]),
            "pattern",
            "named groups",
        ),
        (
            json!([{"key": "a", "action": "convert", "converted_type": "float"}]),
            "converted_type",
            "int, double or string",
        ),
        (
            json!([{"key": "a", "action": "hash", "value": 1}]),
            "value",
            "does not use",
        ),
    ];
    for (config, field, want) in cases {
        let e = compile(config.clone()).expect_err(&config.to_string());
        assert_eq!(e.path, vec!["0".to_string(), field.to_string()], "{config}");
        assert!(e.message.contains(want), "{config}: {}", e.message);
    }
    let e = compile(json!([{"key": "a", "action": "upsrt", "value": 1}])).unwrap_err();
    assert_eq!(e.suggestion.as_deref(), Some("upsert"));
}

#[test]
fn from_context_reads_the_request_metadata() {
    use crate::pipeline::ClientMetadata;
    let actions = compile(json!([
        {"key": "tenant", "from_context": "metadata.X-Tenant", "action": "insert"},
        {"key": "team", "from_context": "x-team", "action": "upsert"},
        {"key": "env", "from_context": "metadata.x-env", "action": "update"},
        {"key": "none", "from_context": "metadata.x-none", "action": "upsert"},
    ]))
    .unwrap();
    assert!(actions.uses_context());
    let md = ClientMetadata::from_pairs([
        ("x-tenant", "acme"),
        ("X-Team", "blue"),
        ("x-team", "green"),
        ("x-env", "prod"),
    ]);
    let mut attrs = Vec::new();
    actions.apply_in(&mut attrs, Some(&md));
    let got: Vec<_> = attrs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        got,
        ["tenant", "team"],
        "update needs the key, x-none is absent"
    );
    assert_eq!(crate::data::attr_str(&attrs, "tenant"), Some("acme"));
    // Several values become one string joined with ";", as the Collector does.
    assert_eq!(crate::data::attr_str(&attrs, "team"), Some("blue;green"));

    let mut none = Vec::new();
    actions.apply_in(&mut none, None);
    actions.apply(&mut none);
    assert!(
        none.is_empty(),
        "no metadata: every from_context action does nothing"
    );

    let plain = compile(json!([{"key": "a", "value": 1, "action": "insert"}])).unwrap();
    assert!(!plain.uses_context());
}
