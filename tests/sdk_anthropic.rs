//! The official Anthropic Python SDK against the simulated Anthropic API: the simulator must
//! be consumable by the SDK unchanged (bodies, streaming helpers, tool use, errors, token
//! counting, models). `tests/run.sh` installs the SDK in a virtualenv and points
//! `TOLLGATE_TEST_PYTHON` at it; a plain `cargo test` without that variable skips this test
//! and says so.

mod support;

use support::python::{python_or_skip, run_check};
use tollgate::providers::ProviderKind;

const KEY: &str = "sk-ant-sdk-check-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_python_sdk_consumes_the_simulator() {
    let Some(py) = python_or_skip() else {
        return;
    };
    let sim = support::sim::start(ProviderKind::Anthropic, KEY).await;
    run_check(
        &py,
        "anthropic_sdk_check.py",
        [sim.base_url().as_str(), KEY],
        "SDK check",
    )
    .await;
    // Every request the script made reached the simulator.
    assert!(sim.request_count() >= 15, "{}", sim.request_count());
    sim.shutdown().await;
}
