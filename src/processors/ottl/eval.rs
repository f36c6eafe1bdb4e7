//! Evaluation of bound conditions against one item (span, span event, log record, metric,
//! data point, scope or resource) and OTTL's comparison rules.

use std::borrow::Cow;
use std::cmp::Ordering;

use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
    number_data_point,
};

use super::parse::{Call, CmpOp, Expr, Key, Lit, TypeCheck, Value};
use super::paths::Field;
use crate::data::{
    AnyValue, InstrumentationScope, KeyValue, LogRecord, Metric, Resource, Span, any_value, metric,
    span,
};

/// A condition failed to evaluate (the caller applies `error_mode`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

/// One metric data point, whatever the metric type.
#[derive(Clone, Copy, Debug)]
pub enum Point<'a> {
    Number(&'a NumberDataPoint),
    Histogram(&'a HistogramDataPoint),
    ExponentialHistogram(&'a ExponentialHistogramDataPoint),
    Summary(&'a SummaryDataPoint),
}

impl<'a> Point<'a> {
    pub fn attributes(&self) -> &'a [KeyValue] {
        match self {
            Point::Number(p) => &p.attributes,
            Point::Histogram(p) => &p.attributes,
            Point::ExponentialHistogram(p) => &p.attributes,
            Point::Summary(p) => &p.attributes,
        }
    }
}

/// What a condition is evaluated against: the item and everything above it. Fields the
/// context does not have stay `None` (binding guarantees they are not read).
#[derive(Clone, Copy, Default)]
pub struct Item<'a> {
    pub resource: Option<&'a Resource>,
    pub scope: Option<&'a InstrumentationScope>,
    pub span: Option<&'a Span>,
    pub event: Option<&'a span::Event>,
    pub log: Option<&'a LogRecord>,
    pub metric: Option<&'a Metric>,
    pub point: Option<Point<'a>>,
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Map(&'a [KeyValue]),
    List(&'a [AnyValue]),
}

impl<'a> Val<'a> {
    pub fn from_any(v: Option<&'a AnyValue>) -> Val<'a> {
        use any_value::Value as V;
        match v.and_then(|v| v.value.as_ref()) {
            None | Some(V::StringValueStrindex(_)) => Val::Nil,
            Some(V::StringValue(s)) => Val::Str(Cow::Borrowed(s)),
            Some(V::BoolValue(b)) => Val::Bool(*b),
            Some(V::IntValue(i)) => Val::Int(*i),
            Some(V::DoubleValue(d)) => Val::Float(*d),
            Some(V::BytesValue(b)) => Val::Bytes(Cow::Borrowed(b)),
            Some(V::ArrayValue(a)) => Val::List(&a.values),
            Some(V::KvlistValue(kv)) => Val::Map(&kv.values),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "double",
            Val::Str(_) => "string",
            Val::Bytes(_) => "bytes",
            Val::Map(_) => "map",
            Val::List(_) => "list",
        }
    }

    /// The string form OTTL's string-like getters use (`IsMatch`): numbers and bools as
    /// text, bytes base64, maps and lists JSON. `None` for nil.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Val::Nil => return None,
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::Float(f) => f.to_string(),
            Val::Str(s) => s.to_string(),
            Val::Bytes(b) => base64(b),
            Val::Map(m) => {
                let kv =
                    any_value::Value::KvlistValue(crate::data::KeyValueList { values: m.to_vec() });
                crate::data::value_to_json(&kv).to_string()
            }
            Val::List(l) => {
                let a =
                    any_value::Value::ArrayValue(crate::data::ArrayValue { values: l.to_vec() });
                crate::data::value_to_json(&a).to_string()
            }
        })
    }
}

/// Standard base64 with padding (how OTTL renders bytes as a string).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) fn eval(e: &Expr, item: &Item<'_>) -> Result<bool, EvalError> {
    match e {
        Expr::Or(items) => {
            for i in items {
                if eval(i, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::And(items) => {
            for i in items {
                if !eval(i, item)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Not(inner) => Ok(!eval(inner, item)?),
        Expr::Cmp(a, op, b) => Ok(compare(&value(a, item)?, *op, &value(b, item)?)),
        Expr::Bool(v) => match value(v, item)? {
            Val::Bool(b) => Ok(b),
            other => Err(EvalError(format!(
                "expected a bool, got {}",
                other.type_name()
            ))),
        },
    }
}

/// OTTL's comparison table: numbers across int/float as floats, mismatched types are
/// "not equal", nil equals only nil (and empty bytes), maps/lists only `==`/`!=`.
pub fn compare(a: &Val<'_>, op: CmpOp, b: &Val<'_>) -> bool {
    let ord = match (a, b) {
        (Val::Nil, Val::Nil) => {
            Some(Ordering::Equal).filter(|_| op == CmpOp::Eq || op == CmpOp::Ne)
        }
        (Val::Nil, Val::Bytes(x)) | (Val::Bytes(x), Val::Nil) if x.is_empty() => {
            Some(Ordering::Equal).filter(|_| op == CmpOp::Eq || op == CmpOp::Ne)
        }
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Val::Bytes(x), Val::Bytes(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Val::Map(x), Val::Map(y)) => return equality_only(op, x == y),
        (Val::List(x), Val::List(y)) => return equality_only(op, x == y),
        _ => None,
    };
    match ord {
        None => op == CmpOp::Ne,
        Some(o) => match op {
            CmpOp::Eq => o == Ordering::Equal,
            CmpOp::Ne => o != Ordering::Equal,
            CmpOp::Lt => o == Ordering::Less,
            CmpOp::Le => o != Ordering::Greater,
            CmpOp::Gt => o == Ordering::Greater,
            CmpOp::Ge => o != Ordering::Less,
        },
    }
}

fn equality_only(op: CmpOp, equal: bool) -> bool {
    match op {
        CmpOp::Eq => equal,
        CmpOp::Ne => !equal,
        _ => false,
    }
}

fn value<'a>(v: &'a Value, item: &Item<'a>) -> Result<Val<'a>, EvalError> {
    match v {
        Value::Lit(l) => Ok(match l {
            Lit::Nil => Val::Nil,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Int(i) => Val::Int(*i),
            Lit::Float(f) => Val::Float(*f),
            Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
            Lit::Bytes(b) => Val::Bytes(Cow::Borrowed(b)),
        }),
        Value::Path(p) => index(read(p.field, item), &p.keys, &p.text),
        Value::Call(c) => call(c, item).map(Val::Bool),
    }
}

fn index<'a>(mut v: Val<'a>, keys: &[Key], path: &str) -> Result<Val<'a>, EvalError> {
    for k in keys {
        v = match (v, k) {
            (Val::Nil, _) => return Ok(Val::Nil),
            (Val::Map(m), Key::Str(s)) => Val::from_any(
                m.iter()
                    .find(|kv| kv.key == *s)
                    .and_then(|kv| kv.value.as_ref()),
            ),
            (Val::List(l), Key::Int(i)) => match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                Some(x) => Val::from_any(Some(x)),
                None => {
                    return Err(EvalError(format!(
                        "{path}: index {i} out of range for a list of {}",
                        l.len()
                    )));
                }
            },
            (other, k) => {
                let key = match k {
                    Key::Str(s) => format!("[{s:?}]"),
                    Key::Int(i) => format!("[{i}]"),
                };
                return Err(EvalError(format!(
                    "{path}: cannot index a {} with {key}",
                    other.type_name()
                )));
            }
        };
    }
    Ok(v)
}

fn call(c: &Call, item: &Item<'_>) -> Result<bool, EvalError> {
    Ok(match c {
        Call::IsMatch(target, re) => match value(target, item)?.to_text() {
            Some(s) => re.is_match(&s),
            None => false,
        },
        Call::HasPrefix(target, p) => {
            string_arg("HasPrefix", value(target, item)?)?.starts_with(p.as_str())
        }
        Call::HasSuffix(target, s) => {
            string_arg("HasSuffix", value(target, item)?)?.ends_with(s.as_str())
        }
        Call::Is(target, check) => {
            let v = value(target, item)?;
            matches!(
                (check, v),
                (TypeCheck::String, Val::Str(_))
                    | (TypeCheck::Int, Val::Int(_))
                    | (TypeCheck::Double, Val::Float(_))
                    | (TypeCheck::Bool, Val::Bool(_))
                    | (TypeCheck::Map, Val::Map(_))
                    | (TypeCheck::List, Val::List(_))
            )
        }
        Call::IsRootSpan => item
            .span
            .is_some_and(|s| s.parent_span_id.iter().all(|b| *b == 0)),
        Call::HasAttrKeyOnDatapoint(k) => item
            .metric
            .is_some_and(|m| any_point(m, |attrs| attrs.iter().any(|kv| kv.key == *k))),
        Call::HasAttrOnDatapoint(k, v) => item.metric.is_some_and(|m| {
            any_point(m, |attrs| {
                crate::data::attr_str(attrs, k) == Some(v.as_str())
            })
        }),
    })
}

fn string_arg<'a>(function: &str, v: Val<'a>) -> Result<Cow<'a, str>, EvalError> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(EvalError(format!(
            "{function}: expected a string, got {}",
            other.type_name()
        ))),
    }
}

