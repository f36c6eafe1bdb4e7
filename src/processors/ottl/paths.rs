//! OTTL contexts, the paths each one exposes, enum names, and binding of parsed paths to
//! fields (done once at startup, so evaluation never looks at a path's text).
//!
//! | context (prefix)            | paths after the prefix |
//! |-----------------------------|------------------------|
//! | `resource`                  | `attributes`, `dropped_attributes_count` |
//! | `instrumentation_scope` / `scope` | `name`, `version`, `attributes`, `dropped_attributes_count` |
//! | `span`                      | `name`, `kind`, `status.code`, `status.message`, `attributes`, `trace_id`, `trace_id.string`, `span_id`, `span_id.string`, `parent_span_id`, `parent_span_id.string`, `trace_state`, `start_time_unix_nano`, `end_time_unix_nano`, `flags`, `dropped_{attributes,events,links}_count` |
//! | `spanevent`                 | `name`, `time_unix_nano`, `attributes`, `dropped_attributes_count` |
//! | `log`                       | `body`, `body.string`, `attributes`, `severity_number`, `severity_text`, `time_unix_nano`, `observed_time_unix_nano`, `trace_id`, `trace_id.string`, `span_id`, `span_id.string`, `flags`, `dropped_attributes_count`, `event_name` |
//! | `metric`                    | `name`, `description`, `unit`, `type`, `aggregation_temporality`, `is_monotonic` |
//! | `datapoint`                 | `attributes`, `start_time_unix_nano`, `time_unix_nano`, `value_double`, `value_int`, `count`, `sum`, `flags` |
//!
//! A context reads its own paths and those of the contexts above it: a span condition may
//! use `resource.attributes[...]`, a span event condition `span.name`, a data point
//! condition `metric.name`. `attributes` and `body` take `["key"]` / `[index]`.

use std::fmt;

use super::OttlError;
use super::parse::{Call, Expr, Value};
use crate::data::Signal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    Resource,
    Scope,
    Span,
    SpanEvent,
    Log,
    Metric,
    DataPoint,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Context::Resource => "resource",
            Context::Scope => "scope",
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
            Context::Log => "log",
            Context::Metric => "metric",
            Context::DataPoint => "datapoint",
        }
    }

    /// The contexts readable from this one, outermost first (ending with itself).
    pub fn chain(self) -> &'static [Context] {
        use Context::*;
        match self {
            Resource => &[Resource],
            Scope => &[Resource, Scope],
            Span => &[Resource, Scope, Span],
            SpanEvent => &[Resource, Scope, Span, SpanEvent],
            Log => &[Resource, Scope, Log],
            Metric => &[Resource, Scope, Metric],
            DataPoint => &[Resource, Scope, Metric, DataPoint],
        }
    }

    /// How deep in the data model the context's item lives (resource = 0).
    pub fn depth(self) -> usize {
        self.chain().len() - 1
    }

    /// Parses a context name (as used in `context:` and as a path prefix).
    pub fn parse(s: &str) -> Option<Context> {
        Some(match s {
            "resource" => Context::Resource,
            "scope" | "instrumentation_scope" => Context::Scope,
            "span" => Context::Span,
            "spanevent" => Context::SpanEvent,
            "log" => Context::Log,
            "metric" => Context::Metric,
            "datapoint" => Context::DataPoint,
            _ => return None,
        })
    }

    /// The contexts conditions of a signal may run in, outermost first.
    pub fn of_signal(signal: Signal) -> &'static [Context] {
        match signal {
            Signal::Traces => Context::SpanEvent.chain(),
            Signal::Logs => Context::Log.chain(),
            Signal::Metrics => Context::DataPoint.chain(),
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A telemetry field a path is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Unbound,
    ResourceAttributes,
    ResourceDroppedAttributesCount,
    ScopeName,
    ScopeVersion,
    ScopeAttributes,
    ScopeDroppedAttributesCount,
    SpanName,
    SpanKind,
    SpanStatusCode,
    SpanStatusMessage,
    SpanAttributes,
    SpanTraceId,
    SpanTraceIdString,
    SpanSpanId,
    SpanSpanIdString,
    SpanParentSpanId,
    SpanParentSpanIdString,
    SpanTraceState,
    SpanStartTime,
    SpanEndTime,
    SpanFlags,
    SpanDroppedAttributesCount,
    SpanDroppedEventsCount,
    SpanDroppedLinksCount,
    EventName,
    EventTime,
    EventAttributes,
    EventDroppedAttributesCount,
    LogBody,
    LogBodyString,
    LogAttributes,
    LogSeverityNumber,
    LogSeverityText,
    LogTime,
    LogObservedTime,
    LogTraceId,
    LogTraceIdString,
    LogSpanId,
    LogSpanIdString,
    LogFlags,
    LogDroppedAttributesCount,
    LogEventName,
    MetricName,
    MetricDescription,
    MetricUnit,
    MetricType,
    MetricAggregationTemporality,
    MetricIsMonotonic,
    PointAttributes,
    PointStartTime,
    PointTime,
    PointValueDouble,
    PointValueInt,
    PointCount,
    PointSum,
    PointFlags,
}

