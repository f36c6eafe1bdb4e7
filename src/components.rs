//! The component registry: one explicit table of every receiver, processor, exporter and
//! extension type weft has, with accepted aliases (the Collector's older and newer
//! spellings), supported signals, a pure validator and a constructor. No macros, no
//! global registration: adding a component means adding a row here.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::admin::Telemetry;
use crate::config::{FieldError, parse_component};
use crate::data::Signal;
use crate::exporters::{self, Exporter};
use crate::processors::{self, Processor};
use crate::receivers::{self, Receiver};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Extension,
}

impl Kind {
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Extension => "extensions",
        }
    }
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Extension => "extension",
        }
    }
}

/// Why a component could not be built (after validation passed): I/O, TLS files, ...
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct BuildError {
    pub component: String,
    pub message: String,
}

impl BuildError {
    pub fn new(component: &str, message: impl Into<String>) -> BuildError {
        BuildError {
            component: component.to_string(),
            message: message.into(),
        }
    }
}

/// State a component documents as shared by id across pipelines (the stitch processor's
/// remap table), handed out through this explicit handle, never a global.
#[derive(Clone, Default)]
pub struct SharedState {
    inner: Arc<Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>>,
}

impl SharedState {
    /// Returns the state registered under `key`, creating it with `make` the first time.
    pub fn get_or_insert<T: Any + Send + Sync>(
        &self,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = map.get(key)
            && let Ok(t) = existing.clone().downcast::<T>()
        {
            return t;
        }
        let t = Arc::new(make());
        map.insert(key.to_string(), t.clone());
        t
    }
}

/// What a constructor gets besides its config.
#[derive(Clone)]
pub struct BuildContext {
    /// `type/name` as written in the config.
    pub id: String,
    /// The pipeline's signal (processors are built per pipeline).
    pub signal: Option<Signal>,
    pub telemetry: Telemetry,
    pub shared: SharedState,
    /// Extension configs by id (for `sending_queue.storage` → `file_storage`).
    pub extensions: Arc<HashMap<String, Value>>,
}

pub type ValidateFn = fn(&Value) -> Result<(), FieldError>;

pub type ReceiverCtor = fn(&Value, &BuildContext) -> Result<Box<dyn Receiver>, BuildError>;
pub type ProcessorCtor = fn(&Value, &BuildContext) -> Result<Box<dyn Processor>, BuildError>;
pub type ExporterCtor = fn(&Value, &BuildContext) -> Result<Arc<dyn Exporter>, BuildError>;

pub enum Constructor {
    Receiver(ReceiverCtor),
    Processor(ProcessorCtor),
    Exporter(ExporterCtor),
    Extension,
}

pub struct Factory {
    pub kind: Kind,
    pub ty: &'static str,
    pub aliases: &'static [&'static str],
    pub signals: &'static [Signal],
    pub validate: ValidateFn,
    pub construct: Constructor,
}

/// Typed validation: the config parses into `T`.
pub fn validate_as<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), FieldError> {
    parse_component::<T>(v).map(|_| ())
}

const ALL: &[Signal] = &[Signal::Traces, Signal::Logs, Signal::Metrics];
const TRACES: &[Signal] = &[Signal::Traces];
const LOGS: &[Signal] = &[Signal::Logs];
const TRACES_LOGS: &[Signal] = &[Signal::Traces, Signal::Logs];

