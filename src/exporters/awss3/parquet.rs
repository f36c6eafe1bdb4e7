//! The `parquet` marshaler: one flat row per log record or span, so the archive is
//! queryable by DuckDB, Athena/Trino and Spark without an OTLP decoder.
//!
//! Logs schema (one row per log record):
//! | column | type | notes |
//! |---|---|---|
//! | `time` | timestamp(ns, UTC) | null when the record has none |
//! | `observed_time` | timestamp(ns, UTC) | null when unset |
//! | `severity_number` | int32 | 0 = unspecified |
//! | `severity_text` | string | null when empty |
//! | `body` | string | string bodies as-is, other bodies as their JSON text; null when absent |
//! | `body_json` | string | JSON of structured (map/array) bodies, else null |
//! | `trace_id`, `span_id` | string | lower-case hex, null when empty |
//! | `flags` | uint32 | |
//! | `service_name` | string | resource attribute `service.name` |
//! | `scope_name`, `scope_version` | string | |
//! | `resource_attributes`, `attributes` | map<string, string> | values rendered as text (JSON for arrays/maps) |
//!
//! Spans schema (one row per span):
//! | column | type | notes |
//! |---|---|---|
//! | `trace_id`, `span_id` | string | hex |
//! | `parent_span_id`, `trace_state` | string | null when empty |
//! | `name` | string | |
//! | `kind` | string | `unspecified` `internal` `server` `client` `producer` `consumer` |
//! | `start_time`, `end_time` | timestamp(ns, UTC) | |
//! | `duration_ns` | int64 | end − start (0 if end < start) |
//! | `status_code` | string | `unset` `ok` `error` |
//! | `status_message` | string | null when empty |
//! | `service_name`, `scope_name`, `scope_version` | string | |
//! | `resource_attributes`, `attributes` | map<string, string> | |
//! | `events` | list<struct<time: timestamp(ns, UTC), name: string, attributes: map<string, string>>> | |
//! | `links` | list<struct<trace_id, span_id, trace_state: string, attributes: map<string, string>>> | |
//!
//! Files: column chunks compressed with zstd (level 3) unless `compression: none`; row
//! groups of at most 128Ki rows (objects are capped by `max_object_size_mib`, so an object
//! is one or a few row groups, each with min/max statistics for time-range pruning);
//! dictionary encoding on (service names and attribute keys repeat). Metrics have no
//! Parquet schema: a metrics batch with this marshaler is a permanent error.

use std::sync::Arc;

