//! Trying a planned chain of models: each model gets up to `attempts_per_model` tries
//! spaced by backoff (honouring `Retry-After` up to a cap), behind its circuit breaker; a
//! retryable failure before the answer starts moves on to the next model, translated for
//! that model's provider. Errors that are the caller's fault stop the chain (a
//! context-length error may move on to a larger model when config allows).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use pingora::proxy::Session;

use super::chat::{response_headers, Handled};
use super::ctx::{AttemptRecord, RequestCtx};
use super::exchange::{self, AttemptPlan, NotDelivered};
use super::GatewayState;
use crate::api::ChatRequest;
use crate::config::{Config, ModelConfig};
use crate::error::GatewayError;
use crate::providers::{adapter_for, ResponseContext, TargetSpec, UpstreamErrorKind};
use crate::routing::backoff;
use crate::routing::breaker::{Admission, BreakerState, Outcome, UpstreamKey};
use crate::routing::plan::Plan;

/// The breaker and latency key of a model.
pub fn upstream_key(m: &ModelConfig) -> UpstreamKey {
    UpstreamKey {
        provider: m.provider.clone(),
        model: m.name.clone(),
    }
}

/// How a failed attempt counts for the upstream's breaker.
fn breaker_outcome(e: &GatewayError) -> Outcome {
    match e {
        GatewayError::Upstream { error, .. } if error.kind == UpstreamErrorKind::RateLimited => {
            Outcome::RateLimited {
                retry_after: error.retry_after,
            }
        }
        e if e.is_caller_fault() => Outcome::Neutral,
        _ => Outcome::Failure,
    }
}

