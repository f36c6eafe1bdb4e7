//! The `otlp` exporter (OTLP/gRPC) and the `jaeger` preset.
//!
//! Config (the Collector's keys): `endpoint` (host:port or URL; required), `compression`
//! (`gzip` default, `zstd`, `none`), `compression_params.level` (gzip: 1 = weft's own
//! encoder, the default; 2–9 or -1 = zlib's levels, see `http_client::CompressionParams`),
//! `headers` (map), `tls` (`insecure`, `ca_file`, `cert_file`, `key_file`,
//! `insecure_skip_verify`), `balancer_name`, `keepalive` (accepted). `timeout`,
//! `sending_queue`, `retry_on_failure` belong to the delivery layer.
//!
//! `jaeger` is this exporter with Jaeger v2 defaults: endpoint `jaeger-collector:4317`,
//! plain text unless `tls` says otherwise. Jaeger ≥ 1.35 ingests OTLP natively, so no
//! Jaeger-specific protocol is needed.
//!
//! Answers: OK is success; UNAVAILABLE, RESOURCE_EXHAUSTED (with RetryInfo), ABORTED,
//! DEADLINE_EXCEEDED, CANCELLED, OUT_OF_RANGE, DATA_LOSS are retryable (the OTLP spec's
//! list), anything else permanent. Connection failures are retryable.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::http_client::{CompressionParams, GzipLevel, TlsClientConfig, check_compression};
use super::{BoxFuture, ExportError, Exporter};
use crate::components::{BuildContext, BuildError};
use crate::config::{FieldError, parse_component};
use crate::data::{Batch, Signal};
use crate::receivers::otlp::codec::{BytesCodec, retry_delay_of};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    pub endpoint: String,
    #[serde(default = "default_compression")]
    pub compression: String,
    #[serde(default)]
    pub compression_params: CompressionParams,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: TlsClientConfig,
    #[serde(default)]
    pub balancer_name: Option<String>,
    #[serde(default)]
    pub keepalive: Option<Value>,
    #[serde(default)]
    pub write_buffer_size: Option<u64>,
    #[serde(default)]
    pub auth: Option<Value>,
}

fn default_compression() -> String {
    "gzip".into()
}

/// `jaeger`: the same keys, every one optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JaegerConfig {
    #[serde(default = "jaeger_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_compression")]
    pub compression: String,
    #[serde(default)]
    pub compression_params: CompressionParams,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "jaeger_tls")]
    pub tls: TlsClientConfig,
}

fn jaeger_endpoint() -> String {
    "jaeger-collector:4317".into()
}
fn jaeger_tls() -> TlsClientConfig {
    TlsClientConfig {
        insecure: true,
        ..Default::default()
    }
}

pub struct OtlpGrpcExporter {
    channel: Channel,
    /// The channel's connections hold registered request bodies by reference (plain
    /// text only: `None` under TLS).
    shared: Option<super::coalesce::SharedBuffers>,
    compression: Option<CompressionEncoding>,
    /// With gzip: how (see `grpc_unary`).
    gzip_level: GzipLevel,
    headers: MetadataMap,
}

const COMPRESSIONS: &[&str] = &["gzip", "zstd", "none"];

/// Checks what deserializing cannot: `compression` and `compression_params`.
pub fn validate(v: &Value) -> Result<(), FieldError> {
    let cfg: OtlpGrpcConfig = parse_component(v)?;
    check_compression(&cfg.compression, &cfg.compression_params, COMPRESSIONS).map(|_| ())
}

/// [`validate`] for the `jaeger` preset.
pub fn validate_jaeger(v: &Value) -> Result<(), FieldError> {
    let cfg: JaegerConfig = parse_component(v)?;
    check_compression(&cfg.compression, &cfg.compression_params, COMPRESSIONS).map(|_| ())
}

