//! The `resource` processor: runs attribute actions on the resource attributes of every
//! batch (traces, logs and metrics), as the Collector's resourceprocessor does — typically
//! to stamp `deployment.environment.name` or drop a noisy resource attribute.
//!
//! Config (the Collector's key): `attributes` (required, non-empty), a list of actions with
//! the same keys and rules as the `attributes` processor's `actions` (see
//! [`super::attributes::actions`]): insert, update, upsert, delete, hash, extract, convert.
//!
//! `from_context` (e.g. `metadata.x-tenant`) reads the client metadata of the request the
//! data came from (the receiver's `include_metadata: true`; the processor placed before
//! `batch`, or after one whose `metadata_keys` list the key, see [`crate::pipeline`]);
//! without it such an action does nothing.
//!
//! A batch without a resource gets one only if an action adds an attribute. Bad config is a
//! validation error naming `attributes.<i>.<field>`; at run time the processor cannot fail.

use serde::Deserialize;
use serde_json::Value;

use crate::components::{BuildContext, BuildError};
use crate::config::{FieldError, parse_component};
use crate::data::{Batch, Resource};
use crate::pipeline::{ClientMetadata, Context};
use crate::processors::attributes::actions::{ActionConfig, Actions};
use crate::processors::{Processor, ProcessorError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceConfig {
    #[serde(default)]
    attributes: Vec<ActionConfig>,
}

fn compile(v: &Value) -> Result<Actions, FieldError> {
    let c: ResourceConfig = parse_component(v)?;
    if c.attributes.is_empty() {
        return Err(FieldError {
            path: vec!["attributes".into()],
            message: "the resource processor needs at least one action in attributes".into(),
            suggestion: None,
        });
    }
    Actions::compile(&c.attributes).map_err(|mut e| {
        e.path.insert(0, "attributes".into());
        e
    })
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    compile(v).map(|_| ())
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let actions = compile(v)
        .map_err(|e| BuildError::new(&ctx.id, format!("{}: {}", e.path.join("."), e.message)))?;
    Ok(Box::new(ResourceProcessor { actions }))
}

pub struct ResourceProcessor {
    actions: Actions,
}

impl ResourceProcessor {
    fn apply(&self, resource: &mut Option<Resource>, metadata: Option<&ClientMetadata>) {
        match resource {
            Some(r) => self.actions.apply_in(&mut r.attributes, metadata),
            None => {
                let mut attrs = Vec::new();
                self.actions.apply_in(&mut attrs, metadata);
                if !attrs.is_empty() {
                    *resource = Some(Resource {
                        attributes: attrs,
                        ..Default::default()
                    });
                }
            }
        }
    }
}

impl Processor for ResourceProcessor {
    fn process(
        &mut self,
        batch: Batch,
        now: std::time::Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        self.process_in(batch, &Context::EMPTY, now)
    }

    fn process_in(
        &mut self,
        batch: Batch,
        ctx: &Context,
        _now: std::time::Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        let md = ctx.metadata();
        let mut batch = super::decoded(batch)?;
        match &mut batch {
            Batch::Raw(_) => {}
            Batch::Traces(v) => v.iter_mut().for_each(|r| self.apply(&mut r.resource, md)),
            Batch::Logs(v) => v.iter_mut().for_each(|r| self.apply(&mut r.resource, md)),
            Batch::Metrics(v) => v.iter_mut().for_each(|r| self.apply(&mut r.resource, md)),
        }
        Ok(vec![batch])
    }

    fn reads_context(&self) -> bool {
        self.actions.uses_context()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::admin::Telemetry;
    use crate::components::SharedState;
    use crate::data::{ResourceLogs, ResourceMetrics, ResourceSpans, Signal, attr_str};

    fn ctx() -> BuildContext {
        BuildContext {
            id: "resource".into(),
            signal: Some(Signal::Traces),
            telemetry: Telemetry::new(),
            shared: SharedState::default(),
            extensions: Arc::new(HashMap::new()),
        }
    }

    fn resource(pairs: &[(&str, &str)]) -> Option<Resource> {
        let mut attributes = Vec::new();
        for (k, v) in pairs {
            crate::data::set_attr(&mut attributes, k, crate::data::string_value(*v));
        }
        Some(Resource {
            attributes,
            ..Default::default()
        })
    }

    #[test]
    fn actions_apply_to_resource_attributes_of_every_signal() {
        let config = json!({"attributes": [
            {"key": "deployment.environment.name", "value": "production", "action": "upsert"},
            {"key": "host.id", "action": "delete"},
            {"key": "service.instance.id", "action": "hash"},
            {"key": "team", "from_attribute": "service.namespace", "action": "insert"},
        ]});
        validate(&config).unwrap();
        let mut p = build(&config, &ctx()).unwrap();
        let r = resource(&[
            ("host.id", "h-1"),
            ("service.instance.id", "abc"),
            ("service.namespace", "shop"),
        ]);
        let batches = [
            Batch::Traces(vec![ResourceSpans {
                resource: r.clone(),
                ..Default::default()
            }]),
            Batch::Logs(vec![ResourceLogs {
                resource: r.clone(),
                ..Default::default()
            }]),
            Batch::Metrics(vec![ResourceMetrics {
                resource: r.clone(),
                ..Default::default()
            }]),
        ];
        for b in batches {
            let out = p.process(b, Instant::now()).unwrap();
            let res = match &out[0] {
                Batch::Traces(v) => v[0].resource.clone(),
                Batch::Logs(v) => v[0].resource.clone(),
                Batch::Metrics(v) => v[0].resource.clone(),
                Batch::Raw(_) => unreachable!("processors output decoded batches"),
            }
            .unwrap();
            let a = &res.attributes;
            assert_eq!(
                attr_str(a, "deployment.environment.name"),
                Some("production")
            );
            assert_eq!(attr_str(a, "host.id"), None);
            assert_eq!(
                attr_str(a, "service.instance.id"),
                Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
            );
            assert_eq!(attr_str(a, "team"), Some("shop"));
        }
    }

    #[test]
    fn a_missing_resource_is_created_only_when_something_is_added() {
        let insert = json!({"attributes": [{"key": "env", "value": "dev", "action": "insert"}]});
        let mut p = build(&insert, &ctx()).unwrap();
        let out = p
            .process(
                Batch::Traces(vec![ResourceSpans::default()]),
                Instant::now(),
            )
            .unwrap();
        let Batch::Traces(v) = &out[0] else { panic!() };
        assert_eq!(
            attr_str(&v[0].resource.as_ref().unwrap().attributes, "env"),
            Some("dev")
        );

        let delete = json!({"attributes": [{"key": "env", "action": "delete"}]});
        let mut p = build(&delete, &ctx()).unwrap();
        let out = p
            .process(
                Batch::Traces(vec![ResourceSpans::default()]),
                Instant::now(),
            )
            .unwrap();
        let Batch::Traces(v) = &out[0] else { panic!() };
        assert!(v[0].resource.is_none());
    }

    #[test]
    fn from_context_sets_resource_attributes_per_request() {
        use crate::pipeline::{ClientMetadata, Context};
        let config = json!({"attributes": [
            {"key": "tenant", "from_context": "metadata.x-tenant", "action": "upsert"},
        ]});
        validate(&config).unwrap();
        let mut p = build(&config, &ctx()).unwrap();
        let batch = Batch::Logs(vec![ResourceLogs {
            resource: resource(&[("service.name", "shop")]),
            ..Default::default()
        }]);
        let acme = Context::new(Some(Arc::new(ClientMetadata::from_pairs([(
            "X-Tenant", "acme",
        )]))));
        let tenant = |out: &[Batch]| match &out[0] {
            Batch::Logs(v) => {
                attr_str(&v[0].resource.as_ref().unwrap().attributes, "tenant").map(String::from)
            }
            _ => panic!("logs"),
        };
        let out = p.process_in(batch.clone(), &acme, Instant::now()).unwrap();
        assert_eq!(tenant(&out).as_deref(), Some("acme"));
        let out = p
            .process_in(batch.clone(), &Context::EMPTY, Instant::now())
            .unwrap();
        assert_eq!(out, vec![batch.clone()], "no metadata: unchanged");
        let out = p.process(batch.clone(), Instant::now()).unwrap();
        assert_eq!(out, vec![batch]);
        let e = validate(&json!({"attributes": [
            {"key": "user", "from_context": "auth.subject", "action": "insert"},
        ]}))
        .unwrap_err();
        assert_eq!(e.path, vec!["attributes", "0", "from_context"]);
        assert!(e.message.contains("authenticator"), "{}", e.message);
    }

    #[test]
    fn config_errors_carry_the_key_path() {
        let e = validate(&json!({})).unwrap_err();
        assert_eq!(e.path, vec!["attributes"]);
        let e = validate(&json!({"attributes": [{"key": "a", "action": "upsert"}]})).unwrap_err();
        assert_eq!(e.path, vec!["attributes", "0", "value"]);
        let e = validate(&json!({"actions": []})).unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }
}
