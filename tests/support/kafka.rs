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
    pub port: u16,
    storage: String,
    log: PathBuf,
}

impl Broker {
    pub async fn start(storage: Storage, log_dir: &std::path::Path) -> Broker {
        let storage = match storage {
            Storage::Memory => "memory://tansu/".to_string(),
            Storage::Sqlite(p) => format!("sqlite://{}", p.display()),
        };
        let port = super::weft::free_port();
        let mut b = Broker {
            child: None,
            port,
            storage,
            log: log_dir.join(format!("tansu-{port}.log")),
        };
        b.restart().await;
        b
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and storage.
    pub async fn restart(&mut self) {
        self.stop();
        let url = format!("tcp://127.0.0.1:{}", self.port);
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
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
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
        weft::install_crypto_provider();
        Kafka::builder(self.addr())
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
