//! Applying compiled filter rules to one batch, from the outside in: resource, scope, item
//! (span / log record / metric), sub-item (span event / data point). Each level is first
//! decided with shared borrows (conditions read parents), then removed in one pass.

use super::{ErrorMode, Rule, SignalRules};
use crate::data::{
    ResourceItems, ResourceLogs, ResourceMetrics, ResourceSpans, metric, metric_points,
};
use crate::processors::ottl::{Item, Point};

/// Evaluation errors skipped under `error_mode: ignore` in one batch.
#[derive(Default)]
pub(super) struct Errors {
    pub count: usize,
    pub first: Option<String>,
}

/// What one batch lost.
#[derive(Default, Debug, PartialEq)]
pub(super) struct Dropped {
    /// Spans, log records or metric data points.
    pub items: usize,
    pub events: usize,
}

/// Whether any rule matches. `Err` only for a failure under `error_mode: propagate`.
fn any(rules: &[Rule], item: &Item<'_>, errors: &mut Errors) -> Result<bool, String> {
    for r in rules {
        match r.cond.eval(item) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) => match r.mode {
                ErrorMode::Propagate => {
                    return Err(format!(
                        "condition {} ({:?}) failed: {e}",
                        r.key,
                        r.cond.text()
                    ));
                }
                ErrorMode::Ignore => {
                    errors.count += 1;
                    if errors.first.is_none() {
                        errors.first = Some(format!("{}: {e}", r.key));
                    }
                }
                ErrorMode::Silent => {}
            },
        }
    }
    Ok(false)
}

/// Removes the entries whose mask value is true.
fn apply_mask<T>(v: &mut Vec<T>, mask: &[bool]) {
    let mut i = 0;
    v.retain(|_| {
        let drop = mask.get(i).copied().unwrap_or(false);
        i += 1;
        !drop
    });
}

pub(super) fn traces(
    r: &SignalRules,
    v: &mut Vec<ResourceSpans>,
    errors: &mut Errors,
) -> Result<Dropped, String> {
    let mut d = Dropped::default();
    let mut resource_mask = Vec::with_capacity(v.len());
    for rs in v.iter_mut() {
        let at_resource = Item {
            resource: rs.resource.as_ref(),
            ..Default::default()
        };
        let drop = any(&r.resource, &at_resource, errors)?;
        resource_mask.push(drop);
        if drop {
            d.items += rs.item_count();
            continue;
        }
        for ss in rs.scope_spans.iter_mut() {
            let at_scope = Item {
                scope: ss.scope.as_ref(),
                ..at_resource
            };
            if any(&r.scope, &at_scope, errors)? {
                d.items += ss.spans.len();
                ss.spans.clear();
                continue;
            }
            let mut span_mask = Vec::with_capacity(ss.spans.len());
            let mut event_masks = Vec::new();
            for (i, span) in ss.spans.iter().enumerate() {
                let at_span = Item {
                    span: Some(span),
                    ..at_scope
                };
                let drop = any(&r.item, &at_span, errors)?;
                span_mask.push(drop);
                if drop {
                    d.items += 1;
                    continue;
                }
                if r.sub.is_empty() || span.events.is_empty() {
                    continue;
                }
                let mut mask = Vec::with_capacity(span.events.len());
                for ev in &span.events {
                    let at_event = Item {
                        event: Some(ev),
                        ..at_span
                    };
                    mask.push(any(&r.sub, &at_event, errors)?);
                }
                let n = mask.iter().filter(|m| **m).count();
                if n > 0 {
                    d.events += n;
                    event_masks.push((i, mask));
                }
            }
            for (i, mask) in event_masks {
                if let Some(span) = ss.spans.get_mut(i) {
                    apply_mask(&mut span.events, &mask);
                }
            }
            apply_mask(&mut ss.spans, &span_mask);
        }
    }
    apply_mask(v, &resource_mask);
    Ok(d)
}

