//! The runner: one scenario against every provider that has the capabilities it needs,
//! each in its own task, then the providers' specimens compared by shape.
//! `TOLLGATE_CONFORMANCE_DUMP=1` prints every specimen with its shape.

use std::future::Future;
use std::sync::Arc;

use super::{shape, shape_diff, Bench, Capability, Specimen, Target, TARGETS};

/// Runs `scenario` against every target that has `needs`, each in its own task, and then
/// checks that every provider's specimens have the same labels and shapes as the first
/// provider's. Panics listing every failing provider and every difference.
pub async fn run_conformance<F, Fut>(name: &str, needs: &[Capability], scenario: F)
where
    F: Fn(Arc<Bench>, Target) -> Fut,
    Fut: Future<Output = Vec<Specimen>> + Send + 'static,
{
    let bench = Arc::new(Bench::start().await);
    let targets: Vec<Target> = TARGETS
        .iter()
        .copied()
        .filter(|t| needs.iter().all(|c| t.can(*c)))
        .collect();
    assert!(!targets.is_empty(), "{name}: no provider can run it");
    let mut failures = Vec::new();
    let mut results: Vec<(Target, Vec<Specimen>)> = Vec::new();
    for t in &targets {
        bench.clear_faults();
        // A task per provider: a failed assertion is reported, not fatal to the others.
        match tokio::spawn(scenario(bench.clone(), *t)).await {
            Ok(specimens) => {
                if std::env::var_os("TOLLGATE_CONFORMANCE_DUMP").is_some() {
                    for sp in &specimens {
                        eprintln!(
                            "{name} × {} `{}`: {}\n  shape: {}",
                            t.provider,
                            sp.label,
                            sp.value,
                            shape(&sp.value)
                        );
                    }
                }
                results.push((*t, specimens))
            }
            Err(e) => failures.push(format!("{name} × {}: {}", t.provider, panic_text(e))),
        }
    }
    if let Some((first, reference)) = results.first() {
        for (t, specimens) in &results[1..] {
            failures.extend(compare(name, first, reference, t, specimens));
        }
    }
    let passed: Vec<&str> = results.iter().map(|(t, _)| t.provider).collect();
    eprintln!("{name}: passed for {passed:?}");
    match Arc::try_unwrap(bench) {
        Ok(b) => b.stop().await,
        Err(_) => panic!("{name}: a scenario kept the bench"),
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}

fn compare(name: &str, a: &Target, sa: &[Specimen], b: &Target, sb: &[Specimen]) -> Vec<String> {
    let labels = |s: &[Specimen]| s.iter().map(|x| x.label.clone()).collect::<Vec<_>>();
    if labels(sa) != labels(sb) {
        return vec![format!(
            "{name}: {} produced specimens {:?}, {} produced {:?}",
            a.provider,
            labels(sa),
            b.provider,
            labels(sb)
        )];
    }
    sa.iter()
        .zip(sb)
        .filter_map(|(x, y)| {
            let mut diff = Vec::new();
            shape_diff(&shape(&x.value), &shape(&y.value), "", &mut diff);
            (!diff.is_empty()).then(|| {
                format!(
                    "{name}: `{}` differs in shape ({} vs {}):\n  {}\n  {}: {}\n  {}: {}",
                    x.label,
                    a.provider,
                    b.provider,
                    diff.join("\n  "),
                    a.provider,
                    x.value,
                    b.provider,
                    y.value
                )
            })
        })
        .collect()
}

/// Generates one `#[tokio::test]` per scenario, each run against every provider whose
/// capabilities include the ones listed:
///
/// ```ignore
/// conformance_tests! {
///     text_completion: [Text] => scenarios::text_completion,
/// }
/// ```
macro_rules! conformance_tests {
    ($($name:ident : [$($cap:ident),* $(,)?] => $scenario:path),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::conformance_support::run_conformance(
                    stringify!($name),
                    &[$($crate::conformance_support::Capability::$cap),*],
                    $scenario,
                )
                .await;
            }
        )*
    };
}
