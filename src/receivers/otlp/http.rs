//! OTLP/HTTP: `POST` protobuf or JSON to the configured paths; responses use the
//! request's content type, errors carry a `google.rpc.Status` body and, when retryable,
//! `Retry-After`. Chunked bodies (no Content-Length) are accepted. A 413 (body over
//! `max_request_body_size`) is a `Status` like every other error, also when axum's body
//! limit refuses it before the handler, and carries `Connection: close`: the body was not
//! read to its end, so the connection cannot take another request. With `cors` configured,
//! the [`super::cors`] layer wraps everything else (preflights, and the allow headers on
//! every answer, the 413 included); without it no layer is installed.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::codec::{self, Encoding, ReceiveError, status_for};
use super::cors::Cors;
use super::{HttpConfig, ReceiverCounters};
use crate::components::BuildError;
use crate::data::Signal;
use crate::pipeline::Consumers;
use crate::pipeline::build::BoundAddrs;

#[derive(Clone)]
struct AppState {
    consumers: Consumers,
    counters: ReceiverCounters,
    limit: u64,
    include_metadata: bool,
}

fn success(signal: Signal, enc: Encoding) -> Response {
    let body = match (signal, enc) {
        (Signal::Traces, Encoding::Protobuf) => {
            ExportTraceServiceResponse::default().encode_to_vec()
        }
        (Signal::Logs, Encoding::Protobuf) => ExportLogsServiceResponse::default().encode_to_vec(),
        (Signal::Metrics, Encoding::Protobuf) => {
            ExportMetricsServiceResponse::default().encode_to_vec()
        }
        (_, Encoding::Json) => b"{}".to_vec(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        body,
    )
        .into_response()
}

fn failure(e: &ReceiveError, enc: Encoding) -> Response {
    let (http, grpc) = status_for(e);
    let retry_after = match e {
        ReceiveError::Unavailable { retry_after, .. } => {
            Some(retry_after.unwrap_or(std::time::Duration::from_secs(1)))
        }
        _ => None,
    };
    let st = codec::rpc_status(grpc, &e.to_string(), None);
    let body = match enc {
        Encoding::Protobuf => st.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&st).unwrap_or_default(),
    };
    let mut resp = (
        StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_REQUEST),
        [(header::CONTENT_TYPE, enc.content_type())],
        body,
    )
        .into_response();
    if let Some(d) = retry_after {
        let secs = d.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// A body refused for its size (axum's body limit, before the handler, or the
/// decompressed size in it) was not read to its end, so the connection cannot carry another
/// request: say so (`Connection: close`), or a client reusing it would have its next request
/// fail on a closed socket. axum's own refusal is plain text; OTLP wants a `Status` in the
/// request's encoding, as every other error here.
async fn too_large(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let enc = Encoding::from_content_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .unwrap_or(Encoding::Json);
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let ours = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == enc.content_type().as_bytes());
        if !ours {
            resp = failure(
                &ReceiveError::TooLarge(
                    "request body exceeds the receiver's max_request_body_size".into(),
                ),
                enc,
            );
        }
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

async fn handle(state: &AppState, signal: Signal, headers: &HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let enc = match Encoding::from_content_type(ct) {
        Ok(e) => e,
        Err(e) => return failure(&e, Encoding::Json),
    };
    let ce = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let result = async {
        let batch = match (codec::decompress(ce, &body, state.limit)?, enc) {
            (raw, Encoding::Json) => codec::decode(signal, enc, &raw)?,
            (raw, Encoding::Protobuf) => {
                // An uncompressed body is the request as received: shared, not copied.
                let bytes = match raw {
                    std::borrow::Cow::Borrowed(_) => body.clone(),
                    std::borrow::Cow::Owned(v) => Bytes::from(v),
                };
                let fast = state.consumers.accepts_raw(signal);
                codec::accept_proto(signal, bytes, fast)?
            }
        };
        let n = batch.item_count() as u64;
        let c = state.counters.get(signal);
        let metadata = state
            .include_metadata
            .then(|| std::sync::Arc::new(super::metadata::from_http(headers)));
        match state.consumers.consume_with(batch, metadata).await {
            Ok(()) => {
                c.accepted.add(n);
                Ok(())
            }
            Err(e) => {
                c.refused.add(n);
                Err(ReceiveError::from(e))
            }
        }
    }
    .await;
    match result {
        Ok(()) => success(signal, enc),
        Err(e) => {
            if !matches!(e, ReceiveError::Unavailable { .. }) {
                tracing::debug!(signal = %signal, "rejected OTLP/HTTP request: {e}");
            }
            failure(&e, enc)
        }
    }
}

async fn traces(State(s): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&s, Signal::Traces, &h, body).await
}
async fn logs(State(s): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&s, Signal::Logs, &h, body).await
}
async fn metrics(State(s): State<AppState>, h: HeaderMap, body: Bytes) -> Response {
    handle(&s, Signal::Metrics, &h, body).await
}

