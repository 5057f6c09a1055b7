//! Per-upstream circuit breakers: stop sending traffic to a provider's model while it is
//! failing, probe it carefully once a cooldown has passed, and resume when it answers again.
//!
//! Each upstream (provider + model) has one circuit in a long-lived [`Breakers`] registry.
//! The proxy asks [`Breakers::admit`] before trying an upstream, gets a [`Permit`] (or a
//! rejection with a hint of when to come back), and hands the permit back with
//! [`Breakers::report`] and the attempt's [`Outcome`]. A Closed circuit opens when the share of
//! failures in a rolling window (see `window.rs`) reaches `failure_ratio` over at least
//! `min_requests` outcomes; an Open one rejects for `cooldown_secs`, then turns HalfOpen and
//! lets `half_open_probes` probes through; that many probe successes close it, one probe
//! failure opens it again. A 429 is not a failure: it cools the upstream down for its
//! `Retry-After` (capped), whatever the circuit's state.
//!
//! Permits carry the generation (transition count) they were issued in, so an outcome that
//! arrives after the circuit has moved on (a slow request admitted before it opened) does not
//! count against the new state. Time is [`tokio::time::Instant`], so tests run on tokio's
//! paused clock. Registry reads take a shared lock; each circuit has its own mutex, held
//! only for a few field updates.

mod config;
mod window;

#[cfg(test)]
mod tests;

pub use config::BreakerConfig;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use window::Window;

/// The `retry_in` hint given when a HalfOpen circuit's probe slots are all taken: the
/// probes' outcome is not known yet, so this is only a guess.
pub const PROBE_BUSY_RETRY_IN: Duration = Duration::from_secs(1);

/// A circuit's state, in the textbook sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; outcomes are counted in the rolling window.
    Closed,
    /// Rejecting: the upstream failed too often and is skipped until the cooldown ends.
    Open,
    /// Probing: a few requests are let through to see whether the upstream has recovered.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open` (for metrics labels and the admin API).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One upstream: a provider and a model as that provider is configured in `routes.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamKey {
    /// Provider name (`[providers.<name>]`).
    pub provider: String,
    /// Model name (`[models.<name>]`).
    pub model: String,
}

impl UpstreamKey {
    pub fn new(provider: impl Into<String>, model: impl Into<String>) -> Self {
        UpstreamKey {
            provider: provider.into(),
            model: model.into(),
        }
    }
}

impl fmt::Display for UpstreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// The answer of [`Breakers::admit`].
#[derive(Debug)]
pub enum Admission {
    /// Go ahead, and report the outcome with this permit.
    Allowed(Permit),
    /// Skip this upstream. `state` is the circuit's state: Open (cooling down after
    /// failures), HalfOpen (every probe slot is taken) or, for an upstream cooling down
    /// after a 429, whatever state it is in (usually Closed). `retry_in` is when it may
    /// admit again (for busy probe slots only a guess, [`PROBE_BUSY_RETRY_IN`]).
    Rejected {
        state: BreakerState,
        retry_in: Duration,
    },
}

/// What became of an admitted attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered properly.
    Success,
    /// The upstream failed: connect error, timeout, 5xx, broken stream.
    Failure,
    /// 429: cools the upstream down for `retry_after` (capped; a default when absent)
    /// without counting as a failure.
    RateLimited { retry_after: Option<Duration> },
    /// Neither: e.g. the caller's 4xx, which is not the upstream's fault.
    Neutral,
}

/// Leave to send one request upstream. Hand it back exactly once with [`Breakers::report`];
/// a permit dropped unreported (the client left) counts as neither success nor failure and
/// frees its probe slot.
pub struct Permit {
    /// `None` once reported, and for permits of disabled breakers.
    circuit: Option<Arc<Mutex<Circuit>>>,
    generation: u64,
    probe: bool,
}

