//! The `[breaker]` section of `routes.toml` as the config loader sees it, and the breaker
//! registry driven through its public API the way the proxy drives it, with its log lines.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tollgate::config::Config;
use tollgate::routing::breaker::{
    Admission, BreakerConfig, BreakerState, Breakers, Outcome, UpstreamKey,
};

const SHIPPED: &str = include_str!("../routes.toml");

/// Everything logged by this test binary. tracing caches per call site whether anyone listens,
/// process-wide, so a capture installed per thread can miss events when a parallel test
/// reached the call site first; a global subscriber, installed before any test logs, cannot.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn shipped_breaker_section_spells_out_the_defaults() {
    let cfg = Config::parse(SHIPPED, "routes.toml").expect("shipped config is valid");
    assert_eq!(cfg.breaker, BreakerConfig::default());
}

#[test]
fn breaker_problems_are_reported_with_their_lines() {
    let bad = SHIPPED
        .replace("failure_ratio = 0.5 ", "failure_ratio = 1.5 ")
        .replace("half_open_probes = 3", "half_open_probes = 0");
    let errs = Config::parse(&bad, "routes.toml").unwrap_err().0;
    let line_of = |needle: &str| bad.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let got: Vec<(Option<usize>, &str)> = errs.iter().map(|p| (p.line, p.path.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(line_of("failure_ratio")), "breaker.failure_ratio"),
            (
                Some(line_of("half_open_probes")),
                "breaker.half_open_probes"
            ),
        ]
    );
}

#[test]
fn unknown_breaker_keys_are_reported() {
    let bad = SHIPPED.replace("window_secs = 60", "window_seconds = 60");
    let errs = Config::parse(&bad, "routes.toml").unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "breaker.window_seconds");
    assert!(
        errs[0].message.contains("unknown field"),
        "{}",
        errs[0].message
    );
}

#[test]
fn a_config_without_a_breaker_section_uses_the_defaults() {
    let start = SHIPPED.find("[breaker]").unwrap();
    let end = start + SHIPPED[start..].find("\n\n").unwrap();
    let without = format!("{}{}", &SHIPPED[..start], &SHIPPED[end..]);
    let cfg = Config::parse(&without, "routes.toml").unwrap();
    assert_eq!(cfg.breaker, BreakerConfig::default());
}

/// One upstream failing over, cooling down, probing and recovering, as the proxy sees it.
#[tokio::test(start_paused = true)]
async fn an_upstream_outage_and_recovery_end_to_end() {
    logs();
    let cfg = Config::parse(SHIPPED, "routes.toml").unwrap();
    let breakers = Breakers::new(cfg.breaker.clone());
    let gpt = UpstreamKey::new("openai", "gpt-4o");
    let claude = UpstreamKey::new("anthropic", "claude-sonnet");

    // Healthy traffic, then an outage: the fifth failure trips it (5 of 10 outcomes, 50%).
    for (i, outcome) in [Outcome::Success; 5]
        .into_iter()
        .chain([Outcome::Failure; 5])
        .enumerate()
    {
        assert_eq!(breakers.state(&gpt), BreakerState::Closed, "before {i}");
        let Admission::Allowed(p) = breakers.admit(&gpt) else {
            panic!("rejected too early");
        };
        breakers.report(p, outcome);
    }
    assert_eq!(breakers.state(&gpt), BreakerState::Open);
    // The proxy skips it and falls back.
    match breakers.admit(&gpt) {
        Admission::Rejected { state, retry_in } => {
            assert_eq!(state, BreakerState::Open);
            assert_eq!(retry_in, Duration::from_secs(30));
        }
        Admission::Allowed(_) => panic!("open circuit admitted a request"),
    }
    assert!(matches!(breakers.admit(&claude), Admission::Allowed(_)));

    // A reload changes nothing about the outage.
    breakers.set_config(Config::parse(SHIPPED, "routes.toml").unwrap().breaker);
    assert_eq!(breakers.state(&gpt), BreakerState::Open);

    tokio::time::advance(Duration::from_secs(30)).await;
    let probes: Vec<_> = (0..3)
        .map(|_| match breakers.admit(&gpt) {
            Admission::Allowed(p) => p,
            Admission::Rejected { .. } => panic!("probe rejected"),
        })
        .collect();
    assert!(matches!(
        breakers.admit(&gpt),
        Admission::Rejected {
            state: BreakerState::HalfOpen,
            ..
        }
    ));
    for p in probes {
        breakers.report(p, Outcome::Success);
    }
    assert_eq!(breakers.state(&gpt), BreakerState::Closed);
    let snap = breakers.snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(snap[1].key, gpt);
    assert_eq!(snap[1].transitions, 3);
    assert_eq!(snap[1].rejections, 2);
}

#[tokio::test(start_paused = true)]
async fn transitions_are_logged_with_the_upstream_and_new_state() {
    let logs = logs();
    let b = Breakers::new(BreakerConfig {
        min_requests: 2,
        cooldown_secs: 10,
        half_open_probes: 1,
        ..BreakerConfig::default()
    });
    let k = UpstreamKey::new("mistral", "log-check");
    for _ in 0..2 {
        let Admission::Allowed(p) = b.admit(&k) else {
            panic!("rejected")
        };
        b.report(p, Outcome::Failure);
    }
    for outcome in [Outcome::Failure, Outcome::Success] {
        tokio::time::advance(Duration::from_secs(10)).await;
        let Admission::Allowed(p) = b.admit(&k) else {
            panic!("rejected")
        };
        b.report(p, outcome);
    }
    let out = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("log-check")).collect();
    let want = [
        ("WARN", "open", "Circuit opened after too many failures"),
        (
            "INFO",
            "half_open",
            "Circuit cooldown over; probing the upstream.",
        ),
        ("WARN", "open", "Circuit reopened after a failed probe."),
        (
            "INFO",
            "half_open",
            "Circuit cooldown over; probing the upstream.",
        ),
        ("INFO", "closed", "Circuit closed; the upstream recovered."),
    ];
    assert_eq!(lines.len(), want.len(), "{out}");
    for (line, (level, state, text)) in lines.iter().zip(want) {
        assert!(line.contains(level), "{line}");
        assert!(line.contains("provider=mistral model=log-check"), "{line}");
        assert!(line.contains(&format!("state=\"{state}\"")), "{line}");
        assert!(line.contains(text), "{line}");
    }
}