/// Whether any data point of `m` has attributes satisfying `f`.
fn any_point(m: &Metric, mut f: impl FnMut(&[KeyValue]) -> bool) -> bool {
    use metric::Data;
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.iter().any(|p| f(&p.attributes)),
        Some(Data::Sum(s)) => s.data_points.iter().any(|p| f(&p.attributes)),
        Some(Data::Histogram(h)) => h.data_points.iter().any(|p| f(&p.attributes)),
        Some(Data::ExponentialHistogram(h)) => h.data_points.iter().any(|p| f(&p.attributes)),
        Some(Data::Summary(s)) => s.data_points.iter().any(|p| f(&p.attributes)),
        None => false,
    }
}

fn id(bytes: &[u8], width: usize) -> Val<'_> {
    if bytes.is_empty() {
        // An absent id reads as all zeros, as the Collector's fixed-size TraceID/SpanID do.
        Val::Bytes(Cow::Owned(vec![0; width]))
    } else {
        Val::Bytes(Cow::Borrowed(bytes))
    }
}

fn id_string(bytes: &[u8]) -> Val<'static> {
    if bytes.iter().all(|b| *b == 0) {
        Val::Str(Cow::Borrowed(""))
    } else {
        Val::Str(Cow::Owned(crate::data::hex(bytes)))
    }
}

