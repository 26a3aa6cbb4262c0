//! The rollout state: how much traffic `new` gets, where the step plan is,
//! and the last change with who made it and why. It is plain data; the
//! controller is its only writer and the snapshot carries a copy.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing is moving: the percent is where it was set.
    Idle,
    /// Walking the step plan, by hand or by the guard.
    Progressing,
    /// The plan is held; the percent stays where it is.
    Paused,
    /// `new` serves everything.
    Promoted,
    /// Emergency stop: `new` serves nothing, on every route.
    RolledBack,
}

impl Phase {
    pub const fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled_back",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of the rollout, as recorded and shown in `/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Who: `admin`, `cli`, `guard`, `plan`, `config`, or a name the caller gave.
    pub who: String,
    pub why: String,
    /// Unix time, milliseconds.
    pub at_ms: u64,
    pub from_percent: f64,
    pub to_percent: f64,
    pub from_phase: Phase,
    pub to_phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutState {
    pub percent: f64,
    pub phase: Phase,
    /// Index of the current step in `rollout.steps`, if on one.
    pub step: Option<usize>,
    /// When the current step began (unix ms), for `step_every`.
    #[serde(default)]
    pub step_since_ms: Option<u64>,
    #[serde(default)]
    pub last_change: Option<Change>,
    /// Differences accepted as intended: kept with the rollout, so they
    /// are persisted with it and every snapshot carries them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<crate::report::accept::Acceptance>,
}

impl RolloutState {
    pub fn initial(percent: f64) -> Self {
        Self {
            percent,
            phase: if percent >= 100.0 { Phase::Promoted } else { Phase::Idle },
            step: None,
            step_since_ms: None,
            last_change: None,
            accepted: Vec::new(),
        }
    }

    /// The percent a route gets: its own, or the global one, and zero for
    /// everything after a rollback.
    pub fn percent_for(&self, route_override: Option<f64>) -> f64 {
        if self.phase == Phase::RolledBack {
            return 0.0;
        }
        route_override.unwrap_or(self.percent)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_zeroes_every_route() {
        let mut s = RolloutState::initial(50.0);
        assert_eq!(s.percent_for(None), 50.0);
        assert_eq!(s.percent_for(Some(100.0)), 100.0);
        s.phase = Phase::RolledBack;
        assert_eq!(s.percent_for(Some(100.0)), 0.0);
        assert_eq!(s.percent_for(None), 0.0);
    }
}
