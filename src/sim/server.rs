//! The simulated server: binds a local port, serves HTTP/1.1 (keep-alive) with hyper,
//! records every request, picks the fault plan, and turns a provider's rendering into a
//! response (delays, resets, truncation, malformed data, hangs).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::body::{BodyEnd, SimBody, StreamCounters, StreamGuard};
use super::faults::{Directive, Fault, FaultPlan, StreamEnd};
use super::reply::Reply;
use super::{provider_for, random_hex, ErrorResponse, Meta, Route, SimProvider};
use crate::providers::ProviderKind;

/// Largest request body accepted (the real APIs accept tens of megabytes).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Prompts at least this long are eligible for the simulated prompt cache (OpenAI's rule).
const CACHE_MIN_TOKENS: u64 = 1024;

/// Options of a simulated server.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// `Some`: the credential must match exactly. `None`: any non-empty credential is
    /// accepted. A missing credential always gets the provider's exact 401.
    pub api_key: Option<String>,
    /// Delay between stream events when no fault sets one (demo realism).
    pub chunk_delay: Duration,
    /// Delay before the response headers when no fault sets one.
    pub first_byte_delay: Duration,
    /// Simulate prompt caching: a repeated prompt of at least 1024 tokens reports cached
    /// tokens (in 128-token steps), as OpenAI does.
    pub prompt_cache: bool,
    /// Serve HTTPS with this config (see [`crate::tls::server_config_from_pem`]); the base
    /// URL then names `localhost`, the host name test certificates are issued for.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Keep no copy of the requests received ([`SimServer::requests`] stays empty), so that
    /// a long-running server under load keeps a flat memory footprint.
    pub discard_requests: bool,
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

struct Shared {
    provider: &'static dyn SimProvider,
    opts: SimOptions,
    queue: Mutex<VecDeque<Fault>>,
    default_fault: Mutex<Option<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    seen_prompts: Mutex<HashSet<u64>>,
    streams: Arc<StreamCounters>,
    connections: AtomicUsize,
    tls_failures: AtomicUsize,
}

/// Locks a mutex, recovering the data if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A simulated provider listening on `127.0.0.1`. Dropping it stops the server.
pub struct SimServer {
    kind: ProviderKind,
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime until dropped or shut
    /// down. Fails with `Unsupported` for a provider that has no simulator yet.
    pub async fn start(kind: ProviderKind, opts: SimOptions) -> std::io::Result<SimServer> {
        Self::start_on(kind, opts, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Like [`SimServer::start`], on `addr` (port 0 picks a free port).
    pub async fn start_on(
        kind: ProviderKind,
        opts: SimOptions,
        addr: SocketAddr,
    ) -> std::io::Result<SimServer> {
        let provider = provider_for(kind).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("no simulated {kind} provider"),
            )
        })?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            provider,
            opts,
            queue: Mutex::new(VecDeque::new()),
            default_fault: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            seen_prompts: Mutex::new(HashSet::new()),
            streams: Arc::new(StreamCounters::default()),
            connections: AtomicUsize::new(0),
            tls_failures: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(SimServer {
            kind,
            addr,
            shared,
            task: Some(task),
        })
    }

    /// The provider this server simulates.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` in TLS mode.
    pub fn base_url(&self) -> String {
        match self.shared.opts.tls {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    /// TLS handshakes that failed (a client that did not trust the certificate, or spoke
    /// plain HTTP).
    pub fn tls_failures(&self) -> usize {
        self.shared.tls_failures.load(Ordering::SeqCst)
    }

    /// Queues a fault: the next chat request without a directive or header fault takes it.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.shared.queue).push_back(fault);
    }

    /// The fault used when the queue is empty.
    pub fn set_default_fault(&self, fault: Option<Fault>) {
        *lock(&self.shared.default_fault) = fault;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// Responses currently being streamed.
    pub fn open_streams(&self) -> usize {
        self.shared.streams.open.load(Ordering::SeqCst)
    }

    /// Streams whose client disconnected before the end.
    pub fn aborted_streams(&self) -> usize {
        self.shared.streams.aborted.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far (keep-alive reuse shows as fewer connections than
    /// requests).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes every connection and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServer")
            .field("kind", &self.kind)
            .field("addr", &self.addr)
            .finish()
    }
}

/// Accepts connections; aborting this task drops the set and so every connection task.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    conns.spawn(serve_connection(stream, shared.clone()));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "sim accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    match shared.opts.tls.clone() {
        None => serve_http(stream, shared).await,
        Some(cfg) => match pingora::tls::TlsAcceptor::from(cfg).accept(stream).await {
            Ok(tls) => serve_http(tls, shared).await,
            Err(e) => {
                shared.tls_failures.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(error = %e, "sim TLS handshake failed");
            }
        },
    }
}

