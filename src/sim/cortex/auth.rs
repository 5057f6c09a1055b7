//! Snowflake authentication as the Cortex REST endpoints check it: `Authorization: Bearer
//! <token>` plus an optional `X-Snowflake-Authorization-Token-Type` of `KEYPAIR_JWT`, `OAUTH`
//! or `PROGRAMMATIC_ACCESS_TOKEN`. Without the type header Snowflake inspects the token
//! (providers.md §4.2), so a token shaped like a JWT is checked as one.
//!
//! A key-pair JWT must be three unpadded base64url parts; its header must name `RS256`; its
//! claims must carry `iss` = `ACCOUNT.USER.SHA256:<base64 SHA-256>`, `sub` = `ACCOUNT.USER`
//! (upper case), and an `exp` in the future at most one hour after `iat` (seconds, or
//! milliseconds as the docs allow). The signature is not verified: the simulator does not
//! know the user's registered public key. OAuth tokens and PATs are compared with the
//! configured key, as for the other simulated providers.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::HeaderMap;
use serde_json::Value;

use crate::sim::openai_shape::bearer;

/// The header naming how the bearer token is to be read.
pub(super) const TOKEN_TYPE_HEADER: &str = "x-snowflake-authorization-token-type";

/// Longest accepted JWT lifetime (`exp - iat`), in seconds.
const MAX_LIFETIME_SECS: u64 = 3600;

/// Clock skew tolerated for an `iat` slightly in the future.
const ALLOWED_SKEW_SECS: u64 = 60;

/// How the bearer token is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenType {
    KeyPairJwt,
    OAuth,
    Pat,
}

/// Why a request was not authenticated (each is a 401 with its own code and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AuthError {
    /// No `Authorization: Bearer` credential.
    Missing,
    /// An `X-Snowflake-Authorization-Token-Type` value Snowflake does not know.
    UnknownTokenType(String),
    /// A key-pair JWT that is malformed, expired or has the wrong claims (the reason is for
    /// logs and tests; Snowflake only says the token is invalid).
    InvalidJwt(&'static str),
    /// An OAuth token that does not match.
    InvalidOAuth,
    /// A programmatic access token that does not match.
    InvalidPat,
}

impl AuthError {
    /// Snowflake's error code for the failure.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "390101",
            AuthError::UnknownTokenType(_) => "390102",
            // Observed on real 401s: `{"code":"390144","message":"JWT token is invalid. [uuid]"}`.
            AuthError::InvalidJwt(_) => "390144",
            AuthError::InvalidOAuth => "390303",
            AuthError::InvalidPat => "394400",
        }
    }

    /// Snowflake's message, before the request id it appends in brackets.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => "Authorization header is missing or empty.".into(),
            AuthError::UnknownTokenType(t) => {
                format!("Unsupported authorization token type: {t}.")
            }
            AuthError::InvalidJwt(_) => "JWT token is invalid.".into(),
            AuthError::InvalidOAuth => "Invalid OAuth access token.".into(),
            AuthError::InvalidPat => "Programmatic access token is invalid.".into(),
        }
    }
}

/// Checks the credential of a request; `expected` is the configured OAuth token / PAT (any
/// non-empty one is accepted when `None`).
pub(super) fn check(headers: &HeaderMap, expected: Option<&str>) -> Result<TokenType, AuthError> {
    check_at(headers, expected, now_secs())
}