fn u(v: u64) -> Val<'static> {
    Val::Int(v as i64)
}

fn str_val(s: &str) -> Val<'_> {
    Val::Str(Cow::Borrowed(s))
}

/// Reads a bound field. Parts of the item the context lacks read as nil.
fn read<'a>(f: Field, it: &Item<'a>) -> Val<'a> {
    use Field::*;
    let nil = Val::Nil;
    match f {
        Unbound => nil,
        ResourceAttributes => Val::Map(it.resource.map_or(&[][..], |r| &r.attributes)),
        ResourceDroppedAttributesCount => {
            u(it.resource.map_or(0, |r| r.dropped_attributes_count.into()))
        }
        ScopeName => it.scope.map_or(str_val(""), |s| str_val(&s.name)),
        ScopeVersion => it.scope.map_or(str_val(""), |s| str_val(&s.version)),
        ScopeAttributes => Val::Map(it.scope.map_or(&[][..], |s| &s.attributes)),
        ScopeDroppedAttributesCount => u(it.scope.map_or(0, |s| s.dropped_attributes_count.into())),
        _ => match (it.span, it.event, it.log, it.metric) {
            (Some(s), ..) if is_span_field(f) => read_span(f, s),
            (_, Some(e), ..)
                if matches!(
                    f,
                    EventName | EventTime | EventAttributes | EventDroppedAttributesCount
                ) =>
            {
                match f {
                    EventName => str_val(&e.name),
                    EventTime => u(e.time_unix_nano),
                    EventAttributes => Val::Map(&e.attributes),
                    _ => u(e.dropped_attributes_count.into()),
                }
            }
            (_, _, Some(l), _) => read_log(f, l),
            (.., Some(m)) => read_metric(f, m, it.point),
            _ => nil,
        },
    }
}

fn is_span_field(f: Field) -> bool {
    use Field::*;
    matches!(
        f,
        SpanName
            | SpanKind
            | SpanStatusCode
            | SpanStatusMessage
            | SpanAttributes
            | SpanTraceId
            | SpanTraceIdString
            | SpanSpanId
            | SpanSpanIdString
            | SpanParentSpanId
            | SpanParentSpanIdString
            | SpanTraceState
            | SpanStartTime
            | SpanEndTime
            | SpanFlags
            | SpanDroppedAttributesCount
            | SpanDroppedEventsCount
            | SpanDroppedLinksCount
    )
}

fn read_span(f: Field, s: &Span) -> Val<'_> {
    use Field::*;
    match f {
        SpanName => str_val(&s.name),
        SpanKind => Val::Int(s.kind.into()),
        SpanStatusCode => Val::Int(s.status.as_ref().map_or(0, |st| st.code.into())),
        SpanStatusMessage => str_val(s.status.as_ref().map_or("", |st| st.message.as_str())),
        SpanAttributes => Val::Map(&s.attributes),
        SpanTraceId => id(&s.trace_id, 16),
        SpanTraceIdString => id_string(&s.trace_id),
        SpanSpanId => id(&s.span_id, 8),
        SpanSpanIdString => id_string(&s.span_id),
        SpanParentSpanId => id(&s.parent_span_id, 8),
        SpanParentSpanIdString => id_string(&s.parent_span_id),
        SpanTraceState => str_val(&s.trace_state),
        SpanStartTime => u(s.start_time_unix_nano),
        SpanEndTime => u(s.end_time_unix_nano),
        SpanFlags => u(s.flags.into()),
        SpanDroppedAttributesCount => u(s.dropped_attributes_count.into()),
        SpanDroppedEventsCount => u(s.dropped_events_count.into()),
        SpanDroppedLinksCount => u(s.dropped_links_count.into()),
        _ => Val::Nil,
    }
}

