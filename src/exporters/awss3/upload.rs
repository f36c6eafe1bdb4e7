//! S3 I/O: building the client from the standard AWS chain, one upload attempt per object
//! (PutObject, or multipart above [`MULTIPART_THRESHOLD`]), and classifying S3's answers.
//!
//! Credentials and region come from `aws-config`'s default chain (environment, shared
//! profile, web identity / IRSA, ECS container and EC2 instance metadata); the config's
//! `region` takes precedence over the chain's region. The SDK's own retries are disabled:
//! the delivery layer owns retries and backoff, so one send is exactly one attempt.
//!
//! A multipart upload that fails part-way is aborted before the error is returned, so no
//! invisible, billed parts are left behind (a lifecycle rule in `deploy/s3-lifecycle.json`
//! also cleans up any an abrupt kill leaves).

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectCannedAcl, StorageClass};

/// Objects larger than this use multipart upload, in parts of this size.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// What the client needs from the config.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub region: String,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
}

/// Builds the client (async: the credential chain reads profile files).
pub async fn build_client(s: &ClientSettings) -> Client {
    crate::install_crypto_provider();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if !s.region.is_empty() {
        loader = loader.region(Region::new(s.region.clone()));
    }
    let sdk = loader.load().await;
    let mut b = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(s.force_path_style)
        .retry_config(RetryConfig::disabled());
    if let Some(ep) = &s.endpoint {
        // S3-compatible stores (MinIO, Ceph, s3s, older moto) often reject the CRC
        // checksums the SDK sends by default since 2025.
        b = b
            .endpoint_url(ep.clone())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Client::from_conf(b.build())
}

/// How an S3 failure should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The bucket or the credentials are wrong: no retry helps; readiness names it.
    Permanent { code: String, message: String },
    /// The request itself was refused (bad storage class, key too long ...): drop and count.
    Rejected { code: String, message: String },
    /// Throttling, 5xx, network: retry through the delivery layer.
    Retryable { reason: String },
}

/// Codes that mean "this exporter cannot work until someone fixes the config".
const BROKEN_SETUP: &[&str] = &[
    "NoSuchBucket",
    "AccessDenied",
    "InvalidAccessKeyId",
    "NotSignedUp",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidBucketName",
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "ExpiredToken",
    "InvalidToken",
];

const RETRYABLE: &[&str] = &[
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "OperationAborted",
    "NoSuchUpload",
];

/// The pure classification of an S3 error reply.
pub fn classify_reply(code: Option<&str>, status: Option<u16>, message: &str) -> Failure {
    // HEAD requests have no body, so only the status tells.
    let code = match (code, status) {
        (Some(c), _) if !c.is_empty() && c != "NotFound" && c != "Forbidden" => c.to_string(),
        (_, Some(404)) => "NoSuchBucket".to_string(),
        (_, Some(403)) => "AccessDenied".to_string(),
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => format!("HTTP {s}"),
        (None, None) => "unknown".to_string(),
    };
    let message = message.chars().take(300).collect::<String>();
    if BROKEN_SETUP.contains(&code.as_str()) {
        return Failure::Permanent { code, message };
    }
    if RETRYABLE.contains(&code.as_str()) || matches!(status, Some(408 | 429 | 500..=599) | None) {
        return Failure::Retryable {
            reason: format!("{code}: {message}"),
        };
    }
    Failure::Rejected { code, message }
}

/// Classifies any SDK error: service replies by code and status, transport trouble as
/// retryable, a request the SDK could not even build as rejected.
pub fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    err: &SdkError<E, HttpResponse>,
) -> Failure {
    match err {
        SdkError::ServiceError(se) => classify_reply(
            se.err().code(),
            Some(se.raw().status().as_u16()),
            se.err().message().unwrap_or_default(),
        ),
        SdkError::ResponseError(re) => Failure::Retryable {
            reason: format!("unreadable response (HTTP {})", re.raw().status().as_u16()),
        },
        SdkError::TimeoutError(_) => Failure::Retryable {
            reason: "timeout".into(),
        },
        SdkError::DispatchFailure(_) => Failure::Retryable {
            reason: format!(
                "network: {}",
                aws_sdk_s3::error::DisplayErrorContext(err)
                    .to_string()
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        },
        SdkError::ConstructionFailure(_) => Failure::Rejected {
            code: "construction_failure".into(),
            message: aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
        },
        _ => Failure::Retryable {
            reason: aws_sdk_s3::error::DisplayErrorContext(err).to_string(),
        },
    }
}

/// One object to write.
pub struct Put<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub body: Vec<u8>,
    pub content_type: &'a str,
    pub storage_class: Option<&'a str>,
    /// A canned ACL (`bucket-owner-full-control`, ...).
    pub acl: Option<&'a str>,
}