/// [`check`] as of `now` (Unix seconds).
pub(super) fn check_at(
    headers: &HeaderMap,
    expected: Option<&str>,
    now: u64,
) -> Result<TokenType, AuthError> {
    let token = bearer(headers).ok_or(AuthError::Missing)?;
    let declared = headers
        .get(TOKEN_TYPE_HEADER)
        .map(|v| v.to_str().unwrap_or("").trim().to_string());
    let kind = match declared.as_deref() {
        None => {
            if looks_like_jwt(token) {
                TokenType::KeyPairJwt
            } else {
                TokenType::Pat
            }
        }
        Some(t) => match t.to_ascii_uppercase().as_str() {
            "KEYPAIR_JWT" => TokenType::KeyPairJwt,
            "OAUTH" => TokenType::OAuth,
            "PROGRAMMATIC_ACCESS_TOKEN" => TokenType::Pat,
            _ => return Err(AuthError::UnknownTokenType(t.to_string())),
        },
    };
    match kind {
        TokenType::KeyPairJwt => check_jwt(token, now).map(|()| kind),
        TokenType::OAuth | TokenType::Pat => match expected {
            Some(want) if want != token => Err(if kind == TokenType::OAuth {
                AuthError::InvalidOAuth
            } else {
                AuthError::InvalidPat
            }),
            _ => Ok(kind),
        },
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A JWT header we can read and that says it is one (how Snowflake tells token kinds apart
/// when the type header is absent).
fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    decode_json(head).is_some_and(|h| h.get("alg").is_some())
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Seconds since the epoch from a numeric claim given in seconds or milliseconds.
fn epoch_secs(v: &Value) -> Option<u64> {
    let n = v
        .as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))?;
    // 10^11 seconds is the year 5138: anything larger is milliseconds.
    Some(if n > 100_000_000_000 { n / 1000 } else { n })
}

/// Validates a key-pair JWT's structure and claims (not its signature).
pub(super) fn check_jwt(token: &str, now: u64) -> Result<(), AuthError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [head, claims, signature] = parts.as_slice() else {
        return Err(AuthError::InvalidJwt("not three dot-separated parts"));
    };
    let header = decode_json(head).ok_or(AuthError::InvalidJwt("header is not base64url JSON"))?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(AuthError::InvalidJwt("alg is not RS256"));
    }
    let claims =
        decode_json(claims).ok_or(AuthError::InvalidJwt("claims are not base64url JSON"))?;
    match URL_SAFE_NO_PAD.decode(signature) {
        Ok(sig) if !sig.is_empty() => {}
        _ => return Err(AuthError::InvalidJwt("signature is not base64url")),
    }

    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(AuthError::InvalidJwt("iss missing"))?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(AuthError::InvalidJwt("sub missing"))?;
    let (qualified_user, fingerprint) = iss.split_once(".SHA256:").ok_or(AuthError::InvalidJwt(
        "iss is not ACCOUNT.USER.SHA256:<fingerprint>",
    ))?;
    match STANDARD.decode(fingerprint) {
        Ok(digest) if digest.len() == 32 => {}
        _ => return Err(AuthError::InvalidJwt("fingerprint is not a base64 SHA-256")),
    }
    let Some((account, user)) = qualified_user.split_once('.') else {
        return Err(AuthError::InvalidJwt("iss has no ACCOUNT.USER"));
    };
    if account.is_empty() || user.is_empty() {
        return Err(AuthError::InvalidJwt("empty account or user"));
    }
    if qualified_user != qualified_user.to_uppercase() {
        return Err(AuthError::InvalidJwt("account and user must be upper case"));
    }
    if sub != qualified_user {
        return Err(AuthError::InvalidJwt("sub does not match iss"));
    }

    let iat = claims
        .get("iat")
        .and_then(epoch_secs)
        .ok_or(AuthError::InvalidJwt("iat missing"))?;
    let exp = claims
        .get("exp")
        .and_then(epoch_secs)
        .ok_or(AuthError::InvalidJwt("exp missing"))?;
    if exp <= now {
        return Err(AuthError::InvalidJwt("expired"));
    }
    if iat > now + ALLOWED_SKEW_SECS {
        return Err(AuthError::InvalidJwt("issued in the future"));
    }
    if exp <= iat || exp - iat > MAX_LIFETIME_SECS {
        return Err(AuthError::InvalidJwt("lifetime over one hour"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const FP: &str = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    fn jwt(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode([7u8; 16])
        )
    }

    fn claims(iat: u64, exp: u64) -> Value {
        json!({"iss": format!("MYORG-ACCT.ME.{FP}"), "sub": "MYORG-ACCT.ME", "iat": iat, "exp": exp})
    }

    fn headers(token: &str, kind: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        if let Some(k) = kind {
            h.insert(TOKEN_TYPE_HEADER, k.parse().unwrap());
        }
        h
    }

    #[test]
    fn accepts_a_well_formed_key_pair_jwt_with_or_without_the_type_header() {
        let t = jwt(
            json!({"alg": "RS256", "typ": "JWT"}),
            claims(NOW, NOW + 3540),
        );
        assert_eq!(
            check_at(&headers(&t, Some("KEYPAIR_JWT")), Some("pat"), NOW),
            Ok(TokenType::KeyPairJwt)
        );
        assert_eq!(
            check_at(&headers(&t, None), Some("pat"), NOW),
            Ok(TokenType::KeyPairJwt)
        );
        // Milliseconds are accepted too.
        let ms = jwt(
            json!({"alg": "RS256"}),
            claims(NOW * 1000, (NOW + 60) * 1000),
        );
        assert_eq!(check_jwt(&ms, NOW), Ok(()));
    }

    #[test]
    fn rejects_jwts_with_wrong_alg_claims_or_lifetime() {
        let bad = [
            jwt(json!({"alg": "HS256"}), claims(NOW, NOW + 60)),
            jwt(json!({"alg": "RS256"}), claims(NOW - 7200, NOW - 3600)),
            jwt(json!({"alg": "RS256"}), claims(NOW, NOW + 3601)),
            jwt(
                json!({"alg": "RS256"}),
                json!({"iss": format!("ACCT.ME.{FP}"), "sub": "ACCT.YOU", "iat": NOW, "exp": NOW + 60}),
            ),
            jwt(
                json!({"alg": "RS256"}),
                json!({"iss": format!("acct.me.{FP}"), "sub": "acct.me", "iat": NOW, "exp": NOW + 60}),
            ),
            jwt(
                json!({"alg": "RS256"}),
                json!({"iss": "ACCT.ME.SHA256:short", "sub": "ACCT.ME", "iat": NOW, "exp": NOW + 60}),
            ),
            "a.b".to_string(),
            "not-a-jwt".to_string(),
        ];
        for t in &bad {
            let r = check_at(&headers(t, Some("KEYPAIR_JWT")), None, NOW);
            assert!(matches!(r, Err(AuthError::InvalidJwt(_))), "{t}: {r:?}");
        }
    }

    #[test]
    fn pat_and_oauth_compare_with_the_configured_key() {
        assert_eq!(
            check_at(
                &headers("pat-1", Some("PROGRAMMATIC_ACCESS_TOKEN")),
                Some("pat-1"),
                NOW
            ),
            Ok(TokenType::Pat)
        );
        assert_eq!(
            check_at(
                &headers("pat-2", Some("PROGRAMMATIC_ACCESS_TOKEN")),
                Some("pat-1"),
                NOW
            ),
            Err(AuthError::InvalidPat)
        );
        assert_eq!(
            check_at(&headers("tok", Some("OAUTH")), Some("x"), NOW),
            Err(AuthError::InvalidOAuth)
        );
        assert_eq!(
            check_at(&headers("anything", None), None, NOW),
            Ok(TokenType::Pat)
        );
        assert_eq!(
            check_at(&headers("x", Some("PASSWORD")), None, NOW),
            Err(AuthError::UnknownTokenType("PASSWORD".into()))
        );
        assert_eq!(
            check_at(&HeaderMap::new(), None, NOW),
            Err(AuthError::Missing)
        );
    }
}
