//! An in-process OTLP/gRPC backend (what Jaeger or another collector would be): records
//! every export request, and can be told to fail (retryable or permanent), to be slow, or
//! to stop and restart on the same port (an outage).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use tonic::codec::CompressionEncoding;
use weft::data::Batch;

#[derive(Default)]
pub struct SinkState {
    pub batches: Vec<Batch>,
    /// Fail this many upcoming requests with this code.
    pub fail: Option<(tonic::Code, usize)>,
    /// Every request takes this long.
    pub delay: Duration,
    pub requests: usize,
}

#[derive(Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<SinkState>>,
    stop: Arc<Mutex<Option<watch::Sender<bool>>>>,
}

#[derive(Clone)]
struct Svc(Arc<Mutex<SinkState>>);

impl Svc {
    async fn take(&self, b: Batch) -> Result<(), tonic::Status> {
        let (delay, fail) = {
            let mut s = self.0.lock().unwrap();
            s.requests += 1;
            let fail = match &mut s.fail {
                Some((code, n)) if *n > 0 => {
                    *n -= 1;
                    Some(*code)
                }
                _ => None,
            };
            (s.delay, fail)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(code) = fail {
            return Err(tonic::Status::new(code, "sink told to fail"));
        }
        self.0.lock().unwrap().batches.push(b);
        Ok(())
    }
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(Batch::Traces(r.into_inner().resource_spans))
            .await?;
        Ok(tonic::Response::new(Default::default()))
    }
}
#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        r: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.take(Batch::Logs(r.into_inner().resource_logs)).await?;
        Ok(tonic::Response::new(Default::default()))
    }
}
#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.take(Batch::Metrics(r.into_inner().resource_metrics))
            .await?;
        Ok(tonic::Response::new(Default::default()))
    }
}

impl Sink {
    pub async fn start() -> Sink {
        Sink::start_on("127.0.0.1:0".parse().unwrap(), Arc::default()).await
    }

    /// Starts listening on a given address (a backend that comes up late).
    pub async fn start_at(addr: SocketAddr) -> Sink {
        Sink::start_on(addr, Arc::default()).await
    }

    async fn start_on(addr: SocketAddr, state: Arc<Mutex<SinkState>>) -> Sink {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind sink");
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = watch::channel(false);
        let svc = Svc(state.clone());
        let limit = 64 * 1024 * 1024;
        let router = tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd)
                    .max_decoding_message_size(limit),
            )
            .add_service(
                LogsServiceServer::new(svc.clone())
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd)
                    .max_decoding_message_size(limit),
            )
            .add_service(
                MetricsServiceServer::new(svc)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd)
                    .max_decoding_message_size(limit),
            );
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
        Sink {
            addr,
            state,
            stop: Arc::new(Mutex::new(Some(tx))),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening (an outage); `restart` listens again on the same port.
    pub fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(true);
        }
    }

    pub async fn restart(&self) {
        let mut last = None;
        for _ in 0..50 {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    drop(l);
                    let s = Sink::start_on(self.addr, self.state.clone()).await;
                    *self.stop.lock().unwrap() = s.stop.lock().unwrap().take();
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot restart sink on {}: {last:?}", self.addr);
    }

    pub fn batches(&self) -> Vec<Batch> {
        self.state.lock().unwrap().batches.clone()
    }

    /// Every span id received, with how many times it arrived.
    /// The resource messages of every traces batch received, in arrival order.
    pub fn resource_spans(&self) -> Vec<weft::data::ResourceSpans> {
        self.batches()
            .into_iter()
            .flat_map(|b| match b {
                Batch::Traces(v) => v,
                _ => Vec::new(),
            })
            .collect()
    }

    pub fn span_ids(&self) -> std::collections::HashMap<Vec<u8>, usize> {
        let mut m = std::collections::HashMap::new();
        for b in self.state.lock().unwrap().batches.iter() {
            if let Batch::Traces(v) = b {
                for s in v.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                    *m.entry(s.span_id.clone()).or_insert(0) += 1;
                }
            }
        }
        m
    }

    pub fn item_count(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .batches
            .iter()
            .map(Batch::item_count)
            .sum()
    }

    /// Waits until at least `n` items arrived (or the timeout passed); returns the count.
    pub async fn wait_for_items(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let c = self.item_count();
            if c >= n || tokio::time::Instant::now() >= deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
