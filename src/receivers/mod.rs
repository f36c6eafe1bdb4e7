//! Receivers: decode and validate input, count it, and hand it to the pipelines.

pub mod kafka;
pub mod otlp;
pub mod tls;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::components::BuildError;
use crate::exporters::BoxFuture;
use crate::pipeline::Consumers;
use crate::pipeline::build::BoundAddrs;

pub trait Receiver: Send {
    /// Binds its listeners and starts serving; returns the tasks, which end after
    /// `shutdown` turns true and in-flight requests were answered.
    fn start(
        self: Box<Self>,
        consumers: Consumers,
        shutdown: watch::Receiver<bool>,
        bound: BoundAddrs,
    ) -> BoxFuture<'static, Result<Vec<JoinHandle<()>>, BuildError>>;
}

/// `localhost:4317` → `127.0.0.1:4317` (tokio resolves names, but `localhost` may resolve
/// to ::1 first; the Collector binds IPv4 loopback), `:4317` → `0.0.0.0:4317`.
pub fn normalize_endpoint(endpoint: &str) -> String {
    if let Some(port) = endpoint.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = endpoint.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        endpoint.to_string()
    }
}
