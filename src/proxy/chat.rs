//! `POST /v1/chat/completions`: read and validate the body, classify it, read the caller's
//! routing headers, and plan the chain of models; [`super::chain`] then tries it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde::Deserialize;

use super::chain;
use super::ctx::RequestCtx;
use super::respond::HeaderList;
use super::GatewayState;
use crate::api::{ChatRequest, RequestLimits};
use crate::billing::{Hold, Refusal};
use crate::budget::{Caller, Policy};
use crate::config::{Config, ModelConfig};
use crate::error::GatewayError;
use crate::money::Decimal9;
use crate::routing::classifier::Classification;
use crate::routing::plan::{self, Plan, PlanInput};
use crate::tokens::Encoding;

/// Callers pick a tier (when `routing.allow_tier_header` is on).
pub const TIER_HEADER: &str = "x-tollgate-tier";
/// Callers lower the estimated-cost ceiling, in dollars.
pub const MAX_COST_HEADER: &str = "x-tollgate-max-cost";
/// Callers ask for a latency class from `routing.latency_classes`.
pub const LATENCY_HEADER: &str = "x-tollgate-latency";

/// What the handler did, for the caller to record.
pub enum Handled {
    /// A response (success or error after commit) went to the client.
    Responded,
    /// Nothing was sent; the caller sends this error.
    Error(GatewayError),
    /// The client left.
    ClientGone,
}

