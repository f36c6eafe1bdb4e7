//! The `memory_limiter` processor: refuses new data with a retryable error while the
//! process uses more memory than the soft limit, so clients back off instead of weft
//! running out of memory. Data is never dropped silently: a refusal reaches the client as
//! gRPC `UNAVAILABLE` / HTTP 503 with a retry hint.
//!
//! Config (the Collector's keys): `check_interval` (1s; required > 0), `limit_mib` or
//! `limit_percentage` (of total memory, or the cgroup limit when set), `spike_limit_mib`
//! (default 20% of the limit) or `spike_limit_percentage`. The soft limit is
//! `limit - spike_limit`; above it new data is refused until usage falls below it again.
//!
//! Memory is read through a [`MemoryProbe`] (resident set size from /proc by default), at
//! most once per `check_interval` of the injected time.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::components::{BuildContext, BuildError};
use crate::config::{Dur, FieldError, parse_component};
use crate::data::Batch;
use crate::processors::{Processor, ProcessorError};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    pub check_interval: Dur,
    pub limit_mib: u64,
    pub spike_limit_mib: u64,
    pub limit_percentage: u64,
    pub spike_limit_percentage: u64,
}

pub fn validate(v: &Value) -> Result<(), FieldError> {
    let c: MemoryLimiterConfig = parse_component(v)?;
    check(&c).map_err(|(key, message)| FieldError {
        path: vec![key.to_string()],
        message,
        suggestion: None,
    })
}

fn check(c: &MemoryLimiterConfig) -> Result<(), (&'static str, String)> {
    if c.check_interval.get().is_zero() {
        return Err((
            "check_interval",
            "check_interval must be greater than zero".into(),
        ));
    }
    if c.limit_mib == 0 && c.limit_percentage == 0 {
        return Err(("limit_mib", "set limit_mib or limit_percentage".into()));
    }
    if c.limit_percentage > 100 || c.spike_limit_percentage > 100 {
        return Err((
            "limit_percentage",
            "percentages must be between 0 and 100".into(),
        ));
    }
    if c.limit_mib > 0 && c.spike_limit_mib >= c.limit_mib {
        return Err((
            "spike_limit_mib",
            "spike_limit_mib must be smaller than limit_mib".into(),
        ));
    }
    Ok(())
}

/// Where the limiter reads current memory use, in bytes.
pub trait MemoryProbe: Send {
    fn used_bytes(&mut self) -> u64;
    fn total_bytes(&mut self) -> u64;
}

/// Resident set size from `/proc/self/statm`; total from the cgroup limit or `/proc/meminfo`.
pub struct ProcProbe;

impl MemoryProbe for ProcProbe {
    fn used_bytes(&mut self) -> u64 {
        resident_bytes().unwrap_or(0)
    }
    fn total_bytes(&mut self) -> u64 {
        let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        cgroup.or_else(meminfo_total).unwrap_or(0)
    }
}

/// The process's resident set size in bytes.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn meminfo_total() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub struct MemoryLimiter {
    probe: Box<dyn MemoryProbe>,
    interval: Duration,
    soft_limit: u64,
    hard_limit: u64,
    last_check: Option<Instant>,
    refusing: bool,
}

impl MemoryLimiter {
    pub fn new(c: &MemoryLimiterConfig, mut probe: Box<dyn MemoryProbe>) -> MemoryLimiter {
        const MIB: u64 = 1024 * 1024;
        let (limit, spike) = if c.limit_mib > 0 {
            let spike = if c.spike_limit_mib > 0 {
                c.spike_limit_mib
            } else {
                c.limit_mib / 5
            };
            (c.limit_mib * MIB, spike * MIB)
        } else {
            let total = probe.total_bytes();
            let limit = total / 100 * c.limit_percentage;
            let spike_pct = if c.spike_limit_percentage > 0 {
                c.spike_limit_percentage
            } else {
                c.limit_percentage / 5
            };
            (limit, total / 100 * spike_pct)
        };
        MemoryLimiter {
            probe,
            interval: c.check_interval.get(),
            soft_limit: limit.saturating_sub(spike),
            hard_limit: limit,
            last_check: None,
            refusing: false,
        }
    }

    fn check(&mut self, now: Instant) {
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return;
        }
        self.last_check = Some(now);
        let used = self.probe.used_bytes();
        let was = self.refusing;
        self.refusing = used >= self.soft_limit;
        if self.refusing && !was {
            tracing::warn!(
                used_mib = used / (1024 * 1024),
                soft_limit_mib = self.soft_limit / (1024 * 1024),
                hard_limit_mib = self.hard_limit / (1024 * 1024),
                "memory above the soft limit: refusing new data"
            );
        } else if !self.refusing && was {
            tracing::info!("memory back under the soft limit: accepting data");
        }
    }
}

impl Processor for MemoryLimiter {
    fn process(&mut self, batch: Batch, now: Instant) -> Result<Vec<Batch>, ProcessorError> {
        self.check(now);
        if self.refusing {
            return Err(ProcessorError::Refused {
                reason: "memory limit reached (memory_limiter)".into(),
                retry_after: Some(self.interval.max(Duration::from_secs(1))),
            });
        }
        Ok(vec![batch])
    }
    fn touches_contents(&self) -> bool {
        false
    }
}

pub fn build(v: &Value, ctx: &BuildContext) -> Result<Box<dyn Processor>, BuildError> {
    let c: MemoryLimiterConfig =
        parse_component(v).map_err(|e| BuildError::new(&ctx.id, e.message))?;
    check(&c).map_err(|(_, m)| BuildError::new(&ctx.id, m))?;
    Ok(Box::new(MemoryLimiter::new(&c, Box::new(ProcProbe))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Fake(Arc<AtomicU64>);
    impl MemoryProbe for Fake {
        fn used_bytes(&mut self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn total_bytes(&mut self) -> u64 {
            1 << 30
        }
    }

    #[test]
    fn refuses_above_soft_limit_and_recovers() {
        let used = Arc::new(AtomicU64::new(10 << 20));
        let c = MemoryLimiterConfig {
            check_interval: Dur::secs(1),
            limit_mib: 100,
            spike_limit_mib: 20,
            ..Default::default()
        };
        let mut m = MemoryLimiter::new(&c, Box::new(Fake(used.clone())));
        let t0 = Instant::now();
        assert!(m.process(Batch::Logs(vec![]), t0).is_ok());
        used.store(90 << 20, Ordering::SeqCst);
        // Not re-checked within check_interval.
        assert!(
            m.process(Batch::Logs(vec![]), t0 + Duration::from_millis(500))
                .is_ok()
        );
        let r = m.process(Batch::Logs(vec![]), t0 + Duration::from_secs(1));
        assert!(matches!(r, Err(ProcessorError::Refused { .. })));
        used.store(50 << 20, Ordering::SeqCst);
        assert!(
            m.process(Batch::Logs(vec![]), t0 + Duration::from_secs(2))
                .is_ok()
        );
    }

    #[test]
    fn config_errors() {
        assert!(validate(&serde_json::json!({"check_interval": "1s"})).is_err());
        assert!(validate(&serde_json::json!({"check_interval": "1s", "limit_mib": 100})).is_ok());
        let e = validate(
            &serde_json::json!({"check_interval": "1s", "limit_mib": 10, "spike_limit_mib": 20}),
        )
        .unwrap_err();
        assert_eq!(e.path, vec!["spike_limit_mib".to_string()]);
    }
}
