//! Metric data points as documents: one document per data point (so one bulk item per
//! counted item, and per-item retries map back 1:1), and the retry batch rebuilt from the
//! data points that must be sent again.
//!
//! `otel`: `@timestamp`, `start_timestamp`, `data_stream`, `attributes` (the point's),
//! `resource`, `scope`, `unit`, and `metrics: {<name>: <value>}`. `ecs`: the ECS resource
//! fields, point attributes at the top level and `<name>: <value>`. Values: gauges and sums
//! as numbers; histograms as Elasticsearch `histogram` fields (`counts` and bucket
//! midpoints as `values`; exponential histograms converted the same way); summaries as
//! `aggregate_metric_double` (`sum`, `value_count`).

use serde_json::{Map, Value, json};

use super::mapping::{self, Context, DataStream, Mode};
use crate::data::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
    number_data_point,
};

/// One data point of any metric type.
#[derive(Clone, Copy)]
pub enum Point<'a> {
    Number(&'a NumberDataPoint),
    Histogram(&'a HistogramDataPoint),
    Exponential(&'a ExponentialHistogramDataPoint),
    Summary(&'a SummaryDataPoint),
}

impl Point<'_> {
    pub fn attributes(&self) -> &[crate::data::KeyValue] {
        match self {
            Point::Number(p) => &p.attributes,
            Point::Histogram(p) => &p.attributes,
            Point::Exponential(p) => &p.attributes,
            Point::Summary(p) => &p.attributes,
        }
    }

    fn times(&self) -> (u64, u64) {
        match self {
            Point::Number(p) => (p.time_unix_nano, p.start_time_unix_nano),
            Point::Histogram(p) => (p.time_unix_nano, p.start_time_unix_nano),
            Point::Exponential(p) => (p.time_unix_nano, p.start_time_unix_nano),
            Point::Summary(p) => (p.time_unix_nano, p.start_time_unix_nano),
        }
    }

    fn value(&self) -> Value {
        match self {
            Point::Number(p) => match p.value {
                Some(number_data_point::Value::AsInt(i)) => i.into(),
                Some(number_data_point::Value::AsDouble(d)) => json_f64(d),
                None => Value::Null,
            },
            Point::Histogram(p) => histogram(&p.bucket_counts, &p.explicit_bounds),
            Point::Exponential(p) => exponential(p),
            Point::Summary(p) => json!({"sum": json_f64(p.sum), "value_count": p.count}),
        }
    }
}

fn json_f64(d: f64) -> Value {
    serde_json::Number::from_f64(d)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Explicit-bounds buckets → `{counts, values}` with bucket midpoints (the first bucket's
/// value is half its upper bound when that is positive, the last bucket's its lower
/// bound), leaving out empty buckets as Elasticsearch's `histogram` field wants.
fn histogram(counts: &[u64], bounds: &[f64]) -> Value {
    let mut c = Vec::new();
    let mut v = Vec::new();
    for (i, n) in counts.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let value = match (i.checked_sub(1).and_then(|j| bounds.get(j)), bounds.get(i)) {
            (None, Some(up)) if *up > 0.0 => up / 2.0,
            (None, Some(up)) => *up,
            (Some(lo), Some(up)) => (lo + up) / 2.0,
            (Some(lo), None) => *lo,
            (None, None) => 0.0,
        };
        c.push(Value::from(*n));
        v.push(json_f64(value));
    }
    json!({"counts": c, "values": v})
}

/// Base-2 exponential buckets → `{counts, values}` with each bucket's midpoint, negative
/// buckets mirrored, the zero bucket at 0; values ascending.
fn exponential(p: &ExponentialHistogramDataPoint) -> Value {
    let base = 2f64.powf(2f64.powi(-p.scale));
    let mid = |index: i64| (base.powf(index as f64) + base.powf(index as f64 + 1.0)) / 2.0;
    let mut pairs: Vec<(f64, u64)> = Vec::new();
    if let Some(neg) = &p.negative {
        for (i, n) in neg.bucket_counts.iter().enumerate() {
            pairs.push((-mid(neg.offset as i64 + i as i64), *n));
        }
    }
    pairs.push((0.0, p.zero_count));
    if let Some(pos) = &p.positive {
        for (i, n) in pos.bucket_counts.iter().enumerate() {
            pairs.push((mid(pos.offset as i64 + i as i64), *n));
        }
    }
    pairs.retain(|(_, n)| *n > 0);
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let counts: Vec<Value> = pairs.iter().map(|(_, n)| Value::from(*n)).collect();
    let values: Vec<Value> = pairs.iter().map(|(v, _)| json_f64(*v)).collect();
    json!({"counts": counts, "values": values})
}

/// Every data point of a metric, in order.
pub fn points(m: &Metric) -> Vec<Point<'_>> {
    use metric::Data;
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.iter().map(Point::Number).collect(),
        Some(Data::Sum(s)) => s.data_points.iter().map(Point::Number).collect(),
        Some(Data::Histogram(h)) => h.data_points.iter().map(Point::Histogram).collect(),
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter().map(Point::Exponential).collect()
        }
        Some(Data::Summary(s)) => s.data_points.iter().map(Point::Summary).collect(),
        None => Vec::new(),
    }
}