pub(super) fn logs(
    r: &SignalRules,
    v: &mut Vec<ResourceLogs>,
    errors: &mut Errors,
) -> Result<Dropped, String> {
    let mut d = Dropped::default();
    let mut resource_mask = Vec::with_capacity(v.len());
    for rl in v.iter_mut() {
        let at_resource = Item {
            resource: rl.resource.as_ref(),
            ..Default::default()
        };
        let drop = any(&r.resource, &at_resource, errors)?;
        resource_mask.push(drop);
        if drop {
            d.items += rl.item_count();
            continue;
        }
        for sl in rl.scope_logs.iter_mut() {
            let at_scope = Item {
                scope: sl.scope.as_ref(),
                ..at_resource
            };
            if any(&r.scope, &at_scope, errors)? {
                d.items += sl.log_records.len();
                sl.log_records.clear();
                continue;
            }
            if r.item.is_empty() {
                continue;
            }
            let mut mask = Vec::with_capacity(sl.log_records.len());
            for log in &sl.log_records {
                let at_log = Item {
                    log: Some(log),
                    ..at_scope
                };
                mask.push(any(&r.item, &at_log, errors)?);
            }
            d.items += mask.iter().filter(|m| **m).count();
            apply_mask(&mut sl.log_records, &mask);
        }
    }
    apply_mask(v, &resource_mask);
    Ok(d)
}

fn points(m: &metric::Data) -> Vec<Point<'_>> {
    use metric::Data;
    match m {
        Data::Gauge(g) => g.data_points.iter().map(Point::Number).collect(),
        Data::Sum(s) => s.data_points.iter().map(Point::Number).collect(),
        Data::Histogram(h) => h.data_points.iter().map(Point::Histogram).collect(),
        Data::ExponentialHistogram(h) => h
            .data_points
            .iter()
            .map(Point::ExponentialHistogram)
            .collect(),
        Data::Summary(s) => s.data_points.iter().map(Point::Summary).collect(),
    }
}

fn mask_points(m: &mut metric::Data, mask: &[bool]) {
    use metric::Data;
    match m {
        Data::Gauge(g) => apply_mask(&mut g.data_points, mask),
        Data::Sum(s) => apply_mask(&mut s.data_points, mask),
        Data::Histogram(h) => apply_mask(&mut h.data_points, mask),
        Data::ExponentialHistogram(h) => apply_mask(&mut h.data_points, mask),
        Data::Summary(s) => apply_mask(&mut s.data_points, mask),
    }
}

pub(super) fn metrics(
    r: &SignalRules,
    v: &mut Vec<ResourceMetrics>,
    errors: &mut Errors,
) -> Result<Dropped, String> {
    let mut d = Dropped::default();
    let mut resource_mask = Vec::with_capacity(v.len());
    for rm in v.iter_mut() {
        let at_resource = Item {
            resource: rm.resource.as_ref(),
            ..Default::default()
        };
        let drop = any(&r.resource, &at_resource, errors)?;
        resource_mask.push(drop);
        if drop {
            d.items += rm.item_count();
            continue;
        }
        for sm in rm.scope_metrics.iter_mut() {
            let at_scope = Item {
                scope: sm.scope.as_ref(),
                ..at_resource
            };
            if any(&r.scope, &at_scope, errors)? {
                d.items += sm.metrics.iter().map(metric_points).sum::<usize>();
                sm.metrics.clear();
                continue;
            }
            let mut metric_mask = Vec::with_capacity(sm.metrics.len());
            let mut point_masks = Vec::new();
            for (i, m) in sm.metrics.iter().enumerate() {
                let at_metric = Item {
                    metric: Some(m),
                    ..at_scope
                };
                if any(&r.item, &at_metric, errors)? {
                    d.items += metric_points(m);
                    metric_mask.push(true);
                    continue;
                }
                let pts = match (&m.data, r.sub.is_empty()) {
                    (Some(data), false) => points(data),
                    _ => Vec::new(),
                };
                let mut mask = Vec::with_capacity(pts.len());
                for p in pts {
                    let at_point = Item {
                        point: Some(p),
                        ..at_metric
                    };
                    mask.push(any(&r.sub, &at_point, errors)?);
                }
                let n = mask.iter().filter(|m| **m).count();
                d.items += n;
                // A metric whose points were all dropped goes too, as in the Collector.
                let all_gone = n > 0 && n == mask.len();
                metric_mask.push(all_gone);
                if n > 0 && !all_gone {
                    point_masks.push((i, mask));
                }
            }
            for (i, mask) in point_masks {
                if let Some(data) = sm.metrics.get_mut(i).and_then(|m| m.data.as_mut()) {
                    mask_points(data, &mask);
                }
            }
            apply_mask(&mut sm.metrics, &metric_mask);
        }
    }
    apply_mask(v, &resource_mask);
    Ok(d)
}
