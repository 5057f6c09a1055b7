//! `GatewayError`: the one place that decides, for every failure, the HTTP status, the
//! OpenAI-shaped JSON body, the metric label and whether another attempt may help.
//!
//! Errors are not logged where they are built; the proxy logs once per request.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use crate::providers::{AdapterError, ProviderKind, UpstreamError, UpstreamErrorKind};

/// Every way a request can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The client's request is malformed or invalid.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<&'static str>,
    },
    /// Body larger than the configured limit.
    #[error("Request body is larger than the limit of {limit} bytes.")]
    BodyTooLarge { limit: usize },
    /// Header block larger than the configured limit.
    #[error("Request headers are larger than the limit of {limit} bytes.")]
    HeadersTooLarge { limit: usize },
    /// The client did not send its request body in time.
    #[error("The request body did not arrive within {} ms.", .after.as_millis())]
    RequestTimeout { after: Duration },
    /// The requested model is neither a configured model nor an alias.
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound { model: String },
    /// No route at this path.
    #[error("Unknown request URL: {method} {path}. Please check the URL for typos.")]
    RouteNotFound { method: String, path: String },
    /// A route exists but not for this method.
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    /// The provider could not be reached (DNS, connect, TLS, reset before a response).
    #[error("Upstream provider {provider} is unreachable: {detail}")]
    UpstreamUnreachable {
        provider: ProviderKind,
        detail: String,
    },
    /// The provider did not answer in time.
    #[error("Upstream provider {provider} timed out ({phase}).")]
    UpstreamTimeout {
        provider: ProviderKind,
        phase: &'static str,
    },
    /// The provider answered with an error.
    #[error("{}", .error.message)]
    Upstream {
        provider: ProviderKind,
        error: UpstreamError,
    },
    /// The provider answered 2xx with something that is not its format.
    #[error("Upstream provider {provider} sent an invalid response: {detail}")]
    UpstreamMalformed {
        provider: ProviderKind,
        detail: String,
    },
    /// The provider's stream ended early or misbehaved after the response began.
    #[error("Upstream provider {provider} stream failed: {detail}")]
    StreamInterrupted {
        provider: ProviderKind,
        detail: String,
    },
    /// The upstream is skipped: cooling down after a 429, or its circuit breaker is open.
    #[error("{}", if *.rate_limited {
        format!("Upstream {provider} is rate limited; retry after {} s.", .retry_in.as_secs().max(1))
    } else {
        format!("Upstream {provider} is failing and temporarily skipped (circuit open); retry after {} s.", .retry_in.as_secs().max(1))
    })]
    UpstreamCoolingDown {
        provider: ProviderKind,
        retry_in: Duration,
        rate_limited: bool,
    },
    /// Every model of the chain is unavailable (e.g. skipped), with no attempt made.
    #[error("No upstream model is available for `{model}`.")]
    NoUpstreamAvailable { model: String },
    /// No virtual key, or one tollgate does not know.
    #[error("{}", if *.missing {
        "You didn't provide an API key. Provide your tollgate key in an Authorization header (Bearer tg-...).".to_string()
    } else {
        "Incorrect API key provided. Keys are issued with `tollgate key new`.".to_string()
    })]
    InvalidApiKey { missing: bool },
    /// The request does not fit in what is left of a budget whose policy refuses it.
    #[error("{0}")]
    BudgetExceeded(Box<BudgetExceeded>),
    /// Over a requests- or tokens-per-minute limit of a budget or key.
    #[error("{0}")]
    RateLimited(Box<crate::ratelimit::RateLimited>),
    /// Budget state cannot be read or written (shared store down, fail-closed policy).
    #[error(
        "Budget accounting is unavailable ({detail}); the request was not sent. Retry shortly."
    )]
    AccountingUnavailable { detail: String },
    /// A bug or an unexpected local failure.
    #[error("Internal gateway error: {0}")]
    Internal(String),
}

/// Why a budget refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    pub budget: String,
    pub day: String,
    pub timezone: String,
    /// Nano-dollars.
    pub limit: u64,
    pub spent: u64,
    pub reserved: u64,
    pub needed: u64,
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = |n: u64| crate::money::Decimal9(n).to_string();
        write!(
            f,
            "Budget `{}` is exhausted for {}: ${} spent and ${} reserved of its ${} daily limit; \
             this request needs up to ${}. The budget resets at midnight ({}).",
            self.budget,
            self.day,
            d(self.spent),
            d(self.reserved),
            d(self.limit),
            d(self.needed),
            self.timezone
        )
    }
}

