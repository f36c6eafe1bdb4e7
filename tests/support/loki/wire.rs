//! The Loki push wire formats for the stand-in: logproto (hand-written independently of the
//! exporter's copy, so a wrong field number on either side shows up), Loki's JSON push
//! body, the `{k="v", …}` label string, and Go's time formats used in Loki's messages.

use prost::Message;

use super::StoredEntry;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<Stream>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stream {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<Entry>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Ts>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<Pair>,
}
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Ts {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub struct Incoming {
    pub labels: String,
    pub entries: Vec<StoredEntry>,
}

pub fn decode_proto(raw: &[u8]) -> Result<Vec<Incoming>, String> {
    let bytes = snap::raw::Decoder::new()
        .decompress_vec(raw)
        .map_err(|e| format!("snappy: {e}"))?;
    let req = PushRequest::decode(bytes.as_slice()).map_err(|e| format!("proto: {e}"))?;
    Ok(req
        .streams
        .into_iter()
        .map(|s| Incoming {
            labels: s.labels,
            entries: s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e.timestamp.unwrap_or_default();
                    StoredEntry {
                        ts_ns: ts.seconds as i128 * 1_000_000_000 + ts.nanos as i128,
                        line: e.line,
                        metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect())
}

pub fn decode_json(raw: &[u8]) -> Result<Vec<Incoming>, String> {
    let v: serde_json::Value = serde_json::from_slice(raw).map_err(|e| format!("loghttp: {e}"))?;
    let streams = v["streams"]
        .as_array()
        .ok_or("loghttp: streams must be an array")?;
    let mut out = Vec::new();
    for s in streams {
        let obj = s["stream"]
            .as_object()
            .ok_or("loghttp: stream must be an object")?;
        let mut labels: Vec<(String, String)> = Vec::new();
        for (k, v) in obj {
            labels.push((
                k.clone(),
                v.as_str()
                    .ok_or("loghttp: label values must be strings")?
                    .to_string(),
            ));
        }
        labels.sort();
        let mut entries = Vec::new();
        for val in s["values"]
            .as_array()
            .ok_or("loghttp: values must be an array")?
        {
            let arr = val.as_array().ok_or("loghttp: a value must be an array")?;
            if arr.len() < 2 || arr.len() > 3 {
                return Err("loghttp: a value must be [ts, line] or [ts, line, metadata]".into());
            }
            let ts: i128 = arr[0]
                .as_str()
                .ok_or("loghttp: timestamp must be a string")?
                .parse()
                .map_err(|_| "loghttp: invalid timestamp")?;
            let line = arr[1]
                .as_str()
                .ok_or("loghttp: line must be a string")?
                .to_string();
            let mut metadata = Vec::new();
            if let Some(md) = arr.get(2) {
                for (k, v) in md
                    .as_object()
                    .ok_or("loghttp: structured metadata must be an object")?
                {
                    metadata.push((
                        k.clone(),
                        v.as_str()
                            .ok_or("loghttp: metadata values must be strings")?
                            .to_string(),
                    ));
                }
            }
            entries.push(StoredEntry {
                ts_ns: ts,
                line,
                metadata,
            });
        }
        out.push(Incoming {
            labels: label_string(&labels),
            entries,
        });
    }
    Ok(out)
}

/// Parses `{k="v", k2="v2"}` (Go-quoted values) the way Loki's label parser accepts it.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = s.trim().chars().collect();
    let err = |i: usize, what: &str| format!("1:{}: parse error: {what}", i + 1);
    if chars.first() != Some(&'{') {
        return Err(err(0, "unexpected character, expected '{'"));
    }
    let mut i = 1;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        match chars.get(i) {
            Some('}') if i + 1 == chars.len() => return Ok(out),
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {}
            _ => return Err(err(i, "unexpected character, expected label name")),
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        skip_ws(&mut i);
        if chars.get(i) != Some(&'=') {
            return Err(err(i, "unexpected character, expected '='"));
        }
        i += 1;
        skip_ws(&mut i);
        if chars.get(i) != Some(&'"') {
            return Err(err(i, "unexpected character, expected '\"'"));
        }
        i += 1;
        let mut value = String::new();
        loop {
            match chars.get(i) {
                None => return Err(err(i, "unterminated quoted string")),
                Some('"') => {
                    i += 1;
                    break;
                }
                Some('\\') => {
                    let esc = chars
                        .get(i + 1)
                        .copied()
                        .ok_or_else(|| err(i, "unterminated escape"))?;
                    i += 2;
                    match esc {
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        'a' => value.push('\u{7}'),
                        'b' => value.push('\u{8}'),
                        'f' => value.push('\u{c}'),
                        'v' => value.push('\u{b}'),
                        '\\' | '"' | '\'' => value.push(esc),
                        'x' | 'u' | 'U' => {
                            let len = match esc {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = chars
                                .get(i..i + len)
                                .ok_or_else(|| err(i, "short escape"))?
                                .iter()
                                .collect();
                            let cp = u32::from_str_radix(&hex, 16)
                                .map_err(|_| err(i, "invalid escape"))?;
                            value.push(
                                char::from_u32(cp).ok_or_else(|| err(i, "invalid code point"))?,
                            );
                            i += len;
                        }
                        _ => return Err(err(i, "unknown escape sequence")),
                    }
                }
                Some(c) => {
                    value.push(*c);
                    i += 1;
                }
            }
        }
        out.push((name, value));
        skip_ws(&mut i);
        match chars.get(i) {
            Some(',') => i += 1,
            Some('}') if i + 1 == chars.len() => return Ok(out),
            _ => return Err(err(i, "unexpected character, expected ',' or '}'")),
        }
    }
}

pub fn label_string(labels: &[(String, String)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

pub fn rfc3339(ns: i128) -> String {
    chrono::DateTime::from_timestamp((ns.div_euclid(1_000_000_000)) as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Go's `time.Time.String()` for UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
pub fn go_time(ns: i128) -> String {
    chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000) as i64,
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| {
        let frac = format!("{:09}", t.timestamp_subsec_nanos());
        let frac = frac.trim_end_matches('0');
        let frac = if frac.is_empty() {
            String::new()
        } else {
            format!(".{frac}")
        };
        format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
    })
    .unwrap_or_default()
}
