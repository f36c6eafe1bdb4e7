//! The simulated world: nodes with skewed, drifting clocks, the e-commerce flow, and the
//! spans as the services would export them.

use weft::data::{
    AnyValue, KeyValue, Resource, ResourceSpans, ScopeSpans, Span, any_value, span::SpanKind,
};

use crate::{EPOCH, MS, SEC, US};

// ---------------------------------------------------------------------------------------
// The simulated world

pub struct Node {
    pub name: &'static str,
    pub offset: i64,
    pub drift_ppm: f64,
}

impl Node {
    /// What this node's clock reads at true time `t` (ns since the simulation start).
    pub fn clock(&self, t: i64) -> i64 {
        EPOCH + t + self.offset + (t as f64 * self.drift_ppm * 1e-6) as i64
    }
}

pub const GATEWAY: usize = 0;
pub const ORDER: usize = 1;
pub const USER: usize = 2;
pub const PRODUCT: usize = 3;
pub const CONNECT: usize = 4;
pub const PAYMENT: usize = 5;
pub const NOTIFY: usize = 6;
/// Service name and the node it runs on (Kafka Connect shares the user service's node).
pub const SERVICES: [(&str, usize); 7] = [
    ("gateway", 0),
    ("order", 1),
    ("user", 2),
    ("product", 3),
    ("kafka-connect", 2),
    ("payment", 4),
    ("notification", 5),
];
pub const MYSQL_NODE: usize = 6;
pub const NODE_NAMES: [&str; 7] = [
    "node-gateway",
    "node-orders",
    "node-users",
    "node-products",
    "node-payments",
    "node-notify",
    "mysql-0",
];

/// One generated span in true time.
pub struct GenSpan {
    pub trace: u32,
    pub id: u64,
    pub parent: u64,
    pub name: &'static str,
    pub kind: SpanKind,
    pub service: usize,
    pub start: i64,
    pub end: i64,
    /// Debezium's db-log-write: start stamped by MySQL, truncated to the second.
    pub db_log_write: bool,
    /// Reached through Debezium/Kafka (the asynchronous part of the flow).
    pub asynchronous: bool,
}

pub struct Generator {
    pub rng: fastrand::Rng,
    pub spans: Vec<GenSpan>,
    pub trace: u32,
    pub next_id: u64,
    pub asynchronous: bool,
}

impl Generator {
    pub fn between(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.i64(lo..hi)
    }

    /// One-way network latency: 0.2–4 ms, mostly short; rare hiccups of 5–50 ms.
    fn latency(&mut self) -> i64 {
        let base = 200 * US + (self.rng.f64().powi(3) * 3.8 * MS as f64) as i64;
        if self.rng.f64() < 0.005 {
            base + self.between(5 * MS, 50 * MS)
        } else {
            base
        }
    }

    fn open(
        &mut self,
        parent: u64,
        service: usize,
        name: &'static str,
        kind: SpanKind,
        start: i64,
    ) -> u64 {
        self.next_id += 1;
        self.spans.push(GenSpan {
            trace: self.trace,
            id: self.next_id,
            parent,
            name,
            kind,
            service,
            start,
            end: start,
            db_log_write: false,
            asynchronous: self.asynchronous,
        });
        self.next_id
    }

    fn close(&mut self, id: u64, end: i64) {
        if let Some(s) = self
            .spans
            .iter_mut()
            .rev()
            .find(|s| s.id == id && s.trace == self.trace)
        {
            s.end = end;
        }
    }

    /// A synchronous call whose server does `work`; returns when the client span ends.
    fn call(
        &mut self,
        parent: u64,
        from: usize,
        to: usize,
        name: &'static str,
        t: i64,
        work: i64,
    ) -> i64 {
        let client = self.open(parent, from, name, SpanKind::Client, t);
        let server_start = t + self.between(10 * US, 80 * US) + self.latency();
        let server = self.open(client, to, name, SpanKind::Server, server_start);
        let server_end = server_start + work;
        self.close(server, server_end);
        let end = server_end + self.latency() + self.between(10 * US, 80 * US);
        self.close(client, end);
        end
    }

