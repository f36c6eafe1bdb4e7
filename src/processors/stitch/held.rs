//! Taking single spans and log records out of a batch to hold them, and putting held items
//! back into OTLP resource/scope structure when they are released.

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::{
    InstrumentationScope, LogRecord, Resource, ResourceLogs, ResourceSpans, ScopeLogs, ScopeSpans,
    Span,
};

pub(crate) struct ResourcePart {
    resource: Option<Resource>,
    schema_url: String,
}

/// The resource and scope an item arrived under (shared by the items of one scope).
pub(crate) struct Origin {
    resource: Arc<ResourcePart>,
    scope: Option<InstrumentationScope>,
    schema_url: String,
}

pub(crate) type Held<T> = (Arc<Origin>, T);

/// Calls `take` on every span (it may change the span); spans for which it answers true
/// are moved out, with their origin. Emptied scopes and resources are pruned.
pub(crate) fn take_spans(
    batch: &mut Vec<ResourceSpans>,
    mut take: impl FnMut(&mut Span) -> bool,
) -> Vec<Held<Span>> {
    let mut out = Vec::new();
    for rs in batch.iter_mut() {
        let mut res: Option<Arc<ResourcePart>> = None;
        for ss in rs.scope_spans.iter_mut() {
            let mut origin: Option<Arc<Origin>> = None;
            let mut kept = Vec::with_capacity(ss.spans.len());
            for mut span in std::mem::take(&mut ss.spans) {
                if !take(&mut span) {
                    kept.push(span);
                    continue;
                }
                let o = origin.get_or_insert_with(|| {
                    let r = res.get_or_insert_with(|| {
                        Arc::new(ResourcePart {
                            resource: rs.resource.clone(),
                            schema_url: rs.schema_url.clone(),
                        })
                    });
                    Arc::new(Origin {
                        resource: r.clone(),
                        scope: ss.scope.clone(),
                        schema_url: ss.schema_url.clone(),
                    })
                });
                out.push((o.clone(), span));
            }
            ss.spans = kept;
        }
        rs.scope_spans.retain(|s| !s.spans.is_empty());
    }
    batch.retain(|rs| !rs.scope_spans.is_empty());
    out
}

/// [`take_spans`] for log records.
pub(crate) fn take_logs(
    batch: &mut Vec<ResourceLogs>,
    mut take: impl FnMut(&mut LogRecord) -> bool,
) -> Vec<Held<LogRecord>> {
    let mut out = Vec::new();
    for rl in batch.iter_mut() {
        let mut res: Option<Arc<ResourcePart>> = None;
        for sl in rl.scope_logs.iter_mut() {
            let mut origin: Option<Arc<Origin>> = None;
            let mut kept = Vec::with_capacity(sl.log_records.len());
            for mut rec in std::mem::take(&mut sl.log_records) {
                if !take(&mut rec) {
                    kept.push(rec);
                    continue;
                }
                let o = origin.get_or_insert_with(|| {
                    let r = res.get_or_insert_with(|| {
                        Arc::new(ResourcePart {
                            resource: rl.resource.clone(),
                            schema_url: rl.schema_url.clone(),
                        })
                    });
                    Arc::new(Origin {
                        resource: r.clone(),
                        scope: sl.scope.clone(),
                        schema_url: sl.schema_url.clone(),
                    })
                });
                out.push((o.clone(), rec));
            }
            sl.log_records = kept;
        }
        rl.scope_logs.retain(|s| !s.log_records.is_empty());
    }
    batch.retain(|rl| !rl.scope_logs.is_empty());
    out
}

/// Groups items by resource, then scope (by identity of the origin they were taken with).
#[allow(clippy::type_complexity)]
fn group<T>(items: Vec<Held<T>>) -> Vec<(Arc<ResourcePart>, Vec<(Arc<Origin>, Vec<T>)>)> {
    let mut out: Vec<(Arc<ResourcePart>, Vec<(Arc<Origin>, Vec<T>)>)> = Vec::new();
    let mut res_index: HashMap<*const ResourcePart, usize> = HashMap::new();
    let mut scope_index: HashMap<*const Origin, (usize, usize)> = HashMap::new();
    for (origin, item) in items {
        if let Some(&(r, s)) = scope_index.get(&Arc::as_ptr(&origin)) {
            out[r].1[s].1.push(item);
            continue;
        }
        let r = *res_index
            .entry(Arc::as_ptr(&origin.resource))
            .or_insert_with(|| {
                out.push((origin.resource.clone(), Vec::new()));
                out.len() - 1
            });
        let s = out[r].1.len();
        scope_index.insert(Arc::as_ptr(&origin), (r, s));
        out[r].1.push((origin, vec![item]));
    }
    out
}

pub(crate) fn assemble_spans(items: Vec<Held<Span>>) -> Vec<ResourceSpans> {
    group(items)
        .into_iter()
        .map(|(res, scopes)| ResourceSpans {
            resource: res.resource.clone(),
            schema_url: res.schema_url.clone(),
            scope_spans: scopes
                .into_iter()
                .map(|(o, spans)| ScopeSpans {
                    scope: o.scope.clone(),
                    schema_url: o.schema_url.clone(),
                    spans,
                })
                .collect(),
        })
        .collect()
}

pub(crate) fn assemble_logs(items: Vec<Held<LogRecord>>) -> Vec<ResourceLogs> {
    group(items)
        .into_iter()
        .map(|(res, scopes)| ResourceLogs {
            resource: res.resource.clone(),
            schema_url: res.schema_url.clone(),
            scope_logs: scopes
                .into_iter()
                .map(|(o, log_records)| ScopeLogs {
                    scope: o.scope.clone(),
                    schema_url: o.schema_url.clone(),
                    log_records,
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_spans_reassemble_under_their_resource_and_scope() {
        let rs = |svc: &str, names: &[&str]| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![crate::data::KeyValue {
                    key: "service.name".into(),
                    value: Some(crate::data::AnyValue {
                        value: Some(crate::data::string_value(svc)),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|n| Span {
                        name: n.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            schema_url: String::new(),
        };
        let mut batch = vec![rs("a", &["a1", "a2"]), rs("b", &["b1"])];
        let original = batch.clone();
        let taken = take_spans(&mut batch, |s| s.name != "a1");
        assert_eq!(batch.len(), 1);
        assert_eq!(taken.len(), 2);
        let mut back = assemble_spans(taken);
        assert_eq!(back.len(), 2);
        assert_eq!(back[1], original[1]);
        back[0].scope_spans[0]
            .spans
            .insert(0, batch[0].scope_spans[0].spans[0].clone());
        assert_eq!(back[0], original[0]);
    }
}
