//! The stream measuring client of `loadtest/`: holds N streaming chat requests open at once (one
//! keep-alive connection each), and records time to first token, the gaps between chunks, and
//! failures (a status other than 200, or a stream that ends without `data: [DONE]`).
//!
//! ```text
//! cargo run --release --example stream_load -- URL STREAMS SECONDS [MODEL] [BEARER]
//! ```
//!
//! Prints one JSON object: counts and quantiles in microseconds. HTTP load without streams uses
//! wrk and oha; this exists because neither measures per-chunk timing.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)] // a command-line tool

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Default)]
struct Samples {
    ttft_us: Vec<u32>,
    gap_us: Vec<u32>,
    streams: u64,
    errors: u64,
    chunks: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url: http::Uri = args.get(1).expect("URL").parse().expect("a URL");
    let streams: usize = args.get(2).map_or(100, |s| s.parse().expect("STREAMS"));
    let seconds: u64 = args.get(3).map_or(10, |s| s.parse().expect("SECONDS"));
    let model = args.get(4).cloned().unwrap_or_else(|| "bench".to_owned());
    let bearer = args.get(5).cloned();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let samples = runtime.block_on(run(url, streams, Duration::from_secs(seconds), model, bearer));
    let q = |v: &mut Vec<u32>, p: f64| -> u32 {
        if v.is_empty() {
            return 0;
        }
        v.sort_unstable();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let (mut t, mut g) = (samples.ttft_us, samples.gap_us);
    println!(
        "{{\"streams_completed\":{},\"errors\":{},\"chunks\":{},\"ttft_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{}}},\"gap_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}}}}",
        samples.streams,
        samples.errors,
        samples.chunks,
        q(&mut t, 0.5),
        q(&mut t, 0.9),
        q(&mut t, 0.99),
        q(&mut t, 0.999),
        q(&mut g, 0.5),
        q(&mut g, 0.9),
        q(&mut g, 0.99),
        q(&mut g, 0.999),
        q(&mut g, 1.0),
    );
}

async fn run(
    url: http::Uri,
    streams: usize,
    duration: Duration,
    model: String,
    bearer: Option<String>,
) -> Samples {
    let body = Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"stream please"}}],"stream":true}}"#
    ));
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..streams {
        let (url, body, bearer) = (url.clone(), body.clone(), bearer.clone());
        tasks.spawn(async move {
            // Stagger the starts over 1 s so 5,000 connects do not land in one instant.
            tokio::time::sleep(Duration::from_micros((i as u64 * 1_000_000) / streams.max(1) as u64)).await;
            worker(url, body, bearer, deadline).await
        });
    }
    let mut all = Samples::default();
    while let Some(done) = tasks.join_next().await {
        let s = done.expect("worker");
        all.ttft_us.extend(s.ttft_us);
        all.gap_us.extend(s.gap_us);
        all.streams += s.streams;
        all.errors += s.errors;
        all.chunks += s.chunks;
    }
    all
}

/// Sends streams one after another on one connection until `deadline`.
async fn worker(url: http::Uri, body: Bytes, bearer: Option<String>, deadline: Instant) -> Samples {
    let mut s = Samples::default();
    let authority = url.authority().expect("host:port").as_str().to_owned();
    let mut sender = None;
    while Instant::now() < deadline {
        if sender.is_none() {
            let Ok(tcp) = TcpStream::connect(&authority).await else {
                s.errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let Ok((send, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await else {
                s.errors += 1;
                continue;
            };
            tokio::spawn(conn);
            sender = Some(send);
        }
        let Some(send) = sender.as_mut() else { continue };
        let mut req = http::Request::post(url.clone())
            .header("host", &authority)
            .header("content-type", "application/json")
            .header("x-relay-token-id", "load");
        if let Some(b) = &bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        let req = req.body(Full::new(body.clone())).expect("request");
        let start = Instant::now();
        let res = match send.send_request(req).await {
            Ok(res) => res,
            Err(_) => {
                s.errors += 1;
                sender = None;
                continue;
            }
        };
        if res.status() != http::StatusCode::OK {
            s.errors += 1;
            let _ = res.into_body().collect().await;
            continue;
        }
        let mut body = res.into_body();
        let (mut last, mut first, mut done) = (start, true, false);
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Some(data) = frame.data_ref() else { continue };
            let now = Instant::now();
            if first {
                s.ttft_us.push(now.duration_since(start).as_micros().min(u32::MAX as u128) as u32);
                first = false;
            } else {
                s.gap_us.push(now.duration_since(last).as_micros().min(u32::MAX as u128) as u32);
            }
            last = now;
            s.chunks += 1;
            if data.windows(12).any(|w| w == b"data: [DONE]") {
                done = true;
            }
        }
        if done {
            s.streams += 1;
        } else {
            s.errors += 1;
            sender = None;
        }
    }
    s
}
