//! One record: its line format, its hash, and parsing it back.
//!
//! The writer and the verifier share these functions, so a record `append`
//! writes is by construction one that `verify` accepts.

use ring::digest;
use serde::Serialize;
use serde_json::{Map, Value};

use super::AuditError;
use crate::timefmt::parse_rfc3339;

/// `prev` of the first record: there is no earlier hash to link to.
pub(super) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Keys the log itself sets; event fields may not shadow them.
pub(super) const RESERVED: [&str; 5] = ["seq", "ts", "event", "prev", "hash"];

/// Longest event name.
const MAX_EVENT_LEN: usize = 64;

/// One audit record as read from (or just written to) the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// Unix seconds.
    pub ts: i64,
    pub event: String,
    /// The event fields only (no reserved keys).
    pub fields: Map<String, Value>,
    pub prev: String,
    pub hash: String,
    /// 1-based line in the file.
    pub line: usize,
    /// The JSON line as stored, without its newline.
    pub raw: String,
}

impl Record {
    /// A string field such as `service` or `session`; `None` if absent or not a string.
    pub fn field_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// A parsed record plus its timestamp exactly as written: the hash covers
/// the text, and re-formatting the parsed number need not reproduce it.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub record: Record,
    pub ts_text: String,
}

impl Entry {
    /// Whether this line is exactly what `append` writes for its content:
    /// the hash matches and the bytes are in canonical form. Checking the
    /// bytes as well as the hash means no byte of a line can change unnoticed.
    pub fn is_sealed(&self) -> bool {
        let r = &self.record;
        let body = body(r.seq, &self.ts_text, &r.event, &r.fields, &r.prev);
        chain_hash(&r.prev, &body) == r.hash
            && render(r.seq, &self.ts_text, &r.event, &r.fields, &r.prev, &r.hash) == r.raw
    }
}

/// Compact JSON text. Serializing strings and `serde_json` values cannot fail.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("JSON values always serialize")
}

/// The record object without its `hash` key: what the hash covers.
fn body(
    seq: u64,
    ts_text: &str,
    event: &str,
    fields: &Map<String, Value>,
    prev: &str,
) -> Map<String, Value> {
    let mut body = fields.clone();
    body.insert("seq".into(), seq.into());
    body.insert("ts".into(), ts_text.into());
    body.insert("event".into(), event.into());
    body.insert("prev".into(), prev.into());
    body
}

/// Lowercase hex SHA-256 of `prev`, a newline, and the canonical JSON of
/// `body` (keys sorted, compact: `serde_json`'s `Map` is a `BTreeMap`).
pub(super) fn chain_hash(prev: &str, body: &Map<String, Value>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev.as_bytes());
    ctx.update(b"\n");
    ctx.update(json(body).as_bytes());
    hex::encode(ctx.finish())
}

/// The stored line. Unlike the hashed form it keeps `seq`, `ts` and `event`
/// first and `prev`, `hash` last, so the file reads well with `tail`.
fn render(
    seq: u64,
    ts_text: &str,
    event: &str,
    fields: &Map<String, Value>,
    prev: &str,
    hash: &str,
) -> String {
    let mut line = format!(
        "{{\"seq\":{seq},\"ts\":{},\"event\":{}",
        json(ts_text),
        json(event)
    );
    for (key, value) in fields {
        line.push(',');
        line.push_str(&json(key));
        line.push(':');
        line.push_str(&json(value));
    }
    line.push_str(",\"prev\":");
    line.push_str(&json(prev));
    line.push_str(",\"hash\":");
    line.push_str(&json(hash));
    line.push('}');
    line
}

/// Event names are `[a-z_]{1,64}` so they stay greppable and unambiguous.
pub(super) fn check_event_name(event: &str) -> Result<(), AuditError> {
    let valid = !event.is_empty()
        && event.len() <= MAX_EVENT_LEN
        && event.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(AuditError::InvalidEvent(format!(
            "event name {event:?} must be 1 to {MAX_EVENT_LEN} characters of a-z and _"
        )))
    }
}