pub static FACTORIES: &[Factory] = &[
    // receivers
    Factory {
        kind: Kind::Receiver,
        ty: "otlp",
        aliases: &[],
        signals: ALL,
        validate: receivers::otlp::validate,
        construct: Constructor::Receiver(receivers::otlp::build),
    },
    Factory {
        kind: Kind::Receiver,
        ty: "kafka",
        aliases: &[],
        signals: ALL,
        validate: receivers::kafka::validate,
        construct: Constructor::Receiver(receivers::kafka::build),
    },
    // processors
    Factory {
        kind: Kind::Processor,
        ty: "batch",
        aliases: &[],
        signals: ALL,
        validate: processors::batch::validate,
        construct: Constructor::Processor(processors::batch::build),
    },
    Factory {
        kind: Kind::Processor,
        ty: "memory_limiter",
        aliases: &["memorylimiter"],
        signals: ALL,
        validate: processors::memory_limiter::validate,
        construct: Constructor::Processor(processors::memory_limiter::build),
    },
    Factory {
        kind: Kind::Processor,
        ty: "filter",
        aliases: &[],
        signals: ALL,
        validate: processors::filter::validate,
        construct: Constructor::Processor(processors::filter::build),
    },
    Factory {
        kind: Kind::Processor,
        ty: "attributes",
        aliases: &[],
        signals: ALL,
        validate: processors::attributes::validate,
        construct: Constructor::Processor(processors::attributes::build),
    },
    Factory {
        kind: Kind::Processor,
        ty: "resource",
        aliases: &[],
        signals: ALL,
        validate: processors::resource::validate,
        construct: Constructor::Processor(processors::resource::build),
    },
    Factory {
        kind: Kind::Processor,
        ty: "resourcedetection",
        aliases: &[],
        signals: ALL,
        validate: processors::resourcedetection::validate,
        construct: Constructor::Processor(processors::resourcedetection::build),
    },
    Factory {
        kind: Kind::Processor,
        ty: "clockskew",
        aliases: &[],
        signals: TRACES,
        validate: processors::clockskew::validate,
        construct: Constructor::Processor(processors::clockskew::build),
    },
    Factory {
        kind: Kind::Processor,
        ty: "stitch",
        aliases: &[],
        signals: TRACES_LOGS,
        validate: processors::stitch::validate,
        construct: Constructor::Processor(processors::stitch::build),
    },
    // exporters
    Factory {
        kind: Kind::Exporter,
        ty: "otlp",
        aliases: &["otlp_grpc"],
        signals: ALL,
        validate: exporters::otlp::validate,
        construct: Constructor::Exporter(exporters::otlp::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "jaeger",
        aliases: &[],
        signals: TRACES,
        validate: exporters::otlp::validate_jaeger,
        construct: Constructor::Exporter(exporters::otlp::build_jaeger),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "kafka",
        aliases: &[],
        signals: ALL,
        validate: exporters::kafka::validate,
        construct: Constructor::Exporter(exporters::kafka::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "otlphttp",
        aliases: &["otlp_http"],
        signals: ALL,
        validate: exporters::otlphttp::validate,
        construct: Constructor::Exporter(exporters::otlphttp::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "elasticsearch",
        aliases: &[],
        signals: ALL,
        validate: exporters::elasticsearch::validate,
        construct: Constructor::Exporter(exporters::elasticsearch::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "loadbalancing",
        aliases: &[],
        signals: ALL,
        validate: exporters::loadbalancing::validate,
        construct: Constructor::Exporter(exporters::loadbalancing::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "debug",
        aliases: &["logging"],
        signals: ALL,
        validate: validate_as::<exporters::debug::DebugConfig>,
        construct: Constructor::Exporter(exporters::debug::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "file",
        aliases: &[],
        signals: ALL,
        validate: validate_as::<exporters::file::FileConfig>,
        construct: Constructor::Exporter(exporters::file::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "loki",
        aliases: &[],
        signals: LOGS,
        validate: exporters::loki::validate,
        construct: Constructor::Exporter(exporters::loki::build),
    },
    Factory {
        kind: Kind::Exporter,
        ty: "awss3",
        aliases: &[],
        signals: ALL,
        validate: exporters::awss3::validate,
        construct: Constructor::Exporter(exporters::awss3::build),
    },
    // extensions
    Factory {
        kind: Kind::Extension,
        ty: "health_check",
        aliases: &["healthcheck", "healthcheckv2"],
        signals: ALL,
        validate: validate_as::<crate::admin::HealthCheckConfig>,
        construct: Constructor::Extension,
    },
    Factory {
        kind: Kind::Extension,
        ty: "file_storage",
        aliases: &["filestorage"],
        signals: ALL,
        validate: validate_as::<crate::delivery::FileStorageConfig>,
        construct: Constructor::Extension,
    },
];

/// Collector component types weft does not have, so the error can say so plainly instead
/// of suggesting a look-alike.
const KNOWN_ELSEWHERE: &[&str] = &[
    "k8sattributes",
    "tail_sampling",
    "transform",
    "probabilistic_sampler",
    "groupbytrace",
    "spanmetrics",
    "routing",
    "prometheus",
    "prometheusremotewrite",
    "zipkin",
    "hostmetrics",
    "filelog",
    "kafkametrics",
    "jaeger_thrift",
    "opencensus",
    "datadog",
    "awsxray",
    "awsemf",
    "googlecloud",
    "splunk_hec",
    "cumulativetodelta",
    "redaction",
    "groupbyattrs",
    "metricstransform",
    "zpages",
    "pprof",
    "count",
    "forward",
    "servicegraph",
];

fn normalize(t: &str) -> String {
    t.chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

pub enum Lookup {
    Found(&'static Factory),
    /// Not a weft component; maybe a suggestion, and whether the Collector has it.
    Unknown {
        suggestion: Option<String>,
        collector_has_it: bool,
    },
}

pub fn lookup(kind: Kind, ty: &str) -> Lookup {
    let n = normalize(ty);
    for f in FACTORIES.iter().filter(|f| f.kind == kind) {
        if normalize(f.ty) == n || f.aliases.iter().any(|a| normalize(a) == n) {
            return Lookup::Found(f);
        }
    }
    let collector_has_it = KNOWN_ELSEWHERE.iter().any(|k| normalize(k) == n);
    let names = FACTORIES.iter().filter(|f| f.kind == kind).map(|f| f.ty);
    Lookup::Unknown {
        suggestion: if collector_has_it {
            None
        } else {
            crate::config::suggest(ty, names)
        },
        collector_has_it,
    }
}

/// Names of all types of a kind (for messages and the README).
pub fn type_names(kind: Kind) -> Vec<&'static str> {
    FACTORIES
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.ty)
        .collect()
}
