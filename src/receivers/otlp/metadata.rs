//! `include_metadata`: the request's headers as client metadata
//! ([`ClientMetadata`]), as the Collector's confighttp / configgrpc capture them into
//! `client.Info.Metadata`. Called only when the protocol sets `include_metadata: true`.
//!
//! - OTLP/HTTP: every request header, keys lower-case (HTTP/1.1 keeps `host`; an HTTP/2
//!   request's authority is a pseudo header and is not included).
//! - OTLP/gRPC: the request's gRPC metadata as grpc-go hands it to the Collector: every
//!   header except the HTTP/2 pseudo headers, the transport's own (`te`, `grpc-encoding`,
//!   `grpc-timeout`, `grpc-status`, `grpc-message`, `grpc-message-type`) and binary
//!   entries (`-bin` keys, which carry base64 bytes rather than text). `content-type`,
//!   `user-agent` and `grpc-accept-encoding` are kept, as grpc-go keeps them.
//!
//! Values that are not visible ASCII (RFC 9110 allows obs-text bytes) are skipped: an
//! attribute value must be UTF-8 text.

use axum::http::HeaderMap;

use crate::pipeline::ClientMetadata;

/// gRPC transport headers that grpc-go does not expose as metadata.
const GRPC_RESERVED: [&str; 6] = [
    "te",
    "grpc-encoding",
    "grpc-timeout",
    "grpc-status",
    "grpc-message",
    "grpc-message-type",
];

fn text_headers<'a>(
    headers: &'a HeaderMap,
    keep: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| !k.as_str().starts_with(':') && keep(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
}

/// The client metadata of an OTLP/HTTP request.
pub fn from_http(headers: &HeaderMap) -> ClientMetadata {
    ClientMetadata::from_pairs(text_headers(headers, |_| true))
}

/// The client metadata of an OTLP/gRPC request.
pub fn from_grpc(headers: &HeaderMap) -> ClientMetadata {
    ClientMetadata::from_pairs(text_headers(headers, |k| {
        !k.ends_with("-bin") && !GRPC_RESERVED.contains(&k)
    }))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn http_keeps_every_text_header_and_repeated_values() {
        let h = headers(&[
            ("x-tenant", b"acme"),
            ("x-team", b"a"),
            ("x-team", b"b"),
            ("host", b"weft:4318"),
            ("x-latin1", b"caf\xe9"),
        ]);
        let md = from_http(&h);
        assert_eq!(md.get("X-Tenant"), Some(&["acme".to_string()][..]));
        assert_eq!(md.get("x-team").map(<[String]>::len), Some(2));
        assert_eq!(md.get("host"), Some(&["weft:4318".to_string()][..]));
        assert_eq!(md.get("x-latin1"), None);
    }

    #[test]
    fn grpc_skips_binary_and_transport_headers() {
        let h = headers(&[
            ("x-tenant", b"acme"),
            ("trace-proto-bin", b"AAEC"),
            ("te", b"trailers"),
            ("grpc-timeout", b"10S"),
            ("grpc-encoding", b"gzip"),
            ("content-type", b"application/grpc"),
            ("user-agent", b"grpc-go/1.70"),
        ]);
        let md = from_grpc(&h);
        assert_eq!(md.get("x-tenant"), Some(&["acme".to_string()][..]));
        assert_eq!(md.get("trace-proto-bin"), None);
        assert_eq!(md.get("te"), None);
        assert_eq!(md.get("grpc-timeout"), None);
        assert_eq!(md.get("grpc-encoding"), None);
        assert!(md.get("content-type").is_some());
        assert!(md.get("user-agent").is_some());
    }
}
