//! The admin listener: a second port, never the public one, for operators and finance.
//! Every `/admin/…` route and `/metrics` need `Authorization: Bearer
//! <TOLLGATE_ADMIN_TOKEN>` (compared in constant time); without a configured token they
//! refuse every request. The dashboard page and its assets (`/`, `/assets/…`) hold no
//! data and are served without the token; the page asks for it and sends it with each
//! API call.
//!
//! - `GET /admin/api/status`, `GET /admin/api/breakers`, `POST /admin/reload`,
//!   `GET /metrics` (`ops.rs`);
//! - `GET /admin/api/budgets`, `/requests`, `/spend`, `/spend/daily`, `/routing`,
//!   `/alerts` (`api.rs`, `spend.rs`);
//! - `GET /admin/api/export.csv`, streamed in chunks (`export.rs`);
//! - `GET /healthz`: liveness, unauthenticated.
//!
//! [`AdminApp`] implements Pingora's `HttpServerApp` itself rather than `ServeHttp`, whose
//! whole-body `Response<Vec<u8>>` cannot stream a CSV export of any size.

mod api;
mod dashboard;
mod export;
mod ops;
mod reply;
mod spend;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use serde_json::json;

use crate::budget::keys::constant_time_eq;
use crate::providers::auth::Secret;
use crate::proxy::GatewayState;
use reply::{error, json, Answer, Query};

/// The admin application.
pub struct AdminApp {
    pub state: Arc<GatewayState>,
    pub token: Option<Secret>,
}

/// What a route answers: a whole response, or a CSV export to stream.
enum Reply {
    Full(Answer),
    Csv(export::Export),
}

impl From<Answer> for Reply {
    fn from(r: Answer) -> Self {
        Reply::Full(r)
    }
}

impl From<api::ApiResult> for Reply {
    fn from(r: api::ApiResult) -> Self {
        Reply::Full(match r {
            Ok(body) => json(200, &body),
            Err(resp) => resp,
        })
    }
}

/// Every authenticated path, for telling 405 from 404.
const PATHS: [&str; 11] = [
    "/metrics",
    "/admin/reload",
    "/admin/api/status",
    "/admin/api/breakers",
    "/admin/api/budgets",
    "/admin/api/requests",
    "/admin/api/spend",
    "/admin/api/spend/daily",
    "/admin/api/routing",
    "/admin/api/alerts",
    "/admin/api/export.csv",
];

impl AdminApp {
    /// `None` when the request carries the admin token; otherwise the refusal to send.
    fn refusal(&self, session: &ServerSession) -> Option<Answer> {
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

    /// Routes one request; `refusal` is [`AdminApp::refusal`]'s verdict on its token.
    async fn handle(
        &self,
        method: &str,
        path: &str,
        query: &Query,
        refusal: Option<Answer>,
    ) -> Reply {
        if path == "/healthz" {
            return json(200, &json!({"status": "ok"})).into();
        }
        if let Some(asset) = dashboard::asset(method, path) {
            return asset.into();
        }
        if !path.starts_with("/admin/") && path != "/metrics" {
            return error(404, "unknown_url", "Unknown admin URL.").into();
        }
        if let Some(resp) = refusal {
            return resp.into();
        }
        match (method, path) {
            ("GET", "/metrics") => self.metrics().into(),
            ("GET", "/admin/api/status") => json(200, &self.status()).into(),
            ("GET", "/admin/api/breakers") => json(
                200,
                &json!({"scope": "replica", "breakers": self.breakers()}),
            )
            .into(),
            ("POST", "/admin/reload") => self.reload().into(),
            ("GET", "/admin/api/budgets") => self.budgets().await.into(),
            ("GET", "/admin/api/requests") => self.requests(query).await.into(),
            ("GET", "/admin/api/alerts") => self.alerts(query).await.into(),
            ("GET", "/admin/api/spend") => self.spend(query).await.into(),
            ("GET", "/admin/api/spend/daily") => self.daily(query).await.into(),
            ("GET", "/admin/api/routing") => self.routing(query).await.into(),
            ("GET", "/admin/api/export.csv") => match self.export(query) {
                Ok(job) => Reply::Csv(job),
                Err(resp) => resp.into(),
            },
            (_, p) if PATHS.contains(&p) => {
                error(405, "method_not_allowed", "Method not allowed.").into()
            }
            _ => error(404, "unknown_url", "Unknown admin URL.").into(),
        }
    }
}

/// Writes a whole response; `false` when the client is gone.
async fn write_full(session: &mut ServerSession, resp: Answer) -> bool {
    let (parts, body) = (*resp).into_parts();
    let header: ResponseHeader = parts.into();
    if let Err(e) = session.write_response_header(Box::new(header)).await {
        tracing::debug!(error = %e, "Admin client gone before the response header.");
        return false;
    }
    if let Err(e) = session.write_response_body(body.into(), true).await {
        tracing::debug!(error = %e, "Admin client gone during the response body.");
        return false;
    }
    true
}

#[async_trait]
impl HttpServerApp for AdminApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "Admin request could not be read.");
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let req = session.req_header();
        let method = req.method.as_str().to_string();
        let path = req.uri.path().to_string();
        let query = Query::parse(req.uri.query());
        let refusal = self.refusal(&session);
        let written = match self.handle(&method, &path, &query, refusal).await {
            Reply::Full(resp) => write_full(&mut session, resp).await,
            Reply::Csv(job) => job.stream(&mut session).await,
        };
        if !written {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings)),
            Err(e) => {
                tracing::debug!(error = %e, "Admin response could not be finished.");
                None
            }
        }
    }
}
