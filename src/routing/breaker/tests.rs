//! The state machine on tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use tokio::time::{advance, Instant};

use super::*;

fn key(model: &str) -> UpstreamKey {
    UpstreamKey::new("openai", model)
}

/// Opens at 50% failures over at least 4 outcomes in 10 s; 30 s cooldown; 2 probes.
fn cfg() -> BreakerConfig {
    BreakerConfig {
        enabled: true,
        failure_ratio: 0.5,
        window_secs: 10,
        min_requests: 4,
        cooldown_secs: 30,
        half_open_probes: 2,
        rate_limit_cooldown_secs: 1,
        max_rate_limit_cooldown_secs: 60,
    }
}

fn permit(b: &Breakers, k: &UpstreamKey) -> Permit {
    match b.admit(k) {
        Admission::Allowed(p) => p,
        Admission::Rejected { state, retry_in } => {
            panic!("rejected: {state} for {retry_in:?}")
        }
    }
}

fn rejection(b: &Breakers, k: &UpstreamKey) -> (BreakerState, Duration) {
    match b.admit(k) {
        Admission::Allowed(p) => panic!("admitted: {p:?}"),
        Admission::Rejected { state, retry_in } => (state, retry_in),
    }
}

fn outcomes(b: &Breakers, k: &UpstreamKey, outcome: Outcome, n: usize) {
    for _ in 0..n {
        let p = permit(b, k);
        b.report(p, outcome);
    }
}

fn snap(b: &Breakers, k: &UpstreamKey) -> BreakerSnapshot {
    b.snapshot()
        .into_iter()
        .find(|s| &s.key == k)
        .expect("circuit exists")
}

/// Trips `k` open with four failures.
fn trip(b: &Breakers, k: &UpstreamKey) {
    outcomes(b, k, Outcome::Failure, 4);
    assert_eq!(b.state(k), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_min_requests_whatever_the_ratio() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    outcomes(&b, &k, Outcome::Failure, 3);
    assert_eq!(b.state(&k), BreakerState::Closed);
    outcomes(&b, &k, Outcome::Failure, 1);
    assert_eq!(b.state(&k), BreakerState::Open, "4 of 4 failed");
}

#[tokio::test(start_paused = true)]
async fn opens_only_once_the_failure_ratio_is_reached() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    outcomes(&b, &k, Outcome::Success, 3);
    outcomes(&b, &k, Outcome::Failure, 2);
    assert_eq!(b.state(&k), BreakerState::Closed, "2 of 5 failed: 40%");
    outcomes(&b, &k, Outcome::Failure, 1);
    assert_eq!(b.state(&k), BreakerState::Open, "3 of 6 failed: 50%");
    let s = snap(&b, &k);
    assert_eq!(s.transitions, 1);
    assert_eq!((s.recent_successes, s.recent_failures), (0, 0), "cleared");
}

#[tokio::test(start_paused = true)]
async fn rejects_while_open_with_the_remaining_cooldown() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    trip(&b, &k);
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::Open, Duration::from_secs(30))
    );
    advance(Duration::from_secs(12)).await;
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::Open, Duration::from_secs(18))
    );
    advance(Duration::from_millis(17_999)).await;
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::Open, Duration::from_millis(1))
    );
    assert_eq!(snap(&b, &k).rejections, 3);
    // Other upstreams are unaffected.
    assert!(matches!(
        b.admit(&key("gpt-4o-mini")),
        Admission::Allowed(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_configured_number_of_probes() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    trip(&b, &k);
    advance(Duration::from_secs(30)).await;
    assert_eq!(b.state(&k), BreakerState::HalfOpen);
    let p1 = permit(&b, &k);
    let p2 = permit(&b, &k);
    assert!(p1.is_probe() && p2.is_probe());
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::HalfOpen, PROBE_BUSY_RETRY_IN)
    );
    assert_eq!(snap(&b, &k).probes_in_flight, 2);
    b.report(p1, Outcome::Success);
    assert_eq!(b.state(&k), BreakerState::HalfOpen, "one success of two");
    let p3 = permit(&b, &k);
    assert!(p3.is_probe(), "the freed slot takes another probe");
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::HalfOpen, PROBE_BUSY_RETRY_IN)
    );
    drop((p2, p3));
}

