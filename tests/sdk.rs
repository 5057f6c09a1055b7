//! The official OpenAI Python SDK against the real gateway. `tests/run.sh` installs the SDK
//! in a virtualenv and points `TOLLGATE_TEST_PYTHON` at it; a plain `cargo test` without
//! that variable skips this test and says so.

mod common;
mod support;

use common::Harness;
use support::python::{python_or_skip, run_check};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_works_unchanged() {
    let Some(py) = python_or_skip() else {
        return;
    };
    let h = Harness::start().await;
    let base = format!("{}/v1", h.gw.base_url());
    run_check(&py, "openai_sdk_check.py", [&base], "SDK check").await;
    h.stop().await;
}