pub async fn handle(
    state: &GatewayState,
    config: &Arc<Config>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Handled {
    let s = &config.server;
    let body = match read_body(session, s.max_body_bytes, s.client_body_timeout).await {
        Ok(b) => b,
        Err(Some(e)) => return Handled::Error(e),
        Err(None) => return Handled::ClientGone,
    };
    let limits = RequestLimits {
        max_json_depth: s.max_json_depth,
        max_messages: s.max_messages,
        max_n: s.max_n,
    };
    let req = match parse_request(&body, &limits) {
        Ok(r) => r,
        Err(e) => return Handled::Error(e),
    };
    ctx.requested_model = Some(req.model.clone());
    ctx.streamed = req.is_stream();
    let Some(caller) = ctx.caller.clone() else {
        return Handled::Error(GatewayError::InvalidApiKey { missing: true });
    };
    // Count with the requested model's encoding; routed requests count with cl100k_base.
    let encoding = config
        .canonical_model(&req.model)
        .and_then(|c| config.models.get(c))
        .map_or(Encoding::Cl100k, |m| Encoding::for_model(&m.upstream));
    let classification = config.classifier.classify_with(&req, encoding);
    ctx.prompt_tokens = classification.prompt_tokens;
    if let Err(e) = super::limits::admit(state, config, &req, &caller, ctx).await {
        return Handled::Error(e);
    }
    let mut plan = match plan_request(state, config, session, &req, &caller, &classification) {
        Ok(p) => p,
        Err(e) => return Handled::Error(e),
    };
    match admit(state, config, &req, &caller, &classification, &mut plan).await {
        Ok(hold) => ctx.hold = Some(hold),
        Err(e) => {
            ctx.tier = plan.tier.clone();
            ctx.route_reason = plan.reason.clone();
            return Handled::Error(e);
        }
    }
    ctx.tier = plan.tier.clone();
    ctx.route_reason = plan.reason.clone();
    chain::run(state, config, session, ctx, &req, &plan).await
}

/// The most a request on `chain` can cost: every prompt token plus the most output it
/// may produce (its `max_tokens`, else the model's output limit), on the costliest model
/// of the chain, since fallback may reach any of them.
pub fn max_cost(chain: &[Arc<ModelConfig>], prompt_tokens: u64, req: &ChatRequest) -> u64 {
    chain
        .iter()
        .map(|m| {
            let out = req
                .max_output_tokens()
                .map_or(m.max_output_tokens, |o| o.min(m.max_output_tokens));
            crate::pricing::estimate_nanos(&m.price, prompt_tokens, u64::from(out))
        })
        .max()
        .unwrap_or(0)
}

/// Reserves the request's maximum cost against the caller's budget and the global one.
/// When it does not fit, the refusing budget's policy decides: `block` refuses (429
/// `budget_exceeded`), `downgrade` re-plans on the cheapest tier and tries once more.
async fn admit(
    state: &GatewayState,
    config: &Config,
    req: &ChatRequest,
    caller: &Caller,
    classification: &Classification,
    plan: &mut Plan,
) -> Result<Hold, GatewayError> {
    let mut budgets = vec![caller.budget.clone()];
    if let Some(g) = config.budgets.global() {
        if g.name != caller.budget.name {
            budgets.push(g.clone());
        }
    }
    let estimate = max_cost(&plan.chain, classification.prompt_tokens, req);
    let refusal = match state.billing.admit(&budgets, estimate).await {
        Ok(h) => return Ok(h),
        Err(r) => r,
    };
    match refusal {
        Refusal::Unavailable(detail) => Err(GatewayError::AccountingUnavailable { detail }),
        Refusal::Exceeded { detail, policy } => {
            if policy != Policy::Downgrade || config.routing.tiers.is_empty() {
                return Err(GatewayError::BudgetExceeded(detail));
            }
            let cheapest = PlanInput {
                requested_model: &req.model,
                tier: Some(0),
                tier_reason: "budget_downgrade",
                budget_percent: 100,
                prompt_tokens: classification.prompt_tokens,
                max_output_tokens: req.max_output_tokens(),
                max_cost: None,
                latency: None,
            };
            let downgraded = plan::plan(config, &cheapest, &|_| None)?;
            let estimate = max_cost(&downgraded.chain, classification.prompt_tokens, req);
            match state.billing.admit(&budgets, estimate).await {
                Ok(h) => {
                    *plan = downgraded;
                    Ok(h)
                }
                Err(Refusal::Exceeded { detail, .. }) => Err(GatewayError::BudgetExceeded(detail)),
                Err(Refusal::Unavailable(detail)) => {
                    Err(GatewayError::AccountingUnavailable { detail })
                }
            }
        }
    }
}

/// Classifies the request (for routed models), reads the caller's routing headers, and
/// plans the chain.
fn plan_request(
    state: &GatewayState,
    config: &Config,
    session: &Session,
    req: &ChatRequest,
    caller: &Caller,
    classification: &Classification,
) -> Result<Plan, GatewayError> {
    let header = |name: &str| {
        session
            .req_header()
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let routed = config.is_routed(&req.model);
    let mut tier = None;
    let mut tier_reason = String::new();
    if routed {
        let forced = match header(TIER_HEADER).filter(|_| config.routing.allow_tier_header) {
            Some(name) => Some(config.tier_index(name).ok_or_else(|| {
                GatewayError::invalid_param(
                    format!(
                        "Unknown tier `{name}` in {TIER_HEADER}; configured tiers: {}.",
                        config
                            .routing
                            .tiers
                            .iter()
                            .map(|t| t.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    TIER_HEADER,
                )
            })?),
            None => None,
        };
        match forced {
            Some(i) => {
                tier = Some(i);
                tier_reason = "header".into();
            }
            None => {
                tier = Some(classification.tier);
                tier_reason = classification.reason.clone();
            }
        }
    }
    // The lower of the global and the budget's ceiling applies.
    let mut max_cost = match (
        config.routing.max_request_cost,
        caller.budget.max_request_cost,
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(v) = header(MAX_COST_HEADER) {
        let asked = Decimal9::parse(v.trim_start_matches('$')).map_err(|_| {
            GatewayError::invalid_param(
                format!("{MAX_COST_HEADER} must be a dollar amount such as 0.05, got `{v}`."),
                MAX_COST_HEADER,
            )
        })?;
        // Callers may lower the ceiling, never raise it.
        max_cost = Some(max_cost.map_or(asked, |c| c.min(asked)));
    }
    let latency = match header(LATENCY_HEADER) {
        Some(class) => match config.routing.latency_classes.get_key_value(class) {
            Some((name, target)) => Some((name.as_str(), *target)),
            None => {
                return Err(GatewayError::invalid_param(
                    format!("Unknown latency class `{class}` in {LATENCY_HEADER}."),
                    LATENCY_HEADER,
                ))
            }
        },
        None => None,
    };
    let input = PlanInput {
        requested_model: &req.model,
        tier,
        tier_reason: &tier_reason,
        budget_percent: state.billing.percent_spent(&caller.budget),
        prompt_tokens: classification.prompt_tokens,
        max_output_tokens: req.max_output_tokens(),
        max_cost,
        latency,
    };
    plan::plan(config, &input, &|m: &ModelConfig| {
        state.latency.quantile(&chain::upstream_key(m), 0.5)
    })
    .map_err(|e| match e {
        // Name the field the client actually used.
        GatewayError::InvalidRequest {
            message,
            param: Some(p),
            code,
        } if p == "max_tokens" && req.max_completion_tokens.is_some() => {
            GatewayError::InvalidRequest {
                message: message.replacen("max_tokens", "max_completion_tokens", 1),
                param: Some("max_completion_tokens".into()),
                code,
            }
        }
        e => e,
    })
}

/// Headers every response of a proxied request carries.
pub fn response_headers(ctx: &RequestCtx, config: &Config) -> HeaderList {
    let mut h = vec![
        ("x-request-id", ctx.request_id.clone()),
        ("x-tollgate-config-version", config.version.clone()),
    ];
    if let Some(t) = &ctx.tier {
        h.push(("x-tollgate-tier", t.clone()));
    }
    if !ctx.route_reason.is_empty() {
        h.push(("x-tollgate-route-reason", ctx.route_reason.clone()));
    }
    h.extend(ctx.rate_headers.iter().cloned());
    h
}

/// Parses and validates a chat request body, naming the offending field on error.
pub fn parse_request(body: &[u8], limits: &RequestLimits) -> Result<ChatRequest, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::invalid(
            "The request body is empty; expected a JSON chat completion request.",
        ));
    }
    if let Err(deep) = crate::api::limits::check_depth(body, limits.max_json_depth) {
        let message = format!(
            "The request body nests arrays and objects more than {} levels deep.",
            limits.max_json_depth
        );
        return Err(if deep.field.is_empty() {
            GatewayError::invalid(message)
        } else {
            GatewayError::invalid_param(message, deep.field)
        });
    }
    // Tracking the path costs a wrapper around every value; a valid body does not need it,
    // so it is only read with the path when the plain read fails (the same input fails the
    // same way), to name the field in the error.
    let req = match ChatRequest::deserialize(&mut serde_json::Deserializer::from_slice(body)) {
        Ok(req) => req,
        Err(_) => {
            let de = &mut serde_json::Deserializer::from_slice(body);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    GatewayError::invalid(format!(
                        "We could not parse the JSON body of your request: {inner}."
                    ))
                } else if path == "." {
                    GatewayError::invalid(format!("Invalid request body: {inner}."))
                } else {
                    GatewayError::invalid_param(
                        format!("Invalid value for '{path}': {inner}."),
                        path,
                    )
                }
            })?
        }
    };
    if req.messages.is_empty() {
        return Err(GatewayError::invalid_param(
            "'messages' must contain at least one message.",
            "messages",
        ));
    }
    if req.messages.len() > limits.max_messages {
        return Err(GatewayError::invalid_param(
            format!(
                "'messages' may contain at most {} messages; got {}.",
                limits.max_messages,
                req.messages.len()
            ),
            "messages",
        ));
    }
    if req.model.is_empty() {
        return Err(GatewayError::invalid_param(
            "'model' must not be empty.",
            "model",
        ));
    }
    if req.n == Some(0) {
        return Err(GatewayError::invalid_param("'n' must be at least 1.", "n"));
    }
    if let Some(n) = req.n.filter(|n| *n > limits.max_n) {
        return Err(GatewayError::invalid_param(
            format!("'n' may be at most {}; got {n}.", limits.max_n),
            "n",
        ));
    }
    if req.stream_options.is_some() && !req.is_stream() {
        return Err(GatewayError::invalid_param(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ));
    }
    Ok(req)
}

/// Reads the request body up to `limit` bytes within `within` (a client trickling its body
/// gets a 408 rather than holding the connection). `Err(None)`: the client went away.
async fn read_body(
    session: &mut Session,
    limit: usize,
    within: std::time::Duration,
) -> Result<Bytes, Option<GatewayError>> {
    match tokio::time::timeout(within, read_body_unbounded(session, limit)).await {
        Ok(r) => r,
        Err(_) => {
            // The connection cannot be reused with part of a body unread.
            session.set_keepalive(None);
            Err(Some(GatewayError::RequestTimeout { after: within }))
        }
    }
}

async fn read_body_unbounded(
    session: &mut Session,
    limit: usize,
) -> Result<Bytes, Option<GatewayError>> {
    let too_large = || Some(GatewayError::BodyTooLarge { limit });
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let expects_continue = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await
            .map_err(|_| None)?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(match e.etype() {
                    pingora::ErrorType::ReadTimedout => {
                        session.set_keepalive(None);
                        Some(GatewayError::invalid("Timed out reading the request body."))
                    }
                    _ if e.esource() == &pingora::ErrorSource::Downstream => None,
                    _ => Some(GatewayError::invalid("The request body could not be read.")),
                })
            }
        }
    }
}
