//! Operator routes: `GET /admin/api/status` (config version, reloads, breakers, state
//! backend), `GET /admin/api/breakers`, `POST /admin/reload` and `GET /metrics`.

use std::time::{SystemTime, UNIX_EPOCH};

use http::Response;
use serde_json::{json, Value};

use super::reply::{error, json, Answer};
use super::AdminApp;
use crate::reload::ReloadOutcome;
use crate::routing::breaker::BreakerState;

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| Value::from(d.as_secs()))
        .unwrap_or(Value::Null)
}

impl AdminApp {
    pub(super) fn status(&self) -> Value {
        let cfg = self.state.config.load();
        let st = self.state.reload_status.lock().clone();
        json!({
            "config_version": cfg.version,
            "reloads": {
                "successes": st.successes,
                "failures": st.failures,
                "last_reload_at": unix(st.last_reload_at),
                "last_error": st.last_error,
                "last_error_at": unix(st.last_error_at),
            },
            "state_backend": self.state_backend(),
            "breakers": self.breakers(),
        })
    }

    /// Every circuit breaker this replica has seen (breakers are per replica).
    pub(super) fn breakers(&self) -> Value {
        self.state
            .breakers
            .snapshot()
            .iter()
            .map(|b| {
                json!({
                    "provider": b.key.provider,
                    "model": b.key.model,
                    "state": b.state.as_str(),
                    "recent_successes": b.recent_successes,
                    "recent_failures": b.recent_failures,
                    "retry_in_ms": b.retry_in.map(|d| d.as_millis() as u64),
                    "transitions": b.transitions,
                    "rejections": b.rejections,
                })
            })
            .collect()
    }

    /// Prometheus text; gauges of live state are read now.
    pub(super) fn metrics(&self) -> Answer {
        let m = &self.state.metrics;
        let cfg = self.state.config.load();
        m.config_info.reset();
        m.config_info.with_label_values(&[&cfg.version]).set(1);
        m.circuit_state.reset();
        for b in self.state.breakers.snapshot() {
            let v = match b.state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            m.circuit_state
                .with_label_values(&[&b.key.provider, &b.key.model])
                .set(v);
        }
        let billing = &self.state.billing;
        m.state_backend_up
            .set(i64::from(billing.store.health().connected));
        if let Some(l) = &billing.ledger {
            m.ledger_lag.set(l.stats().queued as i64);
        }
        for b in cfg.budgets.iter() {
            let pct = billing.percent_spent(b);
            m.budget_spent_ratio
                .with_label_values(&[&b.name])
                .set(f64::from(pct) / 100.0);
        }
        let body = m.render().into_bytes();
        let resp = Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .body(body)
            .unwrap_or_default();
        Box::new(resp)
    }

    /// The budget store and the ledger, as the status endpoint shows them.
    fn state_backend(&self) -> Value {
        let billing = &self.state.billing;
        let h = billing.store.health();
        let ledger = billing.ledger.as_ref().map(|l| {
            let s = l.stats();
            json!({
                "path": l.path().display().to_string(),
                "committed_records": s.committed_records,
                "queued": s.queued,
                "commits": s.commits,
                "failed_commits": s.failed_commits,
                "lost": s.lost,
            })
        });
        json!({
            "backend": billing.store.backend(),
            "connected": h.connected,
            "degraded_since": unix(h.degraded_since),
            "pending_reconcile": h.pending_reconcile,
            "errors_total": h.errors_total,
            "ledger": ledger,
        })
    }

    pub(super) fn reload(&self) -> Answer {
        let Some(r) = self.state.reloader.get() else {
            return error(
                409,
                "reload_unavailable",
                "This gateway was not started from a file.",
            );
        };
        match r.reload_now("admin API") {
            Ok(ReloadOutcome::Applied { version }) => json(
                200,
                &json!({"result": "applied", "config_version": version}),
            ),
            Ok(ReloadOutcome::Unchanged { version }) => json(
                200,
                &json!({"result": "unchanged", "config_version": version}),
            ),
            Err(errs) => json(
                422,
                &json!({
                    "error": {
                        "message": "The configuration was rejected; the last good one keeps serving.",
                        "type": "admin_error", "param": null, "code": "config_invalid",
                        "problems": errs.0.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    }
                }),
            ),
        }
    }
}
