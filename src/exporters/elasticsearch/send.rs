//! One `_bulk` request and the classification of its answer, plus endpoint selection:
//! round-robin over `endpoints`, and on a connection error (nothing reached the server, so
//! nothing can be indexed twice) the same body goes to the next endpoint at once. An
//! endpoint that refused a connection is skipped for [`DOWN_FOR`] unless every endpoint is
//! down.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

use super::super::ExportError;
use super::super::http_client::{classify_transport_error, retry_after};

/// How long an endpoint that refused a connection is passed over.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// What a `_bulk` request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
    pub endpoint: String,
}

/// The whole-request verdict, before looking at items.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: read the items.
    Items,
    /// 413: the body is larger than `http.max_content_length`; split it.
    TooLarge,
    /// 408, 429, 5xx: every document of this request is retried, after `after` if given.
    RetryAll {
        reason: String,
        after: Option<Duration>,
    },
    /// Other 4xx (401, 403, 400 on the request as a whole): the request will never succeed.
    Reject { reason: String, message: String },
}

pub fn verdict(a: &Answer) -> Verdict {
    let snippet = || {
        String::from_utf8_lossy(&a.body)
            .chars()
            .take(300)
            .collect::<String>()
    };
    match a.status {
        200..=299 => Verdict::Items,
        413 => Verdict::TooLarge,
        408 | 429 | 500..=599 => Verdict::RetryAll {
            reason: format!("{} answered HTTP {}: {}", a.endpoint, a.status, snippet()),
            after: a.retry_after,
        },
        s => Verdict::Reject {
            reason: format!("http_{s}"),
            message: format!("{} answered HTTP {s}: {}", a.endpoint, snippet()),
        },
    }
}

/// The configured endpoints and which of them are currently passed over.
pub struct Endpoints {
    urls: Vec<String>,
    next: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Endpoints {
    pub fn new(urls: Vec<String>) -> Endpoints {
        let n = urls.len();
        Endpoints {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            next: AtomicUsize::new(0),
            down_until: Mutex::new(vec![None; n]),
        }
    }

    pub fn first(&self) -> Option<&str> {
        self.urls.first().map(String::as_str)
    }

    /// Endpoint indices in the order to try them for the next request: round-robin
    /// start, endpoints that are up first.
    fn order(&self) -> Vec<usize> {
        let n = self.urls.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let (mut up, mut rest): (Vec<usize>, Vec<usize>) = (0..n)
            .map(|i| (start + i) % n)
            .partition(|i| down[*i].is_none_or(|t| t <= now));
        up.append(&mut rest);
        up
    }

    fn mark(&self, i: usize, down: bool) {
        let mut d = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = d.get_mut(i) {
            *slot = down.then(|| Instant::now() + DOWN_FOR);
        }
    }

    /// Sends one `_bulk` body, failing over to the next endpoint on connection errors.
    pub async fn bulk(
        &self,
        client: &reqwest::Client,
        path_and_query: &str,
        headers: &HeaderMap,
        body: bytes::Bytes,
    ) -> Result<Answer, ExportError> {
        let mut last_err = None;
        for i in self.order() {
            let url = format!("{}{}", self.urls[i], path_and_query);
            let sent = client
                .post(&url)
                .headers(headers.clone())
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    self.mark(i, false);
                    let status = resp.status().as_u16();
                    let retry_after = retry_after(resp.headers());
                    let body = match resp.bytes().await {
                        Ok(b) => b.to_vec(),
                        // The server answered but the body was cut: what it did with the
                        // documents is unknown, so retry them (content ids make that safe).
                        Err(e) => return Err(classify_transport_error(&e)),
                    };
                    return Ok(Answer {
                        status,
                        retry_after,
                        body,
                        endpoint: self.urls[i].clone(),
                    });
                }
                Err(e) if e.is_connect() => {
                    tracing::debug!(endpoint = %self.urls[i], "connection failed, trying the next endpoint: {e}");
                    self.mark(i, true);
                    last_err = Some(classify_transport_error(&e));
                }
                Err(e) => return Err(classify_transport_error(&e)),
            }
        }
        Err(last_err
            .unwrap_or_else(|| ExportError::permanent("no_endpoint", "no endpoints configured")))
    }

    /// `GET /` on the first endpoint that answers: the cluster's version number.
    pub async fn version(
        &self,
        client: &reqwest::Client,
        headers: &HeaderMap,
    ) -> Result<String, ExportError> {
        let mut last_err = None;
        for i in self.order() {
            let url = format!("{}/", self.urls[i]);
            match client.get(&url).headers(headers.clone()).send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    if !(200..300).contains(&status) {
                        return Err(ExportError::from_http_status(
                            status,
                            None,
                            &body.to_string(),
                        ));
                    }
                    return Ok(body["version"]["number"]
                        .as_str()
                        .unwrap_or("unknown")
                        .to_string());
                }
                Err(e) => last_err = Some(classify_transport_error(&e)),
            }
        }
        Err(last_err
            .unwrap_or_else(|| ExportError::permanent("no_endpoint", "no endpoints configured")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Answer {
        Answer {
            status,
            retry_after: Some(Duration::from_secs(2)),
            body: b"{}".to_vec(),
            endpoint: "http://es".into(),
        }
    }

    #[test]
    fn whole_request_verdicts() {
        assert_eq!(verdict(&answer(200)), Verdict::Items);
        assert_eq!(verdict(&answer(413)), Verdict::TooLarge);
        assert!(
            matches!(verdict(&answer(429)), Verdict::RetryAll { after: Some(d), .. } if d == Duration::from_secs(2))
        );
        assert!(matches!(verdict(&answer(503)), Verdict::RetryAll { .. }));
        assert!(
            matches!(verdict(&answer(401)), Verdict::Reject { reason, .. } if reason == "http_401")
        );
    }

    #[test]
    fn round_robin_puts_down_endpoints_last() {
        let e = Endpoints::new(vec![
            "http://a/".into(),
            "http://b".into(),
            "http://c".into(),
        ]);
        assert_eq!(e.order(), vec![0, 1, 2]);
        assert_eq!(e.order(), vec![1, 2, 0]);
        e.mark(2, true);
        assert_eq!(e.order(), vec![0, 1, 2]);
        assert_eq!(e.order(), vec![0, 1, 2]);
        e.mark(2, false);
        assert_eq!(e.order(), vec![1, 2, 0]);
        assert_eq!(e.first(), Some("http://a"));
    }
}
