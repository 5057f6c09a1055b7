//! Virtual API keys: generation, hashing, constant-time comparison, and adding a key's
//! hash to a budget file.
//!
//! A key is `tg-` followed by 40 base-62 characters (about 238 bits) from the operating
//! system's random source. It is shown once, when created; budget files hold only its
//! SHA-256 hash (hex), so a leaked `budgets/` directory grants no access.

use std::fmt;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Prefix of every tollgate key.
pub const KEY_PREFIX: &str = "tg-";
const KEY_CHARS: usize = 40;
const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-256 of a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> KeyHash {
        KeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<KeyHash> {
        let s = s.trim();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(KeyHash(out))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// First 8 bytes, used to bucket keys before the constant-time comparison.
    pub fn prefix(&self) -> [u8; 8] {
        let mut p = [0u8; 8];
        p.copy_from_slice(&self.0[..8]);
        p
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", &self.to_hex()[..12])
    }
}

/// Compares two byte strings in time that depends only on their length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Why a key could not be created.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("cannot read the system random source: {0}")]
    Random(std::io::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
    #[error("budget {path} already has a key with id `{id}`")]
    DuplicateId { path: String, id: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A fresh random key.
pub fn generate() -> Result<String, KeyError> {
    let mut key = String::with_capacity(KEY_PREFIX.len() + KEY_CHARS);
    key.push_str(KEY_PREFIX);
    let mut f = std::fs::File::open("/dev/urandom").map_err(KeyError::Random)?;
    let mut buf = [0u8; 64];
    while key.len() < KEY_PREFIX.len() + KEY_CHARS {
        f.read_exact(&mut buf).map_err(KeyError::Random)?;
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        for b in buf {
            if b < 248 && key.len() < KEY_PREFIX.len() + KEY_CHARS {
                key.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(key)
}

/// Appends a `[[keys]]` entry with `id` and the hash of `key` to the budget file at
/// `path`, keeping its comments and layout. The file is replaced atomically (write to a
/// temporary file, then rename) so a running gateway never reads half of it.
pub fn add_to_file(path: &Path, id: &str, key: &str, created: &str) -> Result<(), KeyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| KeyError::Toml {
                path: shown.clone(),
                message: e.message().to_string(),
            })?;
    let keys = doc
        .entry("keys")
        .or_insert_with(|| toml_edit::Item::ArrayOfTables(Default::default()));
    let Some(array) = keys.as_array_of_tables_mut() else {
        return Err(KeyError::Toml {
            path: shown,
            message: "`keys` must be an array of tables ([[keys]])".into(),
        });
    };
    if array
        .iter()
        .any(|t| t.get("id").and_then(|v| v.as_str()) == Some(id))
    {
        return Err(KeyError::DuplicateId {
            path: shown,
            id: id.into(),
        });
    }
    let mut entry = toml_edit::Table::new();
    entry.insert("id", toml_edit::value(id));
    entry.insert("sha256", toml_edit::value(KeyHash::of(key).to_hex()));
    entry.insert("created", toml_edit::value(created));
    array.push(entry);
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| KeyError::Write {
            path: shown,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_prefix_length_and_alphabet() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + KEY_CHARS);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_round_trips_through_hex() {
        let h = KeyHash::of("tg-abc");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        // Known SHA-256 of "abc".
        assert_eq!(
            KeyHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(KeyHash::from_hex("xyz"), None);
    }

    #[test]
    fn debug_output_shows_only_a_hash_prefix() {
        let h = KeyHash::of("tg-secret");
        let d = format!("{h:?}");
        assert!(!d.contains("tg-secret"));
        assert!(d.len() < 30);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn adding_a_key_keeps_comments_and_refuses_a_duplicate_id() {
        let dir = std::env::temp_dir().join(format!("tollgate-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("team.toml");
        std::fs::write(&path, "# the team budget\ndaily_limit = \"5\"\n").unwrap();
        add_to_file(&path, "ci", "tg-one", "2026-11-21").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# the team budget\n"));
        assert!(text.contains(&KeyHash::of("tg-one").to_hex()));
        assert!(!text.contains("tg-one\""));
        assert!(matches!(
            add_to_file(&path, "ci", "tg-two", "2026-11-21"),
            Err(KeyError::DuplicateId { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