pub async fn serve(
    id: &str,
    cfg: &HttpConfig,
    consumers: Consumers,
    counters: ReceiverCounters,
    mut shutdown: watch::Receiver<bool>,
    bound: &BoundAddrs,
) -> Result<JoinHandle<()>, BuildError> {
    let addr = crate::receivers::normalize_endpoint(&cfg.endpoint);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
        BuildError::new(id, format!("cannot listen on {} (http): {e}", cfg.endpoint))
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| BuildError::new(id, e.to_string()))?;
    bound.record(format!("{id}/http"), local);
    tracing::info!(receiver = id, "OTLP/HTTP listening on http://{local}");
    let state = AppState {
        consumers,
        counters,
        limit: cfg.max_request_body_size,
        include_metadata: cfg.include_metadata,
    };
    let cors = match &cfg.cors {
        Some(c) => {
            Cors::new(c).map_err(|e| BuildError::new(id, format!("protocols.http.cors.{e}")))?
        }
        None => None,
    };
    if cors.is_none() && cfg.cors.is_some() {
        tracing::warn!(
            receiver = id,
            "protocols.http.cors has no allowed_origins: CORS is off"
        );
    }
    let mut router = Router::new()
        .route(&cfg.traces_url_path, post(traces))
        .route(&cfg.logs_url_path, post(logs))
        .route(&cfg.metrics_url_path, post(metrics))
        .layer(DefaultBodyLimit::max(cfg.max_request_body_size as usize))
        .layer(axum::middleware::from_fn(too_large));
    if let Some(cors) = cors {
        router = router.layer(axum::middleware::from_fn_with_state(
            Arc::new(cors),
            super::cors::layer,
        ));
    }
    let router = router.with_state(state);
    if let Some(tls) = &cfg.tls {
        let tls = crate::receivers::tls::server_config(tls, id)?;
        return Ok(tokio::spawn(serve_tls(
            id.to_string(),
            listener,
            router,
            tls,
            shutdown,
        )));
    }
    let id = id.to_string();
    Ok(tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(receiver = %id, "HTTP server failed: {e}");
        }
    }))
}

/// HTTPS: accept, handshake, serve HTTP/1.1 or HTTP/2 per ALPN; on shutdown stop accepting
/// and let open connections finish their requests.
async fn serve_tls(
    id: String,
    listener: tokio::net::TcpListener,
    router: Router,
    tls: std::sync::Arc<rustls::ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let mut shutdown = shutdown;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(receiver = %id, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let id = id.clone();
        // The handshake runs in the connection's task, so a slow client never holds up
        // accepting others.
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(receiver = %id, %peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(receiver = %id, %peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(router),
                )
                .into_owned();
            let _ = watcher.watch(conn).await;
        });
    }
    drop(router);
    graceful.shutdown().await;
}
