//! CORS for the OTLP/HTTP receiver, so browser SDKs (which send a preflight `OPTIONS` and
//! read the answer of their `POST` only when it carries `Access-Control-Allow-Origin`) can
//! send to weft. Semantics of the Collector's `confighttp` `cors` block, which wraps the
//! server in the rs/cors handler with credentials allowed.
//!
//! Keys under `protocols.http.cors`:
//! - `allowed_origins` (empty): origins allowed to send. An entry may hold one `*` that
//!   stands for any run of characters (`https://*.example.com`); `*` alone allows every
//!   origin. Matching ignores ASCII case. CORS is on only when this list is non-empty
//!   (like the Collector, a `cors` block without origins changes nothing).
//! - `allowed_headers` (empty): request headers a preflight may ask for, besides the ones
//!   always allowed (`Accept`, `Accept-Language`, `Content-Language`, `Content-Type`, and
//!   `X-Requested-With` while the list is empty); `*` allows any. Case-insensitive.
//! - `max_age` (0): seconds a browser may cache a preflight answer; 0 sends no
//!   `Access-Control-Max-Age` (the browser's default applies), a negative value sends 0.
//!
//! Behaviour when on (as rs/cors): a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`, on any path) is answered 204 here and never reaches
//! the routes. It carries `Vary: Origin, Access-Control-Request-Method,
//! Access-Control-Request-Headers` always, and the allow headers
//! (`Access-Control-Allow-Origin`: the request's origin, or `*` when `*` is configured;
//! `-Methods: POST`; `-Headers`: the requested list; `-Credentials: true`; `-Max-Age`)
//! only when the origin is allowed, the method is `POST` (the only method the OTLP paths
//! serve) and every requested header is allowed; otherwise the browser blocks the request.
//! Every other answer, errors included (400/413/415/429/503: the SDK must be able to read
//! them), gets `Vary: Origin`, and `Access-Control-Allow-Origin` plus
//! `Access-Control-Allow-Credentials: true` when the request's `Origin` is allowed.
//!
//! Bad input: a malformed `allowed_origins` entry (empty, more than one `*`, whitespace,
//! or a path such as a trailing `/`, which no browser origin has) or an
//! `allowed_headers` entry that is not a header name is a config error naming the key.
//! Requests without `Origin` or with a disallowed one get no allow headers (only
//! `Vary: Origin`, as from the Collector: the answer depends on the origin).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub max_age: i64,
}

/// A config value that cannot work; `key` and `index` locate it under `cors`.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{key}.{index}: {message}")]
pub struct CorsConfigError {
    pub key: &'static str,
    pub index: usize,
    pub message: String,
}

/// Header names a browser may list in a preflight that are allowed whatever the config
/// says: the CORS-safelisted request headers (a browser lists them when their value is not
/// a "simple" one, e.g. `Content-Type: application/x-protobuf`).
const ALWAYS_ALLOWED: [&str; 4] = [
    "accept",
    "accept-language",
    "content-language",
    "content-type",
];

/// Also allowed while `allowed_headers` is empty (rs/cors' default list).
const DEFAULT_ALLOWED: &str = "x-requested-with";

const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
const ANY: HeaderValue = HeaderValue::from_static("*");
const TRUE: HeaderValue = HeaderValue::from_static("true");
const POST: HeaderValue = HeaderValue::from_static("POST");

#[derive(Debug, Clone, PartialEq)]
enum OriginRule {
    Exact(String),
    /// `prefix*suffix`: the origin starts with `prefix` and ends with `suffix`, the two
    /// not overlapping.
    Wildcard {
        prefix: String,
        suffix: String,
    },
}