    pub fn checkout(&mut self, t0: i64) {
        self.asynchronous = false;
        let gw = self.open(0, GATEWAY, "GET /checkout", SpanKind::Server, t0);
        let t = t0 + self.between(50 * US, 300 * US);
        let client = self.open(gw, GATEWAY, "POST /orders", SpanKind::Client, t);
        let order_start = t + self.between(10 * US, 80 * US) + self.latency();
        let order = self.open(client, ORDER, "POST /orders", SpanKind::Server, order_start);
        let mut u = order_start + self.between(100 * US, 500 * US);
        let w = self.between(500 * US, 3 * MS);
        u = self.call(order, ORDER, USER, "GetUser", u, w) + self.between(50 * US, 200 * US);
        for _ in 0..self.rng.usize(1..=3) {
            let w = self.between(300 * US, 2 * MS);
            u = self.call(order, ORDER, PRODUCT, "GetProduct", u, w)
                + self.between(20 * US, 100 * US);
        }
        let insert = self.open(order, ORDER, "INSERT orders, outbox", SpanKind::Client, u);
        u += self.between(MS, 4 * MS);
        let commit = u - self.between(100 * US, 300 * US);
        self.close(insert, u);
        u += self.between(100 * US, 400 * US);
        self.close(order, u);
        let client_end = u + self.latency() + self.between(10 * US, 80 * US);
        self.close(client, client_end);
        let gw_end = client_end + self.between(50 * US, 300 * US);
        self.close(gw, gw_end);

        self.asynchronous = true;
        // Debezium reads the binlog, the outbox EventRouter traces and produces to Kafka.
        let processed = commit + self.between(20 * MS, 300 * MS);
        let log_write = self.open(order, CONNECT, "db-log-write", SpanKind::Internal, commit);
        if let Some(s) = self.spans.last_mut() {
            s.db_log_write = true;
        }
        let read = self.open(
            log_write,
            CONNECT,
            "debezium-read",
            SpanKind::Internal,
            processed,
        );
        let read_end = processed + self.between(100 * US, 400 * US);
        self.close(read, read_end);
        let produce_start = read_end + self.between(50 * US, 300 * US);
        let produce = self.open(
            read,
            CONNECT,
            "outbox.event.order publish",
            SpanKind::Producer,
            produce_start,
        );
        let d = self.between(MS, 5 * MS);
        self.close(produce, produce_start + d);
        let log_write_end = produce_start + d + self.between(50 * US, 200 * US);
        self.close(log_write, log_write_end);

        // Payment consumes, checks fraud with the user service, charges, publishes.
        let consume = produce_start + self.between(2 * MS, 40 * MS);
        let pay = self.open(
            produce,
            PAYMENT,
            "orders process",
            SpanKind::Consumer,
            consume,
        );
        let mut v = consume + self.between(100 * US, 300 * US);
        let w = self.between(MS, 4 * MS);
        v = self.call(pay, PAYMENT, USER, "CheckFraud", v, w) + self.between(50 * US, 200 * US);
        let charge = self.open(pay, PAYMENT, "POST /charge", SpanKind::Client, v);
        v += self.between(20 * MS, 80 * MS);
        self.close(charge, v);
        let publish = self.open(pay, PAYMENT, "payments publish", SpanKind::Producer, v);
        let published = v + self.between(MS, 4 * MS);
        self.close(publish, published);
        let pay_end = published + self.between(100 * US, 300 * US);
        self.close(pay, pay_end);

        // Notification consumes, looks the customer up, sends an e-mail.
        let consume = v + self.between(2 * MS, 40 * MS);
        let notify = self.open(
            publish,
            NOTIFY,
            "payments process",
            SpanKind::Consumer,
            consume,
        );
        let mut x = consume + self.between(100 * US, 300 * US);
        let w = self.between(500 * US, 2 * MS);
        x = self.call(notify, NOTIFY, USER, "GetUser", x, w) + self.between(50 * US, 200 * US);
        let send = self.open(notify, NOTIFY, "POST /send", SpanKind::Client, x);
        x += self.between(5 * MS, 30 * MS);
        self.close(send, x);
        let notify_end = x + self.between(100 * US, 300 * US);
        self.close(notify, notify_end);
    }
}

// ---------------------------------------------------------------------------------------
// Turning generated spans into OTLP as the services would export them

pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub fn trace_id(trace: u32) -> Vec<u8> {
    let mut id = vec![0xab; 16];
    id[12..].copy_from_slice(&trace.to_be_bytes());
    id
}

pub fn span_id(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

pub fn recorded(s: &GenSpan, nodes: &[Node]) -> Span {
    let node = &nodes[SERVICES[s.service].1];
    let start = if s.db_log_write {
        let mysql = nodes[MYSQL_NODE].clock(s.start);
        mysql - mysql.rem_euclid(SEC)
    } else {
        node.clock(s.start)
    };
    let mut attributes = Vec::new();
    if s.db_log_write {
        attributes.push(kv("db.server.address", NODE_NAMES[MYSQL_NODE]));
        attributes.push(kv("db.type", "mysql"));
    }
    Span {
        trace_id: trace_id(s.trace),
        span_id: span_id(s.id),
        parent_span_id: if s.parent == 0 {
            Vec::new()
        } else {
            span_id(s.parent)
        },
        name: s.name.into(),
        kind: s.kind as i32,
        start_time_unix_nano: start as u64,
        end_time_unix_nano: node.clock(s.end) as u64,
        attributes,
        ..Default::default()
    }
}

pub fn resource_spans(service: usize, spans: Vec<Span>) -> ResourceSpans {
    let (name, node) = SERVICES[service];
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", name), kv("host.name", NODE_NAMES[node])],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}
