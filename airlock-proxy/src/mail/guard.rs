//! Bounds on what an IMAP server may make the proxy hold.
//!
//! async-imap buffers a whole response and, on reading a literal's size
//! (`{999999999}`), grows its buffer to that size at once, up to 512 MiB.
//! [`Guarded`] sits between it and the socket: it refuses a literal
//! announced larger than [`MAX_LITERAL`] before async-imap sees the
//! announcement, and a connection that sends more than [`MAX_SESSION`] in
//! all. Every byte is scanned, literals' contents too: a message whose
//! text holds such an announcement is refused rather than risk missing a
//! real one (a clear error, never a large allocation).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest literal (one message, or one header block) accepted.
pub const MAX_LITERAL: u64 = 40 << 20;
/// The most one operation's connection may receive.
pub const MAX_SESSION: u64 = 64 << 20;

/// A literal's announcement, `{digits}` or `{digits+}` and CRLF, as the
/// scanner has seen it so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Text,
    /// After `{`, the digits so far (saturating).
    Digits(u64),
    /// After `+` (LITERAL+ form).
    Plus(u64),
    /// After `}`.
    Closed(u64),
    /// After `}` and CR.
    Cr(u64),
}

/// Scans bytes for literal announcements; an error names the first one
/// over the bound.
#[derive(Debug)]
pub struct LiteralScanner {
    state: Scan,
    received: u64,
}

impl LiteralScanner {
    pub fn new() -> Self {
        LiteralScanner {
            state: Scan::Text,
            received: 0,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.received += bytes.len() as u64;
        if self.received > MAX_SESSION {
            return Err(io::Error::other(format!(
                "the mail server sent more than {} MiB for one operation",
                MAX_SESSION >> 20
            )));
        }
        for &b in bytes {
            self.state = match (self.state, b) {
                (_, b'{') => Scan::Digits(0),
                (Scan::Digits(n), b'0'..=b'9') => {
                    Scan::Digits(n.saturating_mul(10).saturating_add(u64::from(b - b'0')))
                }
                (Scan::Digits(n), b'+') => Scan::Plus(n),
                (Scan::Digits(n) | Scan::Plus(n), b'}') => Scan::Closed(n),
                (Scan::Closed(n), b'\r') => Scan::Cr(n),
                (Scan::Cr(n), b'\n') => {
                    if n > MAX_LITERAL {
                        return Err(io::Error::other(format!(
                            "the mail server announced a {n}-byte literal; Airlock reads at \
                             most {} MiB at once",
                            MAX_LITERAL >> 20
                        )));
                    }
                    Scan::Text
                }
                _ => Scan::Text,
            };
        }
        Ok(())
    }
}

/// A stream whose incoming bytes pass a [`LiteralScanner`].
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    scanner: LiteralScanner,
}

impl<S> Guarded<S> {
    pub fn new(inner: S) -> Self {
        Guarded {
            inner,
            scanner: LiteralScanner::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let start = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = &buf.filled()[start..];
                if let Err(e) = this.scanner.feed(fresh) {
                    // Nothing of the refused announcement reaches the parser.
                    buf.set_filled(start);
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_literals_pass_and_a_huge_one_is_refused_across_reads() {
        let mut scanner = LiteralScanner::new();
        scanner
            .feed(b"* 1 FETCH (UID 1 BODY[] {12}\r\nhello world!)\r\n")
            .unwrap();
        scanner.feed(b"* 2 FETCH (BODY[] {9999").unwrap();
        let error = scanner.feed(b"99999}\r\n").unwrap_err();
        assert!(
            error.to_string().contains("999999999-byte literal"),
            "{error}"
        );
        let mut plus = LiteralScanner::new();
        assert!(plus.feed(b"{99999999999999999999999+}\r\n").is_err());
        // Braces that are not an announcement are text.
        LiteralScanner::new()
            .feed(b"* OK [ALERT] {99999999999} is not a literal\r\n")
            .unwrap();
    }

    #[test]
    fn a_connection_is_bounded_in_all() {
        let mut scanner = LiteralScanner::new();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(MAX_SESSION >> 20) {
            scanner.feed(&chunk).unwrap();
        }
        assert!(scanner.feed(b"x").is_err());
    }
}
