//! A minimal MCP client for benchmarks: airlock-mcp as the agent, spoken
//! to over stdio as an agent's host does (newline-delimited JSON-RPC 2.0),
//! with a reader thread so that every wait has a deadline.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use serde_json::{json, Value};

use crate::proxy::Proxy;
use crate::{System, AGENT};

pub struct Mcp {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_id: u64,
}

impl Mcp {
    /// airlock-mcp as the agent against `system` and `proxy`, initialized.
    pub fn start(system: &System, proxy: &Proxy) -> Mcp {
        let socket = proxy.socket.to_str().unwrap().to_owned();
        let mut child = system
            .as_user(
                &AGENT,
                &system.bin("airlock-mcp"),
                &["--proxy-socket", &socket],
                "/usr/bin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut mcp = Mcp {
            child,
            stdin,
            lines,
            next_id: 1,
        };
        mcp.call(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "airlock-bench", "version": "1"},
            }),
        );
        mcp.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        mcp
    }

    pub fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.stdin.write_all(&line).unwrap();
        self.stdin.flush().unwrap();
    }

    /// A request's result (an error answer fails the bench).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("no answer from airlock-mcp: {e}"));
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    /// tools/call `name`; a tool error fails the bench.
    pub fn tool(&mut self, name: &str, arguments: &Value) -> Value {
        let result = self.call(
            "tools/call",
            json!({"name": name, "arguments": arguments.clone()}),
        );
        assert!(result["isError"] != true, "{name}: {result}");
        result
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
