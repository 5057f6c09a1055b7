//! The shipped classifier on labelled prompts, and `tollgate eval-router` end to end.

use std::path::Path;
use std::process::Command;

use tollgate::config::Config;
use tollgate::routing::eval::evaluate;

const LABELLED: &str = "tests/fixtures/router/labelled.jsonl";

fn shipped() -> Config {
    Config::load(Path::new("routes.toml")).expect("the shipped routes.toml is valid")
}

#[test]
fn the_shipped_routes_separate_everyday_from_technical_prompts() {
    let file = std::fs::File::open(LABELLED).unwrap();
    let report = evaluate(&shipped(), std::io::BufReader::new(file)).unwrap();
    let o = &report.overall;
    assert_eq!(o.total(), 40);
    let recall = o.complex_recall().unwrap();
    let kept = o.simple_kept_cheap().unwrap();
    assert!(
        recall >= 0.8,
        "complex recall {recall}: {}",
        report.render()
    );
    assert!(kept >= 0.8, "simple kept cheap {kept}: {}", report.render());
    let balanced = o.balanced_accuracy().unwrap();
    assert!(
        balanced >= 0.85,
        "balanced accuracy {balanced}: {}",
        report.render()
    );
    // Keeping everyday prompts off the premium tiers saves money against gpt-4-turbo.
    let saving = report.saving().unwrap();
    assert!(saving > 0.3, "saving {saving}");
    assert!(report.routed_nanos < report.baseline_nanos);
}

#[test]
fn the_sweep_trades_premium_share_for_recall() {
    let file = std::fs::File::open(LABELLED).unwrap();
    let report = evaluate(&shipped(), std::io::BufReader::new(file)).unwrap();
    assert!(report.premium_threshold.is_some());
    let first = &report.sweep.first().unwrap().counts;
    let last = &report.sweep.last().unwrap().counts;
    // The lowest cut-off sends more complex prompts to premium, the highest keeps more
    // simple prompts cheap.
    assert!(first.complex_premium >= last.complex_premium);
    assert!(first.simple_cheap <= last.simple_cheap);
    assert!(report
        .sweep
        .windows(2)
        .all(|w| w[0].counts.complex_premium >= w[1].counts.complex_premium));
}

#[test]
fn eval_router_prints_the_figures_for_a_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["eval-router", LABELLED, "--config", "routes.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("count=40\n"), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("balanced_accuracy="))
        .unwrap();
    let value: f64 = line["balanced_accuracy=".len()..].parse().unwrap();
    assert!((0.85..=1.0).contains(&value), "{line}");
    assert_eq!(line.len(), "balanced_accuracy=0.000".len(), "{line}");
    for part in [
        "complex_to_premium=",
        "simple_to_non_premium=",
        "saving",
        "everyday",
        "technical",
        "premium cut-off sweep",
    ] {
        assert!(text.contains(part), "missing {part}: {text}");
    }
}

#[test]
fn eval_router_rejects_a_bad_label_with_its_line() {
    let dir = std::env::temp_dir().join(format!("tollgate-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.jsonl");
    std::fs::write(
        &file,
        "{\"id\":1,\"prompt\":\"hi\",\"label\":\"simple\"}\n{\"id\":2,\"prompt\":\"x\",\"label\":\"hard\"}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["eval-router"])
        .arg(&file)
        .args(["--config", "routes.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2 (id 2)") && err.contains("\"hard\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
