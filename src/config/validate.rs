//! Pure validation of the merged config tree: top-level sections, component types (with
//! suggestions), each component's own keys (typed by its factory), framework-owned
//! exporter keys, and the pipeline graph. Collects every error; never does I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::yaml::{Node, Value};
use super::{
    ComponentId, ComponentSpec, Components, ConfigError, ConfigErrors, PipelineSpec, suggest,
};
use crate::components::{Kind, Lookup, lookup};
use crate::data::Signal;

/// A configuration that passed validation.
#[derive(Clone, Debug)]
pub struct ValidConfig {
    pub receivers: Components,
    pub processors: Components,
    pub exporters: Components,
    pub extensions: Components,
    /// Extensions listed in `service.extensions`.
    pub service_extensions: Vec<String>,
    pub pipelines: Vec<PipelineSpec>,
    pub shutdown_timeout: Duration,
    pub log_level: Option<String>,
    pub warnings: Vec<ConfigError>,
    /// The merged, substituted tree (for `print-config`).
    pub resolved: serde_json::Value,
}

/// Keys the delivery layer owns on every exporter.
pub const DELIVERY_KEYS: &[&str] = &["sending_queue", "retry_on_failure", "timeout"];

struct Ctx<'a> {
    root: &'a Node,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn err(&mut self, path: &[&str], message: impl Into<String>, suggestion: Option<String>) {
        let segs: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let pos = self.root.locate(&segs);
        self.errors.push(ConfigError {
            file: pos.file.to_string(),
            line: pos.line,
            path: path.join("."),
            message: message.into(),
            suggestion,
        });
    }
    fn warn(&mut self, path: &[&str], message: impl Into<String>) {
        let segs: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let pos = self.root.locate(&segs);
        self.warnings.push(ConfigError {
            file: pos.file.to_string(),
            line: pos.line,
            path: path.join("."),
            message: message.into(),
            suggestion: None,
        });
    }
}

const TOP_LEVEL: &[&str] = &[
    "receivers",
    "processors",
    "exporters",
    "extensions",
    "connectors",
    "service",
];

