//! Processors: synchronous state machines owned by one pipeline task.
//!
//! A processor gets a batch and the current time and returns what it lets through now;
//! a processor that holds data (batch, clockskew, stitch) says when it next wants to be
//! woken (`next_deadline`) and releases held data in `on_deadline` and `flush`. Time is
//! always passed in, never read inside, so every processor is unit-tested without sleeping.
//!
//! The request's context (the client's metadata, see [`crate::pipeline::context`]) reaches
//! a processor through [`Processor::process_in`]; most processors ignore it and implement
//! only `process`. A processor that emits data of other requests than the one it was
//! given (it holds and merges) says so with [`Processor::keeps_context`], and the pipeline
//! gives what follows it an empty context.

use std::time::{Duration, Instant};

use crate::data::Batch;
use crate::pipeline::Context;

pub mod attributes;
pub mod batch;
pub mod clockskew;
pub mod filter;
pub mod memory_limiter;
pub mod ottl;
pub mod resource;
pub mod resourcedetection;
pub mod stitch;
pub mod trace_buffer;

/// Why a processor did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Try again later (memory limit); the receiver answers with a retryable status.
    #[error("{reason}")]
    Refused {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The batch cannot be processed (a condition failed with `error_mode: propagate`).
    #[error("{0}")]
    Invalid(String),
}

/// The decoded form of `batch`, for a processor that reads contents. The pipeline already
/// decodes before such processors (see `crate::data::raw`); this is the safety net.
pub fn decoded(batch: Batch) -> Result<Batch, ProcessorError> {
    batch
        .materialize()
        .map_err(|e| ProcessorError::Invalid(format!("cannot decode forwarded data: {e}")))
}

/// Batches released with no request context (data a processor held, at a deadline or at
/// shutdown).
pub fn without_context(batches: Vec<Batch>) -> Vec<(Batch, Context)> {
    batches.into_iter().map(|b| (b, Context::EMPTY)).collect()
}

pub trait Processor: Send {
    /// Processes one batch arriving at `now`; returns the batches to pass downstream.
    fn process(&mut self, batch: Batch, now: Instant) -> Result<Vec<Batch>, ProcessorError>;

    /// Processes one batch with the context of the request it came from (the client's
    /// metadata, when the receiver captured it). The pipeline calls this; processors that
    /// do not read the context keep the default, which is [`process`](Processor::process).
    fn process_in(
        &mut self,
        batch: Batch,
        _ctx: &Context,
        now: Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        self.process(batch, now)
    }

    /// Whether what `process` returns still belongs to the request it was given. A
    /// processor that holds data and merges requests of different clients (`batch`,
    /// `clockskew`, `stitch`) says no: the processors after it get an empty context, as in
    /// the Collector, where such processors emit with a fresh `context.Context`.
    fn keeps_context(&self) -> bool {
        true
    }

    /// Whether the processor gives what it emits a context of its own (`batch` with
    /// `metadata_keys`: each batch the metadata of its partition). The pipeline then calls
    /// [`process_ctx`](Processor::process_ctx), [`on_deadline_ctx`](Processor::on_deadline_ctx)
    /// and [`flush_ctx`](Processor::flush_ctx) instead of `process_in`, `on_deadline` and
    /// `flush`.
    fn assigns_context(&self) -> bool {
        false
    }

    /// `process_in` returning each output with its context. The default gives every output
    /// the request's context if the processor [keeps it](Processor::keeps_context), none
    /// otherwise.
    fn process_ctx(
        &mut self,
        batch: Batch,
        ctx: &Context,
        now: Instant,
    ) -> Result<Vec<(Batch, Context)>, ProcessorError> {
        let out_ctx = if self.keeps_context() {
            ctx.clone()
        } else {
            Context::EMPTY
        };
        let out = self.process_in(batch, ctx, now)?;
        Ok(out.into_iter().map(|b| (b, out_ctx.clone())).collect())
    }

    /// `on_deadline` returning each batch with its context (default: none).
    fn on_deadline_ctx(&mut self, now: Instant) -> Vec<(Batch, Context)> {
        without_context(self.on_deadline(now))
    }

    /// `flush` returning each batch with its context (default: none).
    fn flush_ctx(&mut self) -> Vec<(Batch, Context)> {
        without_context(self.flush())
    }

    /// Whether the processor reads the request's context (`from_context`). Only used to
    /// warn at startup about a processor that could never see any (placed after one that
    /// does not keep it, or behind receivers that do not capture metadata).
    fn reads_context(&self) -> bool {
        false
    }

    /// When the processor next wants `on_deadline` called, if it holds anything.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Releases what is due at `now`.
    fn on_deadline(&mut self, _now: Instant) -> Vec<Batch> {
        Vec::new()
    }

    /// Releases everything held (shutdown).
    fn flush(&mut self) -> Vec<Batch> {
        Vec::new()
    }

    /// Whether the processor reads or changes span contents. A processor that says no gets
    /// raw batches (`Batch::Raw`, undecoded requests) on the forwarding fast path and may
    /// only use `Batch`'s methods on them (count, merge, split); one that says yes gets
    /// decoded batches (see `crate::data::raw`) unless it also
    /// [`accepts_raw`](Processor::accepts_raw).
    fn touches_contents(&self) -> bool {
        true
    }

    /// Whether a processor that touches contents takes raw batches itself: one that says
    /// yes gets `Batch::Raw` as it is (the pipeline does not decode in front of it) and must
    /// handle it — read and change the serialized requests directly, or decode them — as well
    /// as decoded batches. A pipeline whose content processors all say yes stays on the
    /// forwarding fast path (see `crate::data::raw`). Only consulted when
    /// [`touches_contents`](Processor::touches_contents) is true.
    fn accepts_raw(&self) -> bool {
        false
    }
}
