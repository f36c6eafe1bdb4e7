//! CORS on the OTLP/HTTP receiver, as a browser SDK meets it: a preflight `OPTIONS` from an
//! allowed origin is answered 204 with the allow headers (and without them for a disallowed
//! origin, method or header); a `POST` from an allowed origin carries
//! `Access-Control-Allow-Origin` on its 200 and on its errors (400, 413 with
//! `Connection: close`, 415); a disallowed or absent origin gets no allow headers; with
//! `cors` not configured (or without origins) nothing changes.

mod support;

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, Response};

use support::otlp_sink::Sink;
use support::weft::{Running, forward_to, start};
use weft::data::*;

const SHOP: &str = "https://shop.example.com";

fn one_span() -> Vec<u8> {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: "checkout".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
    .encode_proto()
}

/// weft with a traces pipeline into a stand-in OTLP backend; `http_extra` is appended
/// (indented) to the receiver's `protocols.http` block.
async fn weft_with(sink: &Sink, http_extra: &str) -> Running {
    let extra = format!("        max_request_body_size: 100000\n{http_extra}");
    start(&forward_to(&sink.endpoint(), &extra)).await
}

async fn preflight(base: &str, path: &str, origin: &str, method: &str, headers: &str) -> Response {
    Client::new()
        .request(Method::OPTIONS, format!("{base}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("preflight")
}

async fn post(base: &str, origin: Option<&str>, ct: &str, body: Vec<u8>) -> Response {
    let mut req = Client::new()
        .post(format!("{base}/v1/traces"))
        .header("content-type", ct)
        .body(body);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.expect("post")
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

const ALLOW_HEADERS: [&str; 5] = [
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-allow-credentials",
    "access-control-max-age",
];

const CORS_ON: &str = "        cors:\n          allowed_origins: [\"https://shop.example.com\", \"https://*.shop.example.org\"]\n          allowed_headers: [X-Tenant]\n          max_age: 7200\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_allowed_origin_gets_the_allow_headers_and_others_do_not() {
    let sink = Sink::start().await;
    let weft = weft_with(&sink, CORS_ON).await;
    let base = weft.http();

    for (path, origin) in [
        ("/v1/traces", SHOP),
        ("/v1/logs", SHOP),
        ("/v1/metrics", "https://eu.shop.example.org"),
    ] {
        let r = preflight(&base, path, origin, "POST", "content-type,x-tenant").await;
        assert_eq!(r.status(), 204, "{path}");
        let hs = r.headers();
        assert_eq!(h(hs, "access-control-allow-origin"), Some(origin), "{path}");
        assert_eq!(h(hs, "access-control-allow-methods"), Some("POST"));
        assert_eq!(
            h(hs, "access-control-allow-headers"),
            Some("content-type,x-tenant")
        );
        assert_eq!(h(hs, "access-control-allow-credentials"), Some("true"));
        assert_eq!(h(hs, "access-control-max-age"), Some("7200"));
        assert_eq!(
            h(hs, "vary"),
            Some("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
        );
    }

    for (what, origin, method, headers) in [
        (
            "disallowed origin",
            "https://evil.example.com",
            "POST",
            "content-type",
        ),
        (
            "origin only matching a wildcard's suffix",
            "https://shop.example.org",
            "POST",
            "content-type",
        ),
        ("method other than POST", SHOP, "DELETE", "content-type"),
        (
            "header not allowed",
            SHOP,
            "POST",
            "content-type,authorization",
        ),
    ] {
        let r = preflight(&base, "/v1/traces", origin, method, headers).await;
        assert_eq!(r.status(), 204, "{what}");
        for name in ALLOW_HEADERS {
            assert_eq!(h(r.headers(), name), None, "{what}: {name}");
        }
        assert!(h(r.headers(), "vary").is_some(), "{what}");
    }

    // An OPTIONS that is not a preflight still reaches the routes, which serve POST only.
    let r = Client::new()
        .request(Method::OPTIONS, format!("{base}/v1/traces"))
        .header("origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(sink.item_count(), 0, "preflights deliver nothing");
    weft.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_an_allowed_origin_carries_allow_origin_errors_included() {
    let sink = Sink::start().await;
    let weft = weft_with(&sink, CORS_ON).await;
    let base = weft.http();
    let pb = "application/x-protobuf";
    let mut truncated = one_span();
    truncated.truncate(truncated.len() - 3);

    for (what, ct, body, want) in [
        ("good request", pb, one_span(), 200),
        ("truncated protobuf", pb, truncated, 400),
        (
            "invalid JSON",
            "application/json",
            b"{\"resourceSpans\": [".to_vec(),
            400,
        ),
        ("wrong content type", "text/plain", one_span(), 415),
        ("oversized body", pb, vec![0x0a; 200_000], 413),
    ] {
        let r = post(&base, Some(SHOP), ct, body).await;
        assert_eq!(r.status(), want, "{what}");
        let hs = r.headers();
        assert_eq!(h(hs, "access-control-allow-origin"), Some(SHOP), "{what}");
        assert_eq!(
            h(hs, "access-control-allow-credentials"),
            Some("true"),
            "{what}"
        );
        assert_eq!(h(hs, "vary"), Some("Origin"), "{what}");
        if want == 413 {
            // The body limit's refusal keeps its own header under the CORS layer.
            assert_eq!(h(hs, "connection"), Some("close"), "{what}");
        }
    }

    // A wildcard origin, in any case, is allowed and echoed as sent.
    let r = post(&base, Some("https://EU.shop.example.org"), pb, one_span()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        h(r.headers(), "access-control-allow-origin"),
        Some("https://EU.shop.example.org")
    );

    // A disallowed origin, or none (a backend SDK): served as before, no allow headers.
    for origin in [Some("https://evil.example.com"), None] {
        for (ct, want) in [(pb, 200), ("text/plain", 415)] {
            let r = post(&base, origin, ct, one_span()).await;
            assert_eq!(r.status(), want, "{origin:?}");
            for name in ALLOW_HEADERS {
                assert_eq!(h(r.headers(), name), None, "{origin:?} {want}: {name}");
            }
        }
    }
    assert_eq!(sink.wait_for_items(4, Duration::from_secs(10)).await, 4);
    weft.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_origin_is_answered_with_star() {
    let sink = Sink::start().await;
    let weft = weft_with(&sink, "        cors:\n          allowed_origins: [\"*\"]\n").await;
    let base = weft.http();
    let r = preflight(
        &base,
        "/v1/traces",
        "http://localhost:5173",
        "POST",
        "content-type",
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(h(r.headers(), "access-control-allow-origin"), Some("*"));
    assert_eq!(
        h(r.headers(), "access-control-max-age"),
        None,
        "max_age 0: none"
    );
    let r = post(
        &base,
        Some("http://localhost:5173"),
        "application/x-protobuf",
        one_span(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(r.headers(), "access-control-allow-origin"), Some("*"));
    weft.service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_or_without_origins_nothing_changes() {
    let sink = Sink::start().await;
    for extra in [
        "",
        "        cors:\n          allowed_headers: [X-Tenant]\n          max_age: 600\n",
    ] {
        let weft = weft_with(&sink, extra).await;
        let base = weft.http();
        let r = preflight(&base, "/v1/traces", SHOP, "POST", "content-type").await;
        assert_eq!(r.status(), 405, "{extra:?}");
        for name in ALLOW_HEADERS {
            assert_eq!(h(r.headers(), name), None, "{extra:?}: {name}");
        }
        for (ct, want) in [("application/x-protobuf", 200), ("text/plain", 415)] {
            let r = post(&base, Some(SHOP), ct, one_span()).await;
            assert_eq!(r.status(), want, "{extra:?}");
            assert_eq!(
                h(r.headers(), "access-control-allow-origin"),
                None,
                "{extra:?}"
            );
            assert_eq!(h(r.headers(), "vary"), None, "{extra:?}");
        }
        weft.service.shutdown().await;
    }
}
