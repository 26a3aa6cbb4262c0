//! Webhooks: notifications of the rollout's changes, and gates the plan
//! waits on (`rollout.webhooks`).
//!
//! Notifications never hold the control path: an event is one `try_send`
//! into a bounded queue (a full queue drops it, counted), and a task of the
//! control thread delivers it to every hook that asked for it, each with
//! its own retries and backoff. Gates are the opposite, on purpose: a step
//! waits for every gate hook of its event to answer 2xx.
//!
//! - [`message`]: what a hook receives (Switchyard's JSON or a Slack
//!   message), and its signature;
//! - [`deliver`]: the HTTP client, the queue and the retries.

pub mod deliver;
pub mod message;

use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use self::deliver::Webhooks;
use crate::config::WebhookEvent;
use crate::rollout::state::{Change, Phase, RolloutState};

/// One event for the hooks.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub event: &'static str,
    /// Names this gateway (its admin address, or its fleet instance).
    pub gateway: String,
    pub from: f64,
    pub to: f64,
    pub phase: Phase,
    pub who: String,
    pub why: String,
    /// Unix ms.
    pub at: u64,
    /// The guard's checks as it last judged them.
    pub checks: serde_json::Value,
    /// Where to look: `/status` and `/report` of this gateway.
    pub links: Links,
}

#[derive(Clone, Debug, Serialize)]
pub struct Links {
    pub status: String,
    pub report: String,
}

/// The notification event a change is.
pub fn event_of(change: &Change) -> WebhookEvent {
    match (change.from_phase, change.to_phase) {
        (_, Phase::RolledBack) => WebhookEvent::RolledBack,
        (_, Phase::Promoted) => WebhookEvent::Promoted,
        (from, Phase::Paused) if from != Phase::Paused => WebhookEvent::Paused,
        (Phase::Paused, to) if to != Phase::Paused => WebhookEvent::Resumed,
        _ => WebhookEvent::Changed,
    }
}

/// A gate the plan is waiting on, as `/status` shows it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Waiting {
    pub gate: String,
    pub event: String,
    /// What the hook last said (status and the start of its body, or why
    /// it could not be reached).
    pub last_answer: String,
    pub since_ms: u64,
    pub to_percent: f64,
}

/// What `/status` shows of the gates.
#[derive(Default)]
pub struct GateState(pub Mutex<Option<Waiting>>);

impl GateState {
    pub fn get(&self) -> Option<Waiting> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, w: Option<Waiting>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = w;
    }
}

/// The gate events a move from `prev` to `next` must pass.
pub fn gates_for(prev: &RolloutState, next: &RolloutState) -> Vec<WebhookEvent> {
    let prev_percent = if prev.phase == Phase::RolledBack {
        0.0
    } else {
        prev.percent
    };
    let mut events = Vec::new();
    if next.percent > prev_percent {
        events.push(WebhookEvent::PreStep);
        if next.percent >= 100.0 {
            events.push(WebhookEvent::ConfirmPromotion);
        }
    }
    events
}

pub type Shared = Arc<Webhooks>;
