//! An S3-compatible server in-process: `s3s-fs` (objects are plain files under a temp dir)
//! behind `s3s`, which checks SigV4 signatures, served by hyper-util on 127.0.0.1:0.
//!
//! `set_down(true)` makes the server unreachable the way a crashed or partitioned S3
//! endpoint is: open connections are cut and new ones are closed on accept, so the client
//! sees network errors (not HTTP answers) until `set_down(false)`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};

use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio::task::{AbortHandle, JoinHandle};
use weft::exporters::awss3::upload::{ClientSettings, build_client};

pub const ACCESS_KEY: &str = "weft-test-access-key";
pub const SECRET_KEY: &str = "weft-test-secret-key";
pub const REGION: &str = "us-east-1";

/// Points the AWS default credential chain at the test keys, once per test binary.
///
/// The exporter gets its credentials from the standard chain (no keys in weft's config),
/// so the tests provide them the way a deployment does: through the environment. Every
/// test calls this first; `Once` makes the write happen before any test reads them, and
/// Rust's environment lock orders it against other `std::env` readers (tokio, aws-config).
pub fn init_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: see above; no C code reads the environment concurrently in these tests.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/weft-test-aws-config");
            std::env::set_var(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/weft-test-aws-credentials",
            );
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
    weft::install_crypto_provider();
}

/// Real S3 answers `NoSuchBucket` to a write into a bucket that does not exist, where
/// s3s-fs would quietly create the directory; this access hook restores S3's behaviour
/// (and, like s3s's default hook, refuses unauthenticated requests).
struct BucketMustExist {
    root: PathBuf,
    /// Writes to keys containing this text are answered `503 SlowDown` (fault injection).
    slow_down: Arc<Mutex<Option<String>>>,
    /// Writes to keys containing this text are answered `400 KeyTooLongError`, as S3
    /// answers a key over 1024 bytes (fault injection: a refusal of one object).
    reject: Arc<Mutex<Option<String>>>,
}

// `S3Access` is an `async_trait`; this is its expansion, written out so the tests need no
// extra dev-dependency.
impl S3Access for BucketMustExist {
    fn check<'a, 'b, 'c, 'at>(
        &'a self,
        cx: &'b mut S3AccessContext<'c>,
    ) -> Pin<Box<dyn Future<Output = S3Result<()>> + Send + 'at>>
    where
        'a: 'at,
        'b: 'at,
        'c: 'at,
        Self: 'at,
    {
        Box::pin(async move {
            if cx.credentials().is_none() {
                return Err(s3_error!(AccessDenied, "Signature is required"));
            }
            if cx.s3_op().name() != "CreateBucket"
                && let S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } = cx.s3_path()
                && !self.root.join(&**bucket).is_dir()
            {
                return Err(s3_error!(
                    NoSuchBucket,
                    "The specified bucket does not exist"
                ));
            }
            // Injected faults apply to writes of keys containing the configured text.
            let hit = |fault: &Mutex<Option<String>>| {
                let part = fault.lock().unwrap().clone();
                matches!((part, cx.s3_path()), (Some(p), S3Path::Object { key, .. }) if key.contains(p.as_str()))
                    && cx.method() != http::Method::GET
            };
            if hit(&self.slow_down) {
                return Err(s3_error!(SlowDown, "Please reduce your request rate."));
            }
            if hit(&self.reject) {
                return Err(s3_error!(KeyTooLongError, "Your key is too long"));
            }
            Ok(())
        })
    }
}

pub struct S3Server {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    down: Arc<AtomicBool>,
    slow_down: Arc<Mutex<Option<String>>>,
    reject: Arc<Mutex<Option<String>>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl S3Server {
    pub async fn start() -> S3Server {
        init_env();
        let root = tempfile::tempdir().unwrap();
        let fs = FileSystem::new(root.path()).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let slow_down: Arc<Mutex<Option<String>>> = Arc::default();
        let reject: Arc<Mutex<Option<String>>> = Arc::default();
        b.set_access(BucketMustExist {
            root: root.path().to_path_buf(),
            slow_down: slow_down.clone(),
            reject: reject.clone(),
        });
        let service = b.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (d, c) = (down.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                if d.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                let svc = service.clone();
                let task = tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        S3Server {
            addr,
            root,
            down,
            slow_down,
            reject,
            conns,
            accept,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers writes to keys containing `part` with `503 SlowDown` (None: stop).
    pub fn slow_down(&self, part: Option<&str>) {
        *self.slow_down.lock().unwrap() = part.map(str::to_string);
    }

    /// Answers writes to keys containing `part` with `400 KeyTooLongError` (None: stop).
    pub fn reject(&self, part: Option<&str>) {
        *self.reject.lock().unwrap() = part.map(str::to_string);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for c in self.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }

    /// A client of the server with the test credentials (through the same chain).
    pub async fn client(&self) -> aws_sdk_s3::Client {
        build_client(&ClientSettings {
            region: REGION.into(),
            endpoint: Some(self.endpoint()),
            force_path_style: true,
        })
        .await
    }

    pub async fn create_bucket(&self, name: &str) {
        self.client()
            .await
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap();
    }

    /// Every key in the bucket under `prefix`, sorted.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self
            .client()
            .await
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap();
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let out = self
            .client()
            .await
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    pub async fn etag(&self, bucket: &str, key: &str) -> String {
        let out = self
            .client()
            .await
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        out.e_tag().unwrap_or_default().to_string()
    }

    /// The exporter config pointing at this server.
    pub fn exporter_config(&self, bucket: &str, extra: serde_json::Value) -> serde_json::Value {
        exporter_config(&self.endpoint(), bucket, extra)
    }
}

/// An `awss3` exporter config for `endpoint` and `bucket`, with `extra` merged in.
pub fn exporter_config(
    endpoint: &str,
    bucket: &str,
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "s3uploader": {
            "region": REGION,
            "s3_bucket": bucket,
            "endpoint": endpoint,
            "s3_force_path_style": true,
        }
    });
    merge(&mut v, extra);
    v
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.accept.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A Python virtualenv in `target/py-venv` with `packages` installed (cached across runs),
/// for the optional tests that read the archive with other tools. Returns its python.
pub fn py_venv(packages: &[&str]) -> PathBuf {
    // One pip at a time: the optional tests may run in parallel.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../py-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success();
        assert!(ok, "python3 -m venv failed");
    }
    let ok = std::process::Command::new(&python)
        .args(["-m", "pip", "install", "-q"])
        .args(packages)
        .status()
        .unwrap()
        .success();
    assert!(ok, "pip install {packages:?} failed");
    python
}

/// moto's S3 server (a second, looser S3 target: any credentials, no signature check, but
/// its own multipart and checksum handling), started from `target/py-venv`.
pub struct Moto {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl Moto {
    pub async fn start() -> Moto {
        init_env();
        let python = py_venv(&["moto[s3,server]==5.1.*"]);
        let port = super::weft::free_port();
        let server = python.with_file_name("moto_server");
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Moto { child, addr }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> aws_sdk_s3::Client {
        build_client(&ClientSettings {
            region: REGION.into(),
            endpoint: Some(self.endpoint()),
            force_path_style: true,
        })
        .await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
