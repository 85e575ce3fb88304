//! Prometheus metrics, written in the text exposition format by hand (a few counters
//! and histograms do not justify a metrics stack).
//!
//! Operator-only: the settled amounts per route are the seller's revenue, and the
//! per-route counts of settled calls give it away too, so the text is served only by
//! [`crate::Gateway::operator_router`] (`agora serve --metrics-listen`), never on the
//! public listener. Labels are route names and fixed words; no URL is ever a label.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use alloy::primitives::U256;

/// What happened to one request, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
    /// The settlement's outcome is not known yet (503 `settlement_pending`).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct State {
    requests: BTreeMap<(String, Outcome), u64>,
    settled_atomic: BTreeMap<String, U256>,
    latency: BTreeMap<(String, Stage), Histogram>,
}

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    /// Counts one request on `route` with `outcome`.
    pub fn count(&self, route: &str, outcome: Outcome) {
        let mut s = self.lock();
        *s.requests.entry((route.to_string(), outcome)).or_default() += 1;
    }

    /// Adds a settled amount (atomic units, exact).
    pub fn settled(&self, route: &str, amount: U256) {
        let mut s = self.lock();
        let total = s.settled_atomic.entry(route.to_string()).or_default();
        *total = total.saturating_add(amount);
    }

    /// Records one latency sample.
    pub fn observe(&self, route: &str, stage: Stage, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut s = self.lock();
        let h = s.latency.entry((route.to_string(), stage)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The count for one route and outcome.
    pub fn get(&self, route: &str, outcome: Outcome) -> u64 {
        let s = self.lock();
        s.requests
            .get(&(route.to_string(), outcome))
            .copied()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exposition text for the operator's `/metrics`; it carries revenue, so it
    /// must not be served where buyers can read it.
    pub fn render(&self) -> String {
        let s = self.lock();
        let mut out = String::new();
        out.push_str("# HELP agora_gateway_requests_total Requests by route and outcome.\n");
        out.push_str("# TYPE agora_gateway_requests_total counter\n");
        for ((route, outcome), n) in &s.requests {
            let _ = writeln!(
                out,
                "agora_gateway_requests_total{{route=\"{}\",outcome=\"{}\"}} {n}",
                escape(route),
                outcome.label()
            );
        }
        out.push_str(
            "# HELP agora_gateway_settled_atomic_total Settled amount in the token's atomic units.\n",
        );
        out.push_str("# TYPE agora_gateway_settled_atomic_total counter\n");
        for (route, amount) in &s.settled_atomic {
            let _ = writeln!(
                out,
                "agora_gateway_settled_atomic_total{{route=\"{}\"}} {amount}",
                escape(route)
            );
        }
        out.push_str("# HELP agora_gateway_stage_seconds Latency of verify, upstream (to headers) and settle.\n");
        out.push_str("# TYPE agora_gateway_stage_seconds histogram\n");
        for ((route, stage), h) in &s.latency {
            let labels = format!("route=\"{}\",stage=\"{}\"", escape(route), stage.label());
            for (bound, n) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "agora_gateway_stage_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "agora_gateway_stage_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "agora_gateway_stage_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(
                out,
                "agora_gateway_stage_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
