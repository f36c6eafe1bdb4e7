//! Pipelines: a receiver hands each batch to every pipeline that lists it; a pipeline task
//! runs the processors in order and pushes the results to each exporter's delivery queue
//! (fan-out shares one `Arc<Batch>`).
//!
//! Backpressure: the channel into a pipeline is bounded; a receiver that finds it full
//! refuses with a retryable answer. A request is answered only after its data passed the
//! processors and was enqueued (or was taken by a processor that holds data, such as
//! `batch`). Data a processor held is pushed with blocking, because its client has already
//! been answered: a full queue then stalls the pipeline, which in turn makes receivers
//! refuse new data — nothing is dropped silently.
//!
//! Request context: a receiver with `include_metadata: true` attaches the client's
//! metadata ([`ClientMetadata`], shared as `Arc`) to each request; the fan-out hands the
//! same `Arc` to every pipeline. The pipeline task passes it down the chain as a
//! [`Context`] ([`Processor::process_in`]) — as in the Collector, where the request's
//! `context.Context` flows through the processors — until a processor that holds data and
//! merges requests of different clients ([`Processor::keeps_context`] false: `batch`,
//! `clockskew`, the `stitch` processors): from there on the data goes with an empty
//! context, because what such a processor emits may belong to other clients. Data a
//! processor releases at a deadline or at shutdown has no context either. So an
//! `attributes` action `from_context` works in front of `batch`, not after it — except
//! for the keys a `batch` with `metadata_keys` partitions by: it gives each batch it emits
//! (also at deadlines and shutdown) a context with those keys' values
//! ([`Processor::assigns_context`]). At startup
//! weft warns about a `from_context` processor that can never see metadata (placed after
//! such a processor, or no receiver of its pipeline sets `include_metadata`).
//!
//! [`Processor::process_in`]: crate::processors::Processor::process_in
//! [`Processor::keeps_context`]: crate::processors::Processor::keeps_context
//! [`Processor::assigns_context`]: crate::processors::Processor::assigns_context

pub mod build;
pub mod context;
pub mod run;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::data::{Batch, Signal};

pub use build::Service;
pub use context::{ClientMetadata, Context};

/// Why a pipeline did not take a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumeError {
    /// Retry later (full queue, memory limit, shutting down).
    #[error("{reason}")]
    Refused {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The data cannot be processed.
    #[error("{0}")]
    Invalid(String),
}

pub struct Request {
    pub batch: Batch,
    /// The client's metadata, when the receiver captured it (`include_metadata`).
    pub metadata: Option<Arc<ClientMetadata>>,
    pub reply: oneshot::Sender<Result<(), ConsumeError>>,
}

/// The entry of one pipeline.
#[derive(Clone)]
pub struct Inlet {
    pub pipeline: String,
    pub tx: mpsc::Sender<Request>,
    /// The pipeline only forwards: no processor reads contents and every exporter takes
    /// raw batches, so receivers may hand it undecoded requests (see `crate::data::raw`).
    pub accepts_raw: bool,
}

/// Every pipeline a receiver feeds, by signal.
#[derive(Clone, Default)]
pub struct Consumers {
    pub traces: Vec<Inlet>,
    pub logs: Vec<Inlet>,
    pub metrics: Vec<Inlet>,
}

impl Consumers {
    pub fn for_signal(&self, s: Signal) -> &[Inlet] {
        match s {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }

    pub fn push(&mut self, s: Signal, inlet: Inlet) {
        match s {
            Signal::Traces => self.traces.push(inlet),
            Signal::Logs => self.logs.push(inlet),
            Signal::Metrics => self.metrics.push(inlet),
        }
    }

    pub fn accepts(&self, s: Signal) -> bool {
        !self.for_signal(s).is_empty()
    }

    /// Whether every pipeline of `s` takes raw batches: a receiver then forwards requests
    /// undecoded; otherwise it decodes once, up front, for all of them.
    pub fn accepts_raw(&self, s: Signal) -> bool {
        let inlets = self.for_signal(s);
        !inlets.is_empty() && inlets.iter().all(|i| i.accepts_raw)
    }

    /// Hands the batch to every pipeline of its signal and waits for their answers.
    pub async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.consume_with(batch, None).await
    }

    /// [`consume`](Consumers::consume) with the client's metadata, shared by every
    /// pipeline of the fan-out.
    pub async fn consume_with(
        &self,
        batch: Batch,
        metadata: Option<Arc<ClientMetadata>>,
    ) -> Result<(), ConsumeError> {
        let inlets = self.for_signal(batch.signal());
        if inlets.is_empty() {
            return Err(ConsumeError::Invalid(format!(
                "this receiver is not part of any {} pipeline",
                batch.signal()
            )));
        }
        let mut replies = Vec::with_capacity(inlets.len());
        let last = inlets.len() - 1;
        let mut batch = Some(batch);
        for (i, inlet) in inlets.iter().enumerate() {
            let b = if i == last {
                batch.take().unwrap_or_else(|| Batch::empty(Signal::Traces))
            } else {
                batch
                    .clone()
                    .unwrap_or_else(|| Batch::empty(Signal::Traces))
            };
            let (reply, rx) = oneshot::channel();
            let request = Request {
                batch: b,
                metadata: metadata.clone(),
                reply,
            };
            match inlet.tx.try_send(request) {
                Ok(()) => replies.push(rx),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(ConsumeError::Refused {
                        reason: format!("pipeline {} is full", inlet.pipeline),
                        retry_after: Some(Duration::from_secs(1)),
                    });
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(ConsumeError::Refused {
                        reason: format!("pipeline {} is shutting down", inlet.pipeline),
                        retry_after: Some(Duration::from_secs(1)),
                    });
                }
            }
        }
        let mut first_err = None;
        for rx in replies {
            let r = rx.await.unwrap_or_else(|_| {
                Err(ConsumeError::Refused {
                    reason: "pipeline stopped".into(),
                    retry_after: Some(Duration::from_secs(1)),
                })
            });
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