#[tokio::test(start_paused = true)]
async fn closes_after_the_probes_succeed() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    trip(&b, &k);
    advance(Duration::from_secs(30)).await;
    let p1 = permit(&b, &k);
    let p2 = permit(&b, &k);
    b.report(p1, Outcome::Success);
    b.report(p2, Outcome::Success);
    assert_eq!(b.state(&k), BreakerState::Closed);
    let s = snap(&b, &k);
    assert_eq!(s.transitions, 3, "open, half-open, closed");
    assert_eq!(s.open_until, None);
    assert_eq!(s.retry_in, None);
    // Traffic flows again, with a fresh window: three failures do not reopen it.
    let p = permit(&b, &k);
    assert!(!p.is_probe());
    b.report(p, Outcome::Failure);
    outcomes(&b, &k, Outcome::Failure, 2);
    assert_eq!(b.state(&k), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn reopens_for_a_full_cooldown_on_a_probe_failure() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    trip(&b, &k);
    let first_opened = snap(&b, &k).opened_at;
    advance(Duration::from_secs(31)).await;
    let p1 = permit(&b, &k);
    let p2 = permit(&b, &k);
    b.report(p1, Outcome::Success);
    b.report(p2, Outcome::Failure);
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::Open, Duration::from_secs(30))
    );
    let s = snap(&b, &k);
    assert_eq!(s.opened_at, Some(Instant::now()));
    assert_ne!(s.opened_at, first_opened);
    assert_eq!(s.open_until, Some(Instant::now() + Duration::from_secs(30)));
    assert_eq!(s.probe_successes, 0);
    assert_eq!(s.transitions, 3, "open, half-open, open");
}

#[tokio::test(start_paused = true)]
async fn outcomes_older_than_the_window_no_longer_count() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    outcomes(&b, &k, Outcome::Failure, 3);
    advance(Duration::from_secs(10)).await;
    assert_eq!(snap(&b, &k).recent_failures, 0);
    outcomes(&b, &k, Outcome::Failure, 3);
    assert_eq!(b.state(&k), BreakerState::Closed, "only 3 in the window");
    advance(Duration::from_secs(5)).await;
    outcomes(&b, &k, Outcome::Failure, 1);
    assert_eq!(b.state(&k), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_429_cools_the_upstream_down_without_opening_it() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    let retry_after = Some(Duration::from_millis(2500));
    outcomes(&b, &k, Outcome::RateLimited { retry_after }, 1);
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::Closed, Duration::from_millis(2500))
    );
    advance(Duration::from_millis(2500)).await;
    // Many 429s in a row never open the circuit.
    for _ in 0..10 {
        outcomes(&b, &k, Outcome::RateLimited { retry_after: None }, 1);
        assert_eq!(
            rejection(&b, &k),
            (BreakerState::Closed, Duration::from_secs(1)),
            "default cooldown without Retry-After"
        );
        advance(Duration::from_secs(1)).await;
    }
    let s = snap(&b, &k);
    assert_eq!(s.state, BreakerState::Closed);
    assert_eq!((s.recent_successes, s.recent_failures), (0, 0));
    assert_eq!(s.transitions, 0);
    assert_eq!(s.rate_limited_until, None, "expired");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_and_never_shortens_a_running_cooldown() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    let p1 = permit(&b, &k);
    let p2 = permit(&b, &k);
    b.report(
        p1,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        },
    );
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::Closed, Duration::from_secs(60))
    );
    b.report(
        p2,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        },
    );
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::Closed, Duration::from_secs(60))
    );
}

#[tokio::test(start_paused = true)]
async fn a_rate_limited_probe_frees_its_slot_and_cools_down() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    trip(&b, &k);
    advance(Duration::from_secs(30)).await;
    let p1 = permit(&b, &k);
    b.report(
        p1,
        Outcome::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        },
    );
    assert_eq!(
        rejection(&b, &k),
        (BreakerState::HalfOpen, Duration::from_secs(3))
    );
    advance(Duration::from_secs(3)).await;
    let s = snap(&b, &k);
    assert_eq!((s.state, s.probes_in_flight), (BreakerState::HalfOpen, 0));
    let _p2 = permit(&b, &k);
    let _p3 = permit(&b, &k);
}

#[tokio::test(start_paused = true)]
async fn neutral_outcomes_count_neither_way() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    outcomes(&b, &k, Outcome::Neutral, 10);
    outcomes(&b, &k, Outcome::Failure, 3);
    assert_eq!(b.state(&k), BreakerState::Closed, "3 counted outcomes < 4");
    let s = snap(&b, &k);
    assert_eq!((s.recent_successes, s.recent_failures), (0, 3));
}