impl OriginRule {
    fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginRule::Exact(o) => origin.eq_ignore_ascii_case(o.as_bytes()),
            OriginRule::Wildcard { prefix, suffix } => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                    && origin[origin.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

/// The checked policy built from a [`CorsConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<OriginRule>,
    any_header: bool,
    /// Lowercase names, the always-allowed ones included.
    headers: Vec<String>,
    max_age: Option<HeaderValue>,
}

fn origin_rule(index: usize, raw: &str) -> Result<OriginRule, CorsConfigError> {
    let err = |message: &str| CorsConfigError {
        key: "allowed_origins",
        index,
        message: format!("`{raw}`: {message}"),
    };
    if raw.is_empty() {
        return Err(err("an empty origin matches nothing"));
    }
    if raw
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
    {
        return Err(err(
            "an origin is ASCII without spaces (write internationalized hosts in punycode)",
        ));
    }
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    if after_scheme.contains('/') {
        return Err(err(
            "an origin is scheme://host[:port] and has no path (remove the trailing /)",
        ));
    }
    let lower = raw.to_ascii_lowercase();
    match lower.split_once('*') {
        None => Ok(OriginRule::Exact(lower)),
        Some((_, suffix)) if suffix.contains('*') => Err(err(
            "only one * wildcard is allowed in an origin (list one entry per pattern)",
        )),
        Some((prefix, suffix)) => Ok(OriginRule::Wildcard {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        }),
    }
}

impl Cors {
    /// The policy, or `None` when CORS is off (no `allowed_origins`).
    pub fn new(cfg: &CorsConfig) -> Result<Option<Cors>, CorsConfigError> {
        let mut any_origin = false;
        let mut origins = Vec::with_capacity(cfg.allowed_origins.len());
        for (i, o) in cfg.allowed_origins.iter().enumerate() {
            if o == "*" {
                any_origin = true;
            } else {
                origins.push(origin_rule(i, o)?);
            }
        }
        let mut any_header = false;
        let mut headers: Vec<String> = ALWAYS_ALLOWED.iter().map(|h| h.to_string()).collect();
        if cfg.allowed_headers.is_empty() {
            headers.push(DEFAULT_ALLOWED.to_string());
        }
        for (i, h) in cfg.allowed_headers.iter().enumerate() {
            if h == "*" {
                any_header = true;
                continue;
            }
            if HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(CorsConfigError {
                    key: "allowed_headers",
                    index: i,
                    message: format!("`{h}` is not an HTTP header name"),
                });
            }
            let lower = h.to_ascii_lowercase();
            if !headers.contains(&lower) {
                headers.push(lower);
            }
        }
        if cfg.allowed_origins.is_empty() {
            return Ok(None);
        }
        let max_age = match cfg.max_age {
            0 => None,
            n => Some(HeaderValue::from(n.max(0))),
        };
        Ok(Some(Cors {
            any_origin,
            origins,
            any_header,
            headers,
            max_age,
        }))
    }

    pub fn origin_allowed(&self, origin: &HeaderValue) -> bool {
        self.any_origin || self.origins.iter().any(|r| r.matches(origin.as_bytes()))
    }

    /// Whether every name in the `Access-Control-Request-Headers` values (comma-separated
    /// lists, possibly split over several header lines by a proxy) is allowed.
    pub fn headers_allowed<'a>(
        &self,
        requested: impl IntoIterator<Item = &'a HeaderValue>,
    ) -> bool {
        if self.any_header {
            return true;
        }
        requested.into_iter().all(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .map(|name| name.trim_ascii())
                .filter(|name| !name.is_empty())
                .all(|name| {
                    self.headers
                        .iter()
                        .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
                })
        })
    }

    /// The value of `Access-Control-Allow-Origin` for an allowed `origin`.
    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin { ANY } else { origin.clone() }
    }

    /// The answer to a preflight request: 204, with the allow headers only when the
    /// request may be made.
    pub fn preflight(&self, req: &HeaderMap) -> Response {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(header::VARY, PREFLIGHT_VARY);
        let Some(origin) = req.get(header::ORIGIN) else {
            return resp;
        };
        let method = req.get(header::ACCESS_CONTROL_REQUEST_METHOD);
        let requested = req.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS);
        let refusal = if !self.origin_allowed(origin) {
            Some("origin not allowed")
        } else if method.is_none_or(|m| m.as_bytes() != Method::POST.as_str().as_bytes()) {
            Some("method not allowed (only POST)")
        } else if !self.headers_allowed(requested.iter()) {
            Some("a requested header is not in allowed_headers")
        } else {
            None
        };
        if let Some(why) = refusal {
            tracing::debug!(?origin, ?method, "CORS preflight refused: {why}");
            return resp;
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, POST);
        for v in requested.iter().filter(|v| !v.is_empty()) {
            h.append(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        if let Some(age) = &self.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        resp
    }

    /// Adds the CORS headers to the answer of an actual (non-preflight) request whose
    /// `Origin` was `origin`.
    pub fn decorate(&self, origin: Option<&HeaderValue>, resp: &mut HeaderMap) {
        resp.append(header::VARY, VARY_ORIGIN);
        if let Some(origin) = origin.filter(|o| self.origin_allowed(o)) {
            resp.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                self.allow_origin(origin),
            );
            resp.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
    }
}