impl GatewayError {
    pub fn invalid(message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn invalid_param(message: impl Into<String>, param: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }

    /// Maps a translation failure for `provider`.
    pub fn from_adapter(provider: ProviderKind, e: AdapterError) -> Self {
        match e {
            AdapterError::InvalidRequest { message, param } => GatewayError::InvalidRequest {
                message,
                param,
                code: None,
            },
            AdapterError::Upstream(error) => GatewayError::Upstream { provider, error },
            AdapterError::MalformedResponse(detail) => {
                GatewayError::UpstreamMalformed { provider, detail }
            }
            e @ (AdapterError::Truncated | AdapterError::EventTooLarge { .. }) => {
                GatewayError::StreamInterrupted {
                    provider,
                    detail: e.to_string(),
                }
            }
        }
    }

    /// HTTP status sent to the client.
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::InvalidRequest { .. } => 400,
            GatewayError::BodyTooLarge { .. } => 413,
            GatewayError::HeadersTooLarge { .. } => 431,
            GatewayError::RequestTimeout { .. } => 408,
            GatewayError::ModelNotFound { .. } | GatewayError::RouteNotFound { .. } => 404,
            GatewayError::MethodNotAllowed { .. } => 405,
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::UpstreamMalformed { .. }
            | GatewayError::StreamInterrupted { .. } => 502,
            GatewayError::UpstreamTimeout { .. } => 504,
            GatewayError::NoUpstreamAvailable { .. } => 503,
            GatewayError::UpstreamCoolingDown { rate_limited, .. } => {
                if *rate_limited {
                    429
                } else {
                    503
                }
            }
            GatewayError::Internal(_) => 500,
            GatewayError::InvalidApiKey { .. } => 401,
            GatewayError::BudgetExceeded(_) | GatewayError::RateLimited(_) => 429,
            GatewayError::AccountingUnavailable { .. } => 503,
            GatewayError::Upstream { error, .. } => match error.kind {
                UpstreamErrorKind::InvalidRequest | UpstreamErrorKind::ContextLength => 400,
                UpstreamErrorKind::NotFound => 404,
                UpstreamErrorKind::RateLimited | UpstreamErrorKind::QuotaExceeded => 429,
                UpstreamErrorKind::Overloaded => 503,
                UpstreamErrorKind::Timeout => 504,
                // The provider rejected *tollgate's* credentials: the client can do nothing
                // about it, so it is a gateway-side failure, not a 401 for the caller.
                UpstreamErrorKind::Authentication
                | UpstreamErrorKind::PermissionDenied
                | UpstreamErrorKind::Server => 502,
            },
        }
    }

    /// OpenAI `error.type`.
    pub fn error_type(&self) -> &'static str {
        if let GatewayError::BudgetExceeded(_) = self {
            // What OpenAI answers when an account's quota is spent.
            return "insufficient_quota";
        }
        if let GatewayError::RateLimited(r) = self {
            // OpenAI names the limit that refused: `requests` or `tokens`.
            return r.kind.as_str();
        }
        match self.status() {
            400 | 401 | 404 | 405 | 408 | 413 | 431 => "invalid_request_error",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }

    /// OpenAI `error.code`.
    pub fn code(&self) -> Option<String> {
        match self {
            GatewayError::InvalidRequest { code, .. } => code.map(str::to_string),
            GatewayError::BodyTooLarge { .. } => Some("request_too_large".into()),
            GatewayError::HeadersTooLarge { .. } => Some("request_header_too_large".into()),
            GatewayError::RequestTimeout { .. } => Some("request_timeout".into()),
            GatewayError::ModelNotFound { .. } => Some("model_not_found".into()),
            GatewayError::RouteNotFound { .. } => Some("unknown_url".into()),
            GatewayError::MethodNotAllowed { .. } => Some("method_not_allowed".into()),
            GatewayError::UpstreamUnreachable { .. } => Some("upstream_unreachable".into()),
            GatewayError::UpstreamTimeout { .. } => Some("upstream_timeout".into()),
            GatewayError::UpstreamMalformed { .. } => Some("upstream_invalid_response".into()),
            GatewayError::StreamInterrupted { .. } => Some("upstream_stream_interrupted".into()),
            GatewayError::NoUpstreamAvailable { .. } => Some("no_upstream_available".into()),
            GatewayError::UpstreamCoolingDown { rate_limited, .. } => Some(
                if *rate_limited {
                    "rate_limit_exceeded"
                } else {
                    "upstream_circuit_open"
                }
                .into(),
            ),
            GatewayError::Internal(_) => Some("internal_error".into()),
            GatewayError::InvalidApiKey { .. } => Some("invalid_api_key".into()),
            GatewayError::BudgetExceeded(_) => Some("budget_exceeded".into()),
            GatewayError::RateLimited(_) => Some("rate_limit_exceeded".into()),
            GatewayError::AccountingUnavailable { .. } => Some("accounting_unavailable".into()),
            GatewayError::Upstream { error, .. } => Some(
                error
                    .code
                    .clone()
                    .unwrap_or_else(|| error.kind.as_str().to_string()),
            ),
        }
    }

    /// OpenAI `error.param`.
    pub fn param(&self) -> Option<String> {
        match self {
            GatewayError::InvalidRequest { param, .. } => param.clone(),
            GatewayError::Upstream { error, .. } => error.param.clone(),
            _ => None,
        }
    }

    /// Low-cardinality label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::HeadersTooLarge { .. } => "headers_too_large",
            GatewayError::RequestTimeout { .. } => "request_timeout",
            GatewayError::ModelNotFound { .. } => "model_not_found",
            GatewayError::RouteNotFound { .. } => "route_not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::UpstreamUnreachable { .. } => "upstream_unreachable",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::Upstream { error, .. } => error.kind.as_str(),
            GatewayError::UpstreamMalformed { .. } => "upstream_malformed",
            GatewayError::StreamInterrupted { .. } => "stream_interrupted",
            GatewayError::NoUpstreamAvailable { .. } => "no_upstream_available",
            GatewayError::UpstreamCoolingDown { rate_limited, .. } => {
                if *rate_limited {
                    "rate_limit_cooldown"
                } else {
                    "breaker_open"
                }
            }
            GatewayError::Internal(_) => "internal",
            GatewayError::InvalidApiKey { .. } => "invalid_api_key",
            GatewayError::BudgetExceeded(_) => "budget_exceeded",
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::AccountingUnavailable { .. } => "accounting_unavailable",
        }
    }

    /// Whether the next attempt (same model after a pause, or the next model in the chain)
    /// may succeed. Only meaningful before the response has started.
    pub fn is_retryable(&self) -> bool {
        match self {
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamMalformed { .. } => true,
            GatewayError::Upstream { error, .. } => error.kind.is_retryable(),
            _ => false,
        }
    }

    /// The caller must change the request: no other model or retry will help (except a
    /// larger-context model for [`Self::is_context_length`]).
    pub fn is_caller_fault(&self) -> bool {
        match self {
            GatewayError::Upstream { error, .. } => matches!(
                error.kind,
                UpstreamErrorKind::InvalidRequest | UpstreamErrorKind::ContextLength
            ),
            GatewayError::InvalidRequest { .. }
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::HeadersTooLarge { .. } => true,
            _ => false,
        }
    }

    /// The prompt did not fit the model's context window.
    pub fn is_context_length(&self) -> bool {
        matches!(self, GatewayError::Upstream { error, .. } if error.kind == UpstreamErrorKind::ContextLength)
    }

    /// `Retry-After` to pass on to the client, if the provider gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::Upstream { error, .. } => error.retry_after,
            GatewayError::UpstreamCoolingDown { retry_in, .. } => Some(*retry_in),
            GatewayError::RateLimited(r) => r.retry_in,
            _ => None,
        }
    }

    /// The OpenAI-shaped error body `{"error":{"message","type","param","code"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": self.param(),
                "code": self.code(),
            }
        })
    }

    pub fn body(&self) -> Bytes {
        Bytes::from(self.to_json().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(kind: UpstreamErrorKind, status: u16) -> GatewayError {
        GatewayError::Upstream {
            provider: ProviderKind::Anthropic,
            error: UpstreamError {
                status,
                kind,
                message: "Overloaded".into(),
                code: None,
                param: None,
                retry_after: None,
            },
        }
    }

    #[test]
    fn overloaded_upstream_reaches_clients_as_503_and_is_retryable() {
        let e = upstream(UpstreamErrorKind::Overloaded, 529);
        assert_eq!(e.status(), 503);
        assert!(e.is_retryable());
    }

    #[test]
    fn provider_auth_failure_is_not_reported_as_client_401() {
        let e = upstream(UpstreamErrorKind::Authentication, 401);
        assert_eq!(e.status(), 502);
        assert!(!e.is_retryable());
    }

    #[test]
    fn body_has_openai_shape() {
        let e = GatewayError::ModelNotFound {
            model: "nope".into(),
        };
        let v = e.to_json();
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["param"].is_null());
        assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    }
}
