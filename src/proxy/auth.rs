//! Who is calling: the virtual key a client presents (`Authorization: Bearer tg-…`, or the
//! `api-key` / `x-api-key` headers that Azure-style and Anthropic-style clients send) and
//! the budget it bills to. Keys are never logged or forwarded; only their id is kept.

use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::budget::{Budget, Caller, Policy};
use crate::config::Config;
use crate::error::GatewayError;
use crate::money::Decimal9;

/// The key in the request headers, if any.
pub fn presented_key(req: &RequestHeader) -> Option<&str> {
    let h = &req.headers;
    if let Some(v) = h
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let token = match v.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            None if v.eq_ignore_ascii_case("bearer") => "",
            _ => v,
        };
        if !token.is_empty() {
            return Some(token);
        }
    }
    ["api-key", "x-api-key"]
        .iter()
        .filter_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .find(|v| !v.is_empty())
}

/// The caller of a request, or 401.
pub fn caller(config: &Config, req: &RequestHeader) -> Result<Caller, GatewayError> {
    let auth = &config.auth;
    match presented_key(req) {
        Some(key) => match config.budgets.authenticate(key) {
            Some(c) => Ok(c),
            None if auth.accept_any_key => Ok(anonymous(config)),
            None => Err(GatewayError::InvalidApiKey { missing: false }),
        },
        None if auth.allow_anonymous || auth.accept_any_key => Ok(anonymous(config)),
        None => Err(GatewayError::InvalidApiKey { missing: true }),
    }
}

/// Anonymous callers bill to `auth.anonymous_budget`; without a file of that name, to an
/// unlimited budget of that name (recorded, never refused).
fn anonymous(config: &Config) -> Caller {
    let name = &config.auth.anonymous_budget;
    let budget = config.budgets.get(name).cloned().unwrap_or_else(|| {
        Arc::new(Budget {
            name: name.clone(),
            daily_limit: Decimal9(u64::MAX),
            timezone_name: "UTC".into(),
            timezone: jiff::tz::TimeZone::UTC,
            thresholds: Vec::new(),
            policy: Policy::Allow,
            max_request_cost: None,
            webhooks: Vec::new(),
            keys: Vec::new(),
            global: false,
            limits: Default::default(),
        })
    });
    Caller {
        budget,
        key_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn key_is_read_from_bearer_api_key_and_x_api_key() {
        assert_eq!(
            presented_key(&req(&[("authorization", "Bearer tg-1")])),
            Some("tg-1")
        );
        assert_eq!(presented_key(&req(&[("api-key", "tg-2")])), Some("tg-2"));
        assert_eq!(
            presented_key(&req(&[("x-api-key", " tg-3 ")])),
            Some("tg-3")
        );
        assert_eq!(presented_key(&req(&[("authorization", "Bearer ")])), None);
        assert_eq!(presented_key(&req(&[])), None);
    }
}
