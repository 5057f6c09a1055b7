//! The public listener: a Pingora `ProxyHttp` service that answers the OpenAI API.
//!
//! Every request is handled inside `request_filter`, which owns the upstream exchange (see
//! [`exchange`]): Pingora's own proxy loop can only replay 64 KiB of request body and cannot
//! fall back on a status code, both of which an LLM gateway needs. `logging` writes one
//! structured access-log line per request.

pub mod auth;
pub mod chain;
pub mod chat;
pub mod conn;
pub mod ctx;
pub mod exchange;
pub mod limits;
pub mod respond;
pub mod upstream;

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::json;

use crate::config::{Config, AUTO_MODEL};
use crate::error::GatewayError;
use crate::reload::{ReloadStatus, Reloader};
use crate::routing::breaker::Breakers;
use crate::routing::latency::LatencyTracker;
use ctx::RequestCtx;
use upstream::{Credentials, Upstreams};

/// State shared by all requests. Config and credentials are swapped whole on reload; a
/// request reads one snapshot at its start.
pub struct GatewayState {
    pub config: ArcSwap<Config>,
    pub credentials: ArcSwap<Credentials>,
    pub upstreams: Upstreams,
    /// Circuit breakers per upstream; they outlive config reloads.
    pub breakers: Breakers,
    /// Time to first token per upstream.
    pub latency: LatencyTracker,
    /// Budget reservations, the ledger and alerts.
    pub billing: crate::billing::Billing,
    /// Requests and tokens per minute of budgets and keys; they outlive config reloads.
    pub ratelimit: crate::ratelimit::RateLimiter,
    pub reload_status: parking_lot::Mutex<ReloadStatus>,
    /// Set when the gateway serves a file that can be reloaded.
    pub reloader: std::sync::OnceLock<Arc<Reloader>>,
    pub metrics: crate::metrics::Metrics,
}

impl GatewayState {
    /// A gateway with in-memory budget counters and no ledger.
    pub fn new(config: Config, credentials: Credentials) -> Arc<Self> {
        Self::with_billing(
            config,
            credentials,
            crate::billing::Billing::in_memory(Arc::new(crate::clock::SystemClock)),
        )
    }

    /// A gateway that bills through `billing` (the ledger and the configured store).
    pub fn with_billing(
        config: Config,
        credentials: Credentials,
        billing: crate::billing::Billing,
    ) -> Arc<Self> {
        let ratelimit =
            crate::ratelimit::RateLimiter::from_state(&config.state, billing.clock.clone());
        Arc::new(GatewayState {
            ratelimit,
            breakers: Breakers::new(config.breaker.clone()),
            config: ArcSwap::from_pointee(config),
            credentials: ArcSwap::from_pointee(credentials),
            upstreams: Upstreams::default(),
            latency: LatencyTracker::new(std::time::Duration::from_secs(300)),
            billing,
            reload_status: parking_lot::Mutex::new(ReloadStatus {
                last_reload_at: Some(std::time::SystemTime::now()),
                ..ReloadStatus::default()
            }),
            reloader: std::sync::OnceLock::new(),
            metrics: crate::metrics::Metrics::new(),
        })
    }

    /// Swaps in a new config and its credentials. Running requests keep their snapshot.
    pub fn apply(&self, config: Config, credentials: Credentials) {
        self.breakers.set_config(config.breaker.clone());
        self.credentials.store(Arc::new(credentials));
        self.config.store(Arc::new(config));
    }
}

/// The proxy service.
pub struct Gateway {
    pub state: Arc<GatewayState>,
}

