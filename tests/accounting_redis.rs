//! `RedisStore` against a private redis-server: replicas sharing one budget exactly, alert
//! claims across replicas, Redis killed and restarted (empty) mid-run, replies lost after
//! the script ran, and an unreachable Redis at start-up.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::redis::Commands;
use support::redis::{free_port, FlakyLink, RedisServer};
use tollgate::accounting::{
    BudgetStore, FailurePolicy, RedisOptions, RedisStore, Reservation, ReserveOutcome, StoreError,
};

const DAY: &str = "2026-11-21";

fn options(url: &str, replica: &str, policy: FailurePolicy) -> RedisOptions {
    RedisOptions {
        failure_policy: policy,
        replica: replica.into(),
        ..RedisOptions::new(url)
    }
}

async fn store(url: &str, replica: &str, policy: FailurePolicy) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::connect(options(url, replica, policy))
            .await
            .unwrap(),
    )
}

/// A field of the budget-day hash, read directly from Redis (0 when absent).
fn field(server: &RedisServer, budget: &str, field: &str) -> u64 {
    let key = format!("tollgate:budget:{budget}:{DAY}");
    let v: Option<i64> = server.client().hget(key, field).unwrap();
    v.unwrap_or(0) as u64
}

/// A varied amount in nano-dollars for request `i`.
fn amount(i: u64) -> u64 {
    (i * 7919 % 1000 + 1) * 1_000_000
}

/// An actual cost at most the reserved amount.
fn actual(i: u64) -> u64 {
    amount(i) - (i % 4) * amount(i) / 5
}

fn reserved(outcome: ReserveOutcome) -> Reservation {
    match outcome {
        ReserveOutcome::Reserved(r) => r,
        ReserveOutcome::Exceeded(s) => panic!("unexpected Exceeded({s:?})"),
    }
}

/// Polls `done` every 50 ms for up to 60 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every store is connected with nothing left to write.
async fn quiet(stores: &[&Arc<RedisStore>]) {
    eventually("stores connected with an empty backlog", || {
        stores.iter().all(|s| {
            let h = s.health();
            h.connected && h.pending_reconcile == 0
        })
    })
    .await;
}