pub fn validate(root: &Node) -> Result<ValidConfig, ConfigErrors> {
    let mut cx = Ctx {
        root,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let Value::Map(top) = &root.value else {
        cx.err(
            &[],
            format!("the config must be a mapping, got {}", root.type_name()),
            None,
        );
        return Err(ConfigErrors(cx.errors));
    };
    for (k, _, _) in top {
        if !TOP_LEVEL.contains(&k.as_str()) {
            cx.err(
                &[k],
                format!("unknown top-level key \"{k}\""),
                suggest(k, TOP_LEVEL.iter().copied()),
            );
        }
    }
    if let Some(c) = root.get("connectors")
        && matches!(&c.value, Value::Map(m) if !m.is_empty())
    {
        cx.err(
            &["connectors"],
            "weft has no connectors yet; use several exporters in one pipeline to fan out",
            None,
        );
    }

    let receivers = components(&mut cx, Kind::Receiver);
    let processors = components(&mut cx, Kind::Processor);
    let exporters = components(&mut cx, Kind::Exporter);
    let extensions = components(&mut cx, Kind::Extension);

    let mut pipelines = Vec::new();
    let mut service_extensions = Vec::new();
    let mut shutdown_timeout = Duration::from_secs(30);
    let mut log_level = None;
    match root.get("service") {
        None => cx.err(
            &["service"],
            "missing section \"service\" (with service.pipelines)",
            None,
        ),
        Some(service) => {
            let Value::Map(entries) = &service.value else {
                cx.err(&["service"], "must be a mapping", None);
                return Err(ConfigErrors(cx.errors));
            };
            const SERVICE_KEYS: &[&str] =
                &["extensions", "pipelines", "telemetry", "shutdown_timeout"];
            for (k, _, _) in entries {
                if !SERVICE_KEYS.contains(&k.as_str()) {
                    cx.err(
                        &["service", k],
                        format!("unknown key \"{k}\""),
                        suggest(k, SERVICE_KEYS.iter().copied()),
                    );
                }
            }
            if let Some(st) = service.get("shutdown_timeout") {
                match serde_json::from_value::<super::Dur>(st.to_json()) {
                    Ok(d) => shutdown_timeout = d.get(),
                    Err(e) => cx.err(&["service", "shutdown_timeout"], e.to_string(), None),
                }
            }
            if let Some(level) = service
                .get("telemetry")
                .and_then(|t| t.get("logs"))
                .and_then(|l| l.get("level"))
            {
                log_level = level.as_str().map(str::to_string);
            }
            if let Some(exts) = service.get("extensions") {
                for name in string_list(&mut cx, exts, &["service", "extensions"]) {
                    if !extensions.contains_key(&name) {
                        let s = suggest(&name, extensions.keys().map(String::as_str));
                        cx.err(
                            &["service", "extensions"],
                            format!("extension \"{name}\" is used but not defined in extensions"),
                            s,
                        );
                    }
                    service_extensions.push(name);
                }
            }
            match service.get("pipelines") {
                None => cx.err(&["service", "pipelines"], "missing service.pipelines", None),
                Some(p) => {
                    pipelines = pipeline_specs(&mut cx, p, &receivers, &processors, &exporters)
                }
            }
        }
    }

    // Sending-queue storage must name a defined file_storage extension.
    for (id, spec) in &exporters {
        if let Some(storage) = spec
            .value
            .get("sending_queue")
            .and_then(|q| q.get("storage"))
            .and_then(|s| s.as_str())
        {
            match extensions.get(storage) {
                Some(ext) if ext.ty == "file_storage" => {}
                Some(_) => cx.err(
                    &["exporters", id, "sending_queue", "storage"],
                    format!("\"{storage}\" is not a file_storage extension"),
                    None,
                ),
                None => {
                    let s = suggest(storage, extensions.keys().map(String::as_str));
                    cx.err(
                        &["exporters", id, "sending_queue", "storage"],
                        format!("storage extension \"{storage}\" is not defined in extensions"),
                        s,
                    );
                }
            }
        }
    }

    // Defined but unused: a warning.
    let mut used: BTreeSet<(&str, String)> = BTreeSet::new();
    for p in &pipelines {
        for r in &p.receivers {
            used.insert(("receivers", r.clone()));
        }
        for r in &p.processors {
            used.insert(("processors", r.clone()));
        }
        for r in &p.exporters {
            used.insert(("exporters", r.clone()));
        }
    }
    for (section, comps) in [
        ("receivers", &receivers),
        ("processors", &processors),
        ("exporters", &exporters),
    ] {
        for id in comps.keys() {
            if !used.contains(&(section, id.clone())) {
                cx.warn(
                    &[section, id],
                    format!("{section} \"{id}\" is defined but not used in any pipeline"),
                );
            }
        }
    }
    for id in extensions.keys() {
        if !service_extensions.contains(id) {
            cx.warn(
                &["extensions", id],
                format!("extension \"{id}\" is defined but not listed in service.extensions"),
            );
        }
    }

    if !cx.errors.is_empty() {
        cx.errors.sort_by_key(|a| (a.file.clone(), a.line));
        return Err(ConfigErrors(cx.errors));
    }
    Ok(ValidConfig {
        receivers,
        processors,
        exporters,
        extensions,
        service_extensions,
        pipelines,
        shutdown_timeout,
        log_level,
        warnings: cx.warnings,
        resolved: root.to_json(),
    })
}

fn string_list(cx: &mut Ctx, node: &Node, path: &[&str]) -> Vec<String> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match n.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    let idx = i.to_string();
                    let mut p = path.to_vec();
                    p.push(&idx);
                    cx.err(
                        &p,
                        format!("expected a component id, got {}", n.type_name()),
                        None,
                    );
                    None
                }
            })
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            cx.err(
                path,
                format!("expected a list of component ids, got {}", node.type_name()),
                None,
            );
            Vec::new()
        }
    }
}

fn components(cx: &mut Ctx, kind: Kind) -> Components {
    let section = kind.section();
    let mut out = BTreeMap::new();
    let Some(node) = cx.root.get(section) else {
        return out;
    };
    let entries = match &node.value {
        Value::Map(e) => e.clone(),
        Value::Null => return out,
        _ => {
            cx.err(
                &[section],
                format!(
                    "must be a mapping of component ids, got {}",
                    node.type_name()
                ),
                None,
            );
            return out;
        }
    };
    for (key, kpos, value) in entries {
        let id = match ComponentId::parse(&key) {
            Ok(id) => id,
            Err(e) => {
                cx.err(&[section, &key], e, None);
                continue;
            }
        };
        let factory = match lookup(kind, &id.ty) {
            Lookup::Found(f) => f,
            Lookup::Unknown {
                suggestion,
                collector_has_it,
            } => {
                let msg = if collector_has_it {
                    format!(
                        "weft has no \"{}\" {} (the OpenTelemetry Collector has one); weft's {} are: {}",
                        id.ty,
                        kind.singular(),
                        section,
                        crate::components::type_names(kind).join(", ")
                    )
                } else {
                    format!("unknown {} type \"{}\"", kind.singular(), id.ty)
                };
                cx.err(&[section, &key], msg, suggestion);
                continue;
            }
        };
        let mut json = value.to_json();
        if kind == Kind::Exporter {
            // Framework-owned keys are validated by the delivery layer, not the exporter.
            let mut delivery = serde_json::Map::new();
            if let serde_json::Value::Object(m) = &mut json {
                for k in super::validate::DELIVERY_KEYS {
                    if let Some(v) = m.remove(*k) {
                        delivery.insert(k.to_string(), v);
                    }
                }
            }
            if let Err(fe) = crate::components::validate_as::<crate::delivery::DeliveryConfig>(
                &serde_json::Value::Object(delivery),
            ) {
                report_field_error(cx, section, &key, fe);
            }
        }
        if let Err(fe) = (factory.validate)(&json) {
            report_field_error(cx, section, &key, fe);
        }
        out.insert(
            key.clone(),
            ComponentSpec {
                id,
                ty: factory.ty,
                value: value.to_json(),
                pos: kpos,
            },
        );
    }
    out
}

