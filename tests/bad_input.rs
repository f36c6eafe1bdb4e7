//! Each class of bad input gets the status the OTLP spec gives it, is counted nowhere as
//! accepted, and the next good request is served: truncated protobuf, wrong content type,
//! invalid gzip, oversized body (with and without Content-Length, and as a gzip bomb),
//! invalid JSON, ids of the wrong length, empty bodies; the same over gRPC.

mod support;

use std::time::Duration;

use prost::Message;

use support::otlp_sink::Sink;
use support::weft::{forward_to, start};
use weft::data::*;

fn one_span(trace_id: Vec<u8>) -> Batch {
    Batch::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id,
                span_id: vec![2; 8],
                name: "ok".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_input_gets_the_right_status_and_good_input_still_works() {
    let sink = Sink::start().await;
    let yaml = forward_to(&sink.endpoint(), "        max_request_body_size: 100000\n");
    let weft = start(&yaml).await;
    let url = format!("{}/v1/traces", weft.http());
    let c = reqwest::Client::new();
    let good = one_span(vec![1; 16]).encode_proto();
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 3);
    let bomb = weft::exporters::http_client::gzip(&vec![0u8; 5_000_000]);

    struct Case {
        name: &'static str,
        ct: Option<&'static str>,
        ce: Option<&'static str>,
        body: Vec<u8>,
        chunked: bool,
        want: u16,
    }
    let cases = vec![
        Case { name: "truncated protobuf", ct: Some("application/x-protobuf"), ce: None, body: truncated, chunked: false, want: 400 },
        Case { name: "wrong content type", ct: Some("text/plain"), ce: None, body: good.clone(), chunked: false, want: 415 },
        Case { name: "no content type", ct: None, ce: None, body: good.clone(), chunked: false, want: 415 },
        Case { name: "invalid gzip", ct: Some("application/x-protobuf"), ce: Some("gzip"), body: b"definitely not gzip".to_vec(), chunked: false, want: 400 },
        Case { name: "unknown content encoding", ct: Some("application/x-protobuf"), ce: Some("br"), body: good.clone(), chunked: false, want: 415 },
        Case { name: "oversized body", ct: Some("application/x-protobuf"), ce: None, body: vec![0x0a; 200_000], chunked: false, want: 413 },
        Case { name: "oversized chunked body", ct: Some("application/x-protobuf"), ce: None, body: vec![0x0a; 200_000], chunked: true, want: 413 },
        Case { name: "gzip bomb", ct: Some("application/x-protobuf"), ce: Some("gzip"), body: bomb, chunked: false, want: 413 },
        Case { name: "invalid JSON", ct: Some("application/json"), ce: None, body: b"{\"resourceSpans\": [".to_vec(), chunked: false, want: 400 },
        Case { name: "JSON of the wrong shape", ct: Some("application/json"), ce: None, body: b"{\"resourceSpans\": 5}".to_vec(), chunked: false, want: 400 },
        Case { name: "trace id of the wrong length (JSON)", ct: Some("application/json"), ce: None, body: br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"abcd","spanId":"0102030405060708","name":"x"}]}]}]}"#.to_vec(), chunked: false, want: 400 },
        Case { name: "trace id of the wrong length (protobuf)", ct: Some("application/x-protobuf"), ce: None, body: one_span(vec![1; 5]).encode_proto(), chunked: false, want: 400 },
        Case { name: "non-hex trace id (JSON)", ct: Some("application/json"), ce: None, body: br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz000000000000000000000000000000","spanId":"0102030405060708"}]}]}]}"#.to_vec(), chunked: false, want: 400 },
        Case { name: "empty JSON body", ct: Some("application/json"), ce: None, body: Vec::new(), chunked: false, want: 400 },
        Case { name: "good chunked body (no Content-Length)", ct: Some("application/x-protobuf"), ce: None, body: good.clone(), chunked: true, want: 200 },
        // An empty protobuf body is a valid, empty ExportTraceServiceRequest.
        Case { name: "empty protobuf body", ct: Some("application/x-protobuf"), ce: None, body: Vec::new(), chunked: false, want: 200 },
    ];
    for case in cases {
        let mut req = c.post(&url);
        if let Some(ct) = case.ct {
            req = req.header("content-type", ct);
        }
        if let Some(ce) = case.ce {
            req = req.header("content-encoding", ce);
        }
        if case.chunked {
            let status = chunked_post(
                weft.addr("otlp/http"),
                "/v1/traces",
                case.ct.unwrap_or(""),
                &case.body,
            )
            .await;
            assert_eq!(status, case.want, "{}", case.name);
        } else {
            let resp = req
                .body(case.body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            if case.want == 413 {
                // A body refused for its size was not read to its end: the connection
                // must not be reused (a client that did would fail its next request).
                assert_eq!(
                    resp.headers().get("connection").map(|v| v.as_bytes()),
                    Some(&b"close"[..]),
                    "{}",
                    case.name
                );
            }
            let status = resp.status().as_u16();
            let ct = resp.headers().get("content-type").cloned();
            let body = resp.bytes().await.unwrap();
            assert_eq!(status, case.want, "{}: {:?}", case.name, body);
            if status == 413 {
                // OTLP's error body, in the request's encoding, also when the body limit
                // refused the request before the handler saw it.
                assert_eq!(
                    ct.as_ref().map(|v| v.as_bytes()),
                    Some(&b"application/x-protobuf"[..])
                );
                let st = weft::receivers::otlp::codec::RpcStatus::decode(&body[..])
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                assert_eq!(
                    st.code,
                    tonic::Code::ResourceExhausted as i32,
                    "{}",
                    case.name
                );
            }
        }
        // The next good request is served.
        let ok = c
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(good.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "good request after {}", case.name);
    }
    assert_eq!(
        weft.metric("weft_receiver_accepted_spans_total", "otlp"),
        17.0
    );
    assert_eq!(sink.wait_for_items(17, Duration::from_secs(10)).await, 17);
    weft.service.shutdown().await;
}

