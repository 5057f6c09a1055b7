//! The official OpenAI Python SDK against the real gateway. `tests/run.sh` installs the SDK
//! in a virtualenv and points `TOLLGATE_TEST_PYTHON` at it; a plain `cargo test` without
//! that variable skips this test and says so.

mod common;

use common::Harness;

fn python() -> Option<String> {
    std::env::var("TOLLGATE_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_works_unchanged() {
    let Some(py) = python() else {
        eprintln!("skipped: TOLLGATE_TEST_PYTHON is not set (tests/run.sh sets it)");
        return;
    };
    let h = Harness::start().await;
    let base = format!("{}/v1", h.gw.base_url());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let out = tokio::process::Command::new(&py)
        .arg(script)
        .arg(&base)
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
    h.stop().await;
}
