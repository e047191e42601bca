//! An MCP client for the tests and benchmarks: airlock-mcp as an agent's
//! host runs it, spoken to over stdio (newline-delimited JSON-RPC 2.0),
//! with a reader thread so that every wait for an answer has a deadline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::proxy::Proxy;
use crate::{System, TestUser, AGENT};

/// How long any single answer may take.
const ANSWER_DEADLINE: Duration = Duration::from_secs(20);

/// airlock-mcp as a child process of the test, as an agent runs it.
pub struct McpClient {
    pub child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u64,
}

impl McpClient {
    /// Starts airlock-mcp as the agent against `system`'s bus and `proxy`,
    /// and completes the MCP handshake; returns the server's initialize result.
    pub fn start(system: &System, proxy: &Proxy) -> (McpClient, Value) {
        Self::start_as(system, proxy, &AGENT)
    }

    /// The same, as `user`.
    pub fn start_as(system: &System, proxy: &Proxy, user: &TestUser) -> (McpClient, Value) {
        let socket = proxy.socket.to_str().unwrap().to_owned();
        Self::spawn(system.as_user(
            user,
            &system.bin("airlock-mcp"),
            &["--proxy-socket", &socket],
            "/usr/bin:/bin",
        ))
    }

    /// `command` (which runs airlock-mcp, directly or in a governed
    /// session) with its stdio piped to this client, after the handshake.
    pub fn spawn(mut command: std::process::Command) -> (McpClient, Value) {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        // A reader thread, so every wait for an answer has a deadline.
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut client = McpClient {
            child,
            stdin,
            lines,
            next_id: 1,
        };
        let init = client.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "airlock-tests", "version": "1"},
            }),
        );
        client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        (client, init)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// The next message from the server.
    pub fn recv(&mut self) -> Value {
        match self.lines.recv_timeout(ANSWER_DEADLINE) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the server wrote a non-JSON line ({e}): {line}")),
            Err(RecvTimeoutError::Timeout) => panic!("no answer from airlock-mcp in time"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("airlock-mcp closed stdout: {:?}", self.child.try_wait())
            }
        }
    }

    /// The answer to request `id`, skipping notifications.
    pub fn answer_to(&mut self, id: &Value) -> Value {
        let deadline = Instant::now() + ANSWER_DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "no answer to request {id}");
            let message = self.recv();
            assert_eq!(message["jsonrpc"], "2.0", "{message}");
            if &message["id"] == id {
                return message;
            }
            // Notifications, and errors about lines that held no id.
            assert!(
                message["id"].is_null(),
                "an answer to another request: {message}"
            );
        }
    }

    /// A request's full answer (result or error).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.answer_to(&id)
    }

    /// A request's result; an error answer fails the test.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let answer = self.call(method, params);
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// tools/call `name`: whether it is an error, and its text.
    pub fn tool(&mut self, name: &str, arguments: Value) -> (bool, String) {
        let result = self.request("tools/call", json!({"name": name, "arguments": arguments}));
        let text = result["content"]
            .as_array()
            .unwrap_or_else(|| panic!("no content: {result}"))
            .iter()
            .map(|c| c["text"].as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        (result["isError"] == true, text)
    }

    /// The process id of what the client started (airlock-mcp, or the
    /// `airlockctl run` around it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn tool_names(&mut self) -> Vec<String> {
        let listed = self.request("tools/list", json!({}));
        let mut names: Vec<String> = listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
