//! stdin and stdout for the MCP transport, with what rmcp leaves out.
//!
//! rmcp drops a line of malformed JSON without a word (rust-sdk#938: no id
//! to answer to). JSON-RPC 2.0 asks for a Parse error (-32700) with id
//! null, and a client that sent a broken request deserves to know rather
//! than wait for an answer that never comes. So lines from stdin are read
//! here first: at most [`crate::server::MAX_LINE`] bytes of one line are
//! ever held (a longer one is dropped and answered with Invalid Request),
//! a line that is not JSON is answered with a Parse error, and every other
//! line goes on whole, through a pipe, to rmcp's own transport (which keeps
//! its checks of what a message is). rmcp's output and these answers are
//! written to stdout by one task a whole line at a time, so they never
//! interleave.

use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How much of rmcp's input or output the pipes hold.
const PIPE: usize = 64 * 1024;

/// The ends rmcp's transport reads and writes, and the task writing stdout
/// (it ends once rmcp's output does).
pub struct Stdio {
    pub read: DuplexStream,
    pub write: DuplexStream,
    pub writer: JoinHandle<()>,
}

/// Starts the tasks between the process's stdin/stdout and rmcp.
pub fn start(max_line: usize) -> Stdio {
    let (rmcp_read, to_rmcp) = tokio::io::duplex(PIPE);
    let (rmcp_write, from_rmcp) = tokio::io::duplex(PIPE);
    let (answers, answered) = mpsc::channel(16);
    tokio::spawn(read_input(
        tokio::io::BufReader::new(tokio::io::stdin()),
        to_rmcp,
        answers,
        max_line,
    ));
    let writer = tokio::spawn(write_output(
        tokio::io::BufReader::new(from_rmcp),
        answered,
        tokio::io::stdout(),
    ));
    Stdio {
        read: rmcp_read,
        write: rmcp_write,
        writer,
    }
}

enum Line {
    Complete,
    Oversized,
    Eof,
}

/// Reads one line into `line` (its `\n` included), holding at most
/// `max_line` bytes of it. A last line without `\n` is dropped, as rmcp
/// does.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    max_line: usize,
) -> std::io::Result<Line> {
    line.clear();
    let mut oversized = false;
    loop {
        let buf = input.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !oversized {
            if line.len() + take > max_line + 1 {
                oversized = true;
                line.clear();
                line.shrink_to(8 * 1024);
            } else {
                line.extend_from_slice(&buf[..take]);
            }
        }
        input.consume(take);
        if done {
            return Ok(if oversized {
                Line::Oversized
            } else {
                Line::Complete
            });
        }
    }
}

/// An error answer to a line that held no readable id.
fn error_line(code: i32, message: String) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// What to do with one line from the client.
enum Verdict<'a> {
    Skip,
    Pass(&'a [u8]),
    Answer(Vec<u8>),
}

fn judge(line: &[u8]) -> Verdict<'_> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let bare = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    if bare.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Skip;
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(bare) {
        Err(e)
            if matches!(
                e.classify(),
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof
            ) =>
        {
            Verdict::Answer(error_line(-32700, format!("Parse error: {e}")))
        }
        // JSON, a message or not: rmcp judges (and answers -32600).
        _ => Verdict::Pass(line),
    }
}

