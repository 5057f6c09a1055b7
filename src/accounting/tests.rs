//! [`LocalStore`] under concurrency: exact sums, enforcement, threshold crossings, claims.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

const DAY: &str = "2026-11-21";

/// A varied amount in nano-dollars for task `i` (between 0.001 and 1 dollar).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_reserve_settle_tasks_sum_exactly() {
    let store = Arc::new(LocalStore::new());
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = reserved(store.reserve("b", DAY, amount(i), 0, false).await.unwrap());
                tokio::task::yield_now().await;
                if i % 10 == 0 {
                    store.release(r).await.unwrap();
                    0
                } else {
                    store.settle(r, actual(i)).await.unwrap();
                    actual(i)
                }
            })
        })
        .collect();
    let mut expected = 0;
    for t in tasks {
        expected += t.await.unwrap();
    }
    let snap = store.snapshot("b", DAY).await.unwrap();
    assert_eq!(snap.spent, expected);
    assert_eq!(snap.reserved, 0);
    assert_eq!(store.cached("b", DAY), Some(snap));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_never_lets_spent_plus_reserved_exceed_the_limit() {
    let store = Arc::new(LocalStore::new());
    let limit = 50_000_000_000; // $50, well under the $500 the tasks ask for.
    let refused = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let (store, refused) = (store.clone(), refused.clone());
            tokio::spawn(async move {
                match store
                    .reserve("b", DAY, amount(i), limit, true)
                    .await
                    .unwrap()
                {
                    ReserveOutcome::Reserved(r) => {
                        let seen = store.cached("b", DAY).unwrap();
                        assert!(seen.committed() <= limit, "{seen:?} over {limit}");
                        tokio::task::yield_now().await;
                        store.settle(r, actual(i)).await.unwrap();
                    }
                    ReserveOutcome::Exceeded(seen) => {
                        assert!(seen.committed() + amount(i) > limit, "refused {seen:?}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let snap = store.snapshot("b", DAY).await.unwrap();
    assert!(snap.spent <= limit);
    assert_eq!(snap.reserved, 0);
    assert!(
        refused.load(Ordering::Relaxed) > 0,
        "the limit was never reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_settles_cross_each_threshold_exactly_once() {
    let store = Arc::new(LocalStore::new());
    let tasks: Vec<_> = (0..500u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = reserved(store.reserve("b", DAY, amount(i), 0, false).await.unwrap());
                store.settle(r, actual(i)).await.unwrap()
            })
        })
        .collect();
    let mut settles = Vec::new();
    for t in tasks {
        settles.push(t.await.unwrap());
    }
    let total = store.snapshot("b", DAY).await.unwrap().spent;
    // Ten lines up to the total, and one beyond it that nothing may cross.
    for k in 1..=11u64 {
        let line = total * k / 10;
        let crossings = settles.iter().filter(|s| s.crossed(line)).count();
        let expected = usize::from(line <= total);
        assert_eq!(crossings, expected, "threshold {line} of {total}");
    }
}

#[tokio::test]
async fn settle_crossing_two_thresholds_claims_both() {
    let store = LocalStore::new();
    let r = reserved(store.reserve("b", DAY, 900, 1000, true).await.unwrap());
    let settled = store.settle(r, 850).await.unwrap();
    assert_eq!(
        settled,
        Settled {
            spent_before: 0,
            spent_after: 850
        }
    );
    assert!(settled.crossed(500) && settled.crossed(800));
    assert!(!settled.crossed(900));
    for threshold in [50, 80] {
        assert!(store.claim_alert("b", DAY, threshold, "t1").await.unwrap());
    }
}

#[tokio::test]
async fn exceeded_reports_the_counters_and_holds_nothing() {
    let store = LocalStore::new();
    let _held = reserved(store.reserve("b", DAY, 600, 1000, true).await.unwrap());
    match store.reserve("b", DAY, 500, 1000, true).await.unwrap() {
        ReserveOutcome::Exceeded(seen) => assert_eq!(
            seen,
            Snapshot {
                spent: 0,
                reserved: 600
            }
        ),
        ReserveOutcome::Reserved(r) => panic!("reserved {} over the limit", r.amount()),
    }
    assert_eq!(store.cached("b", DAY).unwrap().reserved, 600);
    store.release(_held).await.unwrap();
}

#[tokio::test]
async fn unenforced_reserve_goes_past_the_limit() {
    let store = LocalStore::new();
    let r = reserved(store.reserve("b", DAY, 1500, 1000, false).await.unwrap());
    assert_eq!(store.cached("b", DAY).unwrap().reserved, 1500);
    store.settle(r, 1200).await.unwrap();
    assert_eq!(
        store.snapshot("b", DAY).await.unwrap(),
        Snapshot {
            spent: 1200,
            reserved: 0
        }
    );
}

#[tokio::test]
async fn release_gives_the_amount_back_without_spending() {
    let store = LocalStore::new();
    let r = reserved(store.reserve("b", DAY, 700, 1000, true).await.unwrap());
    store.release(r).await.unwrap();
    assert_eq!(store.snapshot("b", DAY).await.unwrap(), Snapshot::default());
}

#[tokio::test]
async fn alert_is_claimed_once_and_again_by_the_same_token() {
    let store = LocalStore::new();
    assert!(store.claim_alert("b", DAY, 80, "a").await.unwrap());
    assert!(!store.claim_alert("b", DAY, 80, "b").await.unwrap());
    assert!(store.claim_alert("b", DAY, 80, "a").await.unwrap());
    assert!(store.claim_alert("b", DAY, 90, "b").await.unwrap());
    assert!(store.claim_alert("b", "2026-11-22", 80, "b").await.unwrap());
}

#[tokio::test]
async fn seed_raises_spent_and_never_lowers_it() {
    let store = LocalStore::new();
    store.seed_spent("b", DAY, 5_000).await.unwrap();
    store.seed_spent("b", DAY, 3_000).await.unwrap();
    assert_eq!(store.snapshot("b", DAY).await.unwrap().spent, 5_000);
    let r = reserved(store.reserve("b", DAY, 100, 10_000, true).await.unwrap());
    assert_eq!(store.settle(r, 100).await.unwrap().spent_before, 5_000);
}

#[tokio::test]
async fn budgets_and_days_are_counted_apart() {
    let store = LocalStore::new();
    for (budget, day, cost) in [("a", DAY, 10), ("b", DAY, 20), ("a", "2026-11-22", 40)] {
        let r = reserved(store.reserve(budget, day, cost, 100, true).await.unwrap());
        store.settle(r, cost).await.unwrap();
    }
    assert_eq!(store.snapshot("a", DAY).await.unwrap().spent, 10);
    assert_eq!(store.snapshot("b", DAY).await.unwrap().spent, 20);
    assert_eq!(store.snapshot("a", "2026-11-22").await.unwrap().spent, 40);
    assert_eq!(store.cached("c", DAY), None);
}

#[tokio::test(start_paused = true)]
async fn days_untouched_for_the_retention_are_evicted() {
    let store = LocalStore::with_retention(Duration::from_secs(3600));
    store.seed_spent("b", "2026-11-20", 10).await.unwrap();
    assert!(store.claim_alert("b", "2026-11-20", 50, "a").await.unwrap());
    tokio::time::advance(Duration::from_secs(1800)).await;
    store.seed_spent("b", DAY, 20).await.unwrap();
    assert_eq!(store.cached("b", "2026-11-20").unwrap().spent, 10);
    tokio::time::advance(Duration::from_secs(3601)).await;
    store.seed_spent("b", DAY, 20).await.unwrap();
    assert_eq!(store.cached("b", "2026-11-20"), None);
    assert_eq!(store.cached("b", DAY).unwrap().spent, 20);
    assert!(store.claim_alert("b", "2026-11-20", 50, "b").await.unwrap());
}

#[test]
fn reservation_ids_are_unique() {
    let ids: std::collections::HashSet<String> =
        (0..10_000).map(|_| next_reservation_id()).collect();
    assert_eq!(ids.len(), 10_000);
}

/// Reserve + settle round trips per second; run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn local_store_round_trips_per_second() {
    let store = Arc::new(LocalStore::new());
    let n = 200_000u64;
    let start = std::time::Instant::now();
    for i in 0..n {
        let r = reserved(store.reserve("b", DAY, 10, u64::MAX, true).await.unwrap());
        store.settle(r, i % 10).await.unwrap();
    }
    let sequential = n as f64 / start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..n / 8 {
                    let r = reserved(store.reserve("b", DAY, 10, u64::MAX, true).await.unwrap());
                    store.settle(r, i % 10).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let concurrent = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "LocalStore reserve+settle: {sequential:.0}/s sequential, {concurrent:.0}/s with 8 tasks"
    );
}
