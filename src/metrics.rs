//! Prometheus metrics, served as text at `GET /metrics` on the admin listener.
//!
//! Counters and histograms are updated as requests finish (one place: the proxy's logging
//! phase); states that already live elsewhere (circuit breakers, budget spend, the state
//! backend) are read into gauges at scrape time, so they can never drift from the truth.
//! Label sets are bounded: models, providers, tiers and budgets come from config, never
//! from a request.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Latency buckets in seconds, from 1 ms to 2 minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Gateway overhead buckets in seconds, from 10 µs to 100 ms (finer under 250 µs, where
/// nearly every request falls).
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.1,
];

/// Every metric tollgate exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub overhead: HistogramVec,
    pub upstream_attempts: IntCounterVec,
    pub tokens: IntCounterVec,
    /// Nano-dollars; exported as `tollgate_cost_dollars_total` at scrape time.
    cost_nanos: IntCounterVec,
    pub alerts: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub alert_deliveries: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_info: IntGaugeVec,
    pub circuit_state: IntGaugeVec,
    pub budget_spent_ratio: prometheus::GaugeVec,
    pub ledger_lag: IntGauge,
    pub state_backend_up: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], b: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(b.to_vec()), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let ratio = prometheus::GaugeVec::new(
            Opts::new(
                "tollgate_budget_spent_ratio",
                "Share of the daily limit spent today (1 = the whole limit).",
            ),
            &["budget"],
        )
        .expect("valid metric");
        r.register(Box::new(ratio.clone())).expect("unique metric");
        let lag = IntGauge::new(
            "tollgate_ledger_lag_records",
            "Ledger records accepted but not yet committed to disk.",
        )
        .expect("valid metric");
        r.register(Box::new(lag.clone())).expect("unique metric");
        let up = IntGauge::new(
            "tollgate_state_backend_up",
            "1 when the budget state backend answers (always 1 for the embedded one).",
        )
        .expect("valid metric");
        r.register(Box::new(up.clone())).expect("unique metric");
        up.set(1);
        Metrics {
            requests: counter(
                &r,
                "tollgate_requests_total",
                "Requests answered, by route, served model, provider, tier and HTTP status.",
                &["route", "model", "provider", "tier", "status"],
            ),
            request_duration: histogram(
                &r,
                "tollgate_request_duration_seconds",
                "Time from request start to the end of the response.",
                &["route", "streamed"],
                LATENCY_BUCKETS,
            ),
            time_to_first_token: histogram(
                &r,
                "tollgate_time_to_first_token_seconds",
                "Time from request start to the first answer byte sent to the client.",
                &["model"],
                LATENCY_BUCKETS,
            ),
            overhead: histogram(
                &r,
                "tollgate_gateway_overhead_seconds",
                "Time spent in tollgate itself: request time minus time waiting on upstreams.",
                &["route"],
                OVERHEAD_BUCKETS,
            ),
            upstream_attempts: counter(
                &r,
                "tollgate_upstream_attempts_total",
                "Attempts at upstream models, by outcome (ok, rate_limited, breaker_open, ...).",
                &["provider", "model", "outcome"],
            ),
            tokens: counter(
                &r,
                "tollgate_tokens_total",
                "Tokens billed, by served model and kind (input, output, cached_input, cache_write).",
                &["model", "kind"],
            ),
            cost_nanos: IntCounterVec::new(
                Opts::new("tollgate_cost_nanodollars", "internal"),
                &["budget", "model"],
            )
            .expect("valid metric"),
            alerts: counter(
                &r,
                "tollgate_alerts_total",
                "Budget alerts claimed by this replica, by budget and threshold.",
                &["budget", "threshold"],
            ),
            rate_limited: counter(
                &r,
                "tollgate_rate_limited_total",
                "Requests refused by a rate limit, by budget, scope (budget, key) and kind (requests, tokens).",
                &["budget", "scope", "kind"],
            ),
            alert_deliveries: counter(
                &r,
                "tollgate_alert_deliveries_total",
                "Webhook deliveries of alerts, by result (delivered, failed).",
                &["result"],
            ),
            config_reloads: counter(
                &r,
                "tollgate_config_reloads_total",
                "Reloads of routes.toml and budgets/, by result (applied, rejected).",
                &["result"],
            ),
            config_info: gauge(
                &r,
                "tollgate_config_info",
                "1 for the active config version.",
                &["version"],
            ),
            circuit_state: gauge(
                &r,
                "tollgate_circuit_state",
                "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
                &["provider", "model"],
            ),
            budget_spent_ratio: ratio,
            ledger_lag: lag,
            state_backend_up: up,
            registry: r,
        }
    }

    /// Adds a request's cost (nano-dollars) to `tollgate_cost_dollars_total`.
    pub fn add_cost(&self, budget: &str, model: &str, nanos: u64) {
        self.cost_nanos
            .with_label_values(&[budget, model])
            .inc_by(nanos);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        let cost = self.cost_family();
        // The encoder refuses a family without samples.
        if !cost.get_metric().is_empty() {
            families.push(cost);
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// `tollgate_cost_dollars_total` from the integer nano-dollar counters: dollars are
    /// only formed here, for display.
    fn cost_family(&self) -> prometheus::proto::MetricFamily {
        use prometheus::core::Collector;
        let mut fam = prometheus::proto::MetricFamily::default();
        fam.set_name("tollgate_cost_dollars_total".into());
        fam.set_help("Cost of requests in dollars, by budget and served model.".into());
        fam.set_field_type(prometheus::proto::MetricType::COUNTER);
        for mf in self.cost_nanos.collect() {
            for m in mf.get_metric() {
                let mut out = m.clone();
                let nanos = m.get_counter().get_value();
                let mut c = prometheus::proto::Counter::default();
                c.set_value(nanos / 1e9);
                out.set_counter(c);
                fam.mut_metric().push(out);
            }
        }
        fam
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_exports_counters_and_cost_in_dollars() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["chat_completions", "gpt-4o", "openai", "simple", "200"])
            .inc();
        m.add_cost("team", "gpt-4o", 2_500_000_000);
        m.add_cost("team", "gpt-4o", 500_000_000);
        let text = m.render();
        assert!(text.contains(
            "tollgate_requests_total{model=\"gpt-4o\",provider=\"openai\",route=\"chat_completions\",status=\"200\",tier=\"simple\"} 1"
        ), "{text}");
        assert!(
            text.contains("tollgate_cost_dollars_total{budget=\"team\",model=\"gpt-4o\"} 3"),
            "{text}"
        );
        assert!(text.contains("# TYPE tollgate_cost_dollars_total counter"));
        assert!(!text.contains("tollgate_cost_nanodollars"));
        assert!(text.contains("tollgate_state_backend_up 1"));
    }
}
