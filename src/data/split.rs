//! Counting, splitting and pruning of decoded batches, written once for the three
//! signals' resource-level messages.

use super::{LogRecord, Metric, ResourceLogs, ResourceMetrics, ResourceSpans, Span, metric};

/// The resource-level messages of the three signals, seen alike: counted and split without
/// three copies of each loop.
pub trait ResourceItems: Clone {
    fn item_count(&self) -> usize;
    /// Removes the first `n` items into a new message with the same resource and scopes.
    fn take_front(&mut self, n: usize) -> Self;
    fn prune(&mut self);
    fn scope_items_empty(&self) -> bool;
}

macro_rules! scope_split {
    ($scopes:expr, $n:expr, $field:ident, $count:expr) => {{
        let mut remaining = $n;
        let mut taken = Vec::new();
        let scopes = std::mem::take($scopes);
        let mut kept = Vec::with_capacity(scopes.len());
        for mut scope in scopes {
            if remaining == 0 {
                kept.push(scope);
                continue;
            }
            let count: usize = scope.$field.iter().map($count).sum();
            if count <= remaining {
                remaining -= count;
                taken.push(scope);
            } else {
                let mut front = scope.clone();
                front.$field.clear();
                let mut rest = Vec::new();
                for item in std::mem::take(&mut scope.$field) {
                    let c = ($count)(&item);
                    // An item larger than what is left still goes first when the front
                    // would otherwise be empty, so every split makes progress.
                    if remaining > 0 && (c <= remaining || front.$field.is_empty()) {
                        remaining = remaining.saturating_sub(c);
                        front.$field.push(item);
                    } else {
                        rest.push(item);
                    }
                }
                remaining = 0;
                scope.$field = rest;
                taken.push(front);
                if !scope.$field.is_empty() {
                    kept.push(scope);
                }
            }
        }
        *$scopes = kept;
        taken
    }};
}

impl ResourceItems for ResourceSpans {
    fn item_count(&self) -> usize {
        self.scope_spans.iter().map(|s| s.spans.len()).sum()
    }
    fn take_front(&mut self, n: usize) -> Self {
        let taken = scope_split!(&mut self.scope_spans, n, spans, |_s: &Span| 1usize);
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: taken,
            schema_url: self.schema_url.clone(),
        }
    }
    fn prune(&mut self) {
        self.scope_spans.retain(|s| !s.spans.is_empty());
    }
    fn scope_items_empty(&self) -> bool {
        self.scope_spans.is_empty()
    }
}

impl ResourceItems for ResourceLogs {
    fn item_count(&self) -> usize {
        self.scope_logs.iter().map(|s| s.log_records.len()).sum()
    }
    fn take_front(&mut self, n: usize) -> Self {
        let taken = scope_split!(&mut self.scope_logs, n, log_records, |_r: &LogRecord| {
            1usize
        });
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: taken,
            schema_url: self.schema_url.clone(),
        }
    }
    fn prune(&mut self) {
        self.scope_logs.retain(|s| !s.log_records.is_empty());
    }
    fn scope_items_empty(&self) -> bool {
        self.scope_logs.is_empty()
    }
}

/// Number of data points of one metric (a metric without data counts as one point so it
/// is never lost in counting).
pub fn metric_points(m: &Metric) -> usize {
    use metric::Data;
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

impl ResourceItems for ResourceMetrics {
    fn item_count(&self) -> usize {
        self.scope_metrics
            .iter()
            .flat_map(|s| s.metrics.iter())
            .map(metric_points)
            .sum()
    }
    fn take_front(&mut self, n: usize) -> Self {
        // Metrics are split at metric granularity: a metric's points stay together (a
        // batch may exceed `n` by the points of one metric).
        let taken = scope_split!(&mut self.scope_metrics, n, metrics, |m: &Metric| {
            metric_points(m)
        });
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: taken,
            schema_url: self.schema_url.clone(),
        }
    }
    fn prune(&mut self) {
        self.scope_metrics.retain(|s| !s.metrics.is_empty());
    }
    fn scope_items_empty(&self) -> bool {
        self.scope_metrics.is_empty()
    }
}

pub(super) fn split_front_items<R: ResourceItems>(v: &mut Vec<R>, n: usize) -> Vec<R> {
    let mut remaining = n;
    let mut taken = Vec::new();
    let all = std::mem::take(v);
    let mut kept = Vec::with_capacity(all.len());
    for mut r in all {
        if remaining == 0 {
            kept.push(r);
            continue;
        }
        let c = r.item_count();
        if c <= remaining {
            remaining -= c;
            taken.push(r);
        } else {
            let front = r.take_front(remaining);
            remaining = remaining.saturating_sub(front.item_count().max(1));
            taken.push(front);
            r.prune();
            if !r.scope_items_empty() {
                kept.push(r);
            }
        }
    }
    *v = kept;
    taken
}

pub(super) fn prune<R: ResourceItems>(v: &mut Vec<R>) {
    for r in v.iter_mut() {
        r.prune();
    }
    v.retain(|r| !r.scope_items_empty());
}