impl Field {
    /// Fields holding maps (or any value, for `body`) that accept `["key"]` / `[i]`.
    fn indexable(self) -> bool {
        use Field::*;
        matches!(
            self,
            ResourceAttributes
                | ScopeAttributes
                | SpanAttributes
                | EventAttributes
                | LogAttributes
                | LogBody
                | PointAttributes
        )
    }
}

fn table(c: Context) -> &'static [(&'static str, Field)] {
    use Field::*;
    match c {
        Context::Resource => &[
            ("attributes", ResourceAttributes),
            ("dropped_attributes_count", ResourceDroppedAttributesCount),
        ],
        Context::Scope => &[
            ("name", ScopeName),
            ("version", ScopeVersion),
            ("attributes", ScopeAttributes),
            ("dropped_attributes_count", ScopeDroppedAttributesCount),
        ],
        Context::Span => &[
            ("name", SpanName),
            ("kind", SpanKind),
            ("status.code", SpanStatusCode),
            ("status.message", SpanStatusMessage),
            ("attributes", SpanAttributes),
            ("trace_id", SpanTraceId),
            ("trace_id.string", SpanTraceIdString),
            ("span_id", SpanSpanId),
            ("span_id.string", SpanSpanIdString),
            ("parent_span_id", SpanParentSpanId),
            ("parent_span_id.string", SpanParentSpanIdString),
            ("trace_state", SpanTraceState),
            ("start_time_unix_nano", SpanStartTime),
            ("end_time_unix_nano", SpanEndTime),
            ("flags", SpanFlags),
            ("dropped_attributes_count", SpanDroppedAttributesCount),
            ("dropped_events_count", SpanDroppedEventsCount),
            ("dropped_links_count", SpanDroppedLinksCount),
        ],
        Context::SpanEvent => &[
            ("name", EventName),
            ("time_unix_nano", EventTime),
            ("attributes", EventAttributes),
            ("dropped_attributes_count", EventDroppedAttributesCount),
        ],
        Context::Log => &[
            ("body", LogBody),
            ("body.string", LogBodyString),
            ("attributes", LogAttributes),
            ("severity_number", LogSeverityNumber),
            ("severity_text", LogSeverityText),
            ("time_unix_nano", LogTime),
            ("observed_time_unix_nano", LogObservedTime),
            ("trace_id", LogTraceId),
            ("trace_id.string", LogTraceIdString),
            ("span_id", LogSpanId),
            ("span_id.string", LogSpanIdString),
            ("flags", LogFlags),
            ("dropped_attributes_count", LogDroppedAttributesCount),
            ("event_name", LogEventName),
        ],
        Context::Metric => &[
            ("name", MetricName),
            ("description", MetricDescription),
            ("unit", MetricUnit),
            ("type", MetricType),
            ("aggregation_temporality", MetricAggregationTemporality),
            ("is_monotonic", MetricIsMonotonic),
        ],
        Context::DataPoint => &[
            ("attributes", PointAttributes),
            ("start_time_unix_nano", PointStartTime),
            ("time_unix_nano", PointTime),
            ("value_double", PointValueDouble),
            ("value_int", PointValueInt),
            ("count", PointCount),
            ("sum", PointSum),
            ("flags", PointFlags),
        ],
    }
}