async fn read_input(
    mut input: impl AsyncBufRead + Unpin,
    mut to_rmcp: impl AsyncWrite + Unpin,
    answers: mpsc::Sender<Vec<u8>>,
    max_line: usize,
) {
    let mut line = Vec::new();
    loop {
        match read_line(&mut input, &mut line, max_line).await {
            Ok(Line::Complete) => {}
            Ok(Line::Oversized) => {
                tracing::warn!("dropped a message over {max_line} bytes");
                let answer = error_line(
                    -32600,
                    format!("Invalid Request: a message is at most {max_line} bytes on one line"),
                );
                if answers.send(answer).await.is_err() {
                    return;
                }
                continue;
            }
            // The client is gone: dropping `to_rmcp` ends the session.
            Ok(Line::Eof) => return,
            Err(e) => {
                tracing::error!("reading stdin: {e}");
                return;
            }
        }
        match judge(&line) {
            Verdict::Skip => {}
            Verdict::Pass(line) => {
                let mut whole = line.to_vec();
                if !whole.ends_with(b"\n") {
                    whole.push(b'\n');
                }
                if to_rmcp.write_all(&whole).await.is_err() {
                    return;
                }
            }
            Verdict::Answer(answer) => {
                tracing::debug!("answered a line that is not JSON");
                if answers.send(answer).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_output(
    mut from_rmcp: impl AsyncBufRead + Unpin,
    mut answers: mpsc::Receiver<Vec<u8>>,
    mut out: impl AsyncWrite + Unpin,
) {
    // Kept across iterations: a read cut short by an answer resumes in it.
    let mut line = Vec::new();
    loop {
        let whole = tokio::select! {
            read = from_rmcp.read_until(b'\n', &mut line) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) if line.ends_with(b"\n") => std::mem::take(&mut line),
                // rmcp's output ended mid-line.
                Ok(_) => break,
            },
            Some(answer) = answers.recv() => answer,
        };
        if out.write_all(&whole).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
    if !line.is_empty() {
        let _ = out.write_all(&line).await;
    }
    while let Ok(answer) = answers.try_recv() {
        let _ = out.write_all(&answer).await;
    }
    let _ = out.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn through(input: &[u8], max_line: usize) -> (Vec<u8>, Vec<serde_json::Value>) {
        let (rmcp_read, to_rmcp) = tokio::io::duplex(PIPE);
        let (tx, mut rx) = mpsc::channel(16);
        read_input(input, to_rmcp, tx, max_line).await;
        let mut passed = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut { rmcp_read }, &mut passed)
            .await
            .unwrap();
        let mut answers = Vec::new();
        while let Ok(answer) = rx.try_recv() {
            answers.push(serde_json::from_slice(&answer).unwrap());
        }
        (passed, answers)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_lines_are_answered_and_good_ones_pass_whole() {
        let input = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n\
            {\"jsonrpc\": \"2.0\", \"id\": 99, \"method\": \n\
            \n\
            [1, 2]\r\n\
            \xff\xfe not utf-8\n\
            {\"pad\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n\
            {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n\
            {\"cut\": ";
        let (passed, answers) = through(input, 48).await;
        assert_eq!(
            String::from_utf8(passed).unwrap(),
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n[1, 2]\r\n\
             {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n"
        );
        let codes: Vec<_> = answers.iter().map(|a| a["error"]["code"].clone()).collect();
        assert_eq!(codes, [json!(-32700), json!(-32700), json!(-32600)]);
        for answer in &answers {
            assert_eq!(answer["jsonrpc"], "2.0");
            assert!(answer["id"].is_null() && answer.get("id").is_some());
        }
        assert!(answers[0]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Parse error"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn output_lines_and_answers_never_interleave() {
        let (mut rmcp_write, from_rmcp) = tokio::io::duplex(8);
        let (tx, rx) = mpsc::channel(16);
        let (out, mut stdout) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(write_output(tokio::io::BufReader::new(from_rmcp), rx, out));
        rmcp_write.write_all(b"{\"a\":").await.unwrap();
        tx.send(error_line(-32700, "Parse error".into()))
            .await
            .unwrap();
        rmcp_write.write_all(b"1}\n").await.unwrap();
        drop(rmcp_write);
        writer.await.unwrap();
        let mut all = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut all)
            .await
            .unwrap();
        let mut lines: Vec<serde_json::Value> = all
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines.sort_by_key(|v| v.get("error").is_some());
        assert_eq!(lines[0], json!({"a": 1}));
        assert_eq!(lines[1]["error"]["code"], -32700);
        assert_eq!(lines.len(), 2);
    }
}