use arrow_array::builder::{
    Int32Builder, Int64Builder, ListBuilder, MapBuilder, StringBuilder, StructBuilder,
    TimestampNanosecondBuilder, UInt32Builder,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::marshal::{Compression, MarshalError};
use crate::data::{
    AnyValue, Batch, KeyValue, Resource, any_value, attr_str, hex, value_to_json, value_to_string,
};

/// Row-group cap: large enough for efficient scans, small enough that statistics prune.
pub const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;

type AttrMap = MapBuilder<StringBuilder, StringBuilder>;

fn new_map() -> AttrMap {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

fn map_type() -> DataType {
    new_map().finish().data_type().clone()
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn ts_builder() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

fn push_attrs(b: &mut AttrMap, attrs: &[KeyValue]) -> Result<(), MarshalError> {
    for kv in attrs {
        b.keys().append_value(&kv.key);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(v) => b.values().append_value(value_to_string(v)),
            None => b.values().append_null(),
        }
    }
    b.append(true)
        .map_err(|e| MarshalError::Encode(e.to_string()))
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn opt_hex(b: &[u8]) -> Option<String> {
    (!b.is_empty()).then(|| hex(b))
}

fn nanos(t: u64) -> Option<i64> {
    (t != 0).then(|| i64::try_from(t).unwrap_or(i64::MAX))
}

fn resource_parts(r: &Option<Resource>) -> (&[KeyValue], Option<&str>) {
    let attrs = r.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
    (attrs, attr_str(attrs, "service.name"))
}

/// Text and JSON columns of a log body.
fn body_columns(body: &Option<AnyValue>) -> (Option<String>, Option<String>) {
    match body.as_ref().and_then(|b| b.value.as_ref()) {
        None => (None, None),
        Some(any_value::Value::StringValue(s)) => (Some(s.clone()), None),
        Some(v @ (any_value::Value::KvlistValue(_) | any_value::Value::ArrayValue(_))) => {
            let json = value_to_json(v).to_string();
            (Some(json.clone()), Some(json))
        }
        Some(v) => (Some(value_to_string(v)), None),
    }
}

/// Encodes a traces or logs batch as one Parquet file.
pub fn encode(batch: &Batch, c: Compression) -> Result<Vec<u8>, MarshalError> {
    let rb = match batch {
        Batch::Raw(r) => {
            let b = r
                .decode()
                .map_err(|e| MarshalError::Encode(e.to_string()))?;
            return encode(&b, c);
        }
        Batch::Logs(_) => logs_record_batch(batch)?,
        Batch::Traces(_) => spans_record_batch(batch)?,
        Batch::Metrics(_) => {
            return Err(MarshalError::Unsupported(
                "the parquet marshaler has schemas for logs and traces only; use otlp_proto or otlp_json for metrics".into(),
            ));
        }
    };
    let compression = match c {
        Compression::None => PqCompression::UNCOMPRESSED,
        Compression::Zstd => PqCompression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| MarshalError::Encode(e.to_string()))?,
        ),
        Compression::Gzip => {
            return Err(MarshalError::Unsupported(
                "parquet supports compression zstd or none".into(),
            ));
        }
    };
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(format!("weft {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, rb.schema(), Some(props))
        .map_err(|e| MarshalError::Encode(e.to_string()))?;
    w.write(&rb)
        .map_err(|e| MarshalError::Encode(e.to_string()))?;
    w.close().map_err(|e| MarshalError::Encode(e.to_string()))?;
    Ok(out)
}

fn finish(cols: Vec<(&str, ArrayRef, bool)>) -> Result<RecordBatch, MarshalError> {
    RecordBatch::try_from_iter_with_nullable(cols).map_err(|e| MarshalError::Encode(e.to_string()))
}

fn logs_record_batch(batch: &Batch) -> Result<RecordBatch, MarshalError> {
    let Batch::Logs(v) = batch else {
        return Err(MarshalError::Encode("not a logs batch".into()));
    };
    let (mut time, mut observed) = (ts_builder(), ts_builder());
    let mut sev_num = Int32Builder::new();
    let (mut sev_text, mut body, mut body_json) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut trace_id, mut span_id) = (StringBuilder::new(), StringBuilder::new());
    let mut flags = UInt32Builder::new();
    let (mut service, mut scope_name, mut scope_version) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut res_attrs, mut attrs) = (new_map(), new_map());
    for rl in v {
        let (rattrs, svc) = resource_parts(&rl.resource);
        for sl in &rl.scope_logs {
            let (sname, sver) = sl
                .scope
                .as_ref()
                .map(|s| (s.name.as_str(), s.version.as_str()))
                .unwrap_or(("", ""));
            for r in &sl.log_records {
                time.append_option(nanos(r.time_unix_nano));
                observed.append_option(nanos(r.observed_time_unix_nano));
                sev_num.append_value(r.severity_number);
                sev_text.append_option(opt(&r.severity_text));
                let (text, json) = body_columns(&r.body);
                body.append_option(text);
                body_json.append_option(json);
                trace_id.append_option(opt_hex(&r.trace_id));
                span_id.append_option(opt_hex(&r.span_id));
                flags.append_value(r.flags);
                service.append_option(svc);
                scope_name.append_option(opt(sname));
                scope_version.append_option(opt(sver));
                push_attrs(&mut res_attrs, rattrs)?;
                push_attrs(&mut attrs, &r.attributes)?;
            }
        }
    }
    finish(vec![
        ("time", Arc::new(time.finish()), true),
        ("observed_time", Arc::new(observed.finish()), true),
        ("severity_number", Arc::new(sev_num.finish()), false),
        ("severity_text", Arc::new(sev_text.finish()), true),
        ("body", Arc::new(body.finish()), true),
        ("body_json", Arc::new(body_json.finish()), true),
        ("trace_id", Arc::new(trace_id.finish()), true),
        ("span_id", Arc::new(span_id.finish()), true),
        ("flags", Arc::new(flags.finish()), false),
        ("service_name", Arc::new(service.finish()), true),
        ("scope_name", Arc::new(scope_name.finish()), true),
        ("scope_version", Arc::new(scope_version.finish()), true),
        ("resource_attributes", Arc::new(res_attrs.finish()), false),
        ("attributes", Arc::new(attrs.finish()), false),
    ])
}

pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

pub fn status_name(code: i32) -> &'static str {
    match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("time", ts_type(), true),
        Field::new("name", DataType::Utf8, true),
        Field::new("attributes", map_type(), true),
    ])
}

fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("attributes", map_type(), true),
    ])
}

fn struct_list(
    fields: Fields,
    builders: Vec<Box<dyn arrow_array::builder::ArrayBuilder>>,
) -> ListBuilder<StructBuilder> {
    ListBuilder::new(StructBuilder::new(fields, builders))
}

