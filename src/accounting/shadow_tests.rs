//! The local bookkeeping of the Redis store: views, generations, carries, restore plans.

use std::time::Duration;

use super::*;

fn key() -> DayKey {
    ("b".to_string(), "2026-11-21".to_string())
}

fn gen(n: u64) -> Gen {
    Gen(format!("{n:016}"))
}

fn snap(spent: u64, reserved: u64) -> Snapshot {
    Snapshot { spent, reserved }
}

#[test]
fn view_adds_local_holds_and_queued_settles_to_redis_counters() {
    let mut s = Shadow::default();
    s.observe(&key(), &gen(1), snap(1000, 300));
    s.hold_redis("r1".into(), key(), 300, gen(1));
    s.hold_local("r2".into(), key(), 200);
    assert_eq!(s.cached(&key()), Some(snap(1000, 500)));
    assert_eq!(s.take_hold("r1"), Some(Hold::Redis(gen(1))));
    s.queue(Pending::Settle {
        key: key(),
        id: "r1".into(),
        actual: 250,
        unhold: 300,
    });
    assert_eq!(s.cached(&key()), Some(snap(1250, 200)));
    assert_eq!(s.take_hold("r2"), Some(Hold::Local));
    assert_eq!(s.cached(&key()), Some(snap(1250, 0)));
    assert_eq!(s.take_hold("r2"), None);
}

#[test]
fn written_operation_is_counted_once_redis_answers_with_it() {
    let mut s = Shadow::default();
    s.observe(&key(), &gen(1), snap(1000, 300));
    s.take_hold("r1");
    let op = Pending::Settle {
        key: key(),
        id: "r1".into(),
        actual: 250,
        unhold: 300,
    };
    s.queue(op.clone());
    assert_eq!(s.take_pending(10), vec![op.clone()]);
    s.observe(&key(), &gen(1), snap(1250, 0));
    s.written(&op);
    assert_eq!(s.cached(&key()), Some(snap(1250, 0)));
    assert_eq!(s.backlog(), 0);
}

#[test]
fn newer_generation_marks_the_day_and_older_replies_are_ignored() {
    let mut s = Shadow::default();
    assert_eq!(s.observe(&key(), &gen(5), snap(10, 0)), Observed::Current);
    assert!(s.take_days_to_sync().is_empty());
    assert_eq!(s.observe(&key(), &gen(9), snap(0, 0)), Observed::Recreated);
    assert_eq!(s.observe(&key(), &gen(5), snap(70, 0)), Observed::Stale);
    assert_eq!(s.cached(&key()), Some(snap(0, 0)));
    assert_eq!(s.gen(&key()), Some(gen(9)));
    assert_eq!(s.take_days_to_sync(), vec![key()]);
    assert!(s.take_days_to_sync().is_empty());
}

#[test]
fn carry_counts_settles_of_other_generations_and_an_earlier_seed() {
    let mut s = Shadow::default();
    s.observe(&key(), &gen(1), snap(0, 0));
    s.set_base(&key(), &gen(1), 1000);
    s.confirm_settle(&key(), &gen(1), 100);
    assert_eq!(s.carry_for(&key(), &gen(1)), 0);
    s.observe(&key(), &gen(2), snap(0, 0));
    s.take_days_to_sync();
    s.confirm_settle(&key(), &gen(2), 5);
    assert_eq!(s.carry_for(&key(), &gen(2)), 1100);
    // A reply from the lost generation arriving late raises the carry and asks for a sync.
    s.confirm_settle(&key(), &gen(1), 7);
    assert_eq!(s.carry_for(&key(), &gen(2)), 1107);
    assert_eq!(s.take_days_to_sync(), vec![key()]);
    s.observe(&key(), &gen(3), snap(0, 0));
    assert_eq!(s.carry_for(&key(), &gen(3)), 1112);
}

#[test]
fn sync_plan_holds_again_local_and_lost_reservations_only() {
    let mut s = Shadow::default();
    s.observe(&key(), &gen(1), snap(0, 0));
    s.hold_redis("old".into(), key(), 10, gen(1));
    s.hold_local("local".into(), key(), 20);
    s.observe(&key(), &gen(2), snap(0, 0));
    s.hold_redis("current".into(), key(), 30, gen(2));
    s.hold_redis(
        "other-day".into(),
        ("b".into(), "2026-11-22".into()),
        40,
        gen(1),
    );
    let mut adopt = s.sync_plan(&key()).adopt;
    adopt.sort();
    assert_eq!(
        adopt,
        vec![("local".to_string(), 20), ("old".to_string(), 10)]
    );
    s.adopted("local", &gen(2));
    s.adopted("old", &gen(2));
    assert!(s.sync_plan(&key()).adopt.is_empty());
    assert_eq!(s.cached(&key()), Some(snap(0, 0)));
}

#[test]
fn claims_asserted_in_a_lost_generation_are_planned_again() {
    let mut s = Shadow::default();
    s.observe(&key(), &gen(1), snap(0, 0));
    s.win_claim(&key(), 80, "tok", true);
    s.win_claim(&key(), 90, "queued", false);
    assert!(s.sync_plan(&key()).claims.is_empty());
    s.observe(&key(), &gen(2), snap(0, 0));
    assert_eq!(s.sync_plan(&key()).claims, vec![(80, "tok".to_string())]);
    s.asserted_claim(&key(), 80, &gen(2));
    assert!(s.sync_plan(&key()).claims.is_empty());
    assert_eq!(s.won_claim(&key(), 80), Some("tok"));
    s.lose_claim(&key(), 80);
    assert_eq!(s.won_claim(&key(), 80), None);
}

#[test]
fn requeued_operations_come_back_first_in_order() {
    let mut s = Shadow::default();
    let seed = |spent| Pending::Seed { key: key(), spent };
    for n in 1..=4 {
        s.queue(seed(n));
    }
    let first = s.take_pending(2);
    assert_eq!(first, vec![seed(1), seed(2)]);
    s.requeue(first);
    assert_eq!(s.take_pending(10), vec![seed(1), seed(2), seed(3), seed(4)]);
}

#[test]
fn backlog_counts_queue_local_holds_and_days_to_restore() {
    let mut s = Shadow::default();
    s.hold_local("r".into(), key(), 5);
    s.queue(Pending::Seed {
        key: key(),
        spent: 1,
    });
    assert_eq!(s.backlog(), 3);
    s.take_days_to_sync();
    s.take_pending(1);
    s.adopted("r", &gen(1));
    assert_eq!(s.backlog(), 0);
}

#[tokio::test(start_paused = true)]
async fn eviction_keeps_days_with_work_left() {
    let mut s = Shadow::default();
    let idle = ("b".to_string(), "2026-11-19".to_string());
    s.observe(&idle, &gen(1), snap(1, 0));
    s.hold_redis("leaked".into(), idle.clone(), 5, gen(1));
    s.queue(Pending::Seed {
        key: key(),
        spent: 1,
    });
    tokio::time::advance(Duration::from_secs(7200)).await;
    s.evict(Duration::from_secs(3600));
    assert_eq!(s.cached(&idle), None);
    assert!(s.cached(&key()).is_some());
    assert_eq!(s.take_hold("leaked"), None);
}
