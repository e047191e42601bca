//! The IMAP commands the proxy can send, and no others.
//!
//! [`ReadOnlySession`] owns the async-imap session privately and exposes
//! only EXAMINE, STATUS, UID SEARCH (from a typed [`SearchKey`]), UID FETCH
//! (of typed [`FetchItems`], always `BODY.PEEK`) and LOGOUT. STORE,
//! EXPUNGE, APPEND, MOVE, COPY, SELECT and a raw command cannot be written
//! outside this file, and nothing here writes them: that is what makes a
//! read-only grant read-only for mail.

use std::fmt::Debug;

use async_imap::types::Fetch;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Greeting;

/// What a message is searched by.
pub enum SearchKey<'a> {
    All,
    /// Header or body text; printable ASCII, quoted here.
    Text(&'a str),
}

impl SearchKey<'_> {
    fn render(&self) -> String {
        match self {
            SearchKey::All => "ALL".into(),
            SearchKey::Text(text) => format!("TEXT {}", quote(text)),
        }
    }
}

/// An IMAP quoted string. Callers pass printable ASCII only (see
/// [`printable_ascii`]), so no CR, LF or NUL can end the command early.
fn quote(text: &str) -> String {
    debug_assert!(printable_ascii(text));
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether `text` can travel as an IMAP quoted string.
pub fn printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// What is fetched of each message; every body part is `BODY.PEEK`, which
/// leaves `\Seen` alone.
#[derive(Clone, Copy)]
pub enum FetchItems {
    /// Flags, size and the header.
    Summary,
    /// Flags, size and the whole message.
    Whole,
}

impl FetchItems {
    fn render(self) -> &'static str {
        match self {
            FetchItems::Summary => "(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER])",
            FetchItems::Whole => "(UID FLAGS RFC822.SIZE BODY.PEEK[])",
        }
    }
}

pub struct ReadOnlySession<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    session: async_imap::Session<S>,
}

/// Counts from STATUS.
pub struct Counts {
    pub messages: u32,
    pub unseen: u32,
}

impl<S> ReadOnlySession<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    /// Reads the greeting (unless it came before STARTTLS) and logs in.
    /// The login strings are the caller's to zeroize.
    pub async fn login(
        stream: S,
        greeting: Greeting,
        user: &str,
        password: &str,
    ) -> Result<Self, String> {
        let mut client = async_imap::Client::new(stream);
        if greeting == Greeting::Expected {
            match client.read_response().await {
                Ok(Some(_greeting)) => {}
                Ok(None) => return Err("the mail server closed the connection at once".into()),
                Err(e) => return Err(format!("the mail server's greeting: {}", short(&e))),
            }
        }
        let session = client
            .login(user, password)
            .await
            .map_err(|(e, _)| format!("login to the mail server failed: {}", short(&e)))?;
        Ok(ReadOnlySession { session })
    }

    /// EXAMINE: opens `mailbox` read-only; returns how many messages it
    /// holds.
    pub async fn examine(&mut self, mailbox: &str) -> Result<u32, String> {
        let mailbox = self
            .session
            .examine(mailbox)
            .await
            .map_err(|e| format!("EXAMINE {mailbox:?}: {}", short(&e)))?;
        Ok(mailbox.exists)
    }

    /// STATUS (MESSAGES UNSEEN): needs no EXAMINE.
    pub async fn status(&mut self, mailbox: &str) -> Result<Counts, String> {
        let status = self
            .session
            .status(mailbox, "(MESSAGES UNSEEN)")
            .await
            .map_err(|e| format!("STATUS {mailbox:?}: {}", short(&e)))?;
        Ok(Counts {
            messages: status.exists,
            unseen: status.unseen.unwrap_or(0),
        })
    }

    /// UID SEARCH in the examined mailbox: the UIDs, ascending.
    pub async fn uid_search(&mut self, key: SearchKey<'_>) -> Result<Vec<u32>, String> {
        let found = self
            .session
            .uid_search(key.render())
            .await
            .map_err(|e| format!("SEARCH: {}", short(&e)))?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// UID FETCH of `uids`, each handed to `each` as it arrives (so that
    /// only one message is held at a time).
    pub async fn uid_fetch(
        &mut self,
        uids: &[u32],
        items: FetchItems,
        mut each: impl FnMut(&Fetch),
    ) -> Result<(), String> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut fetches = self
            .session
            .uid_fetch(set, items.render())
            .await
            .map_err(|e| format!("FETCH: {}", short(&e)))?;
        while let Some(fetch) = fetches.next().await {
            let fetch = fetch.map_err(|e| format!("FETCH: {}", short(&e)))?;
            each(&fetch);
        }
        Ok(())
    }

    pub async fn logout(mut self) {
        let _ = self.session.logout().await;
    }
}

/// An error as a caller may read it: parse errors quote what the server
/// sent, which is cut short here.
pub fn short(error: &dyn std::fmt::Display) -> String {
    const MAX: usize = 300;
    let text = error.to_string();
    if text.chars().count() <= MAX {
        text
    } else {
        let mut cut: String = text.chars().take(MAX).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_quoted_and_fetches_peek() {
        assert_eq!(
            SearchKey::Text(r#"say "hi" \o/"#).render(),
            r#"TEXT "say \"hi\" \\o/""#
        );
        assert!(!printable_ascii("a\r\nUID STORE 1 +FLAGS (\\Deleted)"));
        assert!(!printable_ascii("Grüße"));
        for items in [FetchItems::Summary, FetchItems::Whole] {
            assert!(items.render().contains("BODY.PEEK["));
            assert!(!items.render().contains(" BODY["));
        }
    }
}