/// Uploads one object: PutObject, or multipart (aborted on failure) above the threshold.
pub async fn upload(client: &Client, p: Put<'_>) -> Result<(), Failure> {
    if p.body.len() > MULTIPART_THRESHOLD {
        return multipart(client, p).await;
    }
    let storage_class = p.storage_class.map(StorageClass::from);
    client
        .put_object()
        .bucket(p.bucket)
        .key(p.key)
        .content_type(p.content_type)
        .set_storage_class(storage_class)
        .set_acl(p.acl.map(ObjectCannedAcl::from))
        .body(ByteStream::from(p.body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify(&e))
}

async fn multipart(client: &Client, p: Put<'_>) -> Result<(), Failure> {
    let created = client
        .create_multipart_upload()
        .bucket(p.bucket)
        .key(p.key)
        .content_type(p.content_type)
        .set_storage_class(p.storage_class.map(StorageClass::from))
        .set_acl(p.acl.map(ObjectCannedAcl::from))
        .send()
        .await
        .map_err(|e| classify(&e))?;
    let Some(upload_id) = created.upload_id() else {
        return Err(Failure::Retryable {
            reason: "CreateMultipartUpload returned no upload id".into(),
        });
    };
    let result = upload_parts(client, &p, upload_id).await;
    if result.is_err() {
        // Best effort: if the abort fails too, the lifecycle rule removes the parts.
        if let Err(e) = client
            .abort_multipart_upload()
            .bucket(p.bucket)
            .key(p.key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(
                bucket = p.bucket,
                key = p.key,
                "cannot abort multipart upload {upload_id}: {:?}",
                classify(&e)
            );
        }
    }
    result
}

async fn upload_parts(client: &Client, p: &Put<'_>, upload_id: &str) -> Result<(), Failure> {
    let mut parts = Vec::new();
    for (i, chunk) in p.body.chunks(PART_SIZE).enumerate() {
        let number = i32::try_from(i + 1).map_err(|_| Failure::Rejected {
            code: "TooManyParts".into(),
            message: "object has more parts than S3 allows".into(),
        })?;
        let out = client
            .upload_part()
            .bucket(p.bucket)
            .key(p.key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        parts.push(
            CompletedPart::builder()
                .set_e_tag(out.e_tag().map(str::to_string))
                .part_number(number)
                .build(),
        );
    }
    client
        .complete_multipart_upload()
        .bucket(p.bucket)
        .key(p.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify(&e))
}

/// Checks the bucket at start-up (HeadBucket), so a missing bucket or bad credentials show
/// in readiness before the first batch.
pub async fn check_bucket(client: &Client, bucket: &str) -> Result<(), Failure> {
    client
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        assert!(matches!(
            classify_reply(Some("NoSuchBucket"), Some(404), "x"),
            Failure::Permanent { .. }
        ));
        assert!(matches!(
            classify_reply(Some("AccessDenied"), Some(403), ""),
            Failure::Permanent { .. }
        ));
        assert!(matches!(
            classify_reply(Some("InvalidAccessKeyId"), Some(403), ""),
            Failure::Permanent { .. }
        ));
        assert!(
            matches!(classify_reply(None, Some(404), ""), Failure::Permanent { code, .. } if code == "NoSuchBucket")
        );
        assert!(
            matches!(classify_reply(Some("NotFound"), Some(404), ""), Failure::Permanent { code, .. } if code == "NoSuchBucket")
        );
        assert!(matches!(
            classify_reply(Some("SlowDown"), Some(503), ""),
            Failure::Retryable { .. }
        ));
        assert!(matches!(
            classify_reply(None, Some(503), ""),
            Failure::Retryable { .. }
        ));
        assert!(matches!(
            classify_reply(Some("InternalError"), Some(500), ""),
            Failure::Retryable { .. }
        ));
        assert!(matches!(
            classify_reply(Some("InvalidStorageClass"), Some(400), ""),
            Failure::Rejected { .. }
        ));
        assert!(matches!(
            classify_reply(Some("EntityTooLarge"), Some(400), ""),
            Failure::Rejected { .. }
        ));
    }
}
