//! Classification and token counting on prompts of growing size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::api::ChatRequest;
use tollgate::config::Config;

fn request_of(tokens: usize) -> ChatRequest {
    // "word " is one cl100k token.
    let text = "word ".repeat(tokens);
    serde_json::from_value(serde_json::json!({
        "model": "auto",
        "messages": [{"role": "user", "content": text}]
    }))
    .expect("valid request")
}

fn classify(c: &mut Criterion) {
    let cfg = Config::parse(include_str!("../routes.toml"), "routes.toml").expect("routes.toml");
    let mut g = c.benchmark_group("classify");
    for n in [100usize, 1_000, 10_000, 100_000] {
        let req = request_of(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| cfg.classifier.classify(req))
        });
    }
    g.finish();
    // The signals alone, without token counting.
    let mut g = c.benchmark_group("signals");
    for n in [1_000usize, 100_000] {
        let req = request_of(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| cfg.classifier.signals(req, n as u64))
        });
    }
    g.finish();
}

fn count_tokens(c: &mut Criterion) {
    let mut g = c.benchmark_group("count_tokens_cl100k");
    for n in [1_000usize, 100_000] {
        let prose = "The quick brown fox jumps over the lazy dog, again and again. ".repeat(n / 14);
        g.throughput(Throughput::Bytes(prose.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &prose, |b, text| {
            b.iter(|| tollgate::tokens::Encoding::Cl100k.count(text))
        });
    }
    g.finish();
}

criterion_group!(benches, classify, count_tokens);
criterion_main!(benches);