/// The middleware: outermost layer of the router, so that every answer (the body limit's
/// 413 and axum's own 404/405 included) passes through it. Installed only when CORS is on.
pub async fn layer(State(cors): State<Arc<Cors>>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return cors.preflight(req.headers());
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = next.run(req).await;
    cors.decorate(origin.as_ref(), resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], headers: &[&str], max_age: i64) -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            max_age,
        })
        .unwrap()
        .expect("cors on")
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn allows(c: &Cors, origin: &str) -> bool {
        c.origin_allowed(&hv(origin))
    }

    #[test]
    fn exact_origins_match_ignoring_case_and_nothing_else() {
        let c = cors(
            &["https://Shop.example.com", "http://localhost:3000"],
            &[],
            0,
        );
        assert!(allows(&c, "https://shop.example.com"));
        assert!(allows(&c, "HTTPS://SHOP.EXAMPLE.COM"));
        assert!(allows(&c, "http://localhost:3000"));
        assert!(!allows(&c, "http://shop.example.com"));
        assert!(!allows(&c, "https://shop.example.com:8443"));
        assert!(!allows(&c, "https://shop.example.com.evil.net"));
        assert!(!allows(&c, "http://localhost:30000"));
        assert!(!allows(&c, "null"));
        assert!(!allows(&c, ""));
    }

    #[test]
    fn a_wildcard_stands_for_any_run_of_characters_between_its_prefix_and_suffix() {
        let c = cors(&["https://*.example.com"], &[], 0);
        assert!(allows(&c, "https://eu.example.com"));
        assert!(allows(&c, "https://a.b.EXAMPLE.com"));
        assert!(
            !allows(&c, "https://example.com"),
            "the dot is part of the suffix"
        );
        assert!(!allows(&c, "http://eu.example.com"));
        assert!(!allows(&c, "https://eu.example.com.evil.net"));
        assert!(!allows(&c, "https://evilexample.com"));
        // Prefix and suffix must not overlap: "https://.example.com" is shorter than both.
        let c = cors(&["https://a*a.example.com"], &[], 0);
        assert!(!allows(&c, "https://a.example.com"));
        assert!(allows(&c, "https://aa.example.com"));
        let c = cors(&["http://localhost:*"], &[], 0);
        assert!(allows(&c, "http://localhost:5173"));
        assert!(!allows(&c, "http://localhost.evil.net"));
    }

    #[test]
    fn star_alone_allows_every_origin_and_is_answered_as_star() {
        let c = cors(&["https://shop.example.com", "*"], &[], 0);
        assert!(allows(&c, "https://anything.example.net"));
        assert_eq!(c.allow_origin(&hv("https://x.net")), "*");
        let c = cors(&["https://shop.example.com"], &[], 0);
        assert_eq!(
            c.allow_origin(&hv("https://shop.example.com")),
            "https://shop.example.com"
        );
    }

    #[test]
    fn no_origins_means_cors_off() {
        let off = Cors::new(&CorsConfig {
            allowed_origins: vec![],
            allowed_headers: vec!["X-Tenant".into()],
            max_age: 600,
        });
        assert_eq!(off, Ok(None));
    }

    fn headers_ok(c: &Cors, values: &[&str]) -> bool {
        let v: Vec<HeaderValue> = values.iter().map(|s| hv(s)).collect();
        c.headers_allowed(v.iter())
    }

    #[test]
    fn requested_headers_are_checked_case_insensitively_against_the_allow_list() {
        let c = cors(&["*"], &["X-Tenant", "traceparent"], 0);
        assert!(headers_ok(&c, &["content-type,x-tenant"]));
        assert!(headers_ok(&c, &["Content-Type, X-TENANT , Traceparent"]));
        assert!(
            headers_ok(&c, &["accept-language", "x-tenant"]),
            "split over lines"
        );
        assert!(headers_ok(&c, &[]), "nothing requested");
        assert!(headers_ok(&c, &[""]), "empty list");
        assert!(
            headers_ok(&c, &["x-tenant,,content-type,"]),
            "empty elements"
        );
        assert!(!headers_ok(&c, &["content-type,x-api-key"]));
        assert!(!headers_ok(&c, &["x-tenant", "authorization"]));
        // Configured names replace the default X-Requested-With, not the safelisted ones.
        assert!(!headers_ok(&c, &["x-requested-with"]));
    }

    #[test]
    fn the_defaults_allow_the_safelisted_headers_and_x_requested_with() {
        let c = cors(&["*"], &[], 0);
        assert!(headers_ok(
            &c,
            &["accept,accept-language,content-language,content-type"]
        ));
        assert!(headers_ok(&c, &["x-requested-with"]));
        assert!(!headers_ok(&c, &["x-tenant"]));
    }

    #[test]
    fn star_allows_any_header() {
        let c = cors(&["*"], &["X-Tenant", "*"], 0);
        assert!(headers_ok(&c, &["x-anything,authorization"]));
    }

    fn preflight(c: &Cors, origin: Option<&str>, method: &str, headers: Option<&str>) -> Response {
        let mut req = HeaderMap::new();
        if let Some(o) = origin {
            req.insert(header::ORIGIN, hv(o));
        }
        req.insert(header::ACCESS_CONTROL_REQUEST_METHOD, hv(method));
        if let Some(h) = headers {
            req.insert(header::ACCESS_CONTROL_REQUEST_HEADERS, hv(h));
        }
        c.preflight(&req)
    }

    fn get(r: &Response, name: HeaderName) -> Option<&str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn an_allowed_preflight_gets_every_allow_header() {
        let c = cors(&["https://*.example.com"], &["X-Tenant"], 600);
        let r = preflight(
            &c,
            Some("https://shop.example.com"),
            "POST",
            Some("content-type,x-tenant"),
        );
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            get(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some("https://shop.example.com")
        );
        assert_eq!(get(&r, header::ACCESS_CONTROL_ALLOW_METHODS), Some("POST"));
        assert_eq!(
            get(&r, header::ACCESS_CONTROL_ALLOW_HEADERS),
            Some("content-type,x-tenant")
        );
        assert_eq!(
            get(&r, header::ACCESS_CONTROL_ALLOW_CREDENTIALS),
            Some("true")
        );
        assert_eq!(get(&r, header::ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert_eq!(
            get(&r, header::VARY),
            Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        );
        // Nothing requested, no max_age: neither header.
        let c = cors(&["https://*.example.com"], &[], 0);
        let r = preflight(&c, Some("https://shop.example.com"), "POST", None);
        assert_eq!(get(&r, header::ACCESS_CONTROL_ALLOW_HEADERS), None);
        assert_eq!(get(&r, header::ACCESS_CONTROL_MAX_AGE), None);
        assert!(get(&r, header::ACCESS_CONTROL_ALLOW_ORIGIN).is_some());
    }

    #[test]
    fn a_refused_preflight_is_204_with_vary_and_no_allow_headers() {
        let c = cors(&["https://shop.example.com"], &[], 0);
        for (origin, method, headers) in [
            (Some("https://evil.example.com"), "POST", None),
            (None, "POST", None),
            (Some("https://shop.example.com"), "PUT", None),
            (Some("https://shop.example.com"), "post", None),
            (
                Some("https://shop.example.com"),
                "POST",
                Some("content-type,x-tenant"),
            ),
        ] {
            let r = preflight(&c, origin, method, headers);
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            assert!(get(&r, header::VARY).is_some());
            for name in [
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            ] {
                assert_eq!(
                    get(&r, name.clone()),
                    None,
                    "{origin:?} {method} {headers:?}: {name}"
                );
            }
        }
    }

    #[test]
    fn negative_max_age_sends_zero() {
        let c = cors(&["*"], &[], -1);
        let r = preflight(&c, Some("https://x.net"), "POST", None);
        assert_eq!(get(&r, header::ACCESS_CONTROL_MAX_AGE), Some("0"));
    }

    #[test]
    fn actual_answers_get_allow_origin_only_for_allowed_origins_and_always_vary() {
        let c = cors(&["https://shop.example.com"], &[], 0);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, hv("Accept-Encoding"));
        c.decorate(Some(&hv("https://shop.example.com")), &mut h);
        assert_eq!(
            h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
            "https://shop.example.com"
        );
        assert_eq!(
            h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).unwrap(),
            "true"
        );
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"], "added, not replaced");
        for origin in [Some("https://evil.example.com"), None] {
            let mut h = HeaderMap::new();
            c.decorate(origin.map(hv).as_ref(), &mut h);
            assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
            assert_eq!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
            assert_eq!(h.get(header::VARY).unwrap(), "Origin");
        }
    }

    fn config_error(origins: &[&str], headers: &[&str]) -> CorsConfigError {
        Cors::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            allowed_headers: headers.iter().map(|s| s.to_string()).collect(),
            max_age: 0,
        })
        .unwrap_err()
    }

    #[test]
    fn malformed_entries_are_config_errors_naming_the_key() {
        let e = config_error(&["https://ok.example.com", "https://*.*.example.com"], &[]);
        assert_eq!((e.key, e.index), ("allowed_origins", 1));
        assert!(e.message.contains("only one *"), "{e}");
        assert_eq!(
            e.to_string(),
            "allowed_origins.1: `https://*.*.example.com`: only one * wildcard is allowed in an origin (list one entry per pattern)"
        );
        let e = config_error(&["https://shop.example.com/"], &[]);
        assert_eq!((e.key, e.index), ("allowed_origins", 0));
        assert!(e.message.contains("no path"), "{e}");
        let e = config_error(&[""], &[]);
        assert_eq!(e.key, "allowed_origins");
        let e = config_error(&["https://shop example.com"], &[]);
        assert_eq!(e.key, "allowed_origins");
        let e = config_error(&["*"], &["X-Tenant", "X Bad"]);
        assert_eq!((e.key, e.index), ("allowed_headers", 1));
        assert!(e.message.contains("not an HTTP header name"), "{e}");
    }
}