fn report_field_error(cx: &mut Ctx, section: &str, key: &str, fe: super::FieldError) {
    let mut path: Vec<&str> = vec![section, key];
    path.extend(fe.path.iter().map(String::as_str));
    cx.err(&path, fe.message, fe.suggestion);
}

fn pipeline_specs(
    cx: &mut Ctx,
    node: &Node,
    receivers: &Components,
    processors: &Components,
    exporters: &Components,
) -> Vec<PipelineSpec> {
    let mut out = Vec::new();
    let Value::Map(entries) = &node.value else {
        cx.err(
            &["service", "pipelines"],
            format!("must be a mapping, got {}", node.type_name()),
            None,
        );
        return out;
    };
    if entries.is_empty() {
        cx.err(&["service", "pipelines"], "no pipelines defined", None);
    }
    for (pid, _, p) in entries {
        let base = pid.split('/').next().unwrap_or_default();
        let Some(signal) = Signal::parse(base) else {
            cx.err(
                &["service", "pipelines", pid],
                format!("pipeline id \"{pid}\" must start with traces, logs or metrics"),
                suggest(base, ["traces", "logs", "metrics"]),
            );
            continue;
        };
        let Value::Map(keys) = &p.value else {
            cx.err(
                &["service", "pipelines", pid],
                "a pipeline must be a mapping with receivers, processors and exporters",
                None,
            );
            continue;
        };
        const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];
        for (k, _, _) in keys {
            if !PIPELINE_KEYS.contains(&k.as_str()) {
                cx.err(
                    &["service", "pipelines", pid, k],
                    format!("unknown key \"{k}\""),
                    suggest(k, PIPELINE_KEYS.iter().copied()),
                );
            }
        }
        let mut spec = PipelineSpec {
            id: pid.clone(),
            signal,
            receivers: Vec::new(),
            processors: Vec::new(),
            exporters: Vec::new(),
        };
        for (key, defined, dest) in [
            ("receivers", receivers, &mut spec.receivers),
            ("processors", processors, &mut spec.processors),
            ("exporters", exporters, &mut spec.exporters),
        ] {
            let Some(list) = p.get(key) else {
                if key != "processors" {
                    cx.err(
                        &["service", "pipelines", pid],
                        format!("pipeline \"{pid}\" needs at least one of {key}"),
                        None,
                    );
                }
                continue;
            };
            let names = string_list(cx, list, &["service", "pipelines", pid, key]);
            if names.is_empty() && key != "processors" {
                cx.err(
                    &["service", "pipelines", pid, key],
                    format!("pipeline \"{pid}\" needs at least one of {key}"),
                    None,
                );
            }
            let mut seen = BTreeSet::new();
            for name in names {
                if !seen.insert(name.clone()) && key != "processors" {
                    cx.err(
                        &["service", "pipelines", pid, key],
                        format!("\"{name}\" is listed twice"),
                        None,
                    );
                }
                match defined.get(&name) {
                    None => {
                        let s = suggest(&name, defined.keys().map(String::as_str));
                        cx.err(
                            &["service", "pipelines", pid, key],
                            format!("{key} \"{name}\" is used by pipeline \"{pid}\" but not defined in {key}"),
                            s,
                        );
                    }
                    Some(c) => {
                        let kind = match key {
                            "receivers" => Kind::Receiver,
                            "processors" => Kind::Processor,
                            _ => Kind::Exporter,
                        };
                        if let Lookup::Found(f) = lookup(kind, c.ty)
                            && !f.signals.contains(&signal)
                        {
                            cx.err(
                                &["service", "pipelines", pid, key],
                                format!("{} \"{name}\" does not support {signal}", kind.singular()),
                                None,
                            );
                        }
                    }
                }
                dest.push(name);
            }
        }
        out.push(spec);
    }
    out
}