pub async fn run(
    state: &GatewayState,
    config: &Config,
    session: &mut Session,
    ctx: &mut RequestCtx,
    req: &ChatRequest,
    plan: &Plan,
) -> Handled {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let credentials = state.credentials.load();
    let retry = &config.routing.retry;
    let mut last_error: Option<GatewayError> = None;
    'models: for model in &plan.chain {
        let Some(provider) = config.providers.get(&model.provider) else {
            continue;
        };
        let skip = |ctx: &mut RequestCtx, outcome: &str, started: Instant| {
            ctx.attempts.push(AttemptRecord {
                model: model.name.clone(),
                provider: provider.name.clone(),
                status: 0,
                outcome: outcome.to_string(),
                latency: started.elapsed(),
            });
        };
        let auth_headers = match credentials.get(&provider.name).map(|a| a.headers()) {
            Ok(Ok(h)) => h,
            Ok(Err(_)) | Err(_) => {
                skip(ctx, "no_credentials", Instant::now());
                continue;
            }
        };
        let adapter = adapter_for(provider.kind);
        let spec = TargetSpec {
            upstream_model: &model.upstream,
            default_max_tokens: model.default_max_tokens,
            anthropic_version: &provider.anthropic_version,
            cortex_mode: provider.cortex_mode,
        };
        let request = match adapter.build_request(req, &spec) {
            Ok(r) => r,
            Err(e) => {
                // This provider cannot express the request; another in the chain may.
                skip(ctx, "unsupported_request", Instant::now());
                last_error.get_or_insert(GatewayError::from_adapter(provider.kind, e));
                continue;
            }
        };
        let key = upstream_key(model);
        for attempt in 0..retry.attempts_per_model {
            let started = Instant::now();
            let permit = match state.breakers.admit(&key) {
                Admission::Allowed(p) => p,
                Admission::Rejected {
                    state: st,
                    retry_in,
                } => {
                    let rate_limited = st != BreakerState::Open && st != BreakerState::HalfOpen;
                    skip(
                        ctx,
                        if rate_limited {
                            "rate_limit_cooldown"
                        } else {
                            "breaker_open"
                        },
                        started,
                    );
                    last_error.get_or_insert(GatewayError::UpstreamCoolingDown {
                        provider: provider.kind,
                        retry_in,
                        rate_limited,
                    });
                    continue 'models;
                }
            };
            let plan = AttemptPlan {
                model,
                provider,
                adapter,
                request: request.clone(),
                auth_headers: auth_headers.clone(),
                response_ctx: ResponseContext {
                    id: format!("chatcmpl-{}", ctx.request_id),
                    created,
                    model: model.upstream.clone(),
                    include_usage: req.wants_stream_usage(),
                    max_event_bytes: config.server.max_sse_event_bytes,
                },
                max_event_bytes: config.server.max_sse_event_bytes,
            };
            let prior = ctx.attempts.clone();
            let base_headers = response_headers(ctx, config);
            let headers = |status: u16| {
                let mut all = prior;
                all.push(AttemptRecord {
                    model: model.name.clone(),
                    provider: provider.name.clone(),
                    status,
                    outcome: "ok".into(),
                    latency: started.elapsed(),
                });
                let mut h = base_headers;
                h.push(("x-tollgate-model", model.name.clone()));
                h.push(("x-tollgate-provider", provider.name.clone()));
                h.push(("x-tollgate-attempts", super::ctx::attempts_header(&all)));
                h
            };
            match exchange::attempt(session, &state.upstreams, plan, headers).await {
                Ok(d) => {
                    let outcome = match &d.stream_error {
                        Some(e) if !d.client_gone => breaker_outcome(e),
                        _ => Outcome::Success,
                    };
                    state.breakers.report(permit, outcome);
                    if let Some(t) = d.first_token_after {
                        state.latency.record(&key, t);
                    }
                    ctx.attempts.push(AttemptRecord {
                        model: model.name.clone(),
                        provider: provider.name.clone(),
                        status: d.status,
                        outcome: if d.client_gone {
                            "client_gone".into()
                        } else if let Some(e) = &d.stream_error {
                            e.metric_label().into()
                        } else {
                            "ok".into()
                        },
                        latency: started.elapsed(),
                    });
                    ctx.served_model = Some(model.name.clone());
                    ctx.served_provider = Some(provider.name.clone());
                    ctx.status = d.status;
                    ctx.usage = d.usage;
                    ctx.output_text = d.output_text;
                    ctx.time_to_first_token = d.first_token_after;
                    ctx.client_gone = d.client_gone;
                    ctx.error = d.stream_error;
                    return Handled::Responded;
                }
                Err(NotDelivered::ClientGone) => {
                    // Dropping the permit counts as neither success nor failure.
                    drop(permit);
                    skip(ctx, "client_gone", started);
                    return Handled::ClientGone;
                }
                Err(NotDelivered::Failed(e)) => {
                    state.breakers.report(permit, breaker_outcome(&e));
                    let status = match &e {
                        GatewayError::Upstream { error, .. } => error.status,
                        _ => 0,
                    };
                    ctx.attempts.push(AttemptRecord {
                        model: model.name.clone(),
                        provider: provider.name.clone(),
                        status,
                        outcome: e.metric_label().to_string(),
                        latency: started.elapsed(),
                    });
                    let caller_fault = e.is_caller_fault();
                    let context = e.is_context_length();
                    let retryable = e.is_retryable();
                    let retry_after = e.retry_after();
                    last_error = Some(e);
                    if caller_fault {
                        if context && config.routing.context_length_fallback {
                            continue 'models;
                        }
                        break 'models;
                    }
                    if !retryable || attempt + 1 >= retry.attempts_per_model {
                        continue 'models;
                    }
                    let Some(delay) =
                        backoff::retry_delay(attempt + 1, retry_after, retry, &mut || {
                            fastrand::f64()
                        })
                    else {
                        continue 'models;
                    };
                    tokio::select! {
                        biased;
                        _ = exchange::client_gone(session) => {
                            ctx.client_gone = true;
                            return Handled::ClientGone;
                        }
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
    Handled::Error(last_error.unwrap_or(GatewayError::NoUpstreamAvailable {
        model: req.model.clone(),
    }))
}