impl Permit {
    fn untracked() -> Self {
        Permit {
            circuit: None,
            generation: 0,
            probe: false,
        }
    }

    /// Whether this is one of a HalfOpen circuit's probes.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(c) = self.circuit.take() {
            c.lock().release(self.generation, self.probe);
        }
    }
}

/// One circuit as seen by [`Breakers::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSnapshot {
    pub key: UpstreamKey,
    pub state: BreakerState,
    /// Successes in the rolling window (a Closed circuit's; cleared by every transition).
    pub recent_successes: u64,
    /// Failures in the rolling window.
    pub recent_failures: u64,
    /// HalfOpen: probes admitted and not yet reported.
    pub probes_in_flight: u32,
    /// HalfOpen: probes that succeeded so far.
    pub probe_successes: u32,
    /// When the circuit last opened.
    pub opened_at: Option<Instant>,
    /// Open: when it will start probing.
    pub open_until: Option<Instant>,
    /// Cooling down after a 429 until then.
    pub rate_limited_until: Option<Instant>,
    /// How long until it admits again, if it would reject now.
    pub retry_in: Option<Duration>,
    /// State changes since the circuit was created.
    pub transitions: u64,
    /// Requests rejected since the circuit was created.
    pub rejections: u64,
}

/// The registry of circuits, one per upstream, created on first use. Long-lived: it
/// survives config reloads, which only replace the thresholds ([`Breakers::set_config`]).
pub struct Breakers {
    cfg: ArcSwap<BreakerConfig>,
    circuits: RwLock<HashMap<UpstreamKey, Arc<Mutex<Circuit>>>>,
}

impl Default for Breakers {
    fn default() -> Self {
        Breakers::new(BreakerConfig::default())
    }
}

impl fmt::Debug for Breakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breakers")
            .field("cfg", &**self.cfg.load())
            .field("circuits", &self.circuits.read().len())
            .finish()
    }
}

impl Breakers {
    pub fn new(cfg: BreakerConfig) -> Self {
        Breakers {
            cfg: ArcSwap::from_pointee(cfg),
            circuits: RwLock::new(HashMap::new()),
        }
    }

    /// Replaces the thresholds. Every circuit keeps its state, counts and deadlines; the
    /// new values apply from the next decision on.
    pub fn set_config(&self, cfg: BreakerConfig) {
        if **self.cfg.load() != cfg {
            tracing::info!(
                enabled = cfg.enabled,
                failure_ratio = cfg.failure_ratio,
                window_secs = cfg.window_secs,
                min_requests = cfg.min_requests,
                cooldown_secs = cfg.cooldown_secs,
                half_open_probes = cfg.half_open_probes,
                "Circuit breaker settings changed; circuit states are kept."
            );
        }
        self.cfg.store(Arc::new(cfg));
    }

    /// The thresholds in force.
    pub fn config(&self) -> BreakerConfig {
        (**self.cfg.load()).clone()
    }

    /// May a request go to `key` now?
    pub fn admit(&self, key: &UpstreamKey) -> Admission {
        let cfg = self.cfg.load();
        if !cfg.enabled {
            return Admission::Allowed(Permit::untracked());
        }
        let circuit = self.circuit(key);
        let mut c = circuit.lock();
        let now = Instant::now();
        c.tick(now);
        if let Some(retry_in) = c.wait(now, &cfg) {
            c.rejections += 1;
            return Admission::Rejected {
                state: c.state,
                retry_in,
            };
        }
        let probe = c.state == BreakerState::HalfOpen;
        if probe {
            c.probes_in_flight += 1;
        }
        let generation = c.transitions;
        drop(c);
        Admission::Allowed(Permit {
            circuit: Some(circuit),
            generation,
            probe,
        })
    }

