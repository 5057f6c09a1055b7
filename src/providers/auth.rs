//! Provider credentials and the headers that carry them.
//!
//! Secrets come only from the environment or files named in `routes.toml`. [`Secret`]
//! never prints its value, so a credential cannot leak through `Debug`, logs or errors.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::snowflake_jwt::KeyPairJwt;

/// A credential value that does not show itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for building the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How tollgate authenticates to one provider.
#[derive(Debug, Clone)]
pub enum ProviderAuth {
    /// No credential (simulated providers in demo mode).
    None,
    /// `Authorization: Bearer …` (OpenAI, Mistral).
    Bearer(Secret),
    /// `x-api-key: …` (Anthropic).
    ApiKey(Secret),
    /// Snowflake programmatic access token or OAuth token, with its token-type header.
    SnowflakeToken {
        token: Secret,
        token_type: &'static str,
    },
    /// Snowflake key-pair JWT, generated and refreshed by tollgate.
    SnowflakeKeyPair(Arc<KeyPairJwt>),
}

/// A credential could not be turned into a header.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("credential contains characters not allowed in an HTTP header")]
    InvalidHeaderValue,
    #[error("could not sign Snowflake key-pair JWT: {0}")]
    Jwt(String),
}

impl ProviderAuth {
    /// The headers that authenticate one upstream request.
    pub fn headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, AuthError> {
        fn sensitive(v: String) -> Result<HeaderValue, AuthError> {
            let mut h = HeaderValue::from_str(&v).map_err(|_| AuthError::InvalidHeaderValue)?;
            h.set_sensitive(true);
            Ok(h)
        }
        let token_type = HeaderName::from_static("x-snowflake-authorization-token-type");
        Ok(match self {
            ProviderAuth::None => Vec::new(),
            ProviderAuth::Bearer(s) => vec![(
                http::header::AUTHORIZATION,
                sensitive(format!("Bearer {}", s.expose()))?,
            )],
            ProviderAuth::ApiKey(s) => vec![(
                HeaderName::from_static("x-api-key"),
                sensitive(s.expose().to_string())?,
            )],
            ProviderAuth::SnowflakeToken {
                token,
                token_type: tt,
            } => vec![
                (
                    http::header::AUTHORIZATION,
                    sensitive(format!("Bearer {}", token.expose()))?,
                ),
                (token_type, HeaderValue::from_static(tt)),
            ],
            ProviderAuth::SnowflakeKeyPair(jwt) => {
                let token = jwt.token().map_err(|e| AuthError::Jwt(e.to_string()))?;
                vec![
                    (
                        http::header::AUTHORIZATION,
                        sensitive(format!("Bearer {token}"))?,
                    ),
                    (token_type, HeaderValue::from_static("KEYPAIR_JWT")),
                ]
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_value() {
        let a = ProviderAuth::Bearer(Secret::new("sk-live-123"));
        assert!(!format!("{a:?}").contains("sk-live-123"));
    }

    #[test]
    fn bearer_and_api_key_headers() {
        let h = ProviderAuth::Bearer(Secret::new("k1")).headers().unwrap();
        assert_eq!(h[0].0, http::header::AUTHORIZATION);
        assert_eq!(h[0].1, "Bearer k1");
        assert!(h[0].1.is_sensitive());
        let h = ProviderAuth::ApiKey(Secret::new("k2")).headers().unwrap();
        assert_eq!(h[0].0.as_str(), "x-api-key");
    }

    #[test]
    fn snowflake_pat_carries_token_type() {
        let h = ProviderAuth::SnowflakeToken {
            token: Secret::new("pat"),
            token_type: "PROGRAMMATIC_ACCESS_TOKEN",
        }
        .headers()
        .unwrap();
        assert_eq!(h[1].1, "PROGRAMMATIC_ACCESS_TOKEN");
    }
}
