//! Alerts: exactly-once claims, idempotent enqueue, outbox retries and the alert list.

use super::*;
use crate::ledger::*;

pub(super) fn claim(budget: &str, threshold: u32, key: &str, channels: &[&str]) -> AlertClaim {
    AlertClaim {
        budget: budget.into(),
        day: DAY.into(),
        threshold,
        idempotency_key: key.into(),
        payload_json: format!(r#"{{"idempotency_key":"{key}"}}"#),
        claimed_at_ms: 1_000,
        channels: channels.iter().map(|c| c.to_string()).collect(),
    }
}

#[test]
fn alert_is_claimed_once_with_one_delivery_per_channel() {
    let dir = TempDir::new("claim");
    let ledger = open(&dir, 200, 512);
    let c = claim("x", 80, "x-80", &["https://a", "https://b"]);
    assert!(ledger.claim_alert(&c).unwrap());
    assert!(!ledger.claim_alert(&c).unwrap());
    let again = claim("x", 80, "x-80-second", &["https://c"]);
    assert!(
        !ledger.claim_alert(&again).unwrap(),
        "same threshold, new key"
    );
    assert!(ledger.claim_alert(&claim("x", 100, "x-100", &[])).unwrap());
    let due = ledger.outbox_due(1_000, 10).unwrap();
    let channels: Vec<&str> = due.iter().map(|d| d.channel.as_str()).collect();
    assert_eq!(channels, ["https://a", "https://b"]);
    assert!(due
        .iter()
        .all(|d| d.idempotency_key == "x-80" && d.attempts == 0));
    assert!(
        ledger.outbox_due(999, 10).unwrap().is_empty(),
        "not due before the claim"
    );
}

#[test]
fn enqueue_alert_is_idempotent_on_its_key() {
    let dir = TempDir::new("enqueue");
    let ledger = open(&dir, 200, 512);
    let c = claim("x", 50, "x-50", &["https://a"]);
    assert!(ledger.enqueue_alert(&c).unwrap());
    assert!(!ledger.enqueue_alert(&c).unwrap());
    assert!(!ledger
        .enqueue_alert(&claim("x", 50, "x-50-other", &["https://b"]))
        .unwrap());
    assert_eq!(ledger.outbox_due(i64::MAX, 10).unwrap().len(), 1);
}

#[test]
fn outbox_item_is_retried_until_delivered() {
    let dir = TempDir::new("outbox");
    let ledger = open(&dir, 200, 512);
    ledger
        .claim_alert(&claim("x", 80, "x-80", &["https://a", "https://b"]))
        .unwrap();
    let due = ledger.outbox_due(1_000, 10).unwrap();
    let (a, b) = (due[0].id, due[1].id);
    ledger.outbox_failed(a, 1, 3_000, "HTTP 503").unwrap();
    ledger.outbox_delivered(b, 1_100).unwrap();
    assert!(ledger.outbox_due(2_999, 10).unwrap().is_empty());
    let retry = ledger.outbox_due(3_000, 10).unwrap();
    assert_eq!(retry.len(), 1);
    assert_eq!((retry[0].id, retry[0].attempts), (a, 1));
    ledger.outbox_delivered(a, 3_050).unwrap();
    ledger.outbox_delivered(a, 9_999).unwrap();
    ledger.outbox_failed(a, 5, 10_000, "late failure").unwrap();
    assert!(ledger.outbox_due(i64::MAX, 10).unwrap().is_empty());
    let rows = ledger.alerts_list(DAY, DAY, None).unwrap();
    let d = &rows[0].deliveries;
    assert_eq!(
        d[0].delivered_at_ms,
        Some(3_050),
        "first delivery time kept"
    );
    assert_eq!(d[0].attempts, 2);
    assert_eq!(d[0].last_error, None);
    assert_eq!((d[1].delivered_at_ms, d[1].attempts), (Some(1_100), 1));
    assert!(matches!(
        ledger.outbox_delivered(12345, 1),
        Err(LedgerError::UnknownOutboxItem(12345))
    ));
    assert!(matches!(
        ledger.outbox_failed(12345, 1, 1, "x"),
        Err(LedgerError::UnknownOutboxItem(12345))
    ));
}

#[test]
fn alerts_list_filters_days_and_budget_with_delivery_state() {
    let dir = TempDir::new("alertslist");
    let ledger = open(&dir, 200, 512);
    let mut old = claim("x", 80, "old", &["https://a"]);
    old.day = "2025-06-01".into();
    ledger.claim_alert(&old).unwrap();
    ledger
        .claim_alert(&claim("x", 80, "x-80", &["https://a"]))
        .unwrap();
    ledger.claim_alert(&claim("y", 100, "y-100", &[])).unwrap();
    let due = ledger.outbox_due(i64::MAX, 10).unwrap();
    let item = due.iter().find(|d| d.idempotency_key == "x-80").unwrap();
    ledger.outbox_failed(item.id, 1, 5_000, "timeout").unwrap();

    let rows = ledger.alerts_list(DAY, DAY, None).unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["x-80", "y-100"]);
    assert_eq!(rows[0].claimed_at_ms, 1_000);
    assert_eq!(
        rows[0].deliveries,
        [AlertDelivery {
            channel: "https://a".into(),
            attempts: 1,
            next_attempt_ms: 5_000,
            delivered_at_ms: None,
            last_error: Some("timeout".into()),
        }]
    );
    assert!(rows[1].deliveries.is_empty());
    let only_x = ledger.alerts_list("2025-06-01", DAY, Some("x")).unwrap();
    let keys: Vec<&str> = only_x.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["x-80", "old"], "newest day first");
}
