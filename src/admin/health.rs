//! Liveness and readiness state shared by every component.
//!
//! Ready means: every pipeline has started, shutdown has not begun, and no component
//! reports a permanent failure (an exporter whose backend says the bucket does not exist,
//! say). The reasons are kept so `/health/ready` can name them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    started: AtomicBool,
    shutting_down: AtomicBool,
    failures: Mutex<BTreeMap<String, String>>,
}

/// What `/health/ready` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub reasons: Vec<String>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    pub fn set_started(&self) {
        self.inner.started.store(true, Ordering::SeqCst);
    }

    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Marks a component as permanently failing (readiness names it) until cleared.
    pub fn set_failure(&self, component: &str, reason: impl Into<String>) {
        let mut f = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f.insert(component.to_string(), reason.into());
    }

    pub fn clear_failure(&self, component: &str) {
        let mut f = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f.remove(component);
    }

    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if !self.inner.started.load(Ordering::SeqCst) {
            reasons.push("pipelines are starting".to_string());
        }
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            reasons.push("shutting down".to_string());
        }
        let f = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (c, r) in f.iter() {
            reasons.push(format!("{c}: {r}"));
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_reasons() {
        let h = Health::new();
        assert!(!h.readiness().ready);
        h.set_started();
        assert!(h.readiness().ready);
        h.set_failure("exporter/awss3", "NoSuchBucket: archive");
        let r = h.readiness();
        assert!(!r.ready);
        assert!(r.reasons[0].contains("NoSuchBucket"));
        h.clear_failure("exporter/awss3");
        h.set_shutting_down();
        assert_eq!(h.readiness().reasons, vec!["shutting down".to_string()]);
    }
}
