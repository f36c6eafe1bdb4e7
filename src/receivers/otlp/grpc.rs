//! OTLP/gRPC: the three collector services on one tonic server.
//!
//! The services are written against tonic's server machinery directly. Uncompressed
//! requests are read from the HTTP/2 body into one exactly sized buffer by
//! [`super::grpc_body`]; compressed ones go through a pass-through codec ([`BytesCodec`]):
//! tonic handles framing, gzip/zstd decompression and the message size limit there. Either
//! way the receiver gets the request body as bytes. It then either keeps
//! them raw (scanned, the forwarding fast path) or decodes them, per
//! [`codec::accept_proto`]; undecodable messages are answered INVALID_ARGUMENT by the
//! receiver itself.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::codec::{self, BytesCodec, ReceiveError, grpc_status};
use super::{GrpcConfig, ReceiverCounters};
use crate::components::BuildError;
use crate::data::{Batch, Signal};
use crate::exporters::BoxFuture;
use crate::pipeline::build::BoundAddrs;
use crate::pipeline::{ClientMetadata, Consumers};

#[derive(Clone)]
struct Svc {
    consumers: Consumers,
    counters: ReceiverCounters,
    include_metadata: bool,
}

/// The request's client metadata (`include_metadata`), captured before the body is read.
type Metadata = Option<Arc<ClientMetadata>>;

impl Svc {
    async fn accept(&self, batch: Batch, metadata: Metadata) -> Result<(), tonic::Status> {
        let signal = batch.signal();
        let n = batch.item_count() as u64;
        let c = self.counters.get(signal);
        match self.consumers.consume_with(batch, metadata).await {
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

    async fn export(
        &self,
        signal: Signal,
        body: Bytes,
        metadata: Metadata,
    ) -> Result<Vec<Bytes>, tonic::Status> {
        let raw = self.consumers.accepts_raw(signal);
        let batch = codec::accept_proto(signal, body, raw).map_err(|e| {
            tracing::debug!(signal = %signal, "rejected OTLP/gRPC request: {e}");
            grpc_status(&e)
        })?;
        self.accept(batch, metadata).await?;
        // An empty Export*ServiceResponse (no partial_success) encodes to zero bytes.
        Ok(Vec::new())
    }
}

/// One OTLP service (`SIG` is the signal's tag) answering its `Export` method.
#[derive(Clone)]
struct ExportService<const SIG: u8> {
    svc: Svc,
    limit: usize,
}

impl NamedService for ExportService<1> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl NamedService for ExportService<2> {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}
impl NamedService for ExportService<3> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

/// The unary handler tonic calls with the decompressed body.
struct Unary(Svc, Signal, Metadata);

impl tonic::server::UnaryService<Bytes> for Unary {
    type Response = Vec<Bytes>;
    type Future = BoxFuture<'static, Result<tonic::Response<Vec<Bytes>>, tonic::Status>>;
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let (svc, signal, metadata) = (self.0.clone(), self.1, self.2.take());
        Box::pin(async move {
            svc.export(signal, req.into_inner(), metadata)
                .await
                .map(tonic::Response::new)
        })
    }
}

impl<const SIG: u8, B> tower::Service<http::Request<B>> for ExportService<SIG>
where
    B: tonic::codegen::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let signal = Signal::from_tag(SIG).unwrap_or(Signal::Traces);
        let svc = self.svc.clone();
        let limit = self.limit;
        Box::pin(async move {
            if req.uri().path().rsplit('/').next() != Some("Export") {
                return Ok(tonic::Status::unimplemented("unknown method").into_http());
            }
            let metadata = svc
                .include_metadata
                .then(|| Arc::new(super::metadata::from_grpc(req.headers())));
            let identity = req
                .headers()
                .get("grpc-encoding")
                .is_none_or(|v| v.as_bytes() == b"identity");
            if identity {
                // Uncompressed: read into one exact buffer (see `grpc_body`).
                let r = match super::grpc_body::read_message(req.into_body(), limit).await {
                    Ok(msg) => svc.export(signal, msg, metadata).await,
                    Err(st) => Err(st),
                };
                return Ok(match r {
                    Ok(_) => super::grpc_body::ok_response(),
                    Err(st) => st.into_http(),
                });
            }
            let mut grpc = tonic::server::Grpc::new(BytesCodec)
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd);
            if signal == Signal::Traces {
                grpc = grpc.send_compressed(CompressionEncoding::Gzip);
            }
            Ok(grpc.unary(Unary(svc, signal, metadata), req).await)
        })
    }
}

fn read(path: &str, what: &str, id: &str) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|e| BuildError::new(id, format!("cannot read {what} {path}: {e}")))
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
        include_metadata: cfg.include_metadata,
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
        .add_service(ExportService::<1> {
            svc: svc.clone(),
            limit,
        })
        .add_service(ExportService::<2> {
            svc: svc.clone(),
            limit,
        })
        .add_service(ExportService::<3> { svc, limit });
    // Each accepted connection reads through a 64 KiB buffer (see [`super::readbuf`]).
    use tonic::codegen::tokio_stream::StreamExt;
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|conn| conn.map(super::readbuf::ReadBuffered::new));
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
