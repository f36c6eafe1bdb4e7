//! Server-side TLS for receivers (the Collector's `tls` block: `cert_file`, `key_file`,
//! `client_ca_file` for mutual TLS), on rustls with the ring provider.

use std::sync::Arc;

use crate::components::BuildError;
use crate::receivers::otlp::ServerTls;

fn read(path: &str, what: &str, id: &str) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path)
        .map_err(|e| BuildError::new(id, format!("cannot read tls.{what} {path}: {e}")))
}

/// A rustls server config (ALPN h2 and http/1.1) from PEM files.
pub fn server_config(tls: &ServerTls, id: &str) -> Result<Arc<rustls::ServerConfig>, BuildError> {
    crate::install_crypto_provider();
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Err(BuildError::new(id, "tls needs cert_file and key_file"));
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert, "cert_file", id)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| BuildError::new(id, format!("invalid tls.cert_file {cert}: {e}")))?;
    if certs.is_empty() {
        return Err(BuildError::new(
            id,
            format!("tls.cert_file {cert} holds no certificate"),
        ));
    }
    let key = rustls_pemfile::private_key(&mut read(key, "key_file", id)?.as_slice())
        .map_err(|e| BuildError::new(id, format!("invalid tls.key_file {key}: {e}")))?
        .ok_or_else(|| BuildError::new(id, format!("tls.key_file {key} holds no private key")))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut read(ca, "client_ca_file", id)?.as_slice()) {
                let c = c.map_err(|e| {
                    BuildError::new(id, format!("invalid tls.client_ca_file {ca}: {e}"))
                })?;
                roots.add(c).map_err(|e| {
                    BuildError::new(id, format!("invalid tls.client_ca_file {ca}: {e}"))
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| {
                    BuildError::new(id, format!("invalid tls.client_ca_file {ca}: {e}"))
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| BuildError::new(id, format!("certificate and key do not match: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
