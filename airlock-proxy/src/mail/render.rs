//! A fetched message as JSON, through mail-parser (MIME, encoded words,
//! character sets): what the agent reads.

use async_imap::types::{Fetch, Flag};
use mail_parser::{Address, MessageParser, MimeHeaders};
use serde_json::{json, Value};

/// The most text of one message returned.
const MAX_TEXT: usize = 1 << 20;

fn seen(fetch: &Fetch) -> bool {
    fetch.flags().any(|f| matches!(f, Flag::Seen))
}

fn addresses(address: Option<&Address<'_>>) -> Value {
    let Some(address) = address else {
        return Value::Null;
    };
    let all: Vec<String> = address
        .iter()
        .map(|a| match (a.name(), a.address()) {
            (Some(name), Some(addr)) => format!("{name} <{addr}>"),
            (None, Some(addr)) => addr.to_owned(),
            (Some(name), None) => name.to_owned(),
            (None, None) => String::new(),
        })
        .collect();
    Value::String(all.join(", "))
}

/// UID, flags, size and the header's From, To, Subject and Date.
pub fn summary(fetch: &Fetch) -> Value {
    let header = fetch.header().unwrap_or_default();
    let parsed = MessageParser::default().parse_headers(header);
    let m = parsed.as_ref();
    json!({
        "uid": fetch.uid,
        "from": addresses(m.and_then(|m| m.from())),
        "to": addresses(m.and_then(|m| m.to())),
        "subject": m.and_then(|m| m.subject()),
        "date": m.and_then(|m| m.date()).map(|d| d.to_rfc3339()),
        "seen": seen(fetch),
        "size": fetch.size,
    })
}

/// The whole message: headers, its text (HTML as text when there is no
/// plain part), and its attachments' names, types and sizes (not their
/// contents). None if the server sent no body.
pub fn message(fetch: &Fetch) -> Option<Value> {
    let raw = fetch.body()?;
    let parsed = MessageParser::default().parse(raw);
    let m = parsed.as_ref();
    let mut text = m
        .and_then(|m| m.body_text(0))
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let truncated = text.len() > MAX_TEXT;
    if truncated {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    let attachments: Vec<Value> = m
        .map(|m| {
            m.attachments()
                .map(|part| {
                    json!({
                        "name": part.attachment_name(),
                        "content_type": part.content_type().map(|ct| match ct.subtype() {
                            Some(sub) => format!("{}/{sub}", ct.ctype()),
                            None => ct.ctype().to_owned(),
                        }),
                        "size": part.contents().len(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(json!({
        "uid": fetch.uid,
        "from": addresses(m.and_then(|m| m.from())),
        "to": addresses(m.and_then(|m| m.to())),
        "cc": addresses(m.and_then(|m| m.cc())),
        "subject": m.and_then(|m| m.subject()),
        "date": m.and_then(|m| m.date()).map(|d| d.to_rfc3339()),
        "message_id": m.and_then(|m| m.message_id()),
        "seen": seen(fetch),
        "size": fetch.size,
        "text": text,
        "text_truncated": truncated,
        "attachments": attachments,
    }))
}
