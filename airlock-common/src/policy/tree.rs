//! A format-neutral document tree that remembers where every key and value
//! came from.
//!
//! Deserialising straight into typed structs would stop at serde's first
//! error and lose positions inside arrays. Parsing into this tree first lets
//! validation report every problem in a file, each at its exact place, and
//! lets TOML and the seed JSON shape share one validator.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value and the byte range it occupies in the source text.
#[derive(Debug)]
pub(crate) struct Node {
    pub span: Range<usize>,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    String(String),
    Array(Vec<Node>),
    /// Entries in source order; JSON may repeat a key, TOML may not.
    Table(Vec<Entry>),
    Bool(bool),
    /// A TOML integer (one beyond `i64` saturates: no key takes such).
    Integer(i64),
    /// Any other value (number, boolean, ...), named for error messages.
    Scalar(&'static str),
}

impl Kind {
    /// What the value is, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
            Kind::Bool(_) => "a boolean",
            Kind::Integer(_) => "an integer",
            Kind::Scalar(name) => name,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Range<usize>,
    pub node: Node,
}

/// A file that could not be parsed at all.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// 1-based line and column.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl SyntaxError {
    /// The diagnostic for `file`.
    pub fn in_file(self, file: &std::path::Path) -> super::Diagnostic {
        super::Diagnostic {
            file: file.to_path_buf(),
            line: self.line,
            column: self.column,
            message: self.message,
        }
    }
}

/// Maps byte offsets to 1-based line and column (in characters).
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, line_starts }
    }

    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line, column + 1)
    }
}

