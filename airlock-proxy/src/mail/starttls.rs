//! STARTTLS (RFC 9051 6.2.1): the plain part of an `imap://` connection
//! that `starttls = true` upgrades, up to the moment TLS begins.
//!
//! Written by hand, not through async-imap: its client buffers what it
//! reads, and anything read past the tagged `OK` before TLS begins would be
//! bytes a man in the middle injected. Here the server's lines are read one
//! byte at a time, so the TLS handshake starts exactly after the `OK` line
//! and injected bytes reach the TLS parser, which refuses them. Nothing of
//! the login is sent before TLS: a server that greets with `PREAUTH`, does
//! not offer STARTTLS or refuses it gets only `STARTTLS` itself.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A server line longer than this is refused (a greeting with its
/// capabilities fits many times over).
const MAX_LINE: usize = 8 * 1024;
/// Untagged lines the server may send before answering STARTTLS.
const MAX_UNTAGGED: usize = 32;
const TAG: &str = "A0";

/// Reads the greeting and asks for TLS; on `Ok` the stream is at the first
/// byte of the server's TLS handshake and the session must not expect a
/// second greeting.
pub async fn upgrade<S>(stream: &mut S) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = read_line(stream).await?;
    if starts_with_word(&greeting, "* PREAUTH") {
        return Err(
            "the mail server logged in before TLS (PREAUTH), so STARTTLS is not possible; \
             the login was not sent"
                .into(),
        );
    }
    if !starts_with_word(&greeting, "* OK") {
        return Err(format!(
            "the mail server's greeting is not OK: {}",
            printable(&greeting)
        ));
    }
    stream
        .write_all(format!("{TAG} STARTTLS\r\n").as_bytes())
        .await
        .map_err(|e| format!("asking the mail server for STARTTLS: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("asking the mail server for STARTTLS: {e}"))?;
    for _ in 0..=MAX_UNTAGGED {
        let line = read_line(stream).await?;
        if line.starts_with(b"* ") || line.starts_with(b"+") {
            continue;
        }
        if starts_with_word(&line, &format!("{TAG} OK")) {
            return Ok(());
        }
        if starts_with_word(&line, &format!("{TAG} NO"))
            || starts_with_word(&line, &format!("{TAG} BAD"))
        {
            return Err(format!(
                "the mail server does not offer STARTTLS ({}); the login was not sent",
                printable(&line)
            ));
        }
        return Err(format!(
            "the mail server answered STARTTLS with {}",
            printable(&line)
        ));
    }
    Err("the mail server did not answer STARTTLS".into())
}

/// One line up to CRLF (without it), read byte by byte.
async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    loop {
        let byte = match stream.read_u8().await {
            Ok(byte) => byte,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err("the mail server closed the connection before TLS".into())
            }
            Err(e) => return Err(format!("reading from the mail server: {e}")),
        };
        if byte == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        if line.len() >= MAX_LINE {
            return Err(format!(
                "the mail server sent a line of more than {MAX_LINE} bytes before TLS"
            ));
        }
        line.push(byte);
    }
}

/// Whether `line` starts with `words` (ASCII, case-insensitive) followed
/// by a space or the end of the line.
fn starts_with_word(line: &[u8], words: &str) -> bool {
    line.len() >= words.len()
        && line[..words.len()].eq_ignore_ascii_case(words.as_bytes())
        && matches!(line.get(words.len()), None | Some(b' '))
}

/// A server line as an error may quote it: printable ASCII, cut short.
fn printable(line: &[u8]) -> String {
    const MAX: usize = 200;
    let mut text: String = line
        .iter()
        .take(MAX)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if line.len() > MAX {
        text.push('…');
    }
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `upgrade` against a server that sends `script`; what the
    /// client wrote.
    async fn against(script: &[u8]) -> (Result<(), String>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        server.write_all(script).await.unwrap();
        server.shutdown().await.unwrap();
        let result = upgrade(&mut client).await;
        drop(client);
        let mut written = Vec::new();
        server.read_to_end(&mut written).await.unwrap();
        (result, written)
    }

    #[tokio::test]
    async fn the_upgrade_stops_exactly_after_the_tagged_ok() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        server
            .write_all(
                b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n\
                  * CAPABILITY IMAP4rev1 STARTTLS\r\nA0 OK Begin TLS negotiation now\r\n\
                  \x16\x03\x01",
            )
            .await
            .unwrap();
        upgrade(&mut client).await.unwrap();
        // The next bytes are the handshake's, untouched.
        let mut next = [0u8; 3];
        client.read_exact(&mut next).await.unwrap();
        assert_eq!(&next, b"\x16\x03\x01");
        drop(client);
        let mut written = Vec::new();
        server.read_to_end(&mut written).await.unwrap();
        assert_eq!(written, b"A0 STARTTLS\r\n");
    }

    #[tokio::test]
    async fn a_server_without_starttls_or_logged_in_in_the_clear_gets_nothing_more() {
        for (script, why) in [
            (
                &b"* OK ready\r\nA0 BAD unknown command\r\n"[..],
                "does not offer STARTTLS",
            ),
            (
                b"* OK ready\r\nA0 NO not now\r\n",
                "does not offer STARTTLS",
            ),
            (b"* PREAUTH welcome back\r\n", "PREAUTH"),
            (b"* BYE go away\r\n", "greeting is not OK"),
            (b"* OK ready\r\nA0 WHAT\r\n", "answered STARTTLS with"),
            (b"* OK ready\r\n", "closed the connection before TLS"),
            (b"* OKAY\r\n", "greeting is not OK"),
        ] {
            let (result, written) = against(script).await;
            let error = result.expect_err(why);
            assert!(error.contains(why), "{error}");
            assert!(
                written.is_empty() || written == b"A0 STARTTLS\r\n",
                "{written:?}"
            );
        }
    }

    #[tokio::test]
    async fn endless_lines_are_refused() {
        let mut long = b"* OK ".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_LINE));
        long.extend(b"\r\n");
        let (result, _) = against(&long).await;
        assert!(result.unwrap_err().contains("more than"));
        let mut chatty = b"* OK ready\r\n".to_vec();
        for _ in 0..=MAX_UNTAGGED {
            chatty.extend(b"* NOOP\r\n");
        }
        chatty.extend(b"A0 OK go\r\n");
        let (result, _) = against(&chatty).await;
        assert!(result.unwrap_err().contains("did not answer"));
    }
}
