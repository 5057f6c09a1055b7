//! Time to first token per upstream, as percentiles that favour recent traffic.
//!
//! Each upstream keeps an exponentially decayed histogram: a sample's weight halves every
//! `half_life`, so a percentile describes mostly the last few half-lives. The buckets are
//! log-spaced (each 8% wider than the one before, from 1 ms to about 17 minutes, plus one
//! below and one above), so a percentile is within about 8% of the true value at any scale,
//! and p50, p90 and p99 all come from the same data. This was chosen over a streaming
//! quantile estimator (P², stochastic-approximation) because those track one quantile each,
//! converge slowly after a shift, and have no exact notion of decay.
//!
//! Decay is "forward decay" (Cormode, Shkapenyuk, Srivastava, Xu, ICDE 2009): instead of
//! shrinking every bucket as time passes, a new sample gets weight `2^((t - landmark) /
//! half_life)`, which grows with time; since percentiles only depend on ratios of weights,
//! that is the same as decaying the old ones. Recording is O(1): one logarithm and two
//! additions. When the weights grow large, all buckets are rescaled once and the landmark
//! moves (every 64 half-lives, so a negligible amortized cost). Reading a percentile walks
//! the ~180 buckets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use crate::routing::breaker::UpstreamKey;

/// Samples an upstream needs before [`LatencyTracker::quantile`] answers, by default.
pub const MIN_SAMPLES: u64 = 5;

/// Upper bound of the lowest bucket, in seconds (1 ms).
const LOWEST: f64 = 0.001;
/// Each log bucket's upper bound over its lower bound.
const GROWTH: f64 = 1.08;
/// Log buckets between `LOWEST` and `LOWEST * GROWTH^LOG_BUCKETS` (about 1040 s).
const LOG_BUCKETS: usize = 180;
/// Below `LOWEST`, the log buckets, and everything above them.
const BUCKETS: usize = LOG_BUCKETS + 2;
/// Rescale once new samples would weigh 2^this.
const RESCALE_EXPONENT: f64 = 64.0;

/// Decaying time-to-first-token percentiles for every upstream, created on first record.
#[derive(Debug)]
pub struct LatencyTracker {
    half_life: Duration,
    min_samples: u64,
    upstreams: RwLock<HashMap<UpstreamKey, Arc<Mutex<Histogram>>>>,
}

/// One upstream as seen by [`LatencyTracker::snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    pub key: UpstreamKey,
    /// Samples ever recorded.
    pub samples: u64,
    /// The samples' total weight now, each counting 1 when fresh and half as much after every
    /// half-life: roughly how many recent samples the percentiles rest on. Near 0 means the
    /// figures are stale.
    pub weight: f64,
    pub p50: Option<Duration>,
    pub p90: Option<Duration>,
    pub p99: Option<Duration>,
}

impl LatencyTracker {
    /// A tracker whose samples lose half their weight every `half_life` (at least 1 ms).
    pub fn new(half_life: Duration) -> Self {
        LatencyTracker {
            half_life: half_life.max(Duration::from_millis(1)),
            min_samples: MIN_SAMPLES,
            upstreams: RwLock::new(HashMap::new()),
        }
    }

    /// Changes how many samples an upstream needs before it has percentiles (at least 1).
    pub fn with_min_samples(mut self, n: u64) -> Self {
        self.min_samples = n.max(1);
        self
    }

    pub fn half_life(&self) -> Duration {
        self.half_life
    }

    /// Records one time to first token for `key`, now.
    pub fn record(&self, key: &UpstreamKey, ttft: Duration) {
        let h = self.histogram(key);
        let now = Instant::now();
        h.lock().record(now, self.half_life, ttft);
    }

    /// The `q` quantile (0.0 ..= 1.0, clamped; e.g. 0.9 for p90) of `key`'s recent times to
    /// first token. `None` until the upstream has `min_samples` samples, or for a NaN `q`.
    pub fn quantile(&self, key: &UpstreamKey, q: f64) -> Option<Duration> {
        if q.is_nan() {
            return None;
        }
        let h = self.upstreams.read().get(key).cloned()?;
        let h = h.lock();
        if h.samples < self.min_samples {
            return None;
        }
        h.quantile(q.clamp(0.0, 1.0))
    }

