//! One upstream attempt, owned end to end: connect (pooled, rustls), send the translated
//! request, wait for the response header under the first-byte timeout, then either fail
//! *before anything reached the client* (so the caller may fall back to the next model) or
//! commit and relay the answer, translating stream chunks as they arrive. Stream events
//! already received are translated together and written in one go; an event is never held
//! back waiting for the next.
//!
//! The client is watched throughout: if it disconnects, the upstream exchange is dropped,
//! which closes the upstream connection and stops the provider's generation.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession as UpstreamSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use tokio::time::timeout;

use super::respond::{self, HeaderList};
use super::upstream::Upstreams;
use crate::config::{ModelConfig, ProviderConfig};
use crate::error::GatewayError;
use crate::providers::{ProviderAdapter, ProviderKind, ResponseContext, UpstreamRequest};
use crate::usage::Usage;

/// Largest upstream body read whole (non-streaming answers and error bodies).
const MAX_WHOLE_BODY: usize = 64 * 1024 * 1024;
/// How long to wait for an upstream's trailing bytes before giving up on reusing it.
const DRAIN_WAIT: Duration = Duration::from_millis(50);
/// Translated stream output gathered from already-received upstream data before a write.
const COALESCE_BYTES: usize = 64 * 1024;

/// Everything one attempt needs.
pub struct AttemptPlan<'a> {
    pub model: &'a ModelConfig,
    pub provider: &'a ProviderConfig,
    pub adapter: &'static dyn ProviderAdapter,
    pub request: UpstreamRequest,
    pub auth_headers: Vec<(HeaderName, HeaderValue)>,
    pub response_ctx: ResponseContext,
    pub max_event_bytes: usize,
}

/// A response that reached the client.
#[derive(Debug, Default)]
pub struct Delivered {
    pub status: u16,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub streamed: bool,
    /// Text relayed in a stream (for estimating usage when the provider reported none).
    pub output_text: String,
    /// Time from attempt start to the first byte of the answer sent to the client.
    pub first_token_after: Option<Duration>,
    /// The stream broke after it began (the client got an error event).
    pub stream_error: Option<GatewayError>,
    /// The client disconnected before the end.
    pub client_gone: bool,
}

/// How an attempt ended without committing.
#[derive(Debug)]
pub enum NotDelivered {
    /// Nothing was sent to the client; the error says whether another model may help.
    Failed(GatewayError),
    /// The client disconnected while we waited.
    ClientGone,
}

impl From<GatewayError> for NotDelivered {
    fn from(e: GatewayError) -> Self {
        NotDelivered::Failed(e)
    }
}

/// Runs one attempt. `headers` go on the client response if it commits.
pub async fn attempt(
    session: &mut Session,
    upstreams: &Upstreams,
    plan: AttemptPlan<'_>,
    headers: impl FnOnce(u16) -> HeaderList,
) -> Result<Delivered, NotDelivered> {
    let started = Instant::now();
    let kind = plan.provider.kind;
    let t = &plan.provider.timeouts;
    let deadline = started + t.total;
    let peer = upstreams.peer(plan.provider).await?;

    // A pooled connection may have been closed by the provider while idle; a write or
    // header read that fails on a reused connection is retried on another one.
    let mut up;
    let mut tries = 0;
    loop {
        tries += 1;
        let (s, reused) = timeout(t.connect * 2, upstreams.connector.get_http_session(&peer))
            .await
            .map_err(|_| timeout_err(kind, "connect"))?
            .map_err(|e| connect_err(kind, &e))?;
        up = s;
        // Built per try: a retry is rare, and `send` consumes the header.
        let req_header = request_header(&plan)?;
        match send(&mut up, req_header, plan.request.body.clone()).await {
            Ok(()) => {}
            Err(_) if reused && tries < 3 => continue,
            Err(e) => return Err(connect_err(kind, &e).into()),
        }
        let first_byte = t.first_byte.min(remaining(deadline));
        let header = tokio::select! {
            biased;
            _ = client_gone(session) => return Err(NotDelivered::ClientGone),
            r = timeout(first_byte, read_header(&mut up)) => r,
        };
        match header {
            Err(_) => return Err(timeout_err(kind, "waiting for the first byte").into()),
            Ok(Err(_)) if reused && tries < 3 => continue,
            Ok(Err(e)) => return Err(connect_err(kind, &e).into()),
            Ok(Ok(())) => break,
        }
    }
    let Some(resp) = up.response_header() else {
        return Err(GatewayError::Internal("upstream header missing".into()).into());
    };
    let status = resp.status.as_u16();
    let content_type = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();

    if !(200..300).contains(&status) {
        // Kept for the adapter's error reading (`Retry-After`, request ids).
        let upstream_headers = resp.headers.clone();
        let body = read_whole(session, &mut up, t.idle, deadline, kind)
            .await
            .unwrap_or_default();
        let error = plan.adapter.parse_error(status, &upstream_headers, &body);
        return Err(GatewayError::Upstream {
            provider: kind,
            error,
        }
        .into());
    }

    if !plan.request.stream || !content_type.starts_with("text/event-stream") {
        let body = read_whole(session, &mut up, t.idle, deadline, kind).await?;
        if plan.request.stream {
            // A stream was asked for and JSON came back: an error, or a misbehaving upstream.
            let parsed = plan.adapter.parse_response(&body, &plan.response_ctx);
            return Err(match parsed {
                Err(e) => GatewayError::from_adapter(kind, e),
                Ok(_) => GatewayError::UpstreamMalformed {
                    provider: kind,
                    detail: format!("expected an event stream, got `{content_type}`"),
                },
            }
            .into());
        }
        let translated = plan
            .adapter
            .parse_response(&body, &plan.response_ctx)
            .map_err(|e| GatewayError::from_adapter(kind, e))?;
        release(upstreams, up, &peer, t.pool_idle).await;
        let first = started.elapsed();
        respond::json(session, 200, translated.body, &headers(200))
            .await
            .map_err(|_| NotDelivered::ClientGone)?;
        return Ok(Delivered {
            status: 200,
            usage: translated.usage,
            finish_reason: translated.finish_reason,
            first_token_after: Some(first),
            ..Delivered::default()
        });
    }

    // ---- Commit point: from here on the client has our answer; no fallback. ----
    let mut h = headers(200);
    h.push(("cache-control", "no-cache".into()));
    let resp = respond::header(200, "text/event-stream", None, &h)
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    session
        .write_response_header(resp, false)
        .await
        .map_err(|_| NotDelivered::ClientGone)?;
    Ok(relay_stream(session, upstreams, up, &peer, &plan, started, deadline).await)
}

