//! Snowflake key-pair JWT (RS256) generation and caching.
//!
//! Placeholder: filled in with the Cortex adapter.

/// Signs and caches key-pair JWTs for one Snowflake user.
#[derive(Debug)]
pub struct KeyPairJwt {
    _private: (),
}

/// JWT creation failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwtError(pub String);

impl KeyPairJwt {
    /// A valid token, refreshed before expiry.
    pub fn token(&self) -> Result<String, JwtError> {
        Err(JwtError("key-pair JWT is not available yet".into()))
    }
}
