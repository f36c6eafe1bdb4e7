//! The baseline: Jaeger's clock-skew adjuster (`model/adjuster/clockskew.go`), re-implemented
//! from its public description and source: per trace, walking down from the roots, a child
//! on another host than the current skew's is compared with its (already adjusted) parent.
//! A child that fits is left alone, a longer child is only moved to start no earlier than
//! its parent, any other child is centred in its parent (latency assumed split equally).
//! The delta is inherited by the child's same-host descendants. The whole span moves (start,
//! end), as in Jaeger v1's model where a span has a start and a duration.

use std::collections::HashMap;

use weft::data::{ResourceSpans, Span, any_value};

// ---------------------------------------------------------------------------------------
// The baseline: Jaeger's adjuster

pub fn host_of(rs: &ResourceSpans) -> String {
    rs.resource
        .as_ref()
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "host.name"))
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Jaeger's per-trace centring on one trace's spans (with their hosts).
pub fn jaeger_adjust(spans: &mut [(String, Span)]) {
    let index: HashMap<Vec<u8>, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, (_, s))| (s.span_id.clone(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (i, (_, s)) in spans.iter().enumerate() {
        match index.get(&s.parent_span_id) {
            Some(&p) if !s.parent_span_id.is_empty() => children[p].push(i),
            _ => roots.push(i),
        }
    }
    // (node, parent, host of the current skew, delta)
    let mut stack: Vec<(usize, Option<usize>, String, i64)> = roots
        .iter()
        .map(|&r| (r, None, spans[r].0.clone(), 0))
        .collect();
    while let Some((n, parent, mut skew_host, mut delta)) = stack.pop() {
        if let Some(p) = parent
            && (spans[n].0 != skew_host || spans[n].0.is_empty())
        {
            skew_host = spans[n].0.clone();
            delta = jaeger_skew(&spans[n].1, &spans[p].1);
        }
        if delta != 0 {
            let s = &mut spans[n].1;
            s.start_time_unix_nano = (s.start_time_unix_nano as i64 + delta) as u64;
            s.end_time_unix_nano = (s.end_time_unix_nano as i64 + delta) as u64;
        }
        for &c in &children[n] {
            stack.push((c, Some(n), skew_host.clone(), delta));
        }
    }
}

pub fn jaeger_skew(child: &Span, parent: &Span) -> i64 {
    let (ps, pe) = (
        parent.start_time_unix_nano as i64,
        parent.end_time_unix_nano as i64,
    );
    let (cs, ce) = (
        child.start_time_unix_nano as i64,
        child.end_time_unix_nano as i64,
    );
    let (pd, cd) = (pe - ps, ce - cs);
    if cd > pd {
        return if cs < ps { ps - cs } else { 0 };
    }
    if cs >= ps && ce <= pe {
        return 0;
    }
    let latency = (pd - cd) / 2;
    ps + latency - cs
}
