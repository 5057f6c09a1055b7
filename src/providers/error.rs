//! Errors produced while translating, and the provider-neutral classification of an
//! upstream error response.

use std::time::Duration;

/// A provider error response, classified. The proxy turns it into a client response or a
/// fallback decision; see `crate::error::GatewayError`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamError {
    /// HTTP status the provider answered with (200 for an error inside a stream).
    pub status: u16,
    pub kind: UpstreamErrorKind,
    pub message: String,
    /// Provider error code or type, when it gave one (e.g. `rate_limit_exceeded`).
    pub code: Option<String>,
    pub param: Option<String>,
    /// From `retry-after-ms` / `retry-after`, when present.
    pub retry_after: Option<Duration>,
}

/// What kind of failure an upstream error is, independent of provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// 400/422: the request is wrong; do not retry the same model.
    InvalidRequest,
    /// The prompt does not fit the model's context window.
    ContextLength,
    /// 401: the provider rejected tollgate's credentials.
    Authentication,
    /// 403.
    PermissionDenied,
    /// 404: unknown model or endpoint upstream.
    NotFound,
    /// 429 rate limit: retryable after a pause.
    RateLimited,
    /// 429 quota exhausted / 402 billing: not retryable on this provider.
    QuotaExceeded,
    /// 503, Anthropic 529 `overloaded_error`: retryable.
    Overloaded,
    /// 500/502 and other 5xx: retryable.
    Server,
    /// 504/408 from the provider: retryable.
    Timeout,
}

impl UpstreamErrorKind {
    /// Whether another attempt (same or next model) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            UpstreamErrorKind::RateLimited
                | UpstreamErrorKind::Overloaded
                | UpstreamErrorKind::Server
                | UpstreamErrorKind::Timeout
        )
    }

    /// Classification by HTTP status alone, for providers whose body says nothing more.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 | 409 | 413 | 422 => UpstreamErrorKind::InvalidRequest,
            401 => UpstreamErrorKind::Authentication,
            402 => UpstreamErrorKind::QuotaExceeded,
            403 => UpstreamErrorKind::PermissionDenied,
            404 => UpstreamErrorKind::NotFound,
            408 | 504 => UpstreamErrorKind::Timeout,
            429 => UpstreamErrorKind::RateLimited,
            503 | 529 => UpstreamErrorKind::Overloaded,
            s if s >= 500 => UpstreamErrorKind::Server,
            _ => UpstreamErrorKind::InvalidRequest,
        }
    }

    /// Stable snake_case label (metrics, logs, attempt headers).
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::InvalidRequest => "invalid_request",
            UpstreamErrorKind::ContextLength => "context_length",
            UpstreamErrorKind::Authentication => "authentication",
            UpstreamErrorKind::PermissionDenied => "permission_denied",
            UpstreamErrorKind::NotFound => "not_found",
            UpstreamErrorKind::RateLimited => "rate_limited",
            UpstreamErrorKind::QuotaExceeded => "quota_exceeded",
            UpstreamErrorKind::Overloaded => "overloaded",
            UpstreamErrorKind::Server => "server_error",
            UpstreamErrorKind::Timeout => "timeout",
        }
    }
}

/// Parses `retry-after-ms` (milliseconds) or `retry-after` (seconds) from upstream headers.
/// HTTP-date values are ignored.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some(Duration::from_millis(ms as u64));
        }
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Translation failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdapterError {
    /// The client request cannot be expressed for this provider.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// The provider answered 2xx with something that is not its documented format.
    #[error("malformed upstream response: {0}")]
    MalformedResponse(String),
    /// The provider answered 2xx but the body is an error.
    #[error("upstream error: {}", .0.message)]
    Upstream(UpstreamError),
    /// The stream ended without the provider's terminal event.
    #[error("upstream stream ended before it was complete")]
    Truncated,
    /// One SSE event exceeded the configured size limit.
    #[error("upstream stream event larger than {limit} bytes")]
    EventTooLarge { limit: usize },
}

impl AdapterError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        AdapterError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let mut h = http::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
    }

    #[test]
    fn status_classification_marks_overload_and_rate_limit_retryable() {
        assert!(UpstreamErrorKind::from_status(529).is_retryable());
        assert!(UpstreamErrorKind::from_status(429).is_retryable());
        assert!(UpstreamErrorKind::from_status(500).is_retryable());
        assert!(!UpstreamErrorKind::from_status(400).is_retryable());
        assert!(!UpstreamErrorKind::from_status(401).is_retryable());
    }
}