/// How often [`seal`] retries fields that do not read back unchanged.
const ROUND_TRIP_ATTEMPTS: usize = 4;

/// Builds the record that follows `prev` and checks that it reads back
/// unchanged, so nothing is written that `verify` would reject.
/// Floating-point numbers are the one way it could not: without serde_json's
/// `float_roundtrip` feature, parsing may land one unit in the last place
/// off (never for ordinary decimals such as `12.345`). Such fields are
/// retried in their parsed form, which usually settles; extreme values that
/// keep drifting are rejected.
pub(super) fn seal(
    seq: u64,
    ts: i64,
    event: &str,
    fields: Map<String, Value>,
    prev: &str,
    line: usize,
) -> Result<Entry, AuditError> {
    check_event_name(event)?;
    if let Some(key) = RESERVED.iter().find(|key| fields.contains_key(**key)) {
        return Err(AuditError::InvalidEvent(format!(
            "field {key:?} is reserved for the log itself (reserved: {})",
            RESERVED.join(", ")
        )));
    }
    let ts_text = crate::timefmt::rfc3339(ts);
    let mut fields = fields;
    for _attempt in 0..ROUND_TRIP_ATTEMPTS {
        let hash = chain_hash(prev, &body(seq, &ts_text, event, &fields, prev));
        let raw = render(seq, &ts_text, event, &fields, prev, &hash);
        match parse(line, &raw) {
            Ok(entry) if entry.is_sealed() => return Ok(entry),
            Ok(entry) => fields = entry.record.fields,
            Err(message) => {
                return Err(AuditError::InvalidEvent(format!(
                    "record does not read back: {message}"
                )))
            }
        }
    }
    Err(AuditError::InvalidEvent(
        "the fields do not survive a JSON round trip unchanged (a floating-point number?); \
         record such values as strings"
            .into(),
    ))
}

/// Removes a required string key.
fn take_str(map: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match map.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("\"{key}\" is not a string")),
        None => Err(format!("\"{key}\" is missing")),
    }
}

/// Parses one line (without its newline); the error says what is wrong.
fn parse(line: usize, raw: &str) -> Result<Entry, String> {
    let mut map = match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("not valid JSON ({e})")),
    };
    let seq = match map.remove("seq") {
        Some(value) => value
            .as_u64()
            .ok_or("\"seq\" is not a non-negative integer")?,
        None => return Err("\"seq\" is missing".into()),
    };
    let ts_text = take_str(&mut map, "ts")?;
    let ts = parse_rfc3339(&ts_text)
        .ok_or_else(|| format!("\"ts\" is not an RFC 3339 time: {ts_text:?}"))?;
    let event = take_str(&mut map, "event")?;
    let prev = take_str(&mut map, "prev")?;
    let hash = take_str(&mut map, "hash")?;
    Ok(Entry {
        record: Record {
            seq,
            ts,
            event,
            fields: map,
            prev,
            hash,
            line,
            raw: raw.to_owned(),
        },
        ts_text,
    })
}

/// One line of the file: a parsed record, or why it is not one.
pub(super) type Line = Result<Entry, String>;

/// Splits the file into lines and parses each. A final line without its
/// newline is reported as incomplete even if it parses: `append` writes the
/// newline in the same `write_all`, so its absence means the write was cut.
pub(super) fn parse_lines(content: &[u8]) -> Vec<Line> {
    let mut pieces: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    let terminated = pieces.last().is_some_and(|last| last.is_empty());
    if terminated {
        pieces.pop();
    }
    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, bytes)| {
            if !terminated && index + 1 == count {
                return Err(
                    "incomplete last line (no newline at the end): the write was cut short".into(),
                );
            }
            match std::str::from_utf8(bytes) {
                Ok("") => Err("empty line".into()),
                Ok(text) => parse(index + 1, text),
                Err(_) => Err("not valid UTF-8".into()),
            }
        })
        .collect()
}

/// The last line that parses as a record: what a restarted chain links to.
pub(super) fn last_entry(lines: &[Line]) -> Option<&Entry> {
    lines.iter().rev().find_map(|line| line.as_ref().ok())
}