async fn serve_http<S>(stream: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    if let Err(e) = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "sim connection ended with an error");
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn error_reply(e: ErrorResponse) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::full(e.body));
    *resp.status_mut() =
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in e.headers {
        resp.headers_mut().append(name, value);
    }
    resp
}

fn response(headers: HeaderMap, content_type: &'static str, body: SimBody) -> Response<SimBody> {
    let mut resp = Response::new(body);
    *resp.headers_mut() = headers;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<SimBody> {
    let provider = shared.provider;
    let (parts, body) = req.into_parts();
    let meta = Meta {
        request_id: random_hex(32),
        created: now_secs(),
        cached_tokens: 0,
        path: parts.uri.path().to_string(),
    };
    let raw = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::debug!(error = %e, "sim could not read the request body");
            let mut resp = Response::new(SimBody::full(Bytes::new()));
            *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return resp;
        }
    };
    if !shared.opts.discard_requests {
        lock(&shared.requests).push(RecordedRequest {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers.clone(),
            body: raw.clone(),
        });
    }

    match provider.route(&parts.method, parts.uri.path()) {
        Route::NotFound => {
            return error_reply(provider.not_found(&parts.method, parts.uri.path(), &meta))
        }
        Route::Models(id) => {
            if let Err(e) =
                provider.check_auth(&parts.headers, shared.opts.api_key.as_deref(), &meta)
            {
                return error_reply(e);
            }
            return match provider.models(id.as_deref()) {
                Ok(body) => response(HeaderMap::new(), "application/json", SimBody::full(body)),
                Err(e) => error_reply(e),
            };
        }
        Route::Auxiliary(name) => {
            if let Err(e) =
                provider.check_auth(&parts.headers, shared.opts.api_key.as_deref(), &meta)
            {
                return error_reply(e);
            }
            let json = serde_json::from_slice(&raw).ok();
            return error_reply(provider.auxiliary(name, &raw, json, &meta));
        }
        Route::Chat => {}
    }
    if let Err(e) = provider.check_auth(&parts.headers, shared.opts.api_key.as_deref(), &meta) {
        return error_reply(e);
    }

    let json: Option<Value> = serde_json::from_slice(&raw).ok();
    let directive = json
        .as_ref()
        .and_then(|v| provider.last_user_text(v))
        .map(|t| Directive::from_text(&t))
        .unwrap_or_default();
    let header = parts
        .headers
        .get("x-sim-fault")
        .and_then(|v| v.to_str().ok())
        .map(Directive::from_spec)
        .unwrap_or_default();
    let words = directive.words.or(header.words);
    let plan = select_plan(shared, directive.plan, header.plan);

    if plan.hang {
        std::future::pending::<()>().await;
    }
    let first_byte_delay = plan
        .first_byte_delay
        .unwrap_or(shared.opts.first_byte_delay);
    if !first_byte_delay.is_zero() {
        tokio::time::sleep(first_byte_delay).await;
    }
    let model = json
        .as_ref()
        .and_then(|v| v.get("model"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some((status, retry_after)) = plan.status {
        if status >= 300 {
            return error_reply(provider.error_response(status, retry_after, model, &meta));
        }
    }

    if plan.html {
        let page =
            "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>";
        return response(HeaderMap::new(), "text/html", SimBody::full(page));
    }
    if plan.error_body_ok {
        let e = provider.error_response(500, None, model, &meta);
        return response(HeaderMap::new(), "application/json", SimBody::full(e.body));
    }

    let ex = match provider.parse(&raw, json.clone(), &meta) {
        Ok(ex) => ex,
        Err(e) => return error_reply(e),
    };
    let mut meta = meta;
    meta.cached_tokens = cached_tokens(shared, ex.seed, ex.prompt_tokens);
    let reply = Reply::generate(&ex, words);
    let headers = provider.success_headers(&ex, &meta);

    if !ex.stream {
        let body = provider.render_json(&ex, &reply, &meta);
        let half = body.slice(..body.len() / 2);
        let body = match plan.stream_end {
            Some(StreamEnd::Reset(_)) => {
                SimBody::frames(vec![half], Duration::ZERO, BodyEnd::Reset)
            }
            Some(StreamEnd::Truncate(_)) => {
                SimBody::frames(vec![half], Duration::ZERO, BodyEnd::Clean)
            }
            _ if plan.malformed => SimBody::full(half),
            _ => SimBody::full(body),
        };
        return response(headers, "application/json", body);
    }

    let frames = provider.render_events(&ex, &reply, &meta);
    let mut events = frames.events;
    if plan.malformed && !events.is_empty() {
        let i = 1.min(events.len() - 1);
        events[i] = corrupt_event(&events[i]);
    }
    if let Some(n) = plan.oversized_event {
        let mut e = BytesMut::with_capacity(n + 8);
        e.extend_from_slice(b"data: ");
        e.resize(n.max(8) - 2, b'x');
        e.extend_from_slice(b"\n\n");
        events.insert(1.min(events.len()), e.freeze());
    }
    let delay = plan.chunk_delay.unwrap_or(shared.opts.chunk_delay);
    if plan.endless && !events.is_empty() {
        let repeat = events[events.len() / 2].clone();
        let delay = if delay.is_zero() {
            Duration::from_millis(10)
        } else {
            delay
        };
        let body = SimBody::endless(events, repeat, delay)
            .guarded(StreamGuard::new(shared.streams.clone()));
        return response(headers, "text/event-stream; charset=utf-8", body);
    }
    let (frames, end) = match plan.stream_end {
        None => {
            events.extend(frames.terminal);
            (events, BodyEnd::Clean)
        }
        Some(StreamEnd::Reset(n)) => {
            events.truncate(n);
            (events, BodyEnd::Reset)
        }
        Some(StreamEnd::Truncate(n)) => {
            events.truncate(n);
            (events, BodyEnd::Clean)
        }
        Some(StreamEnd::Error(n)) => {
            events.truncate(n);
            events.push(provider.stream_error_event(&meta));
            (events, BodyEnd::Clean)
        }
    };
    let body =
        SimBody::frames(frames, delay, end).guarded(StreamGuard::new(shared.streams.clone()));
    response(headers, "text/event-stream; charset=utf-8", body)
}

/// Directive > header > queued fault > default fault.
fn select_plan(shared: &Shared, directive: FaultPlan, header: FaultPlan) -> FaultPlan {
    if !directive.is_empty() {
        return directive;
    }
    if !header.is_empty() {
        return header;
    }
    if let Some(f) = lock(&shared.queue).pop_front() {
        return FaultPlan::from(&f);
    }
    lock(&shared.default_fault)
        .as_ref()
        .map(FaultPlan::from)
        .unwrap_or_default()
}

/// Cached prompt tokens for a repeated long prompt (0 unless the option is on).
fn cached_tokens(shared: &Shared, key: u64, prompt_tokens: u64) -> u64 {
    if !shared.opts.prompt_cache || prompt_tokens < CACHE_MIN_TOKENS {
        return 0;
    }
    if lock(&shared.seen_prompts).insert(key) {
        0
    } else {
        prompt_tokens / 128 * 128
    }
}

/// The event with the JSON of its last `data:` line cut in half (no longer valid JSON).
fn corrupt_event(event: &Bytes) -> Bytes {
    let text = String::from_utf8_lossy(event);
    let Some(pos) = text.rfind("data: ") else {
        return Bytes::from_static(b"data: {\"truncated\n\n");
    };
    let payload_start = pos + "data: ".len();
    let payload = text[payload_start..].trim_end();
    let mut cut = payload.len() / 2;
    while !payload.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = BytesMut::with_capacity(event.len());
    out.extend_from_slice(text[..payload_start].as_bytes());
    out.extend_from_slice(&payload.as_bytes()[..cut]);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupted_event_keeps_framing_but_not_json() {
        let e = Bytes::from_static(b"event: x\ndata: {\"a\":\"bcdef\"}\n\n");
        let c = corrupt_event(&e);
        let s = std::str::from_utf8(&c).unwrap();
        assert!(s.starts_with("event: x\ndata: {"));
        assert!(s.ends_with("\n\n"));
        let payload = s.trim_end().rsplit("data: ").next().unwrap();
        assert!(serde_json::from_str::<Value>(payload).is_err());
    }
}
