//! Prometheus metrics, kept and written by `prometheus-client` in the Prometheus text
//! format (0.0.4).
//!
//! Operator-only: the settled amounts per route are the seller's revenue, and the
//! per-route counts of settled calls give it away too, so the text is served only by
//! [`crate::Gateway::operator_router`] (`agora serve --metrics-listen`), never on the
//! public listener. Labels are route names and fixed words; no URL is ever a label.
//!
//! Settled amounts are summed exactly (a `U256` of the token's atomic units, which an
//! 18-decimal token overflows in a `u64` after about 18 tokens) and written as an
//! integer; a total beyond `u64::MAX` is written as a float, which is what Prometheus
//! keeps of any sample anyway.

use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use alloy::primitives::U256;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// What happened to one request, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Answered 402 with the payment requirements.
    Challenged,
    /// Payment header unreadable (400).
    Malformed,
    /// Payment readable but refused before or by the facilitator (402).
    Rejected,
    /// Verified and forwarded to the upstream.
    Paid,
    /// Settled after a successful upstream answer.
    Settled,
    /// The settlement failed; the buyer got no body.
    SettleFailed,
    /// The payment's outcome is not known yet, or another request holds it right now
    /// (503 `settlement_pending`: retry with the same header).
    SettlePending,
    /// Upstream error, timeout or >= 400; nothing charged.
    UpstreamFailed,
    /// The facilitator could not answer (503).
    FacilitatorUnavailable,
    /// Refused by the rps or in-flight limit.
    Limited,
    /// The route is marked unavailable (503).
    Unavailable,
    /// Served without payment (free route or free path).
    Free,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Challenged => "challenged",
            Outcome::Malformed => "malformed",
            Outcome::Rejected => "rejected",
            Outcome::Paid => "paid",
            Outcome::Settled => "settled",
            Outcome::SettleFailed => "settle_failed",
            Outcome::SettlePending => "settle_pending",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::FacilitatorUnavailable => "facilitator_unavailable",
            Outcome::Limited => "limited",
            Outcome::Unavailable => "unavailable",
            Outcome::Free => "free",
        }
    }
}

/// Which latency a histogram measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Facilitator verify.
    Verify,
    /// Upstream, until its response headers.
    Upstream,
    /// Facilitator settle.
    Settle,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Stage::Verify => "verify",
            Stage::Upstream => "upstream",
            Stage::Settle => "settle",
        }
    }
}

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.label())
    }
}

impl EncodeLabelValue for Stage {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StageLabels {
    route: String,
    stage: Stage,
}

/// An exact, saturating sum of atomic units, exposed as a counter.
#[derive(Debug, Default)]
struct Amount(Mutex<U256>);

impl TypedMetric for Amount {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Amount {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let total = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        match u64::try_from(total) {
            Ok(exact) => encoder.encode_counter::<NoLabelSet, _, u64>(&exact, None),
            Err(_) => encoder.encode_counter::<NoLabelSet, _, u64>(&f64::from(total), None),
        }
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A family whose HELP and TYPE lines are written before its first sample too, as
/// they always were (prometheus-client leaves an empty family out).
#[derive(Debug)]
struct Declared<M>(M);

impl<M: EncodeMetric> EncodeMetric for Declared<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

type Latency = Family<StageLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The gateway's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    settled_atomic: Family<RouteLabels, Amount>,
    latency: Latency,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let settled_atomic = Family::<RouteLabels, Amount>::default();
        let latency = Latency::new_with_constructor(latency_histogram as fn() -> Histogram);
        let mut registry = Registry::default();
        registry.register(
            "agora_gateway_requests",
            "Requests by route and outcome",
            Declared(requests.clone()),
        );
        registry.register(
            "agora_gateway_settled_atomic",
            "Settled amount in the token's atomic units",
            Declared(settled_atomic.clone()),
        );
        registry.register(
            "agora_gateway_stage_seconds",
            "Latency of verify, upstream (to headers) and settle",
            Declared(latency.clone()),
        );
        Self {
            registry,
            requests,
            settled_atomic,
            latency,
        }
    }
}

impl Metrics {
    /// Counts one request on `route` with `outcome`.
    pub fn count(&self, route: &str, outcome: Outcome) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                outcome,
            })
            .inc();
    }

    /// Adds a settled amount (atomic units, exact).
    pub fn settled(&self, route: &str, amount: U256) {
        let labels = RouteLabels {
            route: route.to_string(),
        };
        let sum = self.settled_atomic.get_or_create(&labels);
        let mut total = sum.0.lock().unwrap_or_else(|e| e.into_inner());
        *total = total.saturating_add(amount);
    }

    /// Records one latency sample.
    pub fn observe(&self, route: &str, stage: Stage, elapsed: Duration) {
        self.latency
            .get_or_create(&StageLabels {
                route: route.to_string(),
                stage,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The count for one route and outcome.
    pub fn get(&self, route: &str, outcome: Outcome) -> u64 {
        self.requests
            .get(&RequestLabels {
                route: route.to_string(),
                outcome,
            })
            .map_or(0, |c| c.get())
    }

    /// The exposition text for the operator's `/metrics`; it carries revenue, so it
    /// must not be served where buyers can read it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!("cannot write the metrics text: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_declared_before_its_first_sample() {
        let text = Metrics::default().render();
        for family in [
            "agora_gateway_requests_total counter",
            "agora_gateway_settled_atomic_total counter",
            "agora_gateway_stage_seconds histogram",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{text}");
        }
    }

    #[test]
    fn renders_counters_amounts_and_histograms() {
        let m = Metrics::default();
        m.count("echo", Outcome::Challenged);
        m.count("echo", Outcome::Challenged);
        m.settled("echo", U256::from(1000));
        m.settled("echo", U256::from(500));
        m.observe("echo", Stage::Verify, Duration::from_millis(3));
        let text = m.render();
        assert!(
            text.contains("agora_gateway_requests_total{route=\"echo\",outcome=\"challenged\"} 2")
        );
        assert!(text.contains("agora_gateway_settled_atomic_total{route=\"echo\"} 1500"));
        assert!(text.contains(
            "agora_gateway_stage_seconds_bucket{route=\"echo\",stage=\"verify\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "agora_gateway_stage_seconds_bucket{route=\"echo\",stage=\"verify\",le=\"0.005\"} 1"
        ));
        assert!(
            text.contains("agora_gateway_stage_seconds_count{route=\"echo\",stage=\"verify\"} 1")
        );
        assert_eq!(m.get("echo", Outcome::Challenged), 2);
        for line in [
            "# TYPE agora_gateway_requests_total counter",
            "# HELP agora_gateway_settled_atomic_total Settled amount in the token's atomic units.",
            "# TYPE agora_gateway_settled_atomic_total counter",
            "# TYPE agora_gateway_stage_seconds histogram",
            "agora_gateway_stage_seconds_bucket{route=\"echo\",stage=\"verify\",le=\"1\"} 1",
            "agora_gateway_stage_seconds_bucket{route=\"echo\",stage=\"verify\",le=\"+Inf\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        m.settled("echo", U256::MAX);
        assert!(
            m.render().contains(
                "agora_gateway_settled_atomic_total{route=\"echo\"} 1.157920892373162e77"
            ),
            "a sum past u64 saturates and is written as a float"
        );
    }
}
