//! OTLP/gRPC: the three collector services on one tonic server.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::codec::{ReceiveError, grpc_status};
use super::{GrpcConfig, ReceiverCounters};
use crate::components::BuildError;
use crate::data::Batch;
use crate::pipeline::Consumers;
use crate::pipeline::build::BoundAddrs;

#[derive(Clone)]
struct Svc {
    consumers: Consumers,
    counters: ReceiverCounters,
}

impl Svc {
    async fn accept(&self, batch: Batch) -> Result<(), tonic::Status> {
        let signal = batch.signal();
        let n = batch.item_count() as u64;
        let c = self.counters.get(signal);
        if let Err(e) = batch.validate_ids() {
            c.dropped.add(n);
            return Err(grpc_status(&ReceiveError::BadRequest(format!(
                "invalid {signal} request: {e}"
            ))));
        }
        match self.consumers.consume(batch).await {
            Ok(()) => {
                c.accepted.add(n);
                Ok(())
            }
            Err(e) => {
                c.refused.add(n);
                Err(grpc_status(&ReceiveError::from(e)))
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.accept(Batch::Traces(req.into_inner().resource_spans))
            .await?;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.accept(Batch::Logs(req.into_inner().resource_logs))
            .await?;
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.accept(Batch::Metrics(req.into_inner().resource_metrics))
            .await?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

fn read(path: &str, what: &str, id: &str) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|e| BuildError::new(id, format!("cannot read {what} {path}: {e}")))
}

/// tonic answers undecodable messages with INTERNAL; OTLP wants INVALID_ARGUMENT.
fn fix_decode_status(
    mut resp: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let h = resp.headers();
    let is_decode = h.get("grpc-status").is_some_and(|v| v == "13")
        && h.get("grpc-message").is_some_and(|m| {
            m.to_str()
                .unwrap_or("")
                .to_ascii_lowercase()
                .contains("decod")
        });
    if is_decode {
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("3"));
    }
    resp
}

pub async fn serve(
    id: &str,
    cfg: &GrpcConfig,
    consumers: Consumers,
    counters: ReceiverCounters,
    mut shutdown: watch::Receiver<bool>,
    bound: &BoundAddrs,
) -> Result<JoinHandle<()>, BuildError> {
    let addr = crate::receivers::normalize_endpoint(&cfg.endpoint);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        BuildError::new(id, format!("cannot listen on {} (grpc): {e}", cfg.endpoint))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| BuildError::new(id, e.to_string()))?;
    bound.record(format!("{id}/grpc"), local);
    tracing::info!(receiver = id, "OTLP/gRPC listening on {local}");
    let limit = (cfg.max_recv_msg_size_mib.max(1) * 1024 * 1024) as usize;
    let svc = Svc {
        consumers,
        counters,
    };
    let mut builder = Server::builder();
    if let Some(tls) = &cfg.tls {
        let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
            return Err(BuildError::new(id, "tls needs cert_file and key_file"));
        };
        let mut t = ServerTlsConfig::new().identity(Identity::from_pem(
            read(cert, "cert_file", id)?,
            read(key, "key_file", id)?,
        ));
        if let Some(ca) = &tls.client_ca_file {
            t = t.client_ca_root(Certificate::from_pem(read(ca, "client_ca_file", id)?));
        }
        builder = builder
            .tls_config(t)
            .map_err(|e| BuildError::new(id, format!("invalid TLS config: {e}")))?;
    }
    if let Some(n) = cfg.max_concurrent_streams {
        builder = builder.concurrency_limit_per_connection(n as usize);
    }
    let router = builder
        .layer(tower::util::MapResponseLayer::new(fix_decode_status))
        .add_service(
            TraceServiceServer::new(svc.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip),
        )
        .add_service(
            LogsServiceServer::new(svc.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd),
        )
        .add_service(
            MetricsServiceServer::new(svc)
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd),
        );
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(receiver = %id, "gRPC server failed: {e}");
        }
    }))
}