    /// Hands a permit back with the attempt's outcome.
    pub fn report(&self, mut permit: Permit, outcome: Outcome) {
        let Some(circuit) = permit.circuit.take() else {
            return;
        };
        let cfg = self.cfg.load();
        let mut c = circuit.lock();
        c.apply(
            Instant::now(),
            &cfg,
            permit.generation,
            permit.probe,
            outcome,
        );
    }

    /// The state of `key`'s circuit (Closed for an upstream never seen). Like [`Breakers::admit`]
    /// and [`Breakers::snapshot`], this applies time-driven changes first: an Open circuit
    /// whose cooldown is over is HalfOpen from then on.
    pub fn state(&self, key: &UpstreamKey) -> BreakerState {
        let Some(circuit) = self.circuits.read().get(key).cloned() else {
            return BreakerState::Closed;
        };
        let mut c = circuit.lock();
        c.tick(Instant::now());
        c.state
    }

    /// Every circuit, ordered by provider then model.
    pub fn snapshot(&self) -> Vec<BreakerSnapshot> {
        let circuits: Vec<_> = self.circuits.read().values().cloned().collect();
        let cfg = self.cfg.load();
        let now = Instant::now();
        let mut out: Vec<BreakerSnapshot> = circuits
            .iter()
            .map(|circuit| {
                let mut c = circuit.lock();
                c.tick(now);
                c.window.prune(now, cfg.window());
                let (recent_successes, recent_failures) = c.window.counts();
                BreakerSnapshot {
                    key: c.key.clone(),
                    state: c.state,
                    recent_successes,
                    recent_failures,
                    probes_in_flight: c.probes_in_flight,
                    probe_successes: c.probe_successes,
                    opened_at: c.opened_at,
                    open_until: c.open_until,
                    rate_limited_until: c.rate_limited_until,
                    retry_in: c.wait(now, &cfg),
                    transitions: c.transitions,
                    rejections: c.rejections,
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    fn circuit(&self, key: &UpstreamKey) -> Arc<Mutex<Circuit>> {
        if let Some(c) = self.circuits.read().get(key) {
            return c.clone();
        }
        self.circuits
            .write()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Circuit::new(key.clone()))))
            .clone()
    }
}

/// One upstream's circuit.
#[derive(Debug)]
struct Circuit {
    key: UpstreamKey,
    state: BreakerState,
    /// Closed: recent outcomes.
    window: Window,
    /// Also the generation: permits from an earlier generation are stale.
    transitions: u64,
    opened_at: Option<Instant>,
    /// Open: when to start probing.
    open_until: Option<Instant>,
    probes_in_flight: u32,
    probe_successes: u32,
    rate_limited_until: Option<Instant>,
    rejections: u64,
}

impl Circuit {
    fn new(key: UpstreamKey) -> Self {
        Circuit {
            key,
            state: BreakerState::Closed,
            window: Window::default(),
            transitions: 0,
            opened_at: None,
            open_until: None,
            probes_in_flight: 0,
            probe_successes: 0,
            rate_limited_until: None,
            rejections: 0,
        }
    }

    /// Time-driven changes: an Open circuit whose cooldown is over starts probing; an
    /// expired rate-limit cooldown is forgotten.
    fn tick(&mut self, now: Instant) {
        if self.state == BreakerState::Open && self.open_until.is_none_or(|u| now >= u) {
            self.enter(BreakerState::HalfOpen);
            tracing::info!(
                provider = %self.key.provider,
                model = %self.key.model,
                state = "half_open",
                "Circuit cooldown over; probing the upstream."
            );
        }
        if self.rate_limited_until.is_some_and(|u| now >= u) {
            self.rate_limited_until = None;
            tracing::debug!(
                provider = %self.key.provider,
                model = %self.key.model,
                "Rate-limit cooldown over; the upstream is admitted again."
            );
        }
    }

