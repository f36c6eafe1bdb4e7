//! OTTL conditions: the boolean part of the OpenTelemetry Transformation Language, as the
//! Collector's `filter` processor uses it, parsed once at startup and evaluated per item.
//!
//! The supported subset (anything else is a config error that names the construct):
//! - operators `==`, `!=`, `<`, `<=`, `>`, `>=`, `and`, `or`, `not`, parentheses
//!   (`not` binds tightest, then `and`, then `or`);
//! - literals: strings `"..."` (Go escapes; an unknown escape such as `\d` is kept as
//!   written, so regexes read naturally), ints, floats, `true`, `false`, `nil`, bytes `0x..`;
//! - enums: `SPAN_KIND_*`, `STATUS_CODE_*`, `SEVERITY_NUMBER_*`, `METRIC_DATA_TYPE_*`,
//!   `AGGREGATION_TEMPORALITY_*`, `FLAG_*` (ints, usable in any context);
//! - converters: `IsMatch(v, "re")` (unanchored search, Rust `regex` syntax, which matches
//!   RE2 for everything RE2 accepts), `HasPrefix(v, "p")`, `HasSuffix(v, "s")`,
//!   `IsString/IsInt/IsDouble/IsBool/IsMap/IsList(v)`, `IsRootSpan()` (span context),
//!   `HasAttrKeyOnDatapoint("k")`, `HasAttrOnDatapoint("k", "v")` (metric context),
//!   `TraceID(0x..)`, `SpanID(0x..)`;
//! - paths: see [`paths`] — `attributes["k"]` (with nested `["k"]`/`[0]` indexes),
//!   `resource.attributes["k"]`, `instrumentation_scope.name`, span `name`, `kind`,
//!   `status.code`, ids (`trace_id`, `trace_id.string`, ...), log `body`,
//!   `severity_number`, `severity_text`, metric `name`, `type`, data point `value_int`, ...
//!   Paths may carry the newer context prefix (`span.name`, `log.body`, `metric.name`).
//!
//! Not supported: math expressions, editors, maps and lists, `cache`, named arguments.
//!
//! Comparisons follow OTTL's rules: an int and a float compare as floats; values of
//! different types are "not equal" (`!=` is true, every other operator false); `nil`
//! equals only `nil` (and empty bytes); maps and lists support only `==`/`!=`; strings
//! compare bytewise. A missing attribute is `nil`.
//!
//! Evaluation errors (e.g. `HasPrefix` of a non-string, indexing a string) are returned as
//! [`EvalError`]; the caller decides what they mean (`error_mode`).

mod eval;
mod lex;
mod parse;
pub mod paths;

pub use eval::{EvalError, Item, Point, Val};
pub use paths::Context;

use crate::data::Signal;

/// Why a condition could not be parsed. Every message names the offending construct.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OttlError {
    #[error("syntax error at character {at}: {message}")]
    Syntax { at: usize, message: String },
    #[error("unsupported function {name}() (weft supports {})", parse::FUNCTIONS.join(", "))]
    UnknownFunction {
        name: String,
        suggestion: Option<String>,
    },
    #[error("unknown path {path} in the {context} context (supported: {known})")]
    UnknownPath {
        path: String,
        context: Context,
        known: String,
        suggestion: Option<String>,
    },
    #[error("unknown enum {name}")]
    UnknownEnum {
        name: String,
        suggestion: Option<String>,
    },
    #[error("invalid regex {pattern:?} in {function}(): {message}")]
    BadRegex {
        function: String,
        pattern: String,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl OttlError {
    /// The closest valid name, for "did you mean".
    pub fn suggestion(&self) -> Option<&str> {
        match self {
            OttlError::UnknownFunction { suggestion, .. }
            | OttlError::UnknownPath { suggestion, .. }
            | OttlError::UnknownEnum { suggestion, .. } => suggestion.as_deref(),
            _ => None,
        }
    }
}

/// Where a condition is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextSpec {
    /// A fixed context (the Collector's `traces.span: [...]` lists and groups with an
    /// explicit `context:`); paths without a prefix refer to this context's item.
    Fixed(Context),
    /// Inferred from the context prefixes of the paths (`trace_conditions: [...]`): the
    /// deepest context named wins; every path must carry a prefix.
    Infer(Signal),
}

/// A parsed, bound condition.
#[derive(Debug, Clone)]
pub struct Condition {
    text: String,
    context: Context,
    expr: parse::Expr,
}

impl Condition {
    pub fn parse(text: &str, spec: ContextSpec) -> Result<Condition, OttlError> {
        let mut expr = parse::parse(text)?;
        let context = match spec {
            ContextSpec::Fixed(c) => {
                paths::bind(&mut expr, c, false)?;
                c
            }
            ContextSpec::Infer(signal) => {
                let c = paths::infer(&expr, signal)?;
                paths::bind(&mut expr, c, true)?;
                c
            }
        };
        Ok(Condition {
            text: text.to_string(),
            context,
            expr,
        })
    }

    /// The context the condition runs in (which items it is evaluated for).
    pub fn context(&self) -> Context {
        self.context
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn eval(&self, item: &Item<'_>) -> Result<bool, EvalError> {
        eval::eval(&self.expr, item)
    }
}

#[cfg(test)]
mod tests;
