//! The official Python SDKs' check scripts (`tests/sdk/*.py`): `tests/run.sh` installs the
//! SDKs in a virtualenv and points `TOLLGATE_TEST_PYTHON` at its interpreter.

/// The interpreter from `TOLLGATE_TEST_PYTHON`, or `None` after saying that the test is
/// skipped (a plain `cargo test` does not set it).
pub fn python_or_skip() -> Option<String> {
    let py = std::env::var("TOLLGATE_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    if py.is_none() {
        eprintln!("skipped: TOLLGATE_TEST_PYTHON is not set (tests/run.sh sets it)");
    }
    py
}

/// Runs `tests/sdk/<script>` with `args` under `py`, asserts that it succeeded (showing
/// `what` failed with its output otherwise) and printed "all checks passed", and returns
/// its standard output.
pub async fn run_check<I, S>(py: &str, script: &str, args: I, what: &str) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let script = format!("{}/tests/sdk/{script}", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(py)
        .arg(script)
        .args(args)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    stdout
}
