//! Protobuf encoding of decoded traces and logs with every message length computed once.
//!
//! prost writes a nested message's length prefix by asking the message for its encoded
//! length, at every level: a span inside `ResourceSpans → ScopeSpans → Span` has its length
//! computed three times (four with the output buffer's capacity), and that walk over the
//! attributes costs about as much as the writing. Here one pass records the length of each
//! span/log record, scope and resource message, and a second pass writes, prefixes taken
//! from the record. The output is byte for byte what prost writes for the export request.

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, message, string};

use super::{ResourceLogs, ResourceSpans};

/// Length of a length-delimited field with a one-byte key (fields 1–15) holding `len` bytes.
fn field(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

macro_rules! two_pass {
    ($name:ident, $res:ty, $scopes:ident, $items:ident) => {
        pub(super) fn $name(v: &[$res]) -> Vec<u8> {
            // Pre-order: resource, then per scope: scope, its items.
            let mut lens = Vec::new();
            let mut total = 0;
            for r in v {
                let ri = lens.len();
                lens.push(0);
                let mut rl = r
                    .resource
                    .as_ref()
                    .map_or(0, |m| message::encoded_len(1, m));
                for s in &r.$scopes {
                    let si = lens.len();
                    lens.push(0);
                    let mut sl = s.scope.as_ref().map_or(0, |m| message::encoded_len(1, m));
                    for item in &s.$items {
                        let l = item.encoded_len();
                        lens.push(l);
                        sl += field(l);
                    }
                    if !s.schema_url.is_empty() {
                        sl += string::encoded_len(3, &s.schema_url);
                    }
                    lens[si] = sl;
                    rl += field(sl);
                }
                if !r.schema_url.is_empty() {
                    rl += string::encoded_len(3, &r.schema_url);
                }
                lens[ri] = rl;
                total += field(rl);
            }
            let mut buf = Vec::with_capacity(total);
            let mut next = lens.iter();
            let mut prefix = |tag: u32, buf: &mut Vec<u8>| {
                encode_key(tag, WireType::LengthDelimited, buf);
                encode_varint(next.next().copied().unwrap_or(0) as u64, buf);
            };
            for r in v {
                prefix(1, &mut buf);
                if let Some(m) = &r.resource {
                    message::encode(1, m, &mut buf);
                }
                for s in &r.$scopes {
                    prefix(2, &mut buf);
                    if let Some(m) = &s.scope {
                        message::encode(1, m, &mut buf);
                    }
                    for item in &s.$items {
                        prefix(2, &mut buf);
                        item.encode_raw(&mut buf);
                    }
                    if !s.schema_url.is_empty() {
                        string::encode(3, &s.schema_url, &mut buf);
                    }
                }
                if !r.schema_url.is_empty() {
                    string::encode(3, &r.schema_url, &mut buf);
                }
            }
            buf
        }
    };
}

two_pass!(traces, ResourceSpans, scope_spans, spans);
two_pass!(logs, ResourceLogs, scope_logs, log_records);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Batch, ScopeSpans};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

    #[test]
    fn output_is_what_prost_writes() {
        let Batch::Traces(mut v) = crate::data::wire::tests::traces(3, 4) else {
            unreachable!()
        };
        // Edge cases: no resource, an empty scope, a scope without spans, schema urls.
        v[1].resource = None;
        v[1].schema_url = "https://x".into();
        v[2].scope_spans.push(ScopeSpans::default());
        v.push(ResourceSpans::default());
        let want = ExportTraceServiceRequest {
            resource_spans: v.clone(),
        }
        .encode_to_vec();
        assert_eq!(traces(&v), want);
        assert_eq!(traces(&[]), Vec::<u8>::new());
        let Batch::Logs(l) = crate::data::wire::tests::logs(5) else {
            unreachable!()
        };
        let want = ExportLogsServiceRequest {
            resource_logs: l.clone(),
        }
        .encode_to_vec();
        assert_eq!(logs(&l), want);
    }
}
