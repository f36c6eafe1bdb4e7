//! The task that owns one pipeline's processors: runs each request through them, wakes
//! processors at their deadlines, pushes results to the exporters' queues, and flushes
//! everything when its input closes (shutdown).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{ConsumeError, Context, Request};
use crate::data::Batch;
use crate::delivery::{DeliveryHandle, Refusal};
use crate::processors::{Processor, ProcessorError};

pub struct PipelineTask {
    pub id: String,
    pub processors: Vec<Box<dyn Processor>>,
    pub exporters: Vec<DeliveryHandle>,
}

impl PipelineTask {
    pub async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        loop {
            let deadline = self
                .processors
                .iter()
                .filter_map(|p| p.next_deadline())
                .min();
            let req = match deadline {
                Some(d) => {
                    tokio::select! {
                        r = rx.recv() => r,
                        _ = tokio::time::sleep_until(d.into()) => {
                            self.on_deadlines(Instant::now()).await;
                            continue;
                        }
                    }
                }
                None => rx.recv().await,
            };
            let Some(req) = req else { break };
            let ctx = Context::new(req.metadata);
            let result = self.handle(req.batch, &ctx, Instant::now()).await;
            let _ = req.reply.send(result);
        }
        self.flush().await;
        tracing::debug!(pipeline = %self.id, "pipeline stopped");
    }

    /// Runs `batch` through processors `from..` with the request's context, which ends at
    /// the first processor that does not keep it; after one that assigns its outputs a
    /// context of their own (`batch` with `metadata_keys`), each output goes on with its
    /// own (see the module doc of [`super`]).
    fn chain(
        &mut self,
        from: usize,
        batch: Batch,
        ctx: &Context,
        now: Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        let mut current = vec![batch];
        let mut ctx = ctx;
        for i in from..self.processors.len() {
            let p = &mut self.processors[i];
            // Decode in front of a content processor unless it takes raw batches itself.
            let decode = p.touches_contents() && !p.accepts_raw();
            if p.assigns_context() {
                let mut outs = Vec::new();
                for mut b in current {
                    if decode && b.is_raw() {
                        b = crate::processors::decoded(b)?;
                    }
                    outs.extend(p.process_ctx(b, ctx, now)?);
                }
                let mut result = Vec::new();
                for (b, c) in outs {
                    result.extend(self.chain(i + 1, b, &c, now)?);
                }
                return Ok(result);
            }
            let mut next = Vec::new();
            for mut b in current {
                if decode && b.is_raw() {
                    b = crate::processors::decoded(b)?;
                }
                next.extend(p.process_in(b, ctx, now)?);
            }
            if !p.keeps_context() {
                ctx = &Context::EMPTY;
            }
            current = next;
            if current.is_empty() {
                break;
            }
        }
        Ok(current)
    }

    async fn handle(
        &mut self,
        batch: Batch,
        ctx: &Context,
        now: Instant,
    ) -> Result<(), ConsumeError> {
        // If no processor held data before this request, every output is this request's
        // own data and a full queue can be answered with a retryable refusal; otherwise
        // outputs may carry data of requests already answered, and must wait for space.
        let held_before = self.processors.iter().any(|p| p.next_deadline().is_some());
        let outputs = self.chain(0, batch, ctx, now).map_err(|e| match e {
            ProcessorError::Refused {
                reason,
                retry_after,
            } => ConsumeError::Refused {
                reason,
                retry_after,
            },
            ProcessorError::Invalid(m) => ConsumeError::Invalid(m),
        })?;
        self.export(outputs, held_before).await
    }

    async fn on_deadlines(&mut self, now: Instant) {
        for i in 0..self.processors.len() {
            if self.processors[i].next_deadline().is_some_and(|d| d <= now) {
                let released = self.processors[i].on_deadline_ctx(now);
                self.release(i + 1, released, now).await;
            }
        }
    }

    async fn flush(&mut self) {
        let now = Instant::now();
        for i in 0..self.processors.len() {
            let released = self.processors[i].flush_ctx();
            self.release(i + 1, released, now).await;
        }
    }

    /// Feeds batches a processor released through the rest of the chain and exports them.
    /// Released data belongs to no single request: it goes on with the context the
    /// processor gave it (none, except `batch` with `metadata_keys`).
    async fn release(&mut self, from: usize, batches: Vec<(Batch, Context)>, now: Instant) {
        for (b, ctx) in batches {
            match self.chain(from, b, &ctx, now) {
                Ok(out) => {
                    let _ = self.export(out, true).await;
                }
                Err(e) => {
                    tracing::error!(pipeline = %self.id, "processor refused data it had already accepted upstream: {e}");
                }
            }
        }
    }

    async fn export(&mut self, outputs: Vec<Batch>, must_block: bool) -> Result<(), ConsumeError> {
        let mut first_err = None;
        let decode = self.exporters.iter().any(|e| !e.accepts_raw());
        for mut out in outputs {
            if out.is_empty() {
                continue;
            }
            if decode && out.is_raw() {
                // Decoded once here, shared by every exporter of the fan-out.
                out = match out.materialize() {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(pipeline = %self.id, "undecodable data dropped: {e}");
                        first_err.get_or_insert(ConsumeError::Invalid(e.to_string()));
                        continue;
                    }
                };
            }
            let shared = Arc::new(out);
            for ex in &self.exporters {
                loop {
                    match ex.push(shared.clone(), must_block).await {
                        Ok(()) => break,
                        Err(Refusal::Storage(id, msg)) if must_block => {
                            // The data is only in memory here: wait for the disk to take it.
                            tracing::warn!(pipeline = %self.id, exporter = %id, "persistent queue refused data, retrying: {msg}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            first_err.get_or_insert(ConsumeError::Refused {
                                reason: e.to_string(),
                                retry_after: Some(Duration::from_secs(1)),
                            });
                            break;
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::data::{LogRecord, ResourceLogs, ScopeLogs};
    use crate::pipeline::ClientMetadata;

    /// Passes batches on and records the tenant each one came with.
    struct Recorder(Arc<Mutex<Vec<Option<String>>>>);

    impl Processor for Recorder {
        fn process(&mut self, batch: Batch, _now: Instant) -> Result<Vec<Batch>, ProcessorError> {
            self.0.lock().unwrap().push(None);
            Ok(vec![batch])
        }
        fn process_in(
            &mut self,
            batch: Batch,
            ctx: &Context,
            _now: Instant,
        ) -> Result<Vec<Batch>, ProcessorError> {
            let tenant = ctx
                .metadata()
                .and_then(|m| m.get("x-tenant"))
                .map(|v| v.join(","));
            self.0.lock().unwrap().push(tenant);
            Ok(vec![batch])
        }
    }

    /// The `batch` processor as configured by a user (`config` as in YAML).
    fn batch_processor(config: serde_json::Value) -> Box<dyn Processor> {
        let ctx = crate::components::BuildContext {
            id: "batch".into(),
            signal: Some(crate::data::Signal::Logs),
            telemetry: crate::admin::Telemetry::new(),
            shared: crate::components::SharedState::default(),
            extensions: Arc::new(std::collections::HashMap::new()),
        };
        crate::processors::batch::build(&config, &ctx).unwrap()
    }

    fn logs() -> Batch {
        Batch::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default()],
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn acme() -> Context {
        Context::new(Some(Arc::new(ClientMetadata::from_pairs([(
            "X-Tenant", "acme",
        )]))))
    }

    type Seen = Arc<Mutex<Vec<Option<String>>>>;

    fn task(with_batch: bool) -> (PipelineTask, Seen, Seen) {
        let (before, after): (Seen, Seen) = Default::default();
        let mut processors: Vec<Box<dyn Processor>> = vec![Box::new(Recorder(before.clone()))];
        if with_batch {
            // Size 1: every request goes straight through, so only the context differs.
            processors.push(batch_processor(serde_json::json!({ "send_batch_size": 1 })));
        }
        processors.push(Box::new(Recorder(after.clone())));
        let task = PipelineTask {
            id: "logs".into(),
            processors,
            exporters: Vec::new(),
        };
        (task, before, after)
    }

    #[test]
    fn the_request_context_reaches_every_processor_of_a_chain_without_batch() {
        let (mut t, before, after) = task(false);
        let out = t.chain(0, logs(), &acme(), Instant::now()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(*before.lock().unwrap(), [Some("acme".to_string())]);
        assert_eq!(*after.lock().unwrap(), [Some("acme".to_string())]);
    }

    #[test]
    fn the_context_ends_at_a_processor_that_merges_requests() {
        let (mut t, before, after) = task(true);
        let out = t.chain(0, logs(), &acme(), Instant::now()).unwrap();
        assert_eq!(out.len(), 1, "the batch of size 1 went through");
        assert_eq!(*before.lock().unwrap(), [Some("acme".to_string())]);
        assert_eq!(*after.lock().unwrap(), [None]);
    }

    #[tokio::test]
    async fn data_a_processor_releases_later_has_no_context() {
        let (mut t, _, after) = task(true);
        t.processors[1] = batch_processor(serde_json::json!({ "send_batch_size": 2 }));
        assert!(
            t.chain(0, logs(), &acme(), Instant::now())
                .unwrap()
                .is_empty()
        );
        assert!(after.lock().unwrap().is_empty(), "held by batch");
        // Shutdown releases what batch held through the rest of the chain.
        t.flush().await;
        assert_eq!(*after.lock().unwrap(), [None]);
    }

    #[tokio::test]
    async fn after_batch_with_metadata_keys_the_partition_keys_go_on() {
        let (mut t, _, after) = task(true);
        t.processors[1] = batch_processor(
            serde_json::json!({ "send_batch_size": 2, "metadata_keys": ["x-tenant"] }),
        );
        let now = Instant::now();
        // Two items of acme make a full batch: it goes on at once, with acme's context.
        assert_eq!(t.chain(0, logs(), &acme(), now).unwrap().len(), 0);
        assert_eq!(t.chain(0, logs(), &acme(), now).unwrap().len(), 1);
        assert_eq!(*after.lock().unwrap(), [Some("acme".to_string())]);
        // A request without the key, released at shutdown: its partition has no tenant.
        t.chain(0, logs(), &Context::EMPTY, now).unwrap();
        t.flush().await;
        assert_eq!(*after.lock().unwrap(), [Some("acme".to_string()), None]);
    }
}
