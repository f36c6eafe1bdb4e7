//! Evaluation tests: one per OTTL construct, against real proto items.

use super::*;
use crate::data::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValueList, LogRecord, Metric, Resource, Span,
    Status, any_value, metric, span,
};
use opentelemetry_proto::tonic::metrics::v1::{Gauge, NumberDataPoint, number_data_point};

use crate::data::kv;

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource() -> Resource {
    Resource {
        attributes: vec![kv("service.name", s("checkout"))],
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "io.opentelemetry.http".into(),
        version: "1.2".into(),
        ..Default::default()
    }
}

fn span() -> Span {
    Span {
        trace_id: (1..=16).collect(),
        span_id: vec![7; 8],
        name: "GET /health/live".into(),
        kind: 2,
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        attributes: vec![
            kv("http.route", s("/health/live")),
            kv("url.path", s("/health/live")),
            kv("http.status_code", any_value::Value::IntValue(200)),
            kv("ratio", any_value::Value::DoubleValue(0.5)),
            kv("sampled", any_value::Value::BoolValue(true)),
            kv(
                "nested",
                any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", s("x"))],
                }),
            ),
            kv(
                "list",
                any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(s("first")),
                    }],
                }),
            ),
        ],
        events: vec![span::Event {
            name: "exception".into(),
            attributes: vec![kv("exception.type", s("IOError"))],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn check_span(text: &str) -> Result<bool, EvalError> {
    let (r, sc, sp) = (resource(), scope(), span());
    let c = Condition::parse(text, ContextSpec::Fixed(Context::Span)).expect(text);
    c.eval(&Item {
        resource: Some(&r),
        scope: Some(&sc),
        span: Some(&sp),
        ..Default::default()
    })
}

fn yes(text: &str) {
    assert_eq!(check_span(text), Ok(true), "{text}");
}

fn no(text: &str) {
    assert_eq!(check_span(text), Ok(false), "{text}");
}

#[test]
fn string_equality_and_inequality() {
    yes(r#"attributes["http.route"] == "/health/live""#);
    no(r#"attributes["http.route"] == "/health/ready""#);
    yes(r#"attributes["http.route"] != "/health/ready""#);
    yes(r#"name == "GET /health/live""#);
    yes(r#"span.name == "GET /health/live""#);
}

#[test]
fn string_ordering_is_bytewise() {
    yes(r#"name > "GET /a""#);
    yes(r#"name < "get""#);
    yes(r#""abc" <= "abc""#);
}

#[test]
fn int_and_float_compare_as_numbers() {
    yes(r#"attributes["http.status_code"] == 200"#);
    yes(r#"attributes["http.status_code"] == 200.0"#);
    yes(r#"attributes["http.status_code"] >= 200"#);
    no(r#"attributes["http.status_code"] > 200"#);
    yes(r#"attributes["ratio"] < 1"#);
    yes(r#"attributes["ratio"] <= 0.5"#);
    no(r#"attributes["ratio"] >= 0.6"#);
}

#[test]
fn mismatched_types_are_not_equal() {
    no(r#"attributes["http.status_code"] == "200""#);
    yes(r#"attributes["http.status_code"] != "200""#);
    no(r#"attributes["http.status_code"] < "300""#);
    no(r#"attributes["sampled"] > 0"#);
}

#[test]
fn bools() {
    yes(r#"attributes["sampled"] == true"#);
    yes("true");
    no("false");
    yes("true > false");
}

#[test]
fn nil_comparisons() {
    yes(r#"attributes["missing"] == nil"#);
    no(r#"attributes["missing"] != nil"#);
    yes(r#"attributes["http.route"] != nil"#);
    no(r#"attributes["missing"] == """#);
    no(r#"attributes["missing"] < 1"#);
    yes("nil == nil");
    no("nil < nil");
}

#[test]
fn and_or_not_and_parentheses() {
    yes(r#"name == "GET /health/live" and kind == SPAN_KIND_SERVER"#);
    no(r#"name == "x" and kind == SPAN_KIND_SERVER"#);
    yes(r#"name == "x" or kind == SPAN_KIND_SERVER"#);
    yes(r#"not name == "x""#);
    no(r#"not (name == "x" or kind == SPAN_KIND_SERVER)"#);
    yes(r#"(name == "x" or kind == 2) and not false"#);
}

#[test]
fn enums_kind_and_status() {
    yes("kind == SPAN_KIND_SERVER");
    no("kind == SPAN_KIND_CLIENT");
    yes("status.code == STATUS_CODE_ERROR");
    yes(r#"status.message == "boom""#);
}

#[test]
fn is_match_and_prefix_suffix() {
    yes(r#"IsMatch(attributes["url.path"], "^/health")"#);
    no(r#"IsMatch(attributes["url.path"], "^/api")"#);
    yes(r#"IsMatch(attributes["url.path"], "live")"#); // unanchored, as Go's MatchString
    no(r#"IsMatch(attributes["missing"], ".*")"#); // nil never matches
    yes(r#"IsMatch(attributes["http.status_code"], "^2\d\d$")"#); // ints as text
    yes(r#"not IsMatch(name, "^POST")"#);
    yes(r#"HasPrefix(name, "GET ")"#);
    yes(r#"HasSuffix(attributes["url.path"], "/live")"#);
    yes(r#"IsMatch(name, "GET") == true"#);
}

#[test]
fn resource_and_scope_paths() {
    yes(r#"resource.attributes["service.name"] == "checkout""#);
    yes(r#"instrumentation_scope.name == "io.opentelemetry.http""#);
    yes(r#"scope.version == "1.2""#);
}

#[test]
fn ids_as_bytes_and_strings() {
    yes("trace_id == TraceID(0x0102030405060708090a0b0c0d0e0f10)");
    yes(r#"trace_id.string == "0102030405060708090a0b0c0d0e0f10""#);
    yes("span_id == SpanID(0x0707070707070707)");
    // An absent parent reads as zeros; its string form is empty.
    yes("parent_span_id == SpanID(0x0000000000000000)");
    yes(r#"parent_span_id.string == """#);
    yes("IsRootSpan()");
}

#[test]
fn nested_indexes_and_type_checks() {
    yes(r#"attributes["nested"]["inner"] == "x""#);
    yes(r#"attributes["nested"]["absent"] == nil"#);
    yes(r#"attributes["list"][0] == "first""#);
    yes(r#"attributes["missing"]["deeper"] == nil"#);
    yes(r#"IsMap(attributes["nested"]) and IsList(attributes["list"])"#);
    yes(r#"IsString(name) and IsInt(kind) and IsDouble(attributes["ratio"])"#);
    yes(r#"IsBool(attributes["sampled"]) and not IsString(attributes["sampled"])"#);
}

#[test]
fn runtime_errors_are_reported() {
    let e = check_span(r#"HasPrefix(attributes["missing"], "x")"#).unwrap_err();
    assert!(e.0.contains("HasPrefix") && e.0.contains("nil"), "{e}");
    let e = check_span(r#"attributes["http.route"]["x"] == 1"#).unwrap_err();
    assert!(e.0.contains("cannot index a string"), "{e}");
    let e = check_span(r#"attributes["list"][5] == 1"#).unwrap_err();
    assert!(e.0.contains("out of range"), "{e}");
    // `or` stops at the first true branch, so a later error is never reached.
    yes(r#"true or HasPrefix(attributes["missing"], "x")"#);
}

#[test]
fn span_event_context_reads_event_and_parent_span() {
    let (r, sc, sp) = (resource(), scope(), span());
    let c = Condition::parse(
        r#"name == "exception" and span.kind == SPAN_KIND_SERVER and attributes["exception.type"] == "IOError""#,
        ContextSpec::Fixed(Context::SpanEvent),
    )
    .unwrap();
    let item = Item {
        resource: Some(&r),
        scope: Some(&sc),
        span: Some(&sp),
        event: Some(&sp.events[0]),
        ..Default::default()
    };
    assert_eq!(c.eval(&item), Ok(true));
}

#[test]
fn log_context() {
    let log = LogRecord {
        severity_number: 5,
        severity_text: "DEBUG".into(),
        body: Some(AnyValue {
            value: Some(s("user password=hunter2")),
        }),
        attributes: vec![kv("k", s("v"))],
        ..Default::default()
    };
    let check = |text: &str| {
        let c = Condition::parse(text, ContextSpec::Fixed(Context::Log)).expect(text);
        c.eval(&Item {
            log: Some(&log),
            ..Default::default()
        })
    };
    assert_eq!(check("severity_number < SEVERITY_NUMBER_INFO"), Ok(true));
    assert_eq!(check("severity_number >= SEVERITY_NUMBER_WARN"), Ok(false));
    assert_eq!(check(r#"severity_text == "DEBUG""#), Ok(true));
    assert_eq!(check(r#"IsMatch(body, ".*password.*")"#), Ok(true));
    assert_eq!(check(r#"log.body == "user password=hunter2""#), Ok(true));
    assert_eq!(check(r#"attributes["k"] == "v""#), Ok(true));
    assert_eq!(check("trace_id.string == \"\""), Ok(true));
}

#[test]
fn metric_and_datapoint_contexts() {
    let point = NumberDataPoint {
        attributes: vec![kv("http.method", s("GET"))],
        value: Some(number_data_point::Value::AsInt(42)),
        ..Default::default()
    };
    let m = Metric {
        name: "http.server.duration".into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: vec![point.clone()],
        })),
        ..Default::default()
    };
    let metric_ctx = |text: &str| {
        let c = Condition::parse(text, ContextSpec::Fixed(Context::Metric)).expect(text);
        c.eval(&Item {
            metric: Some(&m),
            ..Default::default()
        })
    };
    assert_eq!(metric_ctx(r#"name == "http.server.duration""#), Ok(true));
    assert_eq!(
        metric_ctx(r#"metric.name == "http.server.duration""#),
        Ok(true)
    );
    assert_eq!(metric_ctx("type == METRIC_DATA_TYPE_GAUGE"), Ok(true));
    assert_eq!(
        metric_ctx(r#"HasAttrOnDatapoint("http.method", "GET")"#),
        Ok(true)
    );
    assert_eq!(metric_ctx(r#"HasAttrKeyOnDatapoint("absent")"#), Ok(false));
    let dp = |text: &str| {
        let c = Condition::parse(text, ContextSpec::Fixed(Context::DataPoint)).expect(text);
        c.eval(&Item {
            metric: Some(&m),
            point: Some(Point::Number(&point)),
            ..Default::default()
        })
    };
    assert_eq!(dp("value_int == 42 and value_double == 0"), Ok(true));
    assert_eq!(
        dp(r#"metric.name == "http.server.duration" and attributes["http.method"] == "GET""#),
        Ok(true)
    );
    assert_eq!(dp("count == nil"), Ok(true));
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(eval::base64(b""), "");
    assert_eq!(eval::base64(b"f"), "Zg==");
    assert_eq!(eval::base64(b"fo"), "Zm8=");
    assert_eq!(eval::base64(b"foo"), "Zm9v");
    assert_eq!(eval::base64(&[0xff, 0xfe]), "//4=");
}
