//! Snowflake key-pair JWT (RS256) generation and caching.
//!
//! Snowflake's key-pair authentication takes a JWT signed with the user's RSA private key:
//! `iss` is `ACCOUNT.USER.SHA256:<fingerprint>` (the fingerprint being the base64 SHA-256 of
//! the DER `SubjectPublicKeyInfo` of the registered public key, as `DESCRIBE USER` shows it
//! in `RSA_PUBLIC_KEY_FP`), `sub` is `ACCOUNT.USER`, and the token lives at most one hour.
//! [`KeyPairJwt`] signs tokens with a 59-minute lifetime and reuses one until fewer than five
//! minutes of it remain, so a request never leaves with a token about to expire.
//!
//! The private key never leaves this module: it is not printed by `Debug`, not logged, and
//! not part of any error message.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Lifetime written into `exp`: Snowflake accepts at most one hour.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(59 * 60);

/// A cached token is replaced once less than this much of its life remains.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Signs and caches key-pair JWTs for one Snowflake user.
pub struct KeyPairJwt {
    /// `ACCOUNT.USER`, normalised and upper-cased (the `sub` claim).
    qualified_user: String,
    /// `SHA256:<base64>` of the public key.
    fingerprint: String,
    signing_key: SigningKey<Sha256>,
    cache: Mutex<Option<CachedToken>>,
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    /// Unix seconds.
    expires_at: u64,
}

/// JWT creation failed. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The PEM text is not an unencrypted RSA private key in PKCS#8 or PKCS#1 form.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// Account or user is empty after normalisation.
    #[error("invalid identity: {0}")]
    InvalidIdentity(String),
    /// The signature could not be computed.
    #[error("could not sign JWT: {0}")]
    Sign(String),
    /// The system clock is before 1970.
    #[error("system clock is before the Unix epoch")]
    Clock,
}

#[derive(Serialize)]
struct Header {
    alg: &'static str,
    typ: &'static str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    iat: u64,
    exp: u64,
}

