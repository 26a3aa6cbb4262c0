//! `rollout.webhooks`: who hears of the rollout, and who must agree before
//! it moves on.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the hook in `/status`, logs and metrics.
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    /// Notifications (`changed`, `paused`, `resumed`, `promoted`,
    /// `rolled_back`, `guard_failed`, `gate_waiting`) and gates
    /// (`pre_step`, `confirm_promotion`).
    pub events: Vec<WebhookEvent>,
    #[serde(default = "timeout")]
    pub timeout: HumanDuration,
    /// File whose trimmed content keys `x-switchyard-signature: sha256=…`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub format: WebhookFormat,
}

fn timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// Switchyard's own JSON.
    #[default]
    Json,
    /// A Slack incoming-webhook message (text and blocks).
    Slack,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    Changed,
    Paused,
    Resumed,
    Promoted,
    RolledBack,
    GuardFailed,
    GateWaiting,
    /// Gate: before the percent is raised by a step.
    PreStep,
    /// Gate: before 100 %.
    ConfirmPromotion,
}

impl WebhookEvent {
    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Changed => "changed",
            WebhookEvent::Paused => "paused",
            WebhookEvent::Resumed => "resumed",
            WebhookEvent::Promoted => "promoted",
            WebhookEvent::RolledBack => "rolled_back",
            WebhookEvent::GuardFailed => "guard_failed",
            WebhookEvent::GateWaiting => "gate_waiting",
            WebhookEvent::PreStep => "pre_step",
            WebhookEvent::ConfirmPromotion => "confirm_promotion",
        }
    }

    /// A gate blocks the plan until the hook answers 2xx.
    pub const fn is_gate(self) -> bool {
        matches!(self, WebhookEvent::PreStep | WebhookEvent::ConfirmPromotion)
    }
}