async fn relay_stream(
    session: &mut Session,
    upstreams: &Upstreams,
    mut up: UpstreamSession,
    peer: &HttpPeer,
    plan: &AttemptPlan<'_>,
    started: Instant,
    deadline: Instant,
) -> Delivered {
    let kind = plan.provider.kind;
    let idle = plan.provider.timeouts.idle;
    let mut xl = plan.adapter.stream_translator(&plan.response_ctx);
    let mut out = BytesMut::new();
    let mut d = Delivered {
        status: 200,
        streamed: true,
        ..Delivered::default()
    };
    let mut stream_error = None;
    loop {
        // Everything the upstream has already sent is translated before writing, so a burst
        // of events costs one write to the client, not one per event; nothing waits for
        // data that has not arrived.
        let buffered = if (1..COALESCE_BYTES).contains(&out.len()) {
            up.read_response_body().now_or_never()
        } else {
            None
        };
        let next = match buffered {
            Some(r) => Ok(r),
            None if !out.is_empty() => {
                d.first_token_after.get_or_insert_with(|| started.elapsed());
                let written = session
                    .write_response_body(Some(out.split().freeze()), false)
                    .await;
                if written.is_err() {
                    d.client_gone = true;
                    break;
                }
                continue;
            }
            None => {
                let wait = idle.min(remaining(deadline));
                tokio::select! {
                    biased;
                    _ = client_gone(session) => {
                        d.client_gone = true;
                        break;
                    }
                    r = timeout(wait, up.read_response_body()) => r,
                }
            }
        };
        let chunk = match next {
            Err(_) => {
                let what = if remaining(deadline).is_zero() {
                    "the total timeout elapsed"
                } else {
                    "no data within the idle timeout"
                };
                stream_error = Some(interrupted(kind, what));
                break;
            }
            Ok(Err(e)) => {
                stream_error = Some(interrupted(
                    kind,
                    &format!("connection failed: {}", e.etype().as_str()),
                ));
                break;
            }
            Ok(Ok(None)) => {
                if let Err(e) = xl.finish(&mut out) {
                    stream_error = Some(GatewayError::from_adapter(kind, e));
                }
                break;
            }
            Ok(Ok(Some(c))) => c,
        };
        if chunk.len() > plan.max_event_bytes.saturating_mul(4) {
            stream_error = Some(interrupted(kind, "upstream chunk too large"));
            break;
        }
        if let Err(e) = xl.push(&chunk, &mut out) {
            stream_error = Some(GatewayError::from_adapter(kind, e));
            break;
        }
        if xl.is_done() {
            break;
        }
    }
    let outcome = xl.outcome();
    d.usage = outcome.usage;
    d.finish_reason = outcome.finish_reason;
    d.output_text = outcome.output_text;
    if let Some(e) = outcome.error {
        d.stream_error = Some(GatewayError::Upstream {
            provider: kind,
            error: e,
        });
    }
    if d.client_gone {
        // Dropping `up` closes the upstream connection: the provider stops generating.
        return d;
    }
    if !out.is_empty() {
        // Translated events not written yet go out with the end of the stream.
        d.first_token_after.get_or_insert_with(|| started.elapsed());
    }
    if let Some(e) = stream_error {
        crate::providers::sse::write_json(&mut out, &e.to_json());
        d.stream_error = Some(e);
    }
    let tail = (!out.is_empty()).then(|| out.freeze());
    if session.write_response_body(tail, true).await.is_err() {
        d.client_gone = true;
    }
    if xl.is_done() && d.stream_error.is_none() {
        // Read the upstream's closing bytes so the connection can be reused.
        if let Ok(Ok(None)) = timeout(DRAIN_WAIT, up.read_response_body()).await {
            release(upstreams, up, peer, plan.provider.timeouts.pool_idle).await;
        }
    }
    d
}