/// A POST with `Transfer-Encoding: chunked` and no Content-Length, as the Node.js SDK
/// sends; returns the status code.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, ct: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for c in body.chunks(10_000) {
        // The server may answer and close before the whole body is written.
        if s.write_all(format!("{:x}\r\n", c.len()).as_bytes())
            .await
            .is_err()
            || s.write_all(c).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bad_input_is_invalid_argument() {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, trace_service_client::TraceServiceClient,
    };
    let sink = Sink::start().await;
    let yaml = forward_to(&sink.endpoint(), "");
    let weft = start(&yaml).await;
    let ch = tonic::transport::Channel::from_shared(weft.grpc())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = TraceServiceClient::new(ch.clone());
    let Batch::Traces(bad) = one_span(vec![1; 3]) else {
        unreachable!()
    };
    let err = client
        .export(ExportTraceServiceRequest {
            resource_spans: bad,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    // Undecodable bytes, sent with a raw codec.
    let raw = raw_unary(ch.clone(), b"\x0a\x05\x01".to_vec()).await;
    assert_eq!(raw.unwrap_err().code(), tonic::Code::InvalidArgument);
    let Batch::Traces(good) = one_span(vec![1; 16]) else {
        unreachable!()
    };
    client
        .export(ExportTraceServiceRequest {
            resource_spans: good,
        })
        .await
        .unwrap();
    assert_eq!(sink.wait_for_items(1, Duration::from_secs(10)).await, 1);
    weft.service.shutdown().await;
}

/// Sends arbitrary bytes as the trace Export request.
async fn raw_unary(ch: tonic::transport::Channel, body: Vec<u8>) -> Result<(), tonic::Status> {
    use weft::receivers::otlp::codec::RawCodec;
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .map(|_| ())
}