impl Gateway {
    async fn route(&self, session: &mut Session, ctx: &mut RequestCtx) {
        let config = self.state.config.load_full();
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let headers = chat::response_headers(ctx, &config);
        let max_header = config.server.max_header_bytes;
        let result = match (method.as_str(), path.trim_end_matches('/')) {
            _ if header_bytes(session.req_header()) > max_header => {
                Err(GatewayError::HeadersTooLarge { limit: max_header })
            }
            ("POST", "/v1/chat/completions" | "/chat/completions") => 'chat: {
                ctx.route = "chat_completions";
                match auth::caller(&config, session.req_header()) {
                    Ok(c) => ctx.caller = Some(c),
                    Err(e) => break 'chat Err(e),
                }
                match chat::handle(&self.state, &config, session, ctx).await {
                    chat::Handled::Responded => return,
                    chat::Handled::ClientGone => {
                        ctx.client_gone = true;
                        return;
                    }
                    chat::Handled::Error(e) => Err(e),
                }
            }
            ("GET", "/v1/models" | "/models") => {
                ctx.route = "models";
                auth::caller(&config, session.req_header()).map(|c| {
                    ctx.caller = Some(c);
                    models_body(&config)
                })
            }
            ("GET", "/healthz") => {
                ctx.route = "healthz";
                Ok(Bytes::from(
                    json!({"status": "ok", "config_version": config.version}).to_string(),
                ))
            }
            (
                _,
                "/v1/chat/completions"
                | "/chat/completions"
                | "/v1/models"
                | "/models"
                | "/healthz",
            ) => Err(GatewayError::MethodNotAllowed {
                method: method.to_string(),
                path,
            }),
            _ => Err(GatewayError::RouteNotFound {
                method: method.to_string(),
                path,
            }),
        };
        let sent = match &result {
            Ok(body) => {
                ctx.status = 200;
                respond::json(session, 200, body.clone(), &headers).await
            }
            Err(e) => {
                ctx.status = e.status();
                // A refusal before the body was read (a wrong key, an unknown path) keeps
                // the connection when the body is small enough to read and drop.
                let s = &config.server;
                respond::drain_unread_body(session, s.max_body_bytes, s.client_body_timeout).await;
                let mut h = headers;
                h.extend(ctx.rate_headers.iter().cloned());
                if !ctx.attempts.is_empty() {
                    h.push(("x-tollgate-attempts", ctx.attempts_header()));
                }
                respond::error(session, e, &h).await
            }
        };
        if let Err(e) = result {
            ctx.error = Some(e);
        }
        if sent.is_err() {
            ctx.client_gone = true;
        }
    }
}

impl Gateway {
    /// Prices, settles and records a chat request that reached a caller's budget.
    async fn bill(&self, ctx: &mut RequestCtx, attempts: &str) {
        if ctx.route != "chat_completions" {
            return;
        }
        let Some(caller) = ctx.caller.clone() else {
            return;
        };
        let config = self.state.config.load_full();
        let served = ctx
            .served_model
            .as_deref()
            .and_then(|n| config.models.get(n))
            .cloned();
        let billing = &self.state.billing;
        let elapsed = ctx.started.elapsed();
        let finished = crate::billing::Finished {
            request_id: &ctx.request_id,
            started_ms: billing.clock.now_ms() - elapsed.as_millis() as i64,
            budget: &caller.budget,
            key_id: caller.key_id.as_deref(),
            requested_model: ctx.requested_model.as_deref().unwrap_or(""),
            tier: ctx.tier.as_deref(),
            route_reason: &ctx.route_reason,
            served: served.as_deref(),
            provider: ctx.served_provider.as_deref(),
            attempts,
            attempt_count: ctx.attempts.len() as u32,
            usage: ctx.usage,
            prompt_tokens: ctx.prompt_tokens,
            output_text: &ctx.output_text,
            latency_ms: elapsed.as_millis() as u64,
            ttft_ms: ctx.time_to_first_token.map(|d| d.as_millis() as u64),
            status: if ctx.client_gone && ctx.status == 0 {
                499
            } else {
                ctx.status
            },
            error_code: ctx.error.as_ref().and_then(|e| e.code()),
            streamed: ctx.streamed,
            price_version: &config.version,
        };
        let (usage, cost) = billing
            .finish(finished, ctx.hold.take(), &self.state.metrics)
            .await;
        ctx.usage = Some(usage);
        ctx.cost_nanos = cost;
        if let Some(ticket) = ctx.rate_ticket.take() {
            self.state.ratelimit.settle(ticket, usage.total()).await;
        }
    }