    /// Every upstream's figures, ordered by provider then model.
    pub fn snapshot(&self) -> Vec<LatencySnapshot> {
        let all: Vec<_> = self
            .upstreams
            .read()
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        let now = Instant::now();
        let mut out: Vec<LatencySnapshot> = all
            .into_iter()
            .map(|(key, h)| {
                let h = h.lock();
                let ready = h.samples >= self.min_samples;
                let q = |q: f64| if ready { h.quantile(q) } else { None };
                LatencySnapshot {
                    samples: h.samples,
                    weight: h.weight_at(now, self.half_life),
                    p50: q(0.5),
                    p90: q(0.9),
                    p99: q(0.99),
                    key,
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    fn histogram(&self, key: &UpstreamKey) -> Arc<Mutex<Histogram>> {
        if let Some(h) = self.upstreams.read().get(key) {
            return h.clone();
        }
        self.upstreams
            .write()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(Histogram::new(Instant::now()))))
            .clone()
    }
}

/// A forward-decayed log histogram.
#[derive(Debug)]
struct Histogram {
    /// Weights relative to `landmark`.
    buckets: Box<[f64; BUCKETS]>,
    total: f64,
    landmark: Instant,
    samples: u64,
}

impl Histogram {
    fn new(now: Instant) -> Self {
        Histogram {
            buckets: Box::new([0.0; BUCKETS]),
            total: 0.0,
            landmark: now,
            samples: 0,
        }
    }

    fn record(&mut self, now: Instant, half_life: Duration, ttft: Duration) {
        let mut exponent = self.exponent(now, half_life);
        if exponent > RESCALE_EXPONENT {
            // Underflows to 0 after a very long silence: the old samples are forgotten.
            let factor = (-exponent).exp2();
            for b in self.buckets.iter_mut() {
                *b *= factor;
            }
            self.total *= factor;
            self.landmark = now;
            exponent = 0.0;
        }
        let w = exponent.exp2();
        self.buckets[bucket_of(ttft.as_secs_f64())] += w;
        self.total += w;
        self.samples += 1;
    }

    /// Half-lives from the landmark to `now`.
    fn exponent(&self, now: Instant, half_life: Duration) -> f64 {
        now.saturating_duration_since(self.landmark).as_secs_f64() / half_life.as_secs_f64()
    }

    /// The decayed weight of all samples as of `now`.
    fn weight_at(&self, now: Instant, half_life: Duration) -> f64 {
        self.total * (-self.exponent(now, half_life)).exp2()
    }

    fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total.is_nan() || self.total <= 0.0 {
            return None;
        }
        let target = q * self.total;
        let mut below = 0.0;
        let mut last = None;
        for (i, &w) in self.buckets.iter().enumerate() {
            if w <= 0.0 {
                continue;
            }
            last = Some(i);
            if below + w >= target {
                let frac = ((target - below) / w).clamp(0.0, 1.0);
                return Some(secs(value_in(i, frac)));
            }
            below += w;
        }
        // Rounding left the target just above the total: the top of the last bucket used.
        last.map(|i| secs(value_in(i, 1.0)))
    }
}

/// The bucket of a sample of `s` seconds.
fn bucket_of(s: f64) -> usize {
    if s.is_nan() || s < LOWEST {
        return 0;
    }
    let i = ((s / LOWEST).ln() / GROWTH.ln()).floor();
    // `as` saturates; +1 skips the bucket below LOWEST.
    (i as usize).saturating_add(1).min(BUCKETS - 1)
}

/// A point `frac` of the way through bucket `i` (geometrically inside log buckets).
fn value_in(i: usize, frac: f64) -> f64 {
    match i {
        0 => LOWEST * frac,
        i if i == BUCKETS - 1 => lower_bound(i),
        i => lower_bound(i) * GROWTH.powf(frac),
    }
}

fn lower_bound(i: usize) -> f64 {
    LOWEST * GROWTH.powi(i.saturating_sub(1) as i32)
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const HALF_LIFE: Duration = Duration::from_secs(60);

    fn key(model: &str) -> UpstreamKey {
        UpstreamKey::new("anthropic", model)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// |got - want| <= tol * want.
    fn assert_close(got: Option<Duration>, want: Duration, tol: f64) {
        let got = got.expect("a quantile");
        let err = (got.as_secs_f64() - want.as_secs_f64()).abs() / want.as_secs_f64();
        assert!(
            err <= tol,
            "got {got:?}, want {want:?} ± {:.0}%",
            tol * 100.0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_only_after_a_few_samples() {
        let t = LatencyTracker::new(HALF_LIFE);
        let k = key("claude-haiku");
        assert_eq!(t.quantile(&k, 0.5), None);
        for _ in 0..MIN_SAMPLES - 1 {
            t.record(&k, ms(200));
        }
        assert_eq!(t.quantile(&k, 0.5), None);
        assert_eq!(t.snapshot()[0].p50, None);
        t.record(&k, ms(200));
        assert_close(t.quantile(&k, 0.5), ms(200), 0.08);
        assert_eq!(t.quantile(&k, f64::NAN), None);
        let eager = LatencyTracker::new(HALF_LIFE).with_min_samples(1);
        eager.record(&k, ms(50));
        assert_close(eager.quantile(&k, 0.5), ms(50), 0.08);
    }

    #[tokio::test(start_paused = true)]
    async fn percentiles_of_a_uniform_spread_are_within_five_percent() {
        let t = LatencyTracker::new(HALF_LIFE);
        let k = key("claude-sonnet");
        let mut samples: Vec<u64> = (1..=1000).map(|i| i * 2).collect(); // 2 ms .. 2 s
        fastrand::Rng::with_seed(7).shuffle(&mut samples);
        for s in samples {
            t.record(&k, ms(s));
        }
        assert_close(t.quantile(&k, 0.5), ms(1000), 0.05);
        assert_close(t.quantile(&k, 0.9), ms(1800), 0.05);
        assert_close(t.quantile(&k, 0.99), ms(1980), 0.05);
        assert_close(t.quantile(&k, 0.0), ms(2), 0.08);
        assert_close(t.quantile(&k, 1.0), ms(2000), 0.08);
        assert_close(t.quantile(&k, 7.0), ms(2000), 0.08);
    }

    #[tokio::test(start_paused = true)]
    async fn percentiles_of_an_exponential_distribution_are_within_tolerance() {
        // Mean 400 ms: p50 = 400 ln 2 = 277 ms, p90 = 400 ln 10 = 921 ms.
        let t = LatencyTracker::new(HALF_LIFE);
        let k = key("claude-sonnet");
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..20_000 {
            let s = -(1.0 - rng.f64()).ln() * 0.4;
            t.record(&k, Duration::from_secs_f64(s));
        }
        assert_close(t.quantile(&k, 0.5), ms(277), 0.06);
        assert_close(t.quantile(&k, 0.9), ms(921), 0.06);
    }

    #[tokio::test(start_paused = true)]
    async fn identical_samples_are_reported_within_a_bucket_width() {
        let t = LatencyTracker::new(HALF_LIFE);
        let k = key("claude-opus");
        for _ in 0..50 {
            t.record(&k, ms(730));
        }
        for q in [0.01, 0.5, 0.99] {
            assert_close(t.quantile(&k, q), ms(730), 0.08);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn recent_samples_dominate_after_a_half_life() {
        let t = LatencyTracker::new(HALF_LIFE);
        let k = key("claude-haiku");
        for _ in 0..100 {
            t.record(&k, ms(100));
        }
        advance(HALF_LIFE).await;
        // 100 new samples weigh 100, the 100 old ones 50 now.
        for _ in 0..100 {
            t.record(&k, ms(1000));
        }
        assert_close(t.quantile(&k, 0.5), ms(1000), 0.08);
        assert_close(t.quantile(&k, 0.2), ms(100), 0.08);
        assert_close(t.quantile(&k, 0.4), ms(1000), 0.08);
        // Ten half-lives on, a handful of new samples outweigh everything before.
        advance(HALF_LIFE * 10).await;
        for _ in 0..5 {
            t.record(&k, ms(300));
        }
        assert_close(t.quantile(&k, 0.5), ms(300), 0.08);
        assert_close(t.quantile(&k, 0.9), ms(300), 0.08);
    }

    #[tokio::test(start_paused = true)]
    async fn weights_stay_finite_across_rescaling() {
        let t = LatencyTracker::new(Duration::from_secs(1));
        let k = key("claude-haiku");
        for i in 0..300u64 {
            t.record(&k, ms(100 + i % 3));
            advance(Duration::from_secs(1)).await;
        }
        let s = &t.snapshot()[0];
        assert!(
            s.weight.is_finite() && s.weight > 0.9 && s.weight < 2.1,
            "{s:?}"
        );
        assert_close(s.p50, ms(101), 0.08);
        // A very long silence forgets everything at the next sample.
        advance(Duration::from_secs(86_400 * 365)).await;
        t.record(&k, ms(900));
        assert_close(t.quantile(&k, 0.01), ms(900), 0.08);
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_reports_decayed_weight_and_percentiles_per_upstream() {
        let t = LatencyTracker::new(HALF_LIFE);
        let (a, b) = (key("b-model"), key("a-model"));
        for _ in 0..10 {
            t.record(&a, ms(400));
        }
        t.record(&b, ms(50));
        advance(HALF_LIFE).await;
        let s = t.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].key, b, "ordered by key");
        assert_eq!((s[0].samples, s[0].p50), (1, None));
        assert_eq!(s[1].samples, 10);
        assert!((s[1].weight - 5.0).abs() < 1e-9, "{}", s[1].weight);
        assert_close(s[1].p50, ms(400), 0.08);
        assert_close(s[1].p90, ms(400), 0.08);
        assert_close(s[1].p99, ms(400), 0.08);
        assert_eq!(t.quantile(&key("never-seen"), 0.5), None);
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_samples_land_in_the_edge_buckets() {
        let t = LatencyTracker::new(HALF_LIFE).with_min_samples(1);
        let k = key("claude-haiku");
        t.record(&k, Duration::ZERO);
        t.record(&k, Duration::from_micros(300));
        t.record(&k, Duration::from_secs(36_000));
        t.record(&k, Duration::MAX);
        assert!(t.quantile(&k, 0.0).unwrap() < ms(1));
        let top = t.quantile(&k, 1.0).unwrap();
        assert!(top >= Duration::from_secs(900) && top <= Duration::from_secs(1100));
    }

    #[test]
    fn buckets_are_contiguous_and_eight_percent_wide() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(LOWEST), 1);
        assert_eq!(bucket_of(f64::INFINITY), BUCKETS - 1);
        for i in 1..BUCKETS - 1 {
            let lo = lower_bound(i);
            assert_eq!(bucket_of(lo * 1.0001), i, "bucket {i}");
            assert!((value_in(i, 1.0) / lo - GROWTH).abs() < 1e-9);
        }
        assert!(lower_bound(BUCKETS - 1) > 1000.0, "covers over 1000 s");
    }

    #[test]
    fn records_from_many_threads_are_all_counted() {
        let t = Arc::new(LatencyTracker::new(HALF_LIFE));
        let keys: Vec<UpstreamKey> = (0..3).map(|i| key(&format!("m{i}"))).collect();
        std::thread::scope(|s| {
            for n in 0..8u64 {
                let (t, keys) = (t.clone(), keys.clone());
                s.spawn(move || {
                    for i in 0..3000u64 {
                        t.record(&keys[(i % 3) as usize], ms(100 + (i + n) % 50));
                        let _ = t.quantile(&keys[0], 0.9);
                    }
                });
            }
        });
        let s = t.snapshot();
        assert_eq!(s.iter().map(|x| x.samples).sum::<u64>(), 24_000);
        for x in s {
            assert_eq!(x.samples, 8000);
            let p50 = x.p50.unwrap();
            assert!(p50 >= ms(110) && p50 <= ms(140), "{p50:?}");
        }
    }
}