    /// How long a request must wait, if it cannot be admitted now (call after `tick`).
    fn wait(&self, now: Instant, cfg: &BreakerConfig) -> Option<Duration> {
        let breaker = match self.state {
            BreakerState::Closed => None,
            BreakerState::Open => self.open_until.map(|u| u.saturating_duration_since(now)),
            BreakerState::HalfOpen => {
                (self.probes_in_flight >= cfg.probes()).then_some(PROBE_BUSY_RETRY_IN)
            }
        };
        let rate_limit = self
            .rate_limited_until
            .filter(|u| now < *u)
            .map(|u| u.saturating_duration_since(now));
        match (breaker, rate_limit) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    fn apply(
        &mut self,
        now: Instant,
        cfg: &BreakerConfig,
        generation: u64,
        probe: bool,
        outcome: Outcome,
    ) {
        if let Outcome::RateLimited { retry_after } = outcome {
            self.cool_down(now, cfg.rate_limit_cooldown(retry_after), retry_after);
        }
        if generation != self.transitions {
            return; // admitted before the circuit last changed state
        }
        match self.state {
            BreakerState::Closed => {
                let failed = match outcome {
                    Outcome::Success => false,
                    Outcome::Failure => true,
                    Outcome::RateLimited { .. } | Outcome::Neutral => return,
                };
                self.window.record(now, cfg.window(), failed);
                let (successes, failures) = self.window.counts();
                if failed && cfg.trips(failures, successes + failures) {
                    self.open(now, cfg);
                    tracing::warn!(
                        provider = %self.key.provider,
                        model = %self.key.model,
                        state = "open",
                        failures,
                        requests = successes + failures,
                        cooldown_secs = cfg.cooldown_secs,
                        "Circuit opened after too many failures; skipping the upstream."
                    );
                }
            }
            BreakerState::HalfOpen if probe => {
                self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Success => {
                        self.probe_successes += 1;
                        if self.probe_successes >= cfg.probes() {
                            let probes = self.probe_successes;
                            self.enter(BreakerState::Closed);
                            tracing::info!(
                                provider = %self.key.provider,
                                model = %self.key.model,
                                state = "closed",
                                probes,
                                "Circuit closed; the upstream recovered."
                            );
                        }
                    }
                    Outcome::Failure => {
                        self.open(now, cfg);
                        tracing::warn!(
                            provider = %self.key.provider,
                            model = %self.key.model,
                            state = "open",
                            cooldown_secs = cfg.cooldown_secs,
                            "Circuit reopened after a failed probe."
                        );
                    }
                    Outcome::RateLimited { .. } | Outcome::Neutral => {}
                }
            }
            BreakerState::HalfOpen | BreakerState::Open => {}
        }
    }

    /// A permit dropped unreported: frees its probe slot, records nothing.
    fn release(&mut self, generation: u64, probe: bool) {
        if probe && generation == self.transitions && self.state == BreakerState::HalfOpen {
            self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        }
    }

    fn cool_down(&mut self, now: Instant, cooldown: Duration, retry_after: Option<Duration>) {
        if cooldown.is_zero() {
            return;
        }
        let until = now + cooldown;
        let fresh = self.rate_limited_until.is_none_or(|u| u <= now);
        if self.rate_limited_until.is_none_or(|u| u < until) {
            self.rate_limited_until = Some(until);
        }
        if fresh {
            tracing::info!(
                provider = %self.key.provider,
                model = %self.key.model,
                cooldown_ms = cooldown.as_millis() as u64,
                retry_after_ms = retry_after.map(|d| d.as_millis() as u64),
                "Upstream rate-limited; skipping it until the cooldown ends."
            );
        }
    }

    fn open(&mut self, now: Instant, cfg: &BreakerConfig) {
        self.enter(BreakerState::Open);
        self.opened_at = Some(now);
        self.open_until = Some(now + cfg.cooldown());
    }

    /// Moves to `state`, starting a new generation with fresh counts.
    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.transitions += 1;
        self.window.clear();
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        if state != BreakerState::Open {
            self.open_until = None;
        }
    }
}
