//! Text from the services, made safe for a terminal: requests' reasons,
//! audit fields and the like are chosen by other users (or by a compromised
//! gateway), and a raw escape sequence could rewrite what an approver reads
//! before typing a code.

use std::borrow::Cow;

/// `text` with every control character but tab shown as a Rust escape
/// (`\u{1b}`), unchanged when there is none.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| {
                if is_unsafe(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Whether `text` holds a control character but tab.
pub fn has_controls(text: &str) -> bool {
    text.chars().any(is_unsafe)
}

fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_become_visible_and_plain_text_is_untouched() {
        assert_eq!(
            text("plan the staging change\tnow"),
            "plan the staging change\tnow"
        );
        assert_eq!(text("a\u{1b}[2Kb\nc"), "a\\u{1b}[2Kb\\u{a}c");
        assert!(has_controls("x\u{9b}"));
        assert!(!has_controls("x\ty"));
    }
}