fn resolve(p: &super::parse::Path, ctx: Context, require_prefix: bool) -> Result<Field, OttlError> {
    let (level, rest, prefix) = match Context::parse(&p.names[0]) {
        Some(level) => (level, &p.names[1..], format!("{}.", p.names[0])),
        None if require_prefix => {
            return Err(OttlError::Invalid(format!(
                "path {} needs a context prefix here, e.g. {}.{}",
                p.text, ctx, p.text
            )));
        }
        None => (ctx, &p.names[..], String::new()),
    };
    if !ctx.chain().contains(&level) {
        return Err(OttlError::Invalid(format!(
            "path {} reads the {level} context, which a {ctx} condition cannot see \
             (it can read: {})",
            p.text,
            ctx.chain()
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let key = rest.join(".");
    let entries = table(level);
    let Some(&(_, field)) = entries.iter().find(|(name, _)| *name == key) else {
        let names = entries.iter().map(|(n, _)| *n);
        return Err(OttlError::UnknownPath {
            path: p.text.clone(),
            context: level,
            known: entries
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            suggestion: crate::config::suggest(&key, names).map(|s| format!("{prefix}{s}")),
        });
    };
    if !p.keys.is_empty() && !field.indexable() {
        return Err(OttlError::Invalid(format!(
            "path {}: {prefix}{key} cannot be indexed with [...]",
            p.text
        )));
    }
    Ok(field)
}

/// Binds every path of `expr` to a field of `ctx` and checks that context-specific
/// converters are used where they exist.
pub(super) fn bind(expr: &mut Expr, ctx: Context, require_prefix: bool) -> Result<(), OttlError> {
    let mut result = Ok(());
    visit_mut(expr, &mut |v| {
        if result.is_err() {
            return;
        }
        result = match v {
            Value::Path(p) => resolve(p, ctx, require_prefix).map(|f| p.field = f),
            Value::Call(Call::IsRootSpan) if ctx != Context::Span => Err(OttlError::Invalid(
                format!("IsRootSpan() is only available in the span context, not {ctx}"),
            )),
            Value::Call(Call::HasAttrKeyOnDatapoint(_) | Call::HasAttrOnDatapoint(..))
                if ctx != Context::Metric =>
            {
                Err(OttlError::Invalid(format!(
                    "HasAttrKeyOnDatapoint()/HasAttrOnDatapoint() are only available in the \
                     metric context, not {ctx}"
                )))
            }
            _ => Ok(()),
        };
    });
    result
}

/// The context a `*_conditions` entry runs in: the deepest context its paths (and
/// context-specific converters) name; the signal's item context when it names none.
pub(super) fn infer(expr: &Expr, signal: Signal) -> Result<Context, OttlError> {
    let allowed = Context::of_signal(signal);
    let mut deepest: Option<Context> = None;
    let mut result = Ok(());
    let mut note = |c: Context| {
        if deepest.is_none_or(|d| c.depth() > d.depth()) {
            deepest = Some(c);
        }
    };
    visit(expr, &mut |v| {
        if result.is_err() {
            return;
        }
        match v {
            Value::Path(p) => match Context::parse(&p.names[0]) {
                Some(c) if allowed.contains(&c) => note(c),
                Some(c) => {
                    result = Err(OttlError::Invalid(format!(
                        "path {} belongs to the {c} context, which {signal} conditions cannot use",
                        p.text
                    )));
                }
                None => {
                    let prefixes: Vec<String> = allowed.iter().map(|c| format!("{c}.")).collect();
                    result = Err(OttlError::Invalid(format!(
                        "path {} needs a context prefix ({}) in {signal} conditions",
                        p.text,
                        prefixes.join(", ")
                    )));
                }
            },
            Value::Call(Call::IsRootSpan) => note(Context::Span),
            Value::Call(Call::HasAttrKeyOnDatapoint(_) | Call::HasAttrOnDatapoint(..)) => {
                note(Context::Metric)
            }
            _ => {}
        }
    });
    result?;
    Ok(deepest.unwrap_or(match signal {
        Signal::Traces => Context::Span,
        Signal::Logs => Context::Log,
        Signal::Metrics => Context::Metric,
    }))
}

fn visit(e: &Expr, f: &mut dyn FnMut(&Value)) {
    fn value(v: &Value, f: &mut dyn FnMut(&Value)) {
        f(v);
        if let Value::Call(
            Call::IsMatch(a, _) | Call::HasPrefix(a, _) | Call::HasSuffix(a, _) | Call::Is(a, _),
        ) = v
        {
            value(a, f);
        }
    }
    match e {
        Expr::Or(items) | Expr::And(items) => items.iter().for_each(|i| visit(i, f)),
        Expr::Not(inner) => visit(inner, f),
        Expr::Cmp(a, _, b) => {
            value(a, f);
            value(b, f);
        }
        Expr::Bool(v) => value(v, f),
    }
}

fn visit_mut(e: &mut Expr, f: &mut dyn FnMut(&mut Value)) {
    fn value(v: &mut Value, f: &mut dyn FnMut(&mut Value)) {
        f(v);
        if let Value::Call(
            Call::IsMatch(a, _) | Call::HasPrefix(a, _) | Call::HasSuffix(a, _) | Call::Is(a, _),
        ) = v
        {
            value(a, f);
        }
    }
    match e {
        Expr::Or(items) | Expr::And(items) => items.iter_mut().for_each(|i| visit_mut(i, f)),
        Expr::Not(inner) => visit_mut(inner, f),
        Expr::Cmp(a, _, b) => {
            value(a, f);
            value(b, f);
        }
        Expr::Bool(v) => value(v, f),
    }
}

const SEVERITIES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

fn fixed_enum(name: &str) -> Option<i64> {
    Some(match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "AGGREGATION_TEMPORALITY_UNSPECIFIED" => 0,
        "AGGREGATION_TEMPORALITY_DELTA" => 1,
        "AGGREGATION_TEMPORALITY_CUMULATIVE" => 2,
        "FLAG_NONE" => 0,
        "FLAG_NO_RECORDED_VALUE" => 1,
        _ => return None,
    })
}

/// `SEVERITY_NUMBER_INFO` = 9, `SEVERITY_NUMBER_INFO2` = 10, ... as in the logs proto.
fn severity_enum(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    let (level, step) = match rest.strip_suffix(['2', '3', '4']) {
        Some(level) => (level, i64::from(rest.as_bytes()[rest.len() - 1] - b'1')),
        None => (rest, 0),
    };
    let idx = SEVERITIES.iter().position(|s| *s == level)?;
    Some(1 + 4 * idx as i64 + step)
}

/// The value of an enum symbol, or an error naming it.
pub(super) fn enum_value(name: &str) -> Result<i64, OttlError> {
    if let Some(v) = fixed_enum(name).or_else(|| severity_enum(name)) {
        return Ok(v);
    }
    let mut all: Vec<String> = [
        "SPAN_KIND_UNSPECIFIED",
        "SPAN_KIND_INTERNAL",
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_PRODUCER",
        "SPAN_KIND_CONSUMER",
        "STATUS_CODE_UNSET",
        "STATUS_CODE_OK",
        "STATUS_CODE_ERROR",
        "METRIC_DATA_TYPE_GAUGE",
        "METRIC_DATA_TYPE_SUM",
        "METRIC_DATA_TYPE_HISTOGRAM",
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM",
        "METRIC_DATA_TYPE_SUMMARY",
        "AGGREGATION_TEMPORALITY_DELTA",
        "AGGREGATION_TEMPORALITY_CUMULATIVE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(SEVERITIES.iter().map(|s| format!("SEVERITY_NUMBER_{s}")));
    Err(OttlError::UnknownEnum {
        suggestion: crate::config::suggest(name, all.iter().map(String::as_str)),
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::ottl::{Condition, ContextSpec};

    fn fixed(ctx: Context, text: &str) -> Result<Condition, OttlError> {
        Condition::parse(text, ContextSpec::Fixed(ctx))
    }

    #[test]
    fn severity_enums_follow_the_proto() {
        assert_eq!(enum_value("SEVERITY_NUMBER_TRACE").unwrap(), 1);
        assert_eq!(enum_value("SEVERITY_NUMBER_INFO").unwrap(), 9);
        assert_eq!(enum_value("SEVERITY_NUMBER_WARN").unwrap(), 13);
        assert_eq!(enum_value("SEVERITY_NUMBER_ERROR2").unwrap(), 18);
        assert_eq!(enum_value("SEVERITY_NUMBER_FATAL4").unwrap(), 24);
        assert!(enum_value("SEVERITY_NUMBER_LOUD").is_err());
    }

    #[test]
    fn unprefixed_and_prefixed_paths_bind_alike() {
        assert!(fixed(Context::Span, r#"attributes["http.route"] == "/x""#).is_ok());
        assert!(fixed(Context::Span, r#"span.attributes["http.route"] == "/x""#).is_ok());
        assert!(
            fixed(
                Context::Span,
                r#"resource.attributes["service.name"] == "a""#
            )
            .is_ok()
        );
        assert!(fixed(Context::Span, r#"instrumentation_scope.name == "a""#).is_ok());
        assert!(fixed(Context::SpanEvent, r#"span.name == "a" and name == "b""#).is_ok());
        assert!(
            fixed(
                Context::DataPoint,
                r#"metric.name == "a" and value_int > 1"#
            )
            .is_ok()
        );
        assert!(
            fixed(
                Context::Log,
                r#"log.severity_number >= SEVERITY_NUMBER_WARN"#
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_path_is_named_with_suggestion() {
        let e = fixed(Context::Span, r#"atributes["x"] == 1"#).unwrap_err();
        assert!(e.to_string().contains(r#"atributes["x"]"#), "{e}");
        assert!(e.to_string().contains("span context"), "{e}");
        assert_eq!(e.suggestion(), Some("attributes"));
        let e = fixed(Context::Span, "span.nme == \"x\"").unwrap_err();
        assert_eq!(e.suggestion(), Some("span.name"));
        let e = fixed(Context::Log, "cache[\"x\"] == 1").unwrap_err();
        assert!(e.to_string().contains("cache"), "{e}");
    }

    #[test]
    fn deeper_context_paths_are_refused() {
        let e = fixed(Context::Span, r#"spanevent.name == "x""#).unwrap_err();
        assert!(e.to_string().contains("spanevent"), "{e}");
        let e = fixed(Context::Span, r#"name["x"] == "y""#).unwrap_err();
        assert!(e.to_string().contains("cannot be indexed"), "{e}");
    }

    #[test]
    fn context_specific_converters() {
        assert!(fixed(Context::Span, "IsRootSpan()").is_ok());
        assert!(fixed(Context::Log, "IsRootSpan()").is_err());
        assert!(fixed(Context::Metric, r#"HasAttrOnDatapoint("k", "v")"#).is_ok());
        assert!(fixed(Context::Span, r#"HasAttrKeyOnDatapoint("k")"#).is_err());
    }

    #[test]
    fn inference_picks_the_deepest_prefix() {
        let infer = |t: &str, s| Condition::parse(t, ContextSpec::Infer(s)).map(|c| c.context());
        assert_eq!(
            infer(r#"resource.attributes["a"] == "b""#, Signal::Traces).unwrap(),
            Context::Resource
        );
        assert_eq!(
            infer(
                r#"resource.attributes["a"] == "b" or span.name == "x""#,
                Signal::Traces
            )
            .unwrap(),
            Context::Span
        );
        assert_eq!(
            infer(
                r#"span.name == "a" and spanevent.name == "x""#,
                Signal::Traces
            )
            .unwrap(),
            Context::SpanEvent
        );
        assert_eq!(
            infer("IsRootSpan()", Signal::Traces).unwrap(),
            Context::Span
        );
        assert_eq!(infer("true", Signal::Logs).unwrap(), Context::Log);
        assert_eq!(
            infer("metric.name == \"m\"", Signal::Metrics).unwrap(),
            Context::Metric
        );
        assert_eq!(
            infer("datapoint.value_int > 3", Signal::Metrics).unwrap(),
            Context::DataPoint
        );
        let e = infer(r#"attributes["a"] == "b""#, Signal::Traces).unwrap_err();
        assert!(e.to_string().contains("needs a context prefix"), "{e}");
        let e = infer(r#"log.body == "b""#, Signal::Traces).unwrap_err();
        assert!(e.to_string().contains("log context"), "{e}");
    }
}