/// Parses TOML. The root table's span is empty at offset 0.
pub(crate) fn parse_toml(text: &str) -> Result<Node, SyntaxError> {
    match toml::from_str::<Kind>(text) {
        Ok(kind) => Ok(Node { span: 0..0, kind }),
        Err(err) => {
            let start = err.span().map_or(0, |s| s.start);
            let (line, column) = LineIndex::new(text).position(start);
            // Dates are the one TOML value the tree cannot hold; serde's
            // message about it names toml's private marker.
            let message = if err.message().contains("$__toml_private_datetime") {
                "dates and times are not allowed in policy files".to_owned()
            } else if err.message().trim().is_empty() {
                // toml gives some syntax errors (a control character in a
                // comment) no message: name what stands there.
                match text.get(start..).and_then(|rest| rest.chars().next()) {
                    Some(c) => format!("invalid TOML: unexpected character {c:?}"),
                    None => "invalid TOML: unexpected end of file".to_owned(),
                }
            } else {
                err.message().trim_end().to_owned()
            };
            Err(SyntaxError {
                line,
                column,
                message,
            })
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = toml::Spanned::<Kind>::deserialize(deserializer)?;
        Ok(Node {
            span: spanned.span(),
            kind: spanned.into_inner(),
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Kind, E> {
        Ok(Kind::Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Kind, E> {
        Ok(Kind::Integer(i64::try_from(value).unwrap_or(i64::MAX)))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Scalar("a float"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Kind, E> {
        Ok(Kind::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Kind, E> {
        Ok(Kind::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<toml::Spanned<String>>()? {
            let node = map.next_value::<Node>()?;
            entries.push(Entry {
                key_span: key.span(),
                key: key.into_inner(),
                node,
            });
        }
        Ok(Kind::Table(entries))
    }
}

/// Parses JSON. `serde_json` checks the syntax (and words the errors); a
/// small scanner then builds the tree with exact spans, which `serde_json`
/// cannot provide.
pub(crate) fn parse_json(text: &str) -> Result<Node, SyntaxError> {
    if let Err(err) = serde_json::from_str::<serde_json::Value>(text) {
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        return Err(SyntaxError {
            line: err.line().max(1),
            column: err.column().max(1),
            message,
        });
    }
    let mut scanner = JsonScanner { text, pos: 0 };
    scanner.value().ok_or_else(|| SyntaxError {
        line: 1,
        column: 1,
        message: "could not read this JSON".to_owned(),
    })
}

/// Walks JSON already known to be valid. Returns `None` rather than
/// panicking if that assumption ever fails.
struct JsonScanner<'a> {
    text: &'a str,
    pos: usize,
}

impl JsonScanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `byte` (after whitespace) if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_whitespace();
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn value(&mut self) -> Option<Node> {
        self.skip_whitespace();
        let start = self.pos;
        let kind = match self.peek()? {
            b'{' => {
                self.pos += 1;
                let mut entries = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_whitespace();
                        let (key, key_span) = self.string()?;
                        if !self.eat(b':') {
                            return None;
                        }
                        let node = self.value()?;
                        entries.push(Entry {
                            key,
                            key_span,
                            node,
                        });
                        if self.eat(b'}') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Kind::Table(entries)
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b']') {
                            break;
                        }
                        if !self.eat(b',') {
                            return None;
                        }
                    }
                }
                Kind::Array(items)
            }
            b'"' => Kind::String(self.string()?.0),
            first => {
                let name = match first {
                    b't' | b'f' => "a boolean",
                    b'n' => "null",
                    _ => "a number",
                };
                while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    return None;
                }
                match &self.text[start..self.pos] {
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    _ => Kind::Scalar(name),
                }
            }
        };
        Some(Node {
            span: start..self.pos,
            kind,
        })
    }

    /// A string literal at the current position, decoded by `serde_json`.
    fn string(&mut self) -> Option<(String, Range<usize>)> {
        let start = self.pos;
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        loop {
            match self.peek()? {
                b'\\' => self.pos += 2,
                b'"' => break,
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        let literal = self.text.get(start..self.pos)?;
        let value = serde_json::from_str(literal).ok()?;
        Some((value, start..self.pos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(node: &Node) -> Vec<(&str, Range<usize>)> {
        match &node.kind {
            Kind::Table(entries) => entries
                .iter()
                .map(|e| (e.key.as_str(), e.key_span.clone()))
                .collect(),
            other => panic!("not a table: {other:?}"),
        }
    }

    #[test]
    fn line_index_counts_characters_from_one() {
        let index = LineIndex::new("ab\nçd\n\nx");
        assert_eq!(index.position(0), (1, 1));
        assert_eq!(index.position(2), (1, 3));
        assert_eq!(index.position(3), (2, 1));
        // `ç` is two bytes but one column.
        assert_eq!(index.position(5), (2, 2));
        assert_eq!(index.position(7), (3, 1));
        assert_eq!(index.position(8), (4, 1));
        assert_eq!(index.position(99), (4, 2));
    }

    #[test]
    fn toml_tree_keeps_spans_of_keys_and_array_items() {
        let text = "[[policy]]\nid = \"x\"\ncommands = [\"a b\", 3]\n";
        let root = parse_toml(text).unwrap();
        let Kind::Table(entries) = &root.kind else {
            panic!()
        };
        let Kind::Array(policies) = &entries[0].node.kind else {
            panic!()
        };
        assert_eq!(keys(&policies[0])[1], ("commands", 20..28));
        let Kind::Table(fields) = &policies[0].kind else {
            panic!()
        };
        let Kind::Array(items) = &fields[1].node.kind else {
            panic!()
        };
        assert_eq!(&text[items[0].span.clone()], "\"a b\"");
        assert!(matches!(&items[0].kind, Kind::String(s) if s == "a b"));
        assert!(matches!(items[1].kind, Kind::Integer(_)));
    }

    #[test]
    fn toml_errors_have_positions() {
        let err = parse_toml("a = 1\nb = = 2\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 5));
        let err = parse_toml("[[policy]]\nid = 1979-05-27\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 6));
        assert_eq!(
            err.message,
            "dates and times are not allowed in policy files"
        );
    }

    /// Found by fuzzing (policy_toml): toml's message for some syntax
    /// errors is empty, leaving a diagnostic that said nothing.
    #[test]
    fn every_toml_syntax_error_has_a_message() {
        let err = parse_toml("# comment\u{b}\n").unwrap_err();
        assert_eq!((err.line, err.column), (1, 10));
        assert_eq!(err.message, "invalid TOML: unexpected character '\\u{b}'");
        for text in [
            "# comment\u{b}\na = 1\n",
            "a = \"x\u{7f}\"\n",
            "a = 1\u{0}\n",
        ] {
            let err = parse_toml(text).unwrap_err();
            assert!(!err.message.trim().is_empty(), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn json_tree_has_exact_spans() {
        let text = "{\"id\": \"x\",\n \"list\": [\"a\\\"b\", {\"k\": null}, -1.5e3, true],\n \"id\": \"y\"}";
        let root = parse_json(text).unwrap();
        assert_eq!(root.span, 0..text.len());
        let found = keys(&root);
        assert_eq!(found.len(), 3, "duplicate keys are kept");
        assert_eq!(&text[found[1].1.clone()], "\"list\"");
        let Kind::Table(entries) = &root.kind else {
            panic!()
        };
        let Kind::Array(items) = &entries[1].node.kind else {
            panic!()
        };
        assert!(matches!(&items[0].kind, Kind::String(s) if s == "a\"b"));
        assert_eq!(&text[items[0].span.clone()], "\"a\\\"b\"");
        assert_eq!(&text[items[1].span.clone()], "{\"k\": null}");
        assert!(matches!(items[2].kind, Kind::Scalar("a number")));
        assert_eq!(&text[items[2].span.clone()], "-1.5e3");
        // Booleans keep their value (a role's `allow_debugging`).
        assert!(matches!(items[3].kind, Kind::Bool(true)));
        assert_eq!(items[3].kind.type_name(), "a boolean");
    }

    #[test]
    fn json_errors_have_positions() {
        let err = parse_json("{\n  \"id\": \"x\",\n}").unwrap_err();
        assert_eq!((err.line, err.column), (3, 1));
        assert_eq!(err.message, "trailing comma");
    }
}
