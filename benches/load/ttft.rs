//! A streaming load probe for `benches/load.sh`: CONCURRENCY clients each send the same
//! streaming chat request over and over for SECONDS (one keep-alive connection each) and
//! time every answer from the request to its first content token (the first OpenAI chunk
//! whose `delta.content` is not empty) and to its end. A stream that does not answer 200 or
//! does not end with `data: [DONE]` is an error.
//!
//! ```text
//! cargo run --release --example ttft -- URL CONCURRENCY SECONDS BODY_FILE [AUTHORIZATION]
//! ```
//!
//! Prints one line of `key=value` fields: `requests errors rps ttft_p50_us ttft_p99_us
//! total_p50_us total_p99_us`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

/// What one stream took, in microseconds.
struct Sample {
    ttft: u64,
    total: u64,
}

#[derive(Default)]
struct Results {
    samples: Vec<Sample>,
    errors: u64,
    first_error: Option<String>,
}

/// The index of the first non-empty `"content":"…"` in `body`, if any.
fn first_content(body: &[u8]) -> Option<usize> {
    const NEEDLE: &[u8] = b"\"content\":\"";
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&body[from..], NEEDLE) {
        let after = from + i + NEEDLE.len();
        match body.get(after) {
            Some(b'"') => from = after,
            Some(_) => return Some(after),
            None => return None,
        }
    }
    None
}

async fn one(
    client: &reqwest::Client,
    url: &str,
    body: &Bytes,
    auth: Option<&str>,
) -> Result<Sample, String> {
    let start = Instant::now();
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.clone());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let mut resp = req.send().await.map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let mut seen = Vec::new();
    let mut ttft = None;
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        seen.extend_from_slice(&chunk);
        if ttft.is_none() && first_content(&seen).is_some() {
            ttft = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    let trimmed = seen.trim_ascii_end();
    if !trimmed.ends_with(b"data: [DONE]") {
        return Err("stream did not end with data: [DONE]".into());
    }
    let ttft = ttft.ok_or("no content token in the stream")?;
    Ok(Sample {
        ttft: ttft.as_micros() as u64,
        total: total.as_micros() as u64,
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: ttft URL CONCURRENCY SECONDS BODY_FILE [AUTHORIZATION]");
        std::process::exit(2);
    }
    let url = args[0].clone();
    let (Ok(concurrency), Ok(seconds)) = (args[1].parse::<usize>(), args[2].parse::<f64>()) else {
        eprintln!("CONCURRENCY and SECONDS must be numbers");
        std::process::exit(2);
    };
    let body = match std::fs::read(&args[3]) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            eprintln!("{}: {e}", args[3]);
            std::process::exit(2);
        }
    };
    let auth = args.get(4).cloned();
    let threads = std::env::var("PROBE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let results = Arc::new(Mutex::new(Results::default()));
    let duration = Duration::from_secs_f64(seconds);
    let elapsed = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(duration + Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()
            .expect("http client");
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let (client, url, body, auth, results) = (
                client.clone(),
                url.clone(),
                body.clone(),
                auth.clone(),
                results.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < duration {
                    let r = one(&client, &url, &body, auth.as_deref()).await;
                    let mut res = results.lock();
                    match r {
                        Ok(s) => res.samples.push(s),
                        Err(e) => {
                            res.errors += 1;
                            res.first_error.get_or_insert(e);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        start.elapsed()
    });
    let res = results.lock();
    let mut ttft: Vec<u64> = res.samples.iter().map(|s| s.ttft).collect();
    let mut total: Vec<u64> = res.samples.iter().map(|s| s.total).collect();
    ttft.sort_unstable();
    total.sort_unstable();
    if let Some(e) = &res.first_error {
        eprintln!("ttft: {} error(s), the first: {e}", res.errors);
    }
    println!(
        "requests={} errors={} rps={:.1} ttft_p50_us={} ttft_p99_us={} total_p50_us={} total_p99_us={}",
        res.samples.len(),
        res.errors,
        res.samples.len() as f64 / elapsed.as_secs_f64(),
        percentile(&ttft, 0.50),
        percentile(&ttft, 0.99),
        percentile(&total, 0.50),
        percentile(&total, 0.99),
    );
}
