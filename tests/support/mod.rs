//! Helpers shared by the integration tests: fixture files, and the pieces several suites
//! need alike — the simulators over HTTP ([`sim`]), the adapters' stream translators
//! ([`adapter`]) and the official SDKs' scripts ([`python`]). Each test binary uses a
//! subset, so unused items are allowed here.

#![allow(dead_code)]

pub mod adapter;
pub mod python;
pub mod redis;
pub mod sim;
pub mod webdriver;
pub mod webhook;

use std::path::PathBuf;

use serde_json::Value;

/// The path of `tests/fixtures/<dir>/<name>`.
pub fn fixture_path(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name)
}

/// The bytes of `tests/fixtures/<dir>/<name>`; panics naming the file if it cannot be read.
pub fn fixture_bytes(dir: &str, name: &str) -> Vec<u8> {
    let path = fixture_path(dir, name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of `tests/fixtures/<dir>/<name>`.
pub fn fixture_text(dir: &str, name: &str) -> String {
    String::from_utf8(fixture_bytes(dir, name)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))
}

/// `tests/fixtures/<dir>/<name>` parsed as JSON; panics naming the file if it is not JSON.
pub fn fixture_json(dir: &str, name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(dir, name))
        .unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))
}
