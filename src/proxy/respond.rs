//! Writing complete responses (JSON bodies and OpenAI-shaped errors) to the client.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::error::GatewayError;

/// Headers added to every response of a request (request id, config version, …).
pub type HeaderList = Vec<(&'static str, String)>;

/// Builds a response header with `extra` headers, for a body of known length (`len`) or, with
/// `None`, a chunked body (an event stream). Without either framing header the body would
/// end only when the connection closes, so the client could not reuse it.
pub fn header(
    status: u16,
    content_type: &str,
    len: Option<usize>,
    extra: &HeaderList,
) -> pingora::Result<Box<ResponseHeader>> {
    // Every name here is lowercase, which is how a header without a recorded case is
    // written, so keeping a case map would only cost a second map insert per header.
    let mut h = ResponseHeader::build_no_case(status, Some(4 + extra.len()))?;
    h.insert_header("content-type", content_type)?;
    match len {
        Some(n) => h.insert_header("content-length", n.to_string())?,
        None => h.insert_header("transfer-encoding", "chunked")?,
    }
    for (k, v) in extra {
        h.append_header(*k, v.as_str())?;
    }
    Ok(Box::new(h))
}

/// Sends a whole JSON response.
pub async fn json(
    session: &mut Session,
    status: u16,
    body: Bytes,
    extra: &HeaderList,
) -> pingora::Result<()> {
    let h = header(status, "application/json", Some(body.len()), extra)?;
    session.write_response_header(h, false).await?;
    session.write_response_body(Some(body), true).await
}

/// Sends `err` as an OpenAI-shaped JSON error with its status (and `Retry-After` when the
/// provider gave one).
pub async fn error(
    session: &mut Session,
    err: &GatewayError,
    extra: &HeaderList,
) -> pingora::Result<()> {
    let mut extra = extra.clone();
    if let Some(ra) = err.retry_after() {
        let secs = ra.as_millis().div_ceil(1000).max(1);
        extra.push(("retry-after", secs.to_string()));
    }
    match err {
        GatewayError::MethodNotAllowed { .. } => extra.push(("allow", "GET, POST".to_string())),
        // OpenAI SDKs retry a 429 unless told not to; a spent budget will not recover in
        // seconds.
        GatewayError::BudgetExceeded(_) => extra.push(("x-should-retry", "false".into())),
        // More tokens than the whole limit: no wait makes it fit.
        GatewayError::RateLimited(r) if r.retry_in.is_none() => {
            extra.push(("x-should-retry", "false".into()))
        }
        GatewayError::InvalidApiKey { .. } => {
            extra.push(("www-authenticate", "Bearer realm=\"tollgate\"".into()))
        }
        _ => {}
    }
    json(session, err.status(), err.body(), &extra).await
}

/// Called before an error answers a request whose body has not been read (a wrong key, an
/// unknown path): reads and discards the body, for at most `within`, when it has a declared
/// length within `limit`, so the connection can serve the next request. Otherwise (an
/// unknown length, a body over the limit, `Expect: 100-continue`, whose client may never
/// send the body, or a drain that fails) the response says `connection: close`, as Pingora
/// does by default for a response sent before the body was read.
pub async fn drain_unread_body(session: &mut Session, limit: usize, within: Duration) {
    let declared = {
        let h = &session.req_header().headers;
        if h.contains_key(http::header::EXPECT) {
            return;
        }
        h.get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
    };
    let downstream = session.as_downstream_mut();
    // Already closing (HTTP/1.0, or a body that timed out), finished, or too large.
    if downstream.get_keepalive().is_none()
        || downstream.is_body_done()
        || declared.is_none_or(|n| n > limit)
    {
        return;
    }
    match tokio::time::timeout(within, downstream.drain_request_body()).await {
        Ok(Ok(())) => {}
        _ => session.set_keepalive(None),
    }
}
