//! A load client for the proxy benchmark, run as the agent (the proxy
//! identifies its caller by the connecting process's uid):
//!
//!   airlock-http-load (--unix SOCKET | --tcp ADDR) --path PATH
//!       --connections C --requests N
//!
//! sends N GETs for PATH over C kept-alive HTTP/1.1 connections at once
//! (each connection one request at a time), checks that every answer is
//! 200 with the upstream's body, and prints one JSON line: requests,
//! seconds, requests per second, and latency percentiles in microseconds.
//! Any other answer is an error (exit 1): a benchmark of refusals would
//! measure nothing.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

enum Target {
    Unix(String),
    Tcp(String),
}

struct Load {
    target: Target,
    path: String,
    connections: usize,
    requests: usize,
}

fn parse() -> Result<Load, String> {
    let mut args = std::env::args().skip(1);
    let (mut target, mut path, mut connections, mut requests) = (None, None, 1, 1000);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--unix" => target = Some(Target::Unix(value()?)),
            "--tcp" => target = Some(Target::Tcp(value()?)),
            "--path" => path = Some(value()?),
            "--connections" => connections = value()?.parse().map_err(|e| format!("{e}"))?,
            "--requests" => requests = value()?.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Load {
        target: target.ok_or("--unix or --tcp")?,
        path: path.ok_or("--path")?,
        connections: connections.max(1),
        requests,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(target: &Target) -> Result<Sender, String> {
    macro_rules! handshake {
        ($stream:expr) => {{
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new($stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender
        }};
    }
    Ok(match target {
        Target::Unix(path) => handshake!(tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| format!("{path}: {e}"))?),
        Target::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            handshake!(stream)
        }
    })
}

/// One connection's share: requests until the shared count runs out.
async fn worker(load: Arc<Load>, next: Arc<AtomicUsize>) -> Result<Vec<Duration>, String> {
    let mut sender = connect(&load.target).await?;
    let host = match &load.target {
        Target::Unix(_) => "localhost".to_owned(),
        Target::Tcp(addr) => addr.clone(),
    };
    let mut latencies = Vec::new();
    while next.fetch_add(1, Ordering::Relaxed) < load.requests {
        let request = Request::get(load.path.as_str())
            .header("host", host.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        latencies.push(started.elapsed());
        if status != 200 || !body.starts_with(b"upstream saw GET") {
            return Err(format!(
                "answer {status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
    }
    Ok(latencies)
}

fn main() {
    let load = match parse() {
        Ok(load) => Arc::new(load),
        Err(e) => {
            eprintln!("airlock-http-load: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let workers: Vec<_> = (0..load.connections)
            .map(|_| tokio::spawn(worker(load.clone(), next.clone())))
            .collect();
        let mut all = Vec::with_capacity(load.requests);
        for worker in workers {
            all.extend(worker.await.map_err(|e| e.to_string())??);
        }
        Ok::<_, String>((all, started.elapsed()))
    });
    let (mut latencies, elapsed) = match result {
        Ok(done) => done,
        Err(e) => {
            eprintln!("airlock-http-load: {e}");
            std::process::exit(1);
        }
    };
    latencies.sort();
    let at = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0, |d| d.as_micros())
    };
    println!(
        "{}",
        serde_json::json!({
            "requests": latencies.len(),
            "seconds": elapsed.as_secs_f64(),
            "per_second": latencies.len() as f64 / elapsed.as_secs_f64(),
            "p50_us": at(0.5),
            "p99_us": at(0.99),
            "max_us": at(1.0),
        })
    );
}
