//! A real Kafka-compatible broker for the Kafka tests: tansu 0.6 (Apache Kafka wire
//! protocol, in Rust), installed once by `install_tansu.sh` into a cache directory and
//! started per test on a free port. Plus a reader that fetches everything in a topic
//! without a consumer group (to check what the exporter wrote, partition by partition).
//!
//! tansu's known limits (TEST-BACKENDS.md): topics are not created automatically (tests
//! create them), no transactions, and snappy batches are unreadable on sqlite storage
//! (the snappy round trip uses memory storage).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use krafka::Kafka;
use krafka::admin::{CreateTopicsOptions, NewTopic};
use krafka::consumer::ConsumerRecord;

/// The tansu binary: `$WEFT_TANSU`, else installed (once) by install_tansu.sh.
pub fn tansu() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("WEFT_TANSU") {
            return PathBuf::from(p);
        }
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/install_tansu.sh");
        let out = std::process::Command::new(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("run install_tansu.sh");
        assert!(out.status.success(), "install_tansu.sh failed");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

pub enum Storage {
    Memory,
    /// Survives a broker restart.
    Sqlite(PathBuf),
}

pub struct Broker {
    child: Option<std::process::Child>,
    /// The port clients use (advertised).
    pub port: u16,
    /// The port tansu listens on (differs from `port` behind the TLS front).
    listen_port: u16,
    tls: bool,
    /// SASL/SCRAM-SHA-512 credentials the helpers use when the broker requires them.
    sasl: Option<(String, String)>,
    auth_required: bool,
    storage: String,
    cwd: PathBuf,
    log: PathBuf,
}

impl Broker {
    pub async fn start(storage: Storage, log_dir: &std::path::Path) -> Broker {
        // tansu reads `sqlite://` paths relative to its working directory.
        let (storage, cwd) = match storage {
            Storage::Memory => ("memory://tansu/".to_string(), log_dir.to_path_buf()),
            Storage::Sqlite(p) => (
                format!("sqlite://{}", p.file_name().unwrap().to_string_lossy()),
                p.parent().unwrap().to_path_buf(),
            ),
        };
        let port = super::weft::free_port();
        let mut b = Broker {
            child: None,
            port,
            listen_port: port,
            tls: false,
            sasl: None,
            auth_required: false,
            storage,
            cwd,
            log: log_dir.join(format!("tansu-{port}.log")),
        };
        b.restart().await;
        b
    }

    /// A broker reachable only through mutual TLS (server and client certificates from
    /// tests/support/tls): tansu listens on a private port and advertises a TLS front that
    /// forwards each connection to it, so every client connection, including the ones to
    /// the address from metadata, is TLS.
    pub async fn start_tls(storage: Storage, log_dir: &std::path::Path) -> Broker {
        let mut b = Broker::start(storage, log_dir).await;
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        b.port = front.local_addr().unwrap().port();
        b.tls = true;
        b.restart().await;
        let d = format!("{}/tests/support/tls", env!("CARGO_MANIFEST_DIR"));
        let cfg = weft::receivers::tls::server_config(
            &weft::receivers::otlp::ServerTls {
                cert_file: Some(format!("{d}/server.pem")),
                key_file: Some(format!("{d}/server.key")),
                client_ca_file: Some(format!("{d}/ca.pem")),
                ..Default::default()
            },
            "tls-front",
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let inner = b.listen_port;
        tokio::spawn(async move {
            while let Ok((tcp, _)) = front.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", inner)).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    }
                });
            }
        });
        b
    }

    /// A broker that requires SASL authentication, with `users` (name, password,
    /// `scram256` | `scram512`) created through tansu's CLI and `topics` created before
    /// authentication is switched on (sqlite storage, so both survive the restart).
    pub async fn start_sasl(
        log_dir: &std::path::Path,
        users: &[(&str, &str, &str)],
        topics: &[(&str, i32)],
    ) -> Broker {
        let mut b = Broker::start(Storage::Sqlite(log_dir.join("sasl.db")), log_dir).await;
        for (name, password, mechanism) in users {
            let ok = std::process::Command::new(tansu())
                .args(["user", "create", name, password, "--mechanism", mechanism])
                .args(["--broker", &format!("tcp://{}", b.addr())])
                .status()
                .expect("tansu user create")
                .success();
            assert!(ok, "tansu user create {name}");
        }
        for (t, p) in topics {
            b.create_topic(t, *p).await;
        }
        b.auth_required = true;
        let (u, p, _) = users[0];
        b.sasl = Some((u.to_string(), p.to_string()));
        b.restart().await;
        b
    }

    /// A broker behind a plain TCP front that counts the bytes clients send (as they
    /// flow), so a test can see what a producer put on the wire.
    pub async fn start_counted(
        storage: Storage,
        log_dir: &std::path::Path,
    ) -> (Broker, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut b = Broker::start(storage, log_dir).await;
        let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        b.port = front.local_addr().unwrap().port();
        b.restart().await;
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (inner, counter) = (b.listen_port, sent.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = front.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(("127.0.0.1", inner)).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    let to_broker = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 || uw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    };
                    let to_client = async move {
                        let _ = tokio::io::copy(&mut ur, &mut cw).await;
                    };
                    tokio::join!(to_broker, to_client);
                });
            }
        });
        (b, sent)
    }

    /// A client that talks TLS with the test client certificate.
    async fn tls_client(&self) -> Kafka {
        weft::install_crypto_provider();
        let d = format!("{}/tests/support/tls", env!("CARGO_MANIFEST_DIR"));
        let tls = krafka::auth::TlsConfig::new()
            .with_ca_cert(format!("{d}/ca.pem"))
            .with_client_cert(format!("{d}/client.pem"), format!("{d}/client.key"));
        Kafka::builder(self.addr())
            .security(krafka::auth::AuthConfig::ssl(tls))
            .connect()
            .await
            .expect("TLS connect")
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and storage.
    pub async fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.listen_port);
        let advertised = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = std::process::Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--storage-engine", &self.storage])
            .args(self.auth_required.then_some("--authentication"))
            .env("RUST_LOG", "warn")
            .current_dir(&self.cwd)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.listen_port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "tansu did not listen on {}: {}",
            self.addr(),
            self.log_text()
        );
    }

    /// Kills the broker (SIGKILL): no clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn client(&self) -> Kafka {
        if self.tls {
            return self.tls_client().await;
        }
        weft::install_crypto_provider();
        let auth = match &self.sasl {
            Some((u, p)) => krafka::auth::AuthConfig::sasl_scram_sha512(u, p),
            None => krafka::auth::AuthConfig::plaintext(),
        };
        Kafka::builder(self.addr())
            .security(auth)
            .client_id("weft-test")
            .connect()
            .await
            .expect("connect to tansu")
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let kafka = self.client().await;
        let r = kafka
            .admin()
            .create_topics(
                vec![NewTopic::new(name, partitions, 1).unwrap()],
                CreateTopicsOptions::default(),
            )
            .await
            .expect("create_topics");
        for (t, res) in r {
            res.unwrap_or_else(|e| panic!("create topic {t}: {e}"));
        }
    }

    /// Every record of `topic` (all partitions, from the beginning), without a group.
    pub async fn read_all(&self, topic: &str, partitions: i32) -> Vec<ConsumerRecord> {
        let kafka = self.client().await;
        let consumer = kafka
            .consumer_without_group()
            .auto_offset_reset(krafka::consumer::AutoOffsetReset::Earliest)
            .build()
            .await
            .expect("consumer");
        consumer
            .assign(topic, (0..partitions).collect())
            .await
            .expect("assign");
        for p in 0..partitions {
            consumer.seek_to_beginning(topic, p).await.expect("seek");
        }
        let mut out = Vec::new();
        let mut idle = 0;
        while idle < 6 {
            let recs = consumer
                .poll(Duration::from_millis(500))
                .await
                .expect("poll");
            if recs.is_empty() {
                idle += 1;
            } else {
                idle = 0;
                out.extend(recs);
            }
        }
        let _ = consumer.close().await;
        out
    }

    /// Produces raw messages (for the receiver tests).
    pub async fn produce(&self, topic: &str, records: Vec<krafka::Record>) {
        let kafka = self.client().await;
        let producer = kafka
            .producer()
            .acks(krafka::producer::Acks::All)
            .build()
            .await
            .expect("producer");
        let mut handles = Vec::new();
        for r in records {
            assert_eq!(r.topic, topic);
            handles.push(producer.enqueue(r).await.expect("enqueue"));
        }
        for h in handles {
            let _meta = h.await.expect("produce");
        }
        producer.close().await.expect("close");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