/// One request against `store`: reserve, yield, then settle (or, every tenth, release).
/// Returns the cost settled.
async fn request(store: &RedisStore, budget: &str, i: u64) -> Result<u64, StoreError> {
    let r = reserved(store.reserve(budget, DAY, amount(i), 0, false).await?);
    tokio::task::yield_now().await;
    if i % 10 == 0 {
        store.release(r).await?;
        Ok(0)
    } else {
        store.settle(r, actual(i)).await?;
        Ok(actual(i))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_exactly() {
    let server = RedisServer::start();
    let a = store(&server.url(), "a", FailurePolicy::FailOpen).await;
    let b = store(&server.url(), "b", FailurePolicy::FailOpen).await;
    let tasks: Vec<_> = (0..240u64)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { request(&s, "team", i).await.unwrap() })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    quiet(&[&a, &b]).await;
    assert_eq!(field(&server, "team", "spent"), total);
    assert_eq!(field(&server, "team", "reserved"), 0);
    assert_eq!(
        field(&server, "team", "c:a") + field(&server, "team", "c:b"),
        total
    );
    for s in [&a, &b] {
        let snap = s.snapshot("team", DAY).await.unwrap();
        assert_eq!((snap.spent, snap.reserved), (total, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stay_exact_when_calls_time_out_after_running() {
    let server = RedisServer::start();
    // So short that many calls time out after their script ran: each is then queued and
    // replayed, and must count once.
    let connect = |replica: &'static str| {
        let opts = RedisOptions {
            op_timeout: Duration::from_millis(3),
            ..options(&server.url(), replica, FailurePolicy::FailOpen)
        };
        async move { Arc::new(RedisStore::connect(opts).await.unwrap()) }
    };
    let (a, b) = (connect("a").await, connect("b").await);
    let tasks: Vec<_> = (0..400u64)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { request(&s, "team", i).await.unwrap() })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    quiet(&[&a, &b]).await;
    assert!(
        a.health().errors_total + b.health().errors_total > 0,
        "no call timed out"
    );
    assert_eq!(field(&server, "team", "spent"), total);
    assert_eq!(field(&server, "team", "reserved"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_limit_holds_across_replicas() {
    let server = RedisServer::start();
    let connect = |replica: &'static str| {
        let opts = RedisOptions {
            op_timeout: Duration::from_secs(10),
            ..options(&server.url(), replica, FailurePolicy::FailClosed)
        };
        async move { Arc::new(RedisStore::connect(opts).await.unwrap()) }
    };
    let (a, b) = (connect("a").await, connect("b").await);
    let (unit, limit) = (1_000_000u64, 40_000_000u64);
    let tasks: Vec<_> = (0..250u64)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                match s.reserve("capped", DAY, unit, limit, true).await.unwrap() {
                    ReserveOutcome::Reserved(r) => {
                        let seen = s.cached("capped", DAY).unwrap();
                        assert!(seen.committed() <= limit, "{seen:?}");
                        s.settle(r, unit).await.unwrap();
                        1
                    }
                    ReserveOutcome::Exceeded(seen) => {
                        assert!(seen.committed() + unit > limit, "refused at {seen:?}");
                        0
                    }
                }
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    // Spent plus reserved never decreases here, so exactly limit / unit requests fit.
    assert_eq!(admitted, limit / unit);
    assert_eq!(field(&server, "capped", "spent"), limit);
    assert_eq!(field(&server, "capped", "reserved"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_is_claimed_once_across_replicas() {
    let server = RedisServer::start();
    let a = store(&server.url(), "a", FailurePolicy::FailOpen).await;
    let b = store(&server.url(), "b", FailurePolicy::FailOpen).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let token = format!("token-{i}");
            tokio::spawn(async move {
                let won = s.claim_alert("team", DAY, 80, &token).await.unwrap();
                won.then_some(token)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        winners.extend(t.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = &winners[0];
    let stored: String = server
        .client()
        .get(format!("tollgate:alert:team:{DAY}:80"))
        .unwrap();
    assert_eq!(&stored, winner);
    for s in [&a, &b] {
        assert!(s.claim_alert("team", DAY, 80, winner).await.unwrap());
        assert!(!s.claim_alert("team", DAY, 80, "another").await.unwrap());
    }
}

/// Requests in a loop until `stop`; adds settled costs to `total` and errors to `errors`.
fn keep_busy(
    s: Arc<RedisStore>,
    first: u64,
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut i = first;
        while !stop.load(Ordering::Relaxed) {
            match request(&s, "team", i).await {
                Ok(cost) => total.fetch_add(cost, Ordering::Relaxed),
                Err(_) => errors.fetch_add(1, Ordering::Relaxed),
            };
            i += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_keeps_serving_through_a_redis_restart_without_losing_accounting() {
    let mut server = RedisServer::start();
    let a = store(&server.url(), "a", FailurePolicy::FailOpen).await;
    let b = store(&server.url(), "b", FailurePolicy::FailOpen).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (total, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..8u64)
        .map(|w| {
            let s = if w % 2 == 0 { a.clone() } else { b.clone() };
            keep_busy(s, w * 100_000, stop.clone(), total.clone(), errors.clone())
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    eventually("both replicas notice the outage", || {
        !a.health().connected && !b.health().connected
    })
    .await;
    let before_outage = total.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        total.load(Ordering::Relaxed) > before_outage,
        "requests were not served during the outage"
    );
    server.restart();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    quiet(&[&a, &b]).await;
    assert_eq!(errors.load(Ordering::Relaxed), 0);
    assert!(a.health().errors_total > 0 && b.health().errors_total > 0);
    assert_eq!(
        field(&server, "team", "spent"),
        total.load(Ordering::Relaxed)
    );
    assert_eq!(field(&server, "team", "reserved"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_replica_restores_its_part_after_a_redis_restart() {
    let mut server = RedisServer::start();
    let idle = store(&server.url(), "idle", FailurePolicy::FailOpen).await;
    let busy = store(&server.url(), "busy", FailurePolicy::FailOpen).await;
    let mut total = 0;
    for i in 0..20 {
        total += request(&idle, "team", i).await.unwrap();
    }
    server.kill();
    server.restart();
    for i in 20..40 {
        total += request(&busy, "team", i).await.unwrap();
    }
    eventually(
        "spent restored to the sum of both replicas' settles",
        || field(&server, "team", "spent") == total,
    )
    .await;
    quiet(&[&idle, &busy]).await;
    assert_eq!(field(&server, "team", "spent"), total);
    assert_eq!(field(&server, "team", "reserved"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_from_each_ledger_add_up_and_survive_a_redis_restart() {
    let mut server = RedisServer::start();
    let a = store(&server.url(), "a", FailurePolicy::FailOpen).await;
    let b = store(&server.url(), "b", FailurePolicy::FailOpen).await;
    a.seed_spent("team", DAY, 1_000).await.unwrap();
    a.seed_spent("team", DAY, 1_000).await.unwrap();
    b.seed_spent("team", DAY, 500).await.unwrap();
    a.seed_spent("team", DAY, 800).await.unwrap();
    assert_eq!(field(&server, "team", "spent"), 1_500);
    let r = reserved(a.reserve("team", DAY, 100, 10_000, true).await.unwrap());
    let settled = a.settle(r, 60).await.unwrap();
    assert_eq!((settled.spent_before, settled.spent_after), (1_500, 1_560));
    server.kill();
    server.restart();
    eventually("seeded and settled spent restored", || {
        field(&server, "team", "spent") == 1_560
    })
    .await;
    quiet(&[&a, &b]).await;
    assert_eq!(field(&server, "team", "spent"), 1_560);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_settle_reply_is_applied_once() {
    let server = RedisServer::start();
    let link = FlakyLink::start(server.port()).await;
    let s = store(&link.url(), "a", FailurePolicy::FailOpen).await;
    let warm = reserved(s.reserve("team", DAY, 100, 0, false).await.unwrap());
    s.settle(warm, 100).await.unwrap();
    let r = reserved(s.reserve("team", DAY, 500, 0, false).await.unwrap());
    link.set_down(true);
    link.lose_next_script_reply();
    let settled = s.settle(r, 400).await.unwrap();
    assert_eq!((settled.spent_before, settled.spent_after), (100, 500));
    assert_eq!(link.lost(), 1);
    // The script ran; the store could not know and queued the settle.
    assert_eq!(field(&server, "team", "spent"), 500);
    assert_eq!(field(&server, "team", "reserved"), 0);
    assert_eq!(s.health().pending_reconcile, 1);
    link.set_down(false);
    quiet(&[&s]).await;
    assert_eq!(field(&server, "team", "spent"), 500);
    assert_eq!(field(&server, "team", "reserved"), 0);
    assert_eq!(s.snapshot("team", DAY).await.unwrap().spent, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reserve_reply_under_fail_open_is_held_once() {
    let server = RedisServer::start();
    let link = FlakyLink::start(server.port()).await;
    let s = store(&link.url(), "a", FailurePolicy::FailOpen).await;
    let warm = reserved(s.reserve("team", DAY, 100, 0, false).await.unwrap());
    link.set_down(true);
    link.lose_next_script_reply();
    let r = reserved(s.reserve("team", DAY, 700, 10_000, true).await.unwrap());
    assert_eq!(link.lost(), 1);
    assert_eq!(field(&server, "team", "reserved"), 800);
    link.set_down(false);
    quiet(&[&s]).await;
    assert_eq!(field(&server, "team", "reserved"), 800);
    s.settle(r, 650).await.unwrap();
    s.release(warm).await.unwrap();
    assert_eq!(field(&server, "team", "spent"), 650);
    assert_eq!(field(&server, "team", "reserved"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_reserve_reply_under_fail_closed_is_given_back() {
    let server = RedisServer::start();
    let link = FlakyLink::start(server.port()).await;
    let s = store(&link.url(), "a", FailurePolicy::FailClosed).await;
    let warm = reserved(s.reserve("team", DAY, 100, 0, false).await.unwrap());
    link.set_down(true);
    link.lose_next_script_reply();
    let refused = s.reserve("team", DAY, 700, 10_000, true).await;
    assert_eq!(refused.unwrap_err(), StoreError::Unavailable);
    assert_eq!(field(&server, "team", "reserved"), 800);
    link.set_down(false);
    quiet(&[&s]).await;
    assert_eq!(field(&server, "team", "reserved"), 100);
    s.settle(warm, 90).await.unwrap();
    assert_eq!(field(&server, "team", "spent"), 90);
    assert_eq!(field(&server, "team", "reserved"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_while_redis_is_down_and_recovers_after_restart() {
    let mut server = RedisServer::start();
    let s = store(&server.url(), "a", FailurePolicy::FailClosed).await;
    let r = reserved(s.reserve("team", DAY, 400, 10_000, true).await.unwrap());
    s.settle(r, 300).await.unwrap();
    let in_flight = reserved(s.reserve("team", DAY, 100, 10_000, true).await.unwrap());
    server.kill();
    for _ in 0..3 {
        let refused = s.reserve("team", DAY, 10, 10_000, true).await;
        assert_eq!(refused.unwrap_err(), StoreError::Unavailable);
    }
    assert_eq!(
        s.snapshot("team", DAY).await.unwrap_err(),
        StoreError::Unavailable
    );
    assert_eq!(
        s.claim_alert("team", DAY, 50, "t").await.unwrap_err(),
        StoreError::Unavailable
    );
    assert!(!s.health().connected && s.health().degraded_since.is_some());
    let settled = s.settle(in_flight, 80).await.unwrap();
    assert_eq!((settled.spent_before, settled.spent_after), (300, 380));
    server.restart();
    quiet(&[&s]).await;
    let r = reserved(s.reserve("team", DAY, 10, 10_000, true).await.unwrap());
    s.release(r).await.unwrap();
    assert_eq!(field(&server, "team", "spent"), 380);
    assert_eq!(field(&server, "team", "reserved"), 0);
    assert!(s.claim_alert("team", DAY, 50, "t").await.unwrap());
    assert_eq!(s.health().degraded_since, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_at_start_does_not_hang_and_is_used_once_up() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let bound = Duration::from_secs(30);
    let open = tokio::time::timeout(bound, store(&url, "a", FailurePolicy::FailOpen))
        .await
        .expect("connect hung");
    let closed = tokio::time::timeout(bound, store(&url, "b", FailurePolicy::FailClosed))
        .await
        .expect("connect hung");
    assert!(!open.health().connected && open.health().errors_total > 0);
    assert_eq!(
        closed
            .reserve("team", DAY, 10, 1_000, true)
            .await
            .unwrap_err(),
        StoreError::Unavailable
    );
    let r = reserved(open.reserve("team", DAY, 300, 1_000, true).await.unwrap());
    let refused = open.reserve("team", DAY, 800, 1_000, true).await.unwrap();
    assert!(matches!(refused, ReserveOutcome::Exceeded(s) if s.reserved == 300));
    open.settle(r, 250).await.unwrap();
    let server = RedisServer::start_on(port);
    quiet(&[&open, &closed]).await;
    assert_eq!(field(&server, "team", "spent"), 250);
    assert_eq!(field(&server, "team", "reserved"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_redis_at_start_does_not_hang() {
    let opts = RedisOptions {
        connect_timeout: Duration::from_millis(500),
        ..options("redis://10.255.255.1:6379/", "a", FailurePolicy::FailOpen)
    };
    let s = tokio::time::timeout(Duration::from_secs(30), RedisStore::connect(opts))
        .await
        .expect("connect hung")
        .unwrap();
    assert!(!s.health().connected);
    let r = reserved(s.reserve("team", DAY, 1, 10, true).await.unwrap());
    s.release(r).await.unwrap();
}

#[tokio::test]
async fn malformed_url_is_a_configuration_error() {
    let e = RedisStore::connect(RedisOptions::new("not a url")).await;
    assert!(matches!(e, Err(StoreError::Config(_))));
}

/// Reserve + settle round trips per second; run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn redis_store_round_trips_per_second() {
    let server = RedisServer::start();
    let s = store(&server.url(), "a", FailurePolicy::FailOpen).await;
    let n = 5_000u64;
    let start = std::time::Instant::now();
    for i in 0..n {
        let r = reserved(
            s.reserve("bench", DAY, 10, u64::MAX >> 12, true)
                .await
                .unwrap(),
        );
        s.settle(r, i % 10).await.unwrap();
    }
    let sequential = n as f64 / start.elapsed().as_secs_f64();
    let tasks = 32;
    let start = std::time::Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..n * 4 / tasks {
                    let r = reserved(
                        s.reserve("bench", DAY, 10, u64::MAX >> 12, true)
                            .await
                            .unwrap(),
                    );
                    s.settle(r, i % 10).await.unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let concurrent = (n * 4) as f64 / start.elapsed().as_secs_f64();
    assert_eq!(s.health().errors_total, 0, "timeouts skew the figures");
    println!(
        "RedisStore reserve+settle: {sequential:.0}/s sequential, {concurrent:.0}/s with {tasks} tasks"
    );
}