    fn record_metrics(&self, ctx: &RequestCtx) {
        let m = &self.state.metrics;
        let model = ctx.served_model.as_deref().unwrap_or("");
        let status = if ctx.client_gone && ctx.status == 0 {
            // nginx's convention for "client closed the request".
            "499".to_string()
        } else {
            ctx.status.to_string()
        };
        m.requests
            .with_label_values(&[
                ctx.route,
                model,
                ctx.served_provider.as_deref().unwrap_or(""),
                ctx.tier.as_deref().unwrap_or(""),
                &status,
            ])
            .inc();
        let total = ctx.started.elapsed();
        m.request_duration
            .with_label_values(&[ctx.route, if ctx.streamed { "true" } else { "false" }])
            .observe(total.as_secs_f64());
        if let Some(t) = ctx.time_to_first_token {
            m.time_to_first_token
                .with_label_values(&[model])
                .observe(t.as_secs_f64());
        }
        let upstream: std::time::Duration = ctx.attempts.iter().map(|a| a.latency).sum();
        m.overhead
            .with_label_values(&[ctx.route])
            .observe(total.saturating_sub(upstream).as_secs_f64());
        for a in &ctx.attempts {
            m.upstream_attempts
                .with_label_values(&[&a.provider, &a.model, &a.outcome])
                .inc();
        }
        if let Some(u) = &ctx.usage {
            for (kind, n) in [
                ("input", u.input_tokens),
                ("output", u.output_tokens),
                ("cached_input", u.cached_input_tokens),
                ("cache_write", u.cache_write_tokens),
            ] {
                if n > 0 {
                    m.tokens.with_label_values(&[model, kind]).inc_by(n);
                }
            }
        }
    }
}

/// The size of a request's header block as sent: request line and `name: value` lines.
fn header_bytes(h: &pingora::http::RequestHeader) -> usize {
    let line = h.method.as_str().len() + h.uri.to_string().len() + 12;
    h.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// `GET /v1/models`: every model and alias a client may ask for, plus `auto`.
fn models_body(config: &Config) -> Bytes {
    let created = 1_700_000_000u64;
    let mut data = vec![json!({
        "id": AUTO_MODEL, "object": "model", "created": created, "owned_by": "tollgate"
    })];
    for m in config.models.values() {
        data.push(
            json!({"id": m.name, "object": "model", "created": created, "owned_by": m.owned_by}),
        );
    }
    for (alias, target) in &config.aliases {
        let owner = config
            .models
            .get(target)
            .map(|m| m.owned_by.as_str())
            .unwrap_or("tollgate");
        data.push(json!({"id": alias, "object": "model", "created": created, "owned_by": owner}));
    }
    Bytes::from(json!({"object": "list", "data": data}).to_string())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    /// Never reached: `request_filter` answers every request itself.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        Error::e_explain(
            ErrorType::InternalError,
            "tollgate answers every request in request_filter",
        )
    }

    /// Handles the whole request and returns `Ok(true)`: the response has been sent.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        self.route(session, ctx).await;
        Ok(true)
    }

    /// One access-log line and the metrics of each request.
    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let attempts = ctx.attempts_header();
        self.bill(ctx, &attempts).await;
        self.record_metrics(ctx);
        let usage = ctx.usage.unwrap_or_default();
        let ttft_ms = ctx.time_to_first_token.map(|d| d.as_millis() as u64);
        tracing::info!(
            request_id = %ctx.request_id,
            route = ctx.route,
            status = ctx.status,
            requested_model = ctx.requested_model.as_deref().unwrap_or(""),
            model = ctx.served_model.as_deref().unwrap_or(""),
            provider = ctx.served_provider.as_deref().unwrap_or(""),
            attempts = %attempts,
            stream = ctx.streamed,
            input_tokens = usage.input_tokens,
            output_tokens = usage.output_tokens,
            usage_estimated = usage.estimated,
            cost = %crate::pricing::dollars(ctx.cost_nanos),
            budget = ctx.caller.as_ref().map(|c| c.budget.name.as_str()).unwrap_or(""),
            key_id = ctx.caller.as_ref().and_then(|c| c.key_id.as_deref()).unwrap_or(""),
            ttft_ms,
            latency_ms = ctx.started.elapsed().as_millis() as u64,
            client_gone = ctx.client_gone,
            error = ctx.error.as_ref().map(|e| e.metric_label()).unwrap_or(""),
            "Request finished."
        );
    }
}
