//! The `otlp` receiver: traces, logs and metrics over gRPC (`:4317`) and HTTP (`:4318`,
//! `/v1/traces`, `/v1/logs`, `/v1/metrics`), protobuf or OTLP/JSON, gzip or zstd bodies.
//!
//! Config (the Collector's keys): `protocols.grpc`: `endpoint` (localhost:4317),
//! `max_recv_msg_size_mib` (4), `tls` (`cert_file`, `key_file`, `client_ca_file`),
//! `include_metadata` (false); `protocols.http`: `endpoint` (localhost:4318),
//! `traces_url_path`, `logs_url_path`, `metrics_url_path`, `max_request_body_size` (20 MiB,
//! bytes), `tls` (`cert_file`, `key_file`, `client_ca_file`), `include_metadata` (false)
//! and `cors` (`allowed_origins`, `allowed_headers`, `max_age`; off unless
//! `allowed_origins` is non-empty; preflights answered 204, every answer to an allowed
//! origin carries `Access-Control-Allow-Origin`, errors included: see [`cors`]). A
//! protocol is served only when its key is present.
//!
//! `include_metadata: true` attaches each request's headers / gRPC metadata to its data as
//! client metadata (see [`metadata`] for what is kept, [`crate::pipeline::context`] for
//! how it travels), for the `attributes` and `resource` processors' `from_context`. When
//! false (the default) nothing is captured.
//!
//! Bad input never takes the process down: malformed data → HTTP 400 / gRPC
//! INVALID_ARGUMENT; too large → 413 / RESOURCE_EXHAUSTED; unsupported content type → 415;
//! pipeline full or memory limit → HTTP 503 with `Retry-After` / gRPC UNAVAILABLE with
//! RetryInfo. The error table is [`codec::status_for`].

pub mod codec;
pub mod cors;
pub mod grpc;
pub mod grpc_body;
pub mod http;
pub mod metadata;
pub mod readbuf;

use serde::Deserialize;
use serde_json::Value;

use crate::admin::ComponentCounters;
use crate::components::{BuildContext, BuildError};
use crate::config::{FieldError, parse_component};
use crate::data::Signal;
use crate::pipeline::Consumers;
use crate::pipeline::build::BoundAddrs;
use crate::receivers::Receiver;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OtlpReceiverConfig {
    #[serde(default)]
    pub protocols: Protocols,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

/// A protocol key that is present but empty (`grpc:`) means "enabled with defaults".
/// Deserialized in place (not through a `Value`), so an error deeper down keeps its key
/// path (`protocols.http.cors.allowed_origin`).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca_file: Option<String>,
    pub min_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub endpoint: String,
    pub transport: Option<String>,
    pub max_recv_msg_size_mib: u64,
    pub max_concurrent_streams: Option<u32>,
    pub read_buffer_size: Option<u64>,
    pub write_buffer_size: Option<u64>,
    pub include_metadata: bool,
    pub tls: Option<ServerTls>,
    pub keepalive: Option<Value>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            transport: None,
            max_recv_msg_size_mib: 4,
            max_concurrent_streams: None,
            read_buffer_size: None,
            write_buffer_size: None,
            include_metadata: false,
            tls: None,
            keepalive: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub endpoint: String,
    pub traces_url_path: String,
    pub logs_url_path: String,
    pub metrics_url_path: String,
    pub max_request_body_size: u64,
    pub include_metadata: bool,
    pub tls: Option<ServerTls>,
    pub cors: Option<cors::CorsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".into(),
            traces_url_path: "/v1/traces".into(),
            logs_url_path: "/v1/logs".into(),
            metrics_url_path: "/v1/metrics".into(),
            max_request_body_size: 20 * 1024 * 1024,
            include_metadata: false,
            tls: None,
            cors: None,
        }
    }
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    let c: OtlpReceiverConfig = parse_component(v)?;
    if c.protocols.grpc.is_none() && c.protocols.http.is_none() {
        return Err(FieldError {
            path: vec!["protocols".into()],
            message: "enable at least one protocol: grpc or http".into(),
            suggestion: None,
        });
    }
    if let Some(h) = &c.protocols.http {
        for (k, p) in [
            ("traces_url_path", &h.traces_url_path),
            ("logs_url_path", &h.logs_url_path),
            ("metrics_url_path", &h.metrics_url_path),
        ] {
            if !p.starts_with('/') {
                return Err(FieldError {
                    path: vec!["protocols".into(), "http".into(), k.into()],
                    message: format!("{k} must start with /"),
                    suggestion: None,
                });
            }
        }
        if let Some(c) = &h.cors {
            cors::Cors::new(c).map_err(|e| FieldError {
                path: vec![
                    "protocols".into(),
                    "http".into(),
                    "cors".into(),
                    e.key.into(),
                    e.index.to_string(),
                ],
                message: e.message,
                suggestion: None,
            })?;
        }
    }
    Ok(())
}

pub struct OtlpReceiver {
    id: String,
    cfg: OtlpReceiverConfig,
    ctx: BuildContext,
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Receiver>, BuildError> {
    let cfg: OtlpReceiverConfig =
        parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    Ok(Box::new(OtlpReceiver {
        id: ctx.id.clone(),
        cfg,
        ctx: ctx.clone(),
    }))
}

/// Counters per signal for one receiver and transport.
#[derive(Clone)]
pub struct ReceiverCounters {
    pub traces: ComponentCounters,
    pub logs: ComponentCounters,
    pub metrics: ComponentCounters,
}

impl ReceiverCounters {
    pub fn new(ctx: &BuildContext) -> ReceiverCounters {
        let t = &ctx.telemetry;
        ReceiverCounters {
            traces: ComponentCounters::new(t, "receiver", &ctx.id, Signal::Traces),
            logs: ComponentCounters::new(t, "receiver", &ctx.id, Signal::Logs),
            metrics: ComponentCounters::new(t, "receiver", &ctx.id, Signal::Metrics),
        }
    }
    pub fn get(&self, s: Signal) -> &ComponentCounters {
        match s {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }
}

impl Receiver for OtlpReceiver {
    fn start(
        self: Box<Self>,
        consumers: Consumers,
        shutdown: tokio::sync::watch::Receiver<bool>,
        bound: BoundAddrs,
    ) -> crate::exporters::BoxFuture<'static, Result<Vec<tokio::task::JoinHandle<()>>, BuildError>>
    {
        Box::pin(async move {
            let counters = ReceiverCounters::new(&self.ctx);
            let mut tasks = Vec::new();
            if let Some(g) = &self.cfg.protocols.grpc {
                tasks.push(
                    grpc::serve(
                        &self.id,
                        g,
                        consumers.clone(),
                        counters.clone(),
                        shutdown.clone(),
                        &bound,
                    )
                    .await?,
                );
            }
            if let Some(h) = &self.cfg.protocols.http {
                tasks.push(http::serve(&self.id, h, consumers, counters, shutdown, &bound).await?);
            }
            Ok(tasks)
        })
    }
}
