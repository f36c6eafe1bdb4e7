//! Test support: protocol-faithful backend stand-ins and helpers to run weft in-process.
#![allow(dead_code)]

pub mod elasticsearch;
pub mod kafka;
pub mod loki;
pub mod otlp_sink;
pub mod s3;
pub mod s3_data;
pub mod samples;
pub mod weft;
