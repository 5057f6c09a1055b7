//! `routes.toml`: parsing and validation of arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        let _ = tollgate::config::Config::parse(src, "fuzz.toml");
    }
});