fn request_header(plan: &AttemptPlan<'_>) -> Result<Box<RequestHeader>, GatewayError> {
    let base = &plan.provider.base;
    let path = format!("{}{}", base.path_prefix, plan.request.path);
    let internal = |e: pingora::BError| GatewayError::Internal(e.to_string());
    let size = 3 + plan.request.headers.len() + plan.auth_headers.len();
    // Lowercase names, written as given without a case map (see `respond::header`).
    let mut h =
        RequestHeader::build_no_case("POST", path.as_bytes(), Some(size)).map_err(internal)?;
    h.insert_header("host", base.authority())
        .map_err(internal)?;
    h.insert_header("content-length", plan.request.body.len().to_string())
        .map_err(internal)?;
    h.insert_header(
        "user-agent",
        concat!("tollgate/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(internal)?;
    for (k, v) in plan.request.headers.iter().chain(plan.auth_headers.iter()) {
        h.insert_header(k.clone(), v.clone()).map_err(internal)?;
    }
    Ok(Box::new(h))
}

async fn send(
    up: &mut UpstreamSession,
    header: Box<RequestHeader>,
    body: Bytes,
) -> pingora::Result<()> {
    up.write_request_header(header).await?;
    up.write_request_body(body, true).await?;
    up.finish_request_body().await
}

/// Reads the response header, skipping informational (1xx) responses.
async fn read_header(up: &mut UpstreamSession) -> pingora::Result<()> {
    loop {
        up.read_response_header().await?;
        match up.response_header() {
            Some(h) if h.status.is_informational() => continue,
            _ => return Ok(()),
        }
    }
}

/// Reads a whole upstream body within the idle timeout per read and the deadline.
async fn read_whole(
    session: &mut Session,
    up: &mut UpstreamSession,
    idle: Duration,
    deadline: Instant,
    kind: ProviderKind,
) -> Result<Bytes, NotDelivered> {
    let mut buf = BytesMut::new();
    loop {
        let next = tokio::select! {
            biased;
            _ = client_gone(session) => return Err(NotDelivered::ClientGone),
            r = timeout(idle.min(remaining(deadline)), up.read_response_body()) => r,
        };
        match next {
            Err(_) => return Err(timeout_err(kind, "reading the response").into()),
            Ok(Err(e)) => {
                return Err(GatewayError::UpstreamUnreachable {
                    provider: kind,
                    detail: format!(
                        "connection failed while reading the response: {}",
                        e.etype().as_str()
                    ),
                }
                .into())
            }
            Ok(Ok(None)) => return Ok(buf.freeze()),
            Ok(Ok(Some(c))) => {
                if buf.len() + c.len() > MAX_WHOLE_BODY {
                    return Err(GatewayError::UpstreamMalformed {
                        provider: kind,
                        detail: "response body too large".into(),
                    }
                    .into());
                }
                buf.extend_from_slice(&c);
            }
        }
    }
}

/// Resolves when the client has closed its connection; pends forever otherwise.
pub async fn client_gone(session: &mut Session) {
    loop {
        match session.as_downstream_mut().read_body_or_idle(true).await {
            Err(_) => return,
            Ok(Some(_)) => continue,
            Ok(None) => std::future::pending::<()>().await,
        }
    }
}

async fn release(upstreams: &Upstreams, mut up: UpstreamSession, peer: &HttpPeer, idle: Duration) {
    if up.response_done() {
        upstreams
            .connector
            .release_http_session(up, peer, Some(idle))
            .await;
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn timeout_err(provider: ProviderKind, phase: &'static str) -> GatewayError {
    GatewayError::UpstreamTimeout { provider, phase }
}

fn connect_err(provider: ProviderKind, e: &pingora::Error) -> GatewayError {
    use pingora::ErrorType::*;
    match e.etype() {
        ConnectTimedout | TLSHandshakeTimedout => timeout_err(provider, "connect"),
        ReadTimedout | WriteTimedout => timeout_err(provider, "waiting for the first byte"),
        other => GatewayError::UpstreamUnreachable {
            provider,
            detail: other.as_str().to_string(),
        },
    }
}

fn interrupted(provider: ProviderKind, detail: &str) -> GatewayError {
    GatewayError::StreamInterrupted {
        provider,
        detail: detail.to_string(),
    }
}
