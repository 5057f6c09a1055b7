//! The official Anthropic Python SDK against the simulated Anthropic API: the simulator must
//! be consumable by the SDK unchanged (bodies, streaming helpers, tool use, errors, token
//! counting, models). `tests/run.sh` installs the SDK in a virtualenv and points
//! `TOLLGATE_TEST_PYTHON` at it; a plain `cargo test` without that variable skips this test
//! and says so.

use tollgate::providers::ProviderKind;
use tollgate::sim::{SimOptions, SimServer};

const KEY: &str = "sk-ant-sdk-check-0123456789";

fn python() -> Option<String> {
    std::env::var("TOLLGATE_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_anthropic_python_sdk_consumes_the_simulator() {
    let Some(py) = python() else {
        eprintln!("skipped: TOLLGATE_TEST_PYTHON is not set (tests/run.sh sets it)");
        return;
    };
    let sim = SimServer::start(
        ProviderKind::Anthropic,
        SimOptions {
            api_key: Some(KEY.into()),
            ..SimOptions::default()
        },
    )
    .await
    .expect("anthropic sim");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/anthropic_sdk_check.py"
    );
    let out = tokio::process::Command::new(&py)
        .arg(script)
        .arg(sim.base_url())
        .arg(KEY)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"));
    // Every request the script made reached the simulator.
    assert!(sim.request_count() >= 15, "{}", sim.request_count());
    sim.shutdown().await;
}
