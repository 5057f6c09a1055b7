//! Accounting on the request path: pricing a request's usage (`pricing`) and a budget
//! reservation settled to the actual cost in the embedded store (`LocalStore`).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::accounting::{BudgetStore, LocalStore, ReserveOutcome};
use tollgate::config::Config;
use tollgate::usage::Usage;

/// Runs a future that never waits (the embedded store only takes a lock).
fn ready<T>(f: impl Future<Output = T>) -> T {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the embedded store never waits"),
    }
}

fn cost(c: &mut Criterion) {
    let cfg = Config::parse(include_str!("../routes.toml"), "routes.toml").expect("routes.toml");
    let sonnet = cfg.models["claude-sonnet"].price;
    let usage = Usage {
        input_tokens: 1532,
        output_tokens: 412,
        cached_input_tokens: 1111,
        cache_write_tokens: 213,
        estimated: false,
    };
    let mut g = c.benchmark_group("pricing");
    g.bench_function("cost_nanos", |b| {
        b.iter(|| tollgate::pricing::cost_nanos(&sonnet, &usage))
    });
    g.bench_function("estimate_nanos", |b| {
        b.iter(|| tollgate::pricing::estimate_nanos(&sonnet, 1532, 4096))
    });
    g.finish();
}

fn reserve_settle(c: &mut Criterion) {
    let store = LocalStore::new();
    let limit = 1_000_000_000_000_000;
    let mut g = c.benchmark_group("local_store");
    g.bench_function("reserve_then_settle", |b| {
        b.iter(|| {
            let ReserveOutcome::Reserved(r) =
                ready(store.reserve("payments", "2026-11-21", 25_000_000, limit, true))
                    .expect("embedded store")
            else {
                panic!("the limit is never reached");
            };
            ready(store.settle(r, 1_234_567)).expect("embedded store")
        })
    });
    // Four threads on one budget (one lock): the time for each to reserve and settle once.
    g.bench_function("reserve_then_settle_4_threads", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            if let Ok(ReserveOutcome::Reserved(r)) =
                                ready(store.reserve("payments", "2026-11-21", 25, limit, true))
                            {
                                let _ = ready(store.settle(r, 12));
                            }
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, cost, reserve_settle);
criterion_main!(benches);
