//! tollgate: an OpenAI-compatible LLM gateway on Pingora.
//!
//! Services send OpenAI chat requests; tollgate picks a model, translates the request into
//! the provider's wire format, relays the (streamed) answer back in OpenAI format, and
//! accounts for its cost. Modules, one concern each:
//!
//! - [`api`]: the OpenAI client surface (request, response and chunk types).
//! - [`accounting`]: budget counters (reserve, settle, alert claims), in process or in Redis.
//! - [`providers`]: pure translators per provider, SSE parsing, credentials.
//! - [`config`]: `routes.toml` schema, validation with line numbers.
//! - [`budget`]: budget files, virtual keys, and who a request bills to.
//! - [`proxy`]: the Pingora service that owns each upstream exchange.
//! - [`server`]: assembling and running the Pingora server.
//! - [`sim`]: simulated providers speaking each provider's wire format, for demo and tests.
//! - [`ledger`]: the durable request ledger (SQLite, group commit) and the alert outbox.
//! - [`error`]: `GatewayError`, the single mapping from failure to client response.
//! - [`metrics`]: Prometheus metrics for the admin listener.
//! - [`billing`]: reserving, pricing, settling and recording each request.
//! - [`alerts`]: budget alert payloads and the outbox deliverer.
//! - [`clock`]: wall-clock time for budget days (adjustable in tests).
//! - [`logging`]: log lines buffered in memory and written to stderr off the request path.

pub mod accounting;
pub mod admin;
pub mod alerts;
pub mod api;
pub mod billing;
pub mod budget;
pub mod clock;
pub mod config;
pub mod error;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod pricing;
pub mod providers;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod routing;
pub mod server;
pub mod sim;
pub mod tls;
pub mod tokens;
pub mod usage;
