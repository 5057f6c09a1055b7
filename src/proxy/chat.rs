//! `POST /v1/chat/completions`: read and validate the body, resolve the model to its chain,
//! and try the chain in order until one model answers. Fallback happens only before the
//! answer starts; see [`super::exchange`].

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use super::ctx::{AttemptRecord, RequestCtx};
use super::exchange::{self, AttemptPlan, NotDelivered};
use super::respond::HeaderList;
use super::GatewayState;
use crate::api::ChatRequest;
use crate::config::Config;
use crate::error::GatewayError;
use crate::providers::{adapter_for, ResponseContext, TargetSpec};

/// Most `messages` one request may carry.
const MAX_MESSAGES: usize = 100_000;

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
    let body = match read_body(session, config.server.max_body_bytes).await {
        Ok(b) => b,
        Err(Some(e)) => return Handled::Error(e),
        Err(None) => return Handled::ClientGone,
    };
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return Handled::Error(e),
    };
    ctx.requested_model = Some(req.model.clone());
    ctx.streamed = req.is_stream();
    let Some(chain) = config.chain(&req.model) else {
        return Handled::Error(GatewayError::ModelNotFound { model: req.model });
    };

    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let credentials = state.credentials.load();
    let mut last_error: Option<GatewayError> = None;
    for model in &chain {
        let Some(provider) = config.providers.get(&model.provider) else {
            continue;
        };
        let started = Instant::now();
        let skip = |ctx: &mut RequestCtx, outcome: &str| {
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
                skip(ctx, "no_credentials");
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
        let request = match adapter.build_request(&req, &spec) {
            Ok(r) => r,
            Err(e) => {
                // This provider cannot express the request; another in the chain may.
                skip(ctx, "unsupported_request");
                last_error.get_or_insert(GatewayError::from_adapter(provider.kind, e));
                continue;
            }
        };
        let plan = AttemptPlan {
            model,
            provider,
            adapter,
            request,
            auth_headers,
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
            let mut all = prior.clone();
            all.push(AttemptRecord {
                model: model.name.clone(),
                provider: provider.name.clone(),
                status,
                outcome: "ok".into(),
                latency: started.elapsed(),
            });
            let mut h = base_headers.clone();
            h.push(("x-tollgate-model", model.name.clone()));
            h.push(("x-tollgate-provider", provider.name.clone()));
            h.push((
                "x-tollgate-attempts",
                all.iter()
                    .map(AttemptRecord::header_value)
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
            h
        };
        match exchange::attempt(session, &state.upstreams, plan, headers).await {
            Ok(d) => {
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
                ctx.time_to_first_token = d.first_token_after;
                ctx.client_gone = d.client_gone;
                ctx.error = d.stream_error;
                return Handled::Responded;
            }
            Err(NotDelivered::ClientGone) => {
                skip(ctx, "client_gone");
                return Handled::ClientGone;
            }
            Err(NotDelivered::Failed(e)) => {
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
                let retryable = e.is_retryable();
                last_error = Some(e);
                if !retryable {
                    break;
                }
            }
        }
    }
    Handled::Error(last_error.unwrap_or(GatewayError::NoUpstreamAvailable { model: req.model }))
}

/// Headers every response of a proxied request carries.
pub fn response_headers(ctx: &RequestCtx, config: &Config) -> HeaderList {
    vec![
        ("x-request-id", ctx.request_id.clone()),
        ("x-tollgate-config-version", config.version.clone()),
    ]
}

/// Parses and validates a chat request body, naming the offending field on error.
pub fn parse_request(body: &[u8]) -> Result<ChatRequest, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::invalid(
            "The request body is empty; expected a JSON chat completion request.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let req: ChatRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            GatewayError::invalid(format!(
                "We could not parse the JSON body of your request: {inner}."
            ))
        } else if path == "." {
            GatewayError::invalid(format!("Invalid request body: {inner}."))
        } else {
            GatewayError::invalid_param(format!("Invalid value for '{path}': {inner}."), path)
        }
    })?;
    if req.messages.is_empty() {
        return Err(GatewayError::invalid_param(
            "'messages' must contain at least one message.",
            "messages",
        ));
    }
    if req.messages.len() > MAX_MESSAGES {
        return Err(GatewayError::invalid_param(
            format!("'messages' may contain at most {MAX_MESSAGES} messages."),
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
    if req.stream_options.is_some() && !req.is_stream() {
        return Err(GatewayError::invalid_param(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        ));
    }
    Ok(req)
}

/// Reads the request body up to `limit` bytes. `Err(None)`: the client went away.
async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, Option<GatewayError>> {
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
                        Some(GatewayError::invalid("Timed out reading the request body."))
                    }
                    _ if e.esource() == &pingora::ErrorSource::Downstream => None,
                    _ => Some(GatewayError::invalid("The request body could not be read.")),
                })
            }
        }
    }
}