fn missing(what: &str) -> MarshalError {
    MarshalError::Encode(format!(
        "internal: parquet builder for {what} has an unexpected type"
    ))
}

fn spans_record_batch(batch: &Batch) -> Result<RecordBatch, MarshalError> {
    let Batch::Traces(v) = batch else {
        return Err(MarshalError::Encode("not a traces batch".into()));
    };
    let (mut trace_id, mut span_id, mut parent, mut state) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut name, mut kind) = (StringBuilder::new(), StringBuilder::new());
    let (mut start, mut end) = (ts_builder(), ts_builder());
    let mut duration = Int64Builder::new();
    let (mut status_code, mut status_msg) = (StringBuilder::new(), StringBuilder::new());
    let (mut service, mut scope_name, mut scope_version) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut res_attrs, mut attrs) = (new_map(), new_map());
    let mut events = struct_list(
        event_fields(),
        vec![
            Box::new(ts_builder()),
            Box::new(StringBuilder::new()),
            Box::new(new_map()),
        ],
    );
    let mut links = struct_list(
        link_fields(),
        vec![
            Box::new(StringBuilder::new()),
            Box::new(StringBuilder::new()),
            Box::new(StringBuilder::new()),
            Box::new(new_map()),
        ],
    );
    for rs in v {
        let (rattrs, svc) = resource_parts(&rs.resource);
        for ss in &rs.scope_spans {
            let (sname, sver) = ss
                .scope
                .as_ref()
                .map(|s| (s.name.as_str(), s.version.as_str()))
                .unwrap_or(("", ""));
            for s in &ss.spans {
                trace_id.append_value(hex(&s.trace_id));
                span_id.append_value(hex(&s.span_id));
                parent.append_option(opt_hex(&s.parent_span_id));
                state.append_option(opt(&s.trace_state));
                name.append_value(&s.name);
                kind.append_value(kind_name(s.kind));
                start.append_option(nanos(s.start_time_unix_nano));
                end.append_option(nanos(s.end_time_unix_nano));
                let d = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano);
                duration.append_value(i64::try_from(d).unwrap_or(i64::MAX));
                let st = s.status.as_ref();
                status_code.append_value(status_name(st.map(|x| x.code).unwrap_or(0)));
                status_msg.append_option(st.and_then(|x| opt(&x.message)));
                service.append_option(svc);
                scope_name.append_option(opt(sname));
                scope_version.append_option(opt(sver));
                push_attrs(&mut res_attrs, rattrs)?;
                push_attrs(&mut attrs, &s.attributes)?;

                let eb = events.values();
                for e in &s.events {
                    eb.field_builder::<TimestampNanosecondBuilder>(0)
                        .ok_or_else(|| missing("events.time"))?
                        .append_option(nanos(e.time_unix_nano));
                    eb.field_builder::<StringBuilder>(1)
                        .ok_or_else(|| missing("events.name"))?
                        .append_value(&e.name);
                    push_attrs(
                        eb.field_builder::<AttrMap>(2)
                            .ok_or_else(|| missing("events.attributes"))?,
                        &e.attributes,
                    )?;
                    eb.append(true);
                }
                events.append(true);

                let lb = links.values();
                for l in &s.links {
                    lb.field_builder::<StringBuilder>(0)
                        .ok_or_else(|| missing("links.trace_id"))?
                        .append_value(hex(&l.trace_id));
                    lb.field_builder::<StringBuilder>(1)
                        .ok_or_else(|| missing("links.span_id"))?
                        .append_value(hex(&l.span_id));
                    lb.field_builder::<StringBuilder>(2)
                        .ok_or_else(|| missing("links.trace_state"))?
                        .append_option(opt(&l.trace_state));
                    push_attrs(
                        lb.field_builder::<AttrMap>(3)
                            .ok_or_else(|| missing("links.attributes"))?,
                        &l.attributes,
                    )?;
                    lb.append(true);
                }
                links.append(true);
            }
        }
    }
    finish(vec![
        ("trace_id", Arc::new(trace_id.finish()), false),
        ("span_id", Arc::new(span_id.finish()), false),
        ("parent_span_id", Arc::new(parent.finish()), true),
        ("trace_state", Arc::new(state.finish()), true),
        ("name", Arc::new(name.finish()), false),
        ("kind", Arc::new(kind.finish()), false),
        ("start_time", Arc::new(start.finish()), true),
        ("end_time", Arc::new(end.finish()), true),
        ("duration_ns", Arc::new(duration.finish()), false),
        ("status_code", Arc::new(status_code.finish()), false),
        ("status_message", Arc::new(status_msg.finish()), true),
        ("service_name", Arc::new(service.finish()), true),
        ("scope_name", Arc::new(scope_name.finish()), true),
        ("scope_version", Arc::new(scope_version.finish()), true),
        ("resource_attributes", Arc::new(res_attrs.finish()), false),
        ("attributes", Arc::new(attrs.finish()), false),
        ("events", Arc::new(events.finish()), false),
        ("links", Arc::new(links.finish()), false),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{
        LogRecord, ResourceLogs, ResourceSpans, ScopeLogs, ScopeSpans, Span, set_attr, span,
        string_value,
    };
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampNanosecondType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn read(bytes: Vec<u8>) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        arrow_select_concat(&batches)
    }

    fn arrow_select_concat(b: &[RecordBatch]) -> RecordBatch {
        assert_eq!(b.len(), 1, "small test files are one record batch");
        b[0].clone()
    }

    #[test]
    fn logs_columns() {
        let mut rattrs = Vec::new();
        set_attr(&mut rattrs, "service.name", string_value("checkout"));
        let structured = AnyValue {
            value: Some(any_value::Value::KvlistValue(crate::data::KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(AnyValue {
                        value: Some(string_value("v")),
                    }),
                    ..Default::default()
                }],
            })),
        };
        let b = Batch::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: rattrs,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 5,
                        severity_number: 9,
                        severity_text: "INFO".into(),
                        body: Some(AnyValue {
                            value: Some(string_value("hello")),
                        }),
                        trace_id: vec![0xab; 16],
                        ..Default::default()
                    },
                    LogRecord {
                        body: Some(structured),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }]);
        for c in [Compression::Zstd, Compression::None] {
            let rb = read(encode(&b, c).unwrap());
            assert_eq!(rb.num_rows(), 2);
            let body = rb.column_by_name("body").unwrap().as_string::<i32>();
            assert_eq!(body.value(0), "hello");
            assert_eq!(body.value(1), r#"{"k":"v"}"#);
            let json = rb.column_by_name("body_json").unwrap().as_string::<i32>();
            assert!(json.is_null(0));
            assert_eq!(json.value(1), r#"{"k":"v"}"#);
            let t = rb
                .column_by_name("time")
                .unwrap()
                .as_primitive::<TimestampNanosecondType>();
            assert_eq!(t.value(0), 5);
            assert!(t.is_null(1));
            assert_eq!(
                rb.column_by_name("trace_id")
                    .unwrap()
                    .as_string::<i32>()
                    .value(0),
                "ab".repeat(16)
            );
            assert_eq!(
                rb.column_by_name("service_name")
                    .unwrap()
                    .as_string::<i32>()
                    .value(1),
                "checkout"
            );
        }
        assert!(encode(&b, Compression::Gzip).is_err());
        assert!(encode(&Batch::Metrics(vec![]), Compression::Zstd).is_err());
    }

    #[test]
    fn spans_with_events_and_links() {
        let s = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: 100,
            end_time_unix_nano: 350,
            events: vec![span::Event {
                time_unix_nano: 200,
                name: "exception".into(),
                ..Default::default()
            }],
            links: vec![span::Link {
                trace_id: vec![3; 16],
                span_id: vec![4; 8],
                ..Default::default()
            }],
            ..Default::default()
        };
        let b = Batch::Traces(vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![
                    s.clone(),
                    Span {
                        events: vec![],
                        links: vec![],
                        ..s
                    },
                ],
                ..Default::default()
            }],
            schema_url: String::new(),
        }]);
        let rb = read(encode(&b, Compression::Zstd).unwrap());
        assert_eq!(rb.num_rows(), 2);
        assert_eq!(
            rb.column_by_name("kind")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "server"
        );
        assert_eq!(
            rb.column_by_name("duration_ns")
                .unwrap()
                .as_primitive::<arrow_array::types::Int64Type>()
                .value(0),
            250
        );
        let events = rb.column_by_name("events").unwrap().as_list::<i32>();
        assert_eq!(events.value_length(0), 1);
        assert_eq!(events.value_length(1), 0);
        let ev = events.value(0);
        let ev = ev.as_struct();
        assert_eq!(
            ev.column_by_name("name")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "exception"
        );
        let links = rb.column_by_name("links").unwrap().as_list::<i32>();
        let l = links.value(0);
        assert_eq!(
            l.as_struct()
                .column_by_name("span_id")
                .unwrap()
                .as_string::<i32>()
                .value(0),
            "0404040404040404"
        );
    }
}
