//! The `resource` processor (placeholder in the skeleton; being written).

use serde_json::Value;

use crate::components::{BuildContext, BuildError};
use crate::config::FieldError;
use crate::data::Batch;
use crate::processors::{Processor, ProcessorError};

pub fn validate(_v: &Value) -> Result<(), FieldError> {
    Ok(())
}

pub fn build(_v: &Value, _ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    Ok(Box::new(Passthrough))
}

struct Passthrough;

impl Processor for Passthrough {
    fn process(
        &mut self,
        batch: Batch,
        _now: std::time::Instant,
    ) -> Result<Vec<Batch>, ProcessorError> {
        Ok(vec![batch])
    }
}