/// How long connecting to the backend may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Builds the exporter from a parsed config (also used by `loadbalancing`, one per backend).
/// The channel connects lazily: no I/O here.
pub fn build_from(cfg: &OtlpGrpcConfig, id: &str) -> Result<OtlpGrpcExporter, BuildError> {
    crate::install_crypto_provider();
    let gzip_level = check_compression(&cfg.compression, &cfg.compression_params, COMPRESSIONS)
        .map_err(|e| BuildError::new(id, e.message))?;
    let compression = match cfg.compression.as_str() {
        "gzip" => Some(CompressionEncoding::Gzip),
        "zstd" => Some(CompressionEncoding::Zstd),
        _ => None,
    };
    let tls_wanted = !cfg.tls.insecure
        && (cfg.endpoint.starts_with("https://")
            || cfg.tls.ca_file.is_some()
            || cfg.tls.cert_file.is_some()
            || !cfg.endpoint.starts_with("http://"));
    let uri = if cfg.endpoint.contains("://") {
        cfg.endpoint.clone()
    } else if tls_wanted {
        format!("https://{}", cfg.endpoint)
    } else {
        format!("http://{}", cfg.endpoint)
    };
    let mut ep = Endpoint::from_str(&uri)
        .map_err(|e| BuildError::new(id, format!("invalid endpoint {:?}: {e}", cfg.endpoint)))?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT);
    if uri.starts_with("https://") {
        let mut t = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &cfg.tls.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| BuildError::new(id, format!("cannot read tls.ca_file {ca}: {e}")))?;
            t = t.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
            let cert = std::fs::read(c)
                .map_err(|e| BuildError::new(id, format!("cannot read tls.cert_file: {e}")))?;
            let key = std::fs::read(k)
                .map_err(|e| BuildError::new(id, format!("cannot read tls.key_file: {e}")))?;
            t = t.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &cfg.tls.server_name_override {
            t = t.domain_name(name.clone());
        }
        ep = ep
            .tls_config(t)
            .map_err(|e| BuildError::new(id, format!("invalid TLS config: {e}")))?;
    }
    // Many HTTP/2 frames per write (see `coalesce`); tonic layers TLS on top when set.
    // (A custom connector does not take the endpoint's TCP settings: the same ones again.)
    let connector = super::coalesce::CoalescingConnector::new(true, Some(CONNECT_TIMEOUT));
    // Under TLS the connection writes encrypted records, never a request's own bytes:
    // nothing to register, and no registry lookup per record.
    let shared = (!uri.starts_with("https://")).then(|| connector.shared());
    let channel = ep.connect_with_connector_lazy(connector);
    let mut headers = MetadataMap::new();
    for (k, v) in &cfg.headers {
        let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| BuildError::new(id, format!("invalid header name {k:?}")))?;
        let val = MetadataValue::try_from(v.as_str())
            .map_err(|_| BuildError::new(id, format!("invalid value for header {k:?}")))?;
        headers.insert(key, val);
    }
    Ok(OtlpGrpcExporter {
        channel,
        shared,
        compression,
        gzip_level,
        headers,
    })
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let cfg: OtlpGrpcConfig =
        parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    Ok(Arc::new(build_from(&cfg, &ctx.id)?))
}

pub fn build_jaeger(v: &Value, ctx: &BuildContext) -> Result<Arc<dyn Exporter>, BuildError> {
    let j: JaegerConfig = parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    let cfg = OtlpGrpcConfig {
        endpoint: j.endpoint,
        compression: j.compression,
        compression_params: j.compression_params,
        headers: j.headers,
        tls: j.tls,
        balancer_name: None,
        keepalive: None,
        write_buffer_size: None,
        auth: None,
    };
    Ok(Arc::new(build_from(&cfg, &ctx.id)?))
}

/// The OTLP spec's retryable gRPC codes.
pub fn classify_status(st: &tonic::Status) -> ExportError {
    use tonic::Code::*;
    // A status with a source error was made on this side from a transport failure (a
    // connection reset, a stream refused during the server's shutdown), not sent by the
    // server: nothing says the server rejected the data, so send it again.
    if let Some(src) = std::error::Error::source(st) {
        return ExportError::Retryable {
            reason: format!("transport: {:?}: {} ({src})", st.code(), st.message()),
            after: None,
        };
    }
    match st.code() {
        Unavailable | Cancelled | DeadlineExceeded | Aborted | OutOfRange | DataLoss => {
            ExportError::Retryable {
                reason: format!("{:?}: {}", st.code(), st.message()),
                after: retry_delay_of(st),
            }
        }
        // Only retryable when the server says when (a RetryInfo detail), per the spec.
        ResourceExhausted if retry_delay_of(st).is_some() => ExportError::Retryable {
            reason: format!("ResourceExhausted: {}", st.message()),
            after: retry_delay_of(st),
        },
        code => ExportError::permanent(
            format!("grpc_{code:?}").to_lowercase(),
            st.message().to_string(),
        ),
    }
}

impl OtlpGrpcExporter {
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        *r.metadata_mut() = self.headers.clone();
        r
    }

    /// Sends the batch's protobuf encoding as the export request through a pass-through
    /// codec: encoding straight from the shared batch avoids cloning it into a request
    /// message first (the generated client wants an owned request), and a raw batch's
    /// requests are written out as they arrived, copied once into the gRPC frame.
    async fn send_batch(&self, batch: &Batch) -> Result<(), tonic::Status> {
        let path = match batch.signal() {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        };
        let body = match batch {
            Batch::Raw(r) => r.chunks().cloned().collect(),
            b => vec![bytes::Bytes::from(b.encode_proto())],
        };
        let gzip = (self.compression == Some(CompressionEncoding::Gzip)).then_some(self.gzip_level);
        if self.compression.is_none() || gzip.is_some() {
            // Uncompressed, the chunks go out as they are; gzip is weft's own encoder or
            // zlib at the configured level (see `grpc_unary`). zstd goes through tonic.
            let headers = self.headers.clone().into_headers();
            let channel = self.channel.clone();
            let shared = self.shared.as_ref();
            return super::grpc_unary::call(channel, shared, path, headers, body, gzip).await;
        }
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(64 * 1024 * 1024)
            .accept_compressed(CompressionEncoding::Gzip);
        if let Some(enc) = self.compression {
            grpc = grpc.send_compressed(enc);
        }
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
        let req = self.request(body);
        grpc.unary(req, http::uri::PathAndQuery::from_static(path), BytesCodec)
            .await
            .map(|_| ())
    }
}

impl Exporter for OtlpGrpcExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            self.send_batch(batch)
                .await
                .map_err(|st| classify_status(&st))
        })
    }
    fn accepts_raw(&self) -> bool {
        true
    }
}
