//! weft: an OpenTelemetry-compatible telemetry pipeline.
//!
//! Data flows receiver → pipeline (processors) → fan-out → delivery (queue, retry, WAL) →
//! exporter. See DESIGN.md in the shared folder and README.md for the whole picture.

pub mod admin;
pub mod components;
pub mod config;
pub mod data;
pub mod delivery;
pub mod exporters;
pub mod kafka;
pub mod pipeline;
pub mod processors;
pub mod receivers;
pub mod thp;

/// Installs ring as rustls's process-wide crypto provider (idempotent). weft builds rustls
/// without a default provider to avoid aws-lc's long C build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
