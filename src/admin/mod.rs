//! The admin listener: a second port, never the public one, for operators. Every
//! `/admin/…` route needs `Authorization: Bearer <TOLLGATE_ADMIN_TOKEN>` (compared in
//! constant time); without a configured token the admin API refuses every request.
//!
//! - `GET /admin/api/status`: config version, reload counters and last error, and every
//!   circuit breaker's state.
//! - `POST /admin/reload`: reload `routes.toml` now (422 with every problem when invalid).
//! - `GET /metrics`: Prometheus text (the same bearer token; Prometheus sends it with
//!   `authorization: {credentials: ...}` in its scrape config).
//! - `GET /healthz`: liveness, unauthenticated.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::budget::keys::constant_time_eq;
use crate::providers::auth::Secret;
use crate::proxy::GatewayState;
use crate::reload::ReloadOutcome;
use crate::routing::breaker::BreakerState;

/// The admin application.
pub struct AdminApp {
    pub state: Arc<GatewayState>,
    pub token: Option<Secret>,
}

fn reply(status: u16, body: Value) -> Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

fn error(status: u16, code: &str, message: &str) -> Response<Vec<u8>> {
    reply(
        status,
        json!({"error": {"message": message, "type": "admin_error", "param": null, "code": code}}),
    )
}

fn unix(t: Option<SystemTime>) -> Value {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| Value::from(d.as_secs()))
        .unwrap_or(Value::Null)
}

impl AdminApp {
    /// `None` when the request carries the admin token; otherwise the refusal to send.
    fn refusal(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let Some(token) = &self.token else {
            return Some(error(
                503,
                "admin_token_not_configured",
                "Set TOLLGATE_ADMIN_TOKEN to use the admin API.",
            ));
        };
        let given = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            None
        } else {
            Some(error(
                401,
                "invalid_admin_token",
                "Missing or wrong admin bearer token.",
            ))
        }
    }

    fn status(&self) -> Value {
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
            "breakers": self.state.breakers.snapshot().iter().map(|b| json!({
                "provider": b.key.provider,
                "model": b.key.model,
                "state": b.state.as_str(),
                "recent_successes": b.recent_successes,
                "recent_failures": b.recent_failures,
                "retry_in_ms": b.retry_in.map(|d| d.as_millis() as u64),
                "transitions": b.transitions,
                "rejections": b.rejections,
            })).collect::<Vec<_>>(),
        })
    }

    /// Prometheus text; gauges of live state are read now.
    fn metrics(&self) -> Response<Vec<u8>> {
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
        Response::builder()
            .status(200)
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .header("content-length", body.len())
            .header("cache-control", "no-store")
            .body(body)
            .unwrap_or_default()
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

    fn reload(&self) -> Response<Vec<u8>> {
        let Some(r) = self.state.reloader.get() else {
            return error(
                409,
                "reload_unavailable",
                "This gateway was not started from a file.",
            );
        };
        match r.reload_now("admin API") {
            Ok(ReloadOutcome::Applied { version }) => {
                reply(200, json!({"result": "applied", "config_version": version}))
            }
            Ok(ReloadOutcome::Unchanged { version }) => reply(
                200,
                json!({"result": "unchanged", "config_version": version}),
            ),
            Err(errs) => reply(
                422,
                json!({
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

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.as_str().to_string();
        let path = session.req_header().uri.path().to_string();
        if path == "/healthz" {
            return reply(200, json!({"status": "ok"}));
        }
        if !path.starts_with("/admin/") && path != "/metrics" {
            return error(404, "unknown_url", "Unknown admin URL.");
        }
        if let Some(resp) = self.refusal(session) {
            return resp;
        }
        match (method.as_str(), path.as_str()) {
            ("GET", "/metrics") => self.metrics(),
            ("GET", "/admin/api/status") => reply(200, self.status()),
            ("POST", "/admin/reload") => self.reload(),
            (_, "/admin/api/status" | "/admin/reload" | "/metrics") => {
                error(405, "method_not_allowed", "Method not allowed.")
            }
            _ => error(404, "unknown_url", "Unknown admin URL."),
        }
    }
}