/// The document for one data point.
pub fn point_document(
    mode: Mode,
    ctx: &Context<'_>,
    m: &Metric,
    p: Point<'_>,
    ds: Option<&DataStream>,
) -> Value {
    let (time, start) = p.times();
    let mut d = Map::new();
    d.insert("@timestamp".into(), mapping::timestamp(time).into());
    match mode {
        Mode::Otel => {
            if start != 0 {
                d.insert("start_timestamp".into(), mapping::timestamp(start).into());
            }
            mapping::put_data_stream(&mut d, ds);
            mapping::put_attributes(&mut d, p.attributes());
            mapping::otel_resource_scope(&mut d, ctx);
            if !m.unit.is_empty() {
                d.insert("unit".into(), m.unit.clone().into());
            }
            let mut metrics = Map::new();
            metrics.insert(m.name.clone(), p.value());
            d.insert("metrics".into(), Value::Object(metrics));
        }
        Mode::Ecs => {
            mapping::ecs_common(&mut d, ctx, ds);
            mapping::ecs_attributes(&mut d, p.attributes());
            d.insert(m.name.clone(), p.value());
        }
    }
    Value::Object(d)
}

fn retain_metric(m: &Metric, next: &mut dyn FnMut() -> bool) -> Option<Metric> {
    use metric::Data;
    let mut out = m.clone();
    let kept = match &mut out.data {
        Some(Data::Gauge(g)) => {
            g.data_points.retain(|_| next());
            g.data_points.len()
        }
        Some(Data::Sum(s)) => {
            s.data_points.retain(|_| next());
            s.data_points.len()
        }
        Some(Data::Histogram(h)) => {
            h.data_points.retain(|_| next());
            h.data_points.len()
        }
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.retain(|_| next());
            h.data_points.len()
        }
        Some(Data::Summary(s)) => {
            s.data_points.retain(|_| next());
            s.data_points.len()
        }
        None => 0,
    };
    (kept > 0).then_some(out)
}

/// The data points whose flag is true, in document order.
pub fn retain(v: &[ResourceMetrics], next: &mut dyn FnMut() -> bool) -> Vec<ResourceMetrics> {
    v.iter()
        .filter_map(|rm| {
            let scope_metrics: Vec<ScopeMetrics> = rm
                .scope_metrics
                .iter()
                .filter_map(|sm| {
                    let metrics: Vec<Metric> = sm
                        .metrics
                        .iter()
                        .filter_map(|m| retain_metric(m, next))
                        .collect();
                    (!metrics.is_empty()).then(|| ScopeMetrics {
                        scope: sm.scope.clone(),
                        metrics,
                        schema_url: sm.schema_url.clone(),
                    })
                })
                .collect();
            (!scope_metrics.is_empty()).then(|| ResourceMetrics {
                resource: rm.resource.clone(),
                scope_metrics,
                schema_url: rm.schema_url.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;

    #[test]
    fn histogram_values_are_bucket_midpoints() {
        assert_eq!(
            histogram(&[1, 0, 3, 2], &[10.0, 20.0, 40.0]),
            json!({"counts": [1, 3, 2], "values": [5.0, 30.0, 40.0]})
        );
        assert_eq!(
            histogram(&[4], &[]),
            json!({"counts": [4], "values": [0.0]})
        );
    }

    #[test]
    fn exponential_buckets_become_sorted_midpoints() {
        let p = ExponentialHistogramDataPoint {
            scale: 0,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![2, 3],
            }),
            negative: Some(Buckets {
                offset: 1,
                bucket_counts: vec![5],
            }),
            ..Default::default()
        };
        assert_eq!(
            exponential(&p),
            json!({"counts": [5, 1, 2, 3], "values": [-3.0, 0.0, 1.5, 3.0]})
        );
    }
}