#[tokio::test(start_paused = true)]
async fn set_config_keeps_states_counts_and_deadlines() {
    let b = Breakers::new(cfg());
    let open = key("gpt-4o");
    let counting = key("gpt-4o-mini");
    trip(&b, &open);
    outcomes(&b, &counting, Outcome::Failure, 3);
    advance(Duration::from_secs(10)).await;
    b.set_config(BreakerConfig {
        window_secs: 60,
        min_requests: 5,
        cooldown_secs: 5,
        half_open_probes: 1,
        ..cfg()
    });
    assert_eq!(b.config().half_open_probes, 1);
    assert_eq!(
        rejection(&b, &open),
        (BreakerState::Open, Duration::from_secs(20)),
        "the running cooldown keeps its end"
    );
    assert_eq!(
        snap(&b, &counting).recent_failures,
        3,
        "still in the longer window"
    );
    outcomes(&b, &counting, Outcome::Failure, 1);
    assert_eq!(b.state(&counting), BreakerState::Closed, "now needs 5");
    outcomes(&b, &counting, Outcome::Failure, 1);
    assert_eq!(b.state(&counting), BreakerState::Open);
    // The new thresholds apply to the next decisions.
    assert_eq!(
        rejection(&b, &counting),
        (BreakerState::Open, Duration::from_secs(5))
    );
    advance(Duration::from_secs(20)).await;
    let p = permit(&b, &open);
    assert_eq!(
        rejection(&b, &open),
        (BreakerState::HalfOpen, PROBE_BUSY_RETRY_IN),
        "one probe now"
    );
    b.report(p, Outcome::Success);
    assert_eq!(b.state(&open), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot_and_records_nothing() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    trip(&b, &k);
    advance(Duration::from_secs(30)).await;
    let p1 = permit(&b, &k);
    let p2 = permit(&b, &k);
    drop(p1);
    let s = snap(&b, &k);
    assert_eq!((s.probes_in_flight, s.probe_successes), (1, 0));
    let p3 = permit(&b, &k);
    b.report(p2, Outcome::Success);
    b.report(p3, Outcome::Success);
    assert_eq!(b.state(&k), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_in_a_closed_circuit_records_nothing() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    for _ in 0..10 {
        drop(permit(&b, &k));
    }
    let s = snap(&b, &k);
    assert_eq!((s.recent_successes, s.recent_failures), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn outcomes_from_before_a_transition_are_ignored() {
    let b = Breakers::new(cfg());
    let k = key("gpt-4o");
    let slow: Vec<Permit> = (0..4).map(|_| permit(&b, &k)).collect();
    trip(&b, &k);
    advance(Duration::from_secs(30)).await;
    let probe = permit(&b, &k);
    let mut slow = slow.into_iter();
    // A late success is not a probe success, a late failure does not reopen.
    b.report(slow.next().unwrap(), Outcome::Success);
    b.report(slow.next().unwrap(), Outcome::Success);
    b.report(slow.next().unwrap(), Outcome::Failure);
    drop(slow.next());
    let s = snap(&b, &k);
    assert_eq!(s.state, BreakerState::HalfOpen);
    assert_eq!((s.probes_in_flight, s.probe_successes), (1, 0));
    b.report(probe, Outcome::Success);
    assert_eq!(b.state(&k), BreakerState::HalfOpen, "one of two probes");
}

#[tokio::test(start_paused = true)]
async fn snapshot_lists_every_circuit_in_order_with_its_counts() {
    let b = Breakers::new(cfg());
    let mistral = UpstreamKey::new("mistral", "mistral-small");
    let anthropic = UpstreamKey::new("anthropic", "claude-haiku");
    outcomes(&b, &mistral, Outcome::Success, 2);
    outcomes(&b, &mistral, Outcome::Failure, 1);
    let t_open = Instant::now();
    trip(&b, &anthropic);
    advance(Duration::from_secs(4)).await;
    let _ = b.admit(&anthropic);
    let now = Instant::now();
    assert_eq!(
        b.snapshot(),
        vec![
            BreakerSnapshot {
                key: anthropic,
                state: BreakerState::Open,
                recent_successes: 0,
                recent_failures: 0,
                probes_in_flight: 0,
                probe_successes: 0,
                opened_at: Some(t_open),
                open_until: Some(t_open + Duration::from_secs(30)),
                rate_limited_until: None,
                retry_in: Some(Duration::from_secs(26)),
                transitions: 1,
                rejections: 1,
            },
            BreakerSnapshot {
                key: mistral,
                state: BreakerState::Closed,
                recent_successes: 2,
                recent_failures: 1,
                probes_in_flight: 0,
                probe_successes: 0,
                opened_at: None,
                open_until: None,
                rate_limited_until: None,
                retry_in: None,
                transitions: 0,
                rejections: 0,
            },
        ]
    );
    assert!(now >= t_open);
}

#[tokio::test(start_paused = true)]
async fn unknown_upstreams_are_closed_and_not_created_by_asking() {
    let b = Breakers::new(cfg());
    assert_eq!(b.state(&key("never-seen")), BreakerState::Closed);
    assert!(b.snapshot().is_empty());
}

#[tokio::test(start_paused = true)]
async fn disabled_breakers_admit_everything_and_record_nothing() {
    let b = Breakers::new(BreakerConfig {
        enabled: false,
        ..cfg()
    });
    let k = key("gpt-4o");
    outcomes(&b, &k, Outcome::Failure, 20);
    outcomes(&b, &k, Outcome::RateLimited { retry_after: None }, 1);
    assert!(matches!(b.admit(&k), Admission::Allowed(_)));
    assert_eq!(b.state(&k), BreakerState::Closed);
    // Turned back on, circuits start from where they were.
    b.set_config(cfg());
    trip(&b, &k);
}

#[test]
fn permits_and_the_registry_can_cross_threads_and_awaits() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Permit>();
    send_sync::<Breakers>();
    send_sync::<crate::routing::latency::LatencyTracker>();
}

#[test]
fn state_names_are_snake_case() {
    assert_eq!(BreakerState::Closed.as_str(), "closed");
    assert_eq!(BreakerState::Open.as_str(), "open");
    assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
    assert_eq!(UpstreamKey::new("mistral", "m").to_string(), "mistral/m");
}

/// Many threads admitting and reporting at once, on the real clock with a zero cooldown so
/// circuits keep cycling through all three states: the books stay consistent and no probe
/// slot leaks.
#[test]
fn concurrent_admits_and_reports_keep_the_books_straight() {
    let b = Arc::new(Breakers::new(BreakerConfig {
        min_requests: 20,
        cooldown_secs: 0,
        ..cfg()
    }));
    let keys: Vec<UpstreamKey> = (0..4).map(|i| key(&format!("m{i}"))).collect();
    let admitted = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (b, keys, admitted) = (b.clone(), keys.clone(), &admitted);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                let mut held = Vec::new();
                for _ in 0..5000 {
                    let k = &keys[rng.usize(..keys.len())];
                    if let Admission::Allowed(p) = b.admit(k) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        held.push(p);
                    }
                    if !held.is_empty() && (held.len() > 3 || rng.bool()) {
                        let p = held.swap_remove(rng.usize(..held.len()));
                        match rng.u8(..5) {
                            0 => b.report(p, Outcome::Success),
                            1 | 2 => b.report(p, Outcome::Failure),
                            3 => b.report(p, Outcome::Neutral),
                            _ => drop(p),
                        }
                    }
                }
            });
        }
    });
    assert!(admitted.load(Ordering::Relaxed) > 1000);
    let snaps = b.snapshot();
    assert_eq!(snaps.len(), 4);
    let transitions: u64 = snaps.iter().map(|s| s.transitions).sum();
    assert!(transitions > 10, "{snaps:?}");
    for s in snaps {
        assert_eq!(s.probes_in_flight, 0, "{s:?}");
        assert!(s.probe_successes < 2, "{s:?}");
        assert!(s.recent_successes + s.recent_failures <= 40_000, "{s:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_probes_never_exceed_the_slots() {
    let b = Arc::new(Breakers::new(BreakerConfig {
        half_open_probes: 3,
        ..cfg()
    }));
    let k = key("gpt-4o");
    trip(&b, &k);
    advance(Duration::from_secs(30)).await;
    let admitted = AtomicUsize::new(0);
    let barrier = Barrier::new(16);
    let handle = tokio::runtime::Handle::current();
    let held: Vec<Vec<Permit>> = std::thread::scope(|s| {
        let joins: Vec<_> = (0..16)
            .map(|_| {
                let (b, k, handle) = (b.clone(), k.clone(), handle.clone());
                let (admitted, barrier) = (&admitted, &barrier);
                s.spawn(move || {
                    let _rt = handle.enter();
                    barrier.wait();
                    let mut mine = Vec::new();
                    for _ in 0..10 {
                        if let Admission::Allowed(p) = b.admit(&k) {
                            admitted.fetch_add(1, Ordering::SeqCst);
                            mine.push(p);
                        }
                    }
                    mine
                })
            })
            .collect();
        joins.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(admitted.load(Ordering::SeqCst), 3);
    assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 3);
    assert_eq!(snap(&b, &k).probes_in_flight, 3);
    drop(held);
    assert_eq!(snap(&b, &k).probes_in_flight, 0);
}