impl KeyPairJwt {
    /// Builds a signer from a PEM private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`). Encrypted keys (`BEGIN ENCRYPTED PRIVATE KEY`) must be
    /// decrypted first (`openssl pkcs8 -in key.p8 -out key.pem`).
    ///
    /// `account` may be an account identifier (`myorg-myaccount`), an account locator with
    /// region (`xy12345.us-east-1`) or a full host name; see [`normalize_account`].
    pub fn from_pem(account: &str, user: &str, private_key_pem: &str) -> Result<Self, JwtError> {
        let pem = private_key_pem.trim();
        let key = if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
            return Err(JwtError::InvalidKey(
                "encrypted PKCS#8 keys are not supported; decrypt the key first".into(),
            ));
        } else if pem.contains("BEGIN RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| JwtError::InvalidKey(format!("PKCS#1 PEM: {e}")))?
        } else if pem.contains("BEGIN PRIVATE KEY") {
            RsaPrivateKey::from_pkcs8_pem(pem)
                .map_err(|e| JwtError::InvalidKey(format!("PKCS#8 PEM: {e}")))?
        } else {
            return Err(JwtError::InvalidKey(
                "expected a PEM block `BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`".into(),
            ));
        };
        Self::from_key(account, user, key)
    }

    /// Builds a signer from a PEM file on disk (see [`Self::from_pem`]).
    pub fn from_pem_file(
        account: &str,
        user: &str,
        path: impl AsRef<std::path::Path>,
    ) -> Result<Self, JwtError> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path)
            .map_err(|e| JwtError::InvalidKey(format!("cannot read {}: {e}", path.display())))?;
        Self::from_pem(account, user, &pem)
    }

    /// Builds a signer from an already parsed RSA private key.
    pub fn from_key(account: &str, user: &str, key: RsaPrivateKey) -> Result<Self, JwtError> {
        let account = normalize_account(account);
        let user = user.trim().to_uppercase();
        if account.is_empty() {
            return Err(JwtError::InvalidIdentity("account is empty".into()));
        }
        if user.is_empty() {
            return Err(JwtError::InvalidIdentity("user is empty".into()));
        }
        let spki = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| JwtError::InvalidKey(format!("cannot encode public key: {e}")))?;
        let fingerprint = format!(
            "SHA256:{}",
            STANDARD.encode(Sha256::digest(spki.as_bytes()))
        );
        Ok(KeyPairJwt {
            qualified_user: format!("{account}.{user}"),
            fingerprint,
            signing_key: SigningKey::<Sha256>::new(key),
            cache: Mutex::new(None),
        })
    }

    /// `SHA256:<base64>` of the public key; equals `RSA_PUBLIC_KEY_FP` of `DESCRIBE USER`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `ACCOUNT.USER` as it appears in the `sub` claim.
    pub fn qualified_user(&self) -> &str {
        &self.qualified_user
    }

    /// A valid token, signed anew when the cached one has less than five minutes left.
    pub fn token(&self) -> Result<String, JwtError> {
        self.token_at(SystemTime::now())
    }

    /// [`Self::token`] as of `now` (tests move the clock with it).
    pub fn token_at(&self, now: SystemTime) -> Result<String, JwtError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| JwtError::Clock)?
            .as_secs();
        // A poisoned lock only means another thread panicked while holding it; the cached
        // value is either a complete token or nothing, so it is still safe to use.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref() {
            if c.expires_at > now && c.expires_at - now >= REFRESH_MARGIN.as_secs() {
                return Ok(c.token.clone());
            }
        }
        let expires_at = now + TOKEN_LIFETIME.as_secs();
        let token = self.sign(now, expires_at)?;
        *cache = Some(CachedToken {
            token: token.clone(),
            expires_at,
        });
        Ok(token)
    }

    fn sign(&self, iat: u64, exp: u64) -> Result<String, JwtError> {
        let iss = format!("{}.{}", self.qualified_user, self.fingerprint);
        let header = serde_json::to_vec(&Header {
            alg: "RS256",
            typ: "JWT",
        })
        .map_err(|e| JwtError::Sign(e.to_string()))?;
        let claims = serde_json::to_vec(&Claims {
            iss: &iss,
            sub: &self.qualified_user,
            iat,
            exp,
        })
        .map_err(|e| JwtError::Sign(e.to_string()))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        // RSASSA-PKCS1-v1_5 over SHA-256 (RS256). Signing happens once per ~54 minutes and
        // is not triggered by callers, so the unblinded deterministic form is adequate.
        let signature = self
            .signing_key
            .try_sign(signing_input.as_bytes())
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

impl std::fmt::Debug for KeyPairJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPairJwt")
            .field("qualified_user", &self.qualified_user)
            .field("fingerprint", &self.fingerprint)
            .field("private_key", &"***")
            .finish()
    }
}

