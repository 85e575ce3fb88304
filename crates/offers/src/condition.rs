//! Conditions: where an offer stands, one per reconciler stage, in the shape of obol's
//! CRD status (`type`, `status`, `reason`, `message`, `lastTransitionTime`).
//!
//! Inside agora a stage is a [`Stage`] and a status a [`ConditionStatus`], so a typo
//! is a compile error rather than a condition nobody reads; on the wire both stay the
//! CRD's strings (`"ModelReady"`, `"True"`), so manifests move between agora and a
//! Kubernetes cluster unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A reconciler stage, which names the condition it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Inference offers: the upstream serves the model.
    ModelReady,
    /// The upstream's health path answers below 500.
    UpstreamHealthy,
    /// The facilitator settles the offer's network.
    PaymentGateReady,
    /// The gateway serves the route.
    RoutePublished,
    /// The seller's agent is listed (ERC-8004); never blocks serving.
    Registered,
    /// Every other stage is True.
    Ready,
}

/// The six stages, in the order the reconciler runs them and `agora sell status`
/// shows them.
pub const STAGES: [Stage; 6] = [
    Stage::ModelReady,
    Stage::UpstreamHealthy,
    Stage::PaymentGateReady,
    Stage::RoutePublished,
    Stage::Registered,
    Stage::Ready,
];

impl Stage {
    /// The condition `type` on the wire, as obol's CRD spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::ModelReady => "ModelReady",
            Stage::UpstreamHealthy => "UpstreamHealthy",
            Stage::PaymentGateReady => "PaymentGateReady",
            Stage::RoutePublished => "RoutePublished",
            Stage::Registered => "Registered",
            Stage::Ready => "Ready",
        }
    }
}

impl AsRef<str> for Stage {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so `{stage:<17}` lines up the status table.
        f.pad(self.as_str())
    }
}

/// A condition type that is not one of agora's six stages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown stage {0:?}; use ModelReady, UpstreamHealthy, PaymentGateReady, RoutePublished, Registered or Ready"
)]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        STAGES
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownStage(text.to_string()))
    }
}

/// A condition's `status`: `"True"`, `"False"` or `"Unknown"` on the wire, as
/// Kubernetes conditions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum ConditionStatus {
    /// The stage holds.
    True,
    /// The stage does not hold; `reason` and `message` say why.
    False,
    /// Not known yet.
    Unknown,
}

impl ConditionStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(ok: bool) -> Self {
        if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One stage's verdict as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Stage name (`ModelReady` ... `Ready`). Kept as written, so a manifest exported
    /// from a cluster whose controller writes other condition types still imports;
    /// [`Condition::stage`] reads it as a [`Stage`].
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// Machine reason (`Healthy`, `Unhealthy`, ...).
    #[serde(default)]
    pub reason: String,
    /// What happened, for people.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339).
    #[serde(default)]
    pub last_transition_time: String,
}

impl Condition {
    /// The stage this condition reports, when it is one of agora's six.
    pub fn stage(&self) -> Option<Stage> {
        self.kind.parse().ok()
    }

    /// Whether the stage holds.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_statuses_keep_the_crd_strings() {
        for stage in STAGES {
            assert_eq!(stage.as_str().parse::<Stage>(), Ok(stage));
        }
        assert_eq!(format!("{:<12}|", Stage::Ready), "Ready       |");
        assert!(
            "Paused"
                .parse::<Stage>()
                .unwrap_err()
                .to_string()
                .contains("use ModelReady")
        );
        let condition: Condition = serde_json::from_str(
            r#"{"type":"Ready","status":"Unknown","reason":"Pending","message":"","lastTransitionTime":""}"#,
        )
        .unwrap();
        assert_eq!(condition.status, ConditionStatus::Unknown);
        assert_eq!(condition.stage(), Some(Stage::Ready));
        let json = serde_json::to_value(Condition {
            status: ConditionStatus::True,
            ..condition
        })
        .unwrap();
        assert_eq!(json["status"], "True");
        assert_eq!(json["type"], "Ready");
        assert!(serde_json::from_str::<ConditionStatus>(r#""true""#).is_err());
    }
}