fn read_log(f: Field, l: &LogRecord) -> Val<'_> {
    use Field::*;
    match f {
        LogBody => Val::from_any(l.body.as_ref()),
        LogBodyString => Val::Str(Cow::Owned(
            Val::from_any(l.body.as_ref()).to_text().unwrap_or_default(),
        )),
        LogAttributes => Val::Map(&l.attributes),
        LogSeverityNumber => Val::Int(l.severity_number.into()),
        LogSeverityText => str_val(&l.severity_text),
        LogTime => u(l.time_unix_nano),
        LogObservedTime => u(l.observed_time_unix_nano),
        LogTraceId => id(&l.trace_id, 16),
        LogTraceIdString => id_string(&l.trace_id),
        LogSpanId => id(&l.span_id, 8),
        LogSpanIdString => id_string(&l.span_id),
        LogFlags => u(l.flags.into()),
        LogDroppedAttributesCount => u(l.dropped_attributes_count.into()),
        LogEventName => str_val(&l.event_name),
        _ => Val::Nil,
    }
}

fn read_metric<'a>(f: Field, m: &'a Metric, point: Option<Point<'a>>) -> Val<'a> {
    use Field::*;
    use metric::Data;
    match f {
        MetricName => str_val(&m.name),
        MetricDescription => str_val(&m.description),
        MetricUnit => str_val(&m.unit),
        MetricType => Val::Int(match &m.data {
            None => 0,
            Some(Data::Gauge(_)) => 1,
            Some(Data::Sum(_)) => 2,
            Some(Data::Histogram(_)) => 3,
            Some(Data::ExponentialHistogram(_)) => 4,
            Some(Data::Summary(_)) => 5,
        }),
        MetricAggregationTemporality => Val::Int(match &m.data {
            Some(Data::Sum(s)) => s.aggregation_temporality.into(),
            Some(Data::Histogram(h)) => h.aggregation_temporality.into(),
            Some(Data::ExponentialHistogram(h)) => h.aggregation_temporality.into(),
            _ => 0,
        }),
        MetricIsMonotonic => Val::Bool(matches!(&m.data, Some(Data::Sum(s)) if s.is_monotonic)),
        _ => point.map_or(Val::Nil, |p| read_point(f, p)),
    }
}

fn read_point(f: Field, p: Point<'_>) -> Val<'_> {
    use Field::*;
    use number_data_point::Value as N;
    let (start, time, flags) = match p {
        Point::Number(p) => (p.start_time_unix_nano, p.time_unix_nano, p.flags),
        Point::Histogram(p) => (p.start_time_unix_nano, p.time_unix_nano, p.flags),
        Point::ExponentialHistogram(p) => (p.start_time_unix_nano, p.time_unix_nano, p.flags),
        Point::Summary(p) => (p.start_time_unix_nano, p.time_unix_nano, p.flags),
    };
    match (f, p) {
        (PointAttributes, p) => Val::Map(p.attributes()),
        (PointStartTime, _) => u(start),
        (PointTime, _) => u(time),
        (PointFlags, _) => u(flags.into()),
        (PointValueDouble, Point::Number(n)) => Val::Float(if let Some(N::AsDouble(d)) = n.value {
            d
        } else {
            0.0
        }),
        (PointValueInt, Point::Number(n)) => Val::Int(if let Some(N::AsInt(i)) = n.value {
            i
        } else {
            0
        }),
        (PointCount, Point::Histogram(h)) => u(h.count),
        (PointCount, Point::ExponentialHistogram(h)) => u(h.count),
        (PointCount, Point::Summary(s)) => u(s.count),
        (PointSum, Point::Histogram(h)) => Val::Float(h.sum.unwrap_or(0.0)),
        (PointSum, Point::ExponentialHistogram(h)) => Val::Float(h.sum.unwrap_or(0.0)),
        (PointSum, Point::Summary(s)) => Val::Float(s.sum),
        _ => Val::Nil,
    }
}