/// The account part of the JWT claims: everything before the first `.` (dropping region,
/// cloud and domain), or for `.global` replication hosts everything before the first `-`;
/// upper-cased.
pub fn normalize_account(account: &str) -> String {
    let account = account.trim();
    let cut = if account.contains(".global") {
        account.find('-')
    } else {
        account.find('.')
    };
    let account = match cut {
        Some(i) if i > 0 => &account[..i],
        _ => account,
    };
    account.to_uppercase()
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::rand_core::OsRng;
    use rsa::signature::Verifier;
    use rsa::RsaPublicKey;
    use serde_json::Value;

    use super::*;

    /// One 2048-bit key for the whole test module (generation is slow in debug builds).
    fn key() -> &'static RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut OsRng, 2048).unwrap())
    }

    fn pkcs8_pem() -> String {
        key().to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    fn decode_part(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn verify(token: &str, public: &RsaPublicKey) -> (Value, Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        for p in &parts {
            assert!(!p.contains('='), "base64url must be unpadded");
        }
        let sig =
            Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
        let signing_input = format!("{}.{}", parts[0], parts[1]);
        VerifyingKey::<Sha256>::new(public.clone())
            .verify(signing_input.as_bytes(), &sig)
            .expect("signature verifies with the public key");
        (decode_part(parts[0]), decode_part(parts[1]))
    }

    #[test]
    fn signed_token_verifies_and_carries_snowflake_claims() {
        let jwt = KeyPairJwt::from_pem("myorg-myaccount", "my_user", &pkcs8_pem()).unwrap();
        let token = jwt.token_at(at(1_700_000_000)).unwrap();
        let (header, claims) = verify(&token, &key().to_public_key());
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));

        let spki = key().to_public_key().to_public_key_der().unwrap();
        let fp = format!(
            "SHA256:{}",
            STANDARD.encode(Sha256::digest(spki.as_bytes()))
        );
        assert_eq!(jwt.fingerprint(), fp);
        assert_eq!(claims["iss"], format!("MYORG-MYACCOUNT.MY_USER.{fp}"));
        assert_eq!(claims["sub"], "MYORG-MYACCOUNT.MY_USER");
        let iat = claims["iat"].as_u64().unwrap();
        let exp = claims["exp"].as_u64().unwrap();
        assert_eq!(iat, 1_700_000_000);
        assert!(exp > iat && exp - iat <= 3600);
        assert_eq!(exp - iat, 59 * 60);
    }

    #[test]
    fn pkcs1_and_pkcs8_keys_give_the_same_fingerprint() {
        let pkcs1 = key().to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
        assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
        let a = KeyPairJwt::from_pem("acct", "u", &pkcs1).unwrap();
        let b = KeyPairJwt::from_pem("acct", "u", &pkcs8_pem()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let token = a.token_at(at(1_700_000_000)).unwrap();
        verify(&token, &key().to_public_key());
    }

    #[test]
    fn cached_token_is_reused_within_its_life_and_refreshed_after_55_minutes() {
        let jwt = KeyPairJwt::from_pem("acct", "u", &pkcs8_pem()).unwrap();
        let t0 = 1_700_000_000;
        let first = jwt.token_at(at(t0)).unwrap();
        assert_eq!(jwt.token_at(at(t0 + 60)).unwrap(), first);
        assert_eq!(jwt.token_at(at(t0 + 54 * 60)).unwrap(), first);
        let refreshed = jwt.token_at(at(t0 + 55 * 60)).unwrap();
        assert_ne!(refreshed, first);
        let (_, claims) = verify(&refreshed, &key().to_public_key());
        assert_eq!(claims["iat"].as_u64().unwrap(), t0 + 55 * 60);
        // The refreshed token is cached in turn.
        assert_eq!(jwt.token_at(at(t0 + 56 * 60)).unwrap(), refreshed);
    }

    #[test]
    fn token_is_shared_across_threads() {
        let jwt = std::sync::Arc::new(KeyPairJwt::from_pem("acct", "u", &pkcs8_pem()).unwrap());
        let now = at(1_700_000_000);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let jwt = jwt.clone();
                std::thread::spawn(move || jwt.token_at(now).unwrap())
            })
            .collect();
        let tokens: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(tokens.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn account_is_normalised_like_snowflakes_generator() {
        assert_eq!(normalize_account("myorg-myaccount"), "MYORG-MYACCOUNT");
        assert_eq!(normalize_account("xy12345.us-east-1"), "XY12345");
        assert_eq!(
            normalize_account("myorg-myaccount.snowflakecomputing.com"),
            "MYORG-MYACCOUNT"
        );
        assert_eq!(
            normalize_account("xy12345-abcdefg.global.snowflakecomputing.com"),
            "XY12345"
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let pem = pkcs8_pem();
        let jwt = KeyPairJwt::from_pem("acct", "u", &pem).unwrap();
        let token = jwt.token_at(at(1_700_000_000)).unwrap();
        let dbg = format!("{jwt:?}");
        assert!(dbg.contains("ACCT.U"));
        assert!(dbg.contains("***"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!dbg.contains(&body[..40]));
        assert!(
            !dbg.contains(&token),
            "the cached token is not printed either"
        );
    }

    #[test]
    fn rejects_non_rsa_and_encrypted_pem() {
        let e = KeyPairJwt::from_pem("a", "u", "not a key").unwrap_err();
        assert!(matches!(e, JwtError::InvalidKey(_)));
        let e = KeyPairJwt::from_pem(
            "a",
            "u",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----",
        )
        .unwrap_err();
        assert!(e.to_string().contains("encrypted"));
        let e = KeyPairJwt::from_pem(
            "a",
            "u",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        )
        .unwrap_err();
        assert!(matches!(e, JwtError::InvalidKey(_)));
        assert!(KeyPairJwt::from_pem("", "u", &pkcs8_pem()).is_err());
    }
}
