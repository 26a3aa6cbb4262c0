//! The rollout's transitions, pure: what each call makes of the current
//! state. The controller applies them locally, or as a transaction on the
//! fleet store; both get the same answer from the same state.

use super::error::ControlError;
use super::state::{Change, Phase, RolloutState};
use crate::config::Config;
use crate::report::accept::Acceptance;

/// Who asks for a change, and why.
#[derive(Clone, Debug)]
pub struct Actor {
    pub who: String,
    pub why: String,
    /// Passes the plan's gates (`--force`), recorded in why.
    pub force: bool,
}

impl Actor {
    pub fn new(who: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            who: who.into(),
            why: why.into(),
            force: false,
        }
    }

    /// The same, passing the plan's gates; the why says so.
    pub fn forcing(mut self) -> Self {
        self.why = format!("{} (gates passed by --force)", self.why);
        self.force = true;
        self
    }
}

/// A change an SRE, the guard or the plan asks for.
#[derive(Clone, Debug)]
pub enum Op {
    SetPercent(f64),
    Step,
    Pause,
    Resume,
    Promote,
    Rollback,
    Accept(Box<Acceptance>),
    Unaccept { endpoint: String, field: String },
}

impl Op {
    /// Whether the op moves the rollout (and is recorded as its last
    /// change), or only edits the accepted differences.
    pub fn moves_rollout(&self) -> bool {
        !matches!(self, Op::Accept(_) | Op::Unaccept { .. })
    }
}

fn validate_percent(p: f64) -> Result<(), ControlError> {
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err(ControlError::Invalid(format!(
            "percent must be a number from 0 to 100, got {p}"
        )));
    }
    Ok(())
}

/// Index of the highest step at or below `percent`.
fn step_at(steps: &[f64], percent: f64) -> Option<usize> {
    steps.iter().rposition(|s| *s <= percent)
}

/// The state `op` makes of `prev`, before it is recorded.
pub fn plan(op: &Op, prev: &RolloutState, cfg: &Config) -> Result<RolloutState, ControlError> {
    let steps = &crate::config::percents(&cfg.rollout.steps);
    match op {
        Op::SetPercent(percent) => {
            let percent = *percent;
            validate_percent(percent)?;
            let phase = if percent >= 100.0 {
                Phase::Promoted
            } else if prev.phase == Phase::Paused {
                Phase::Paused
            } else if percent <= 0.0 {
                Phase::Idle
            } else {
                Phase::Progressing
            };
            Ok(RolloutState {
                percent,
                phase,
                step: step_at(steps, percent),
                ..prev.clone()
            })
        }
        Op::Step => {
            if steps.is_empty() {
                return Err(ControlError::Conflict(
                    "rollout.steps is empty; set a percent instead".into(),
                ));
            }
            let current = if prev.phase == Phase::RolledBack {
                0.0
            } else {
                prev.percent
            };
            let Some(idx) = steps.iter().position(|s| *s > current) else {
                return Err(ControlError::Conflict(format!("already at the last step ({current}%)")));
            };
            let percent = steps[idx];
            Ok(RolloutState {
                percent,
                phase: if percent >= 100.0 {
                    Phase::Promoted
                } else if cfg.rollout.steps[idx].pause {
                    // A step that waits for a person: the plan holds here
                    // until `rollout resume`.
                    Phase::Paused
                } else {
                    Phase::Progressing
                },
                step: Some(idx),
                ..prev.clone()
            })
        }
        Op::Pause => match prev.phase {
            Phase::Progressing | Phase::Idle => Ok(RolloutState {
                phase: Phase::Paused,
                ..prev.clone()
            }),
            other => Err(ControlError::Conflict(format!("cannot pause while {other}"))),
        },
        Op::Resume => match prev.phase {
            Phase::Paused => Ok(RolloutState {
                phase: if prev.percent >= 100.0 {
                    Phase::Promoted
                } else {
                    Phase::Progressing
                },
                ..prev.clone()
            }),
            other => Err(ControlError::Conflict(format!(
                "cannot resume while {other}; only a paused rollout resumes"
            ))),
        },
        Op::Promote => Ok(RolloutState {
            percent: 100.0,
            phase: Phase::Promoted,
            step: step_at(steps, 100.0),
            ..prev.clone()
        }),
        Op::Rollback => Ok(RolloutState {
            percent: 0.0,
            phase: Phase::RolledBack,
            step: None,
            ..prev.clone()
        }),
        Op::Accept(acceptance) => {
            let mut next = prev.clone();
            next.accepted
                .retain(|a| !(a.endpoint == acceptance.endpoint && a.field == acceptance.field));
            next.accepted.push((**acceptance).clone());
            Ok(next)
        }
        Op::Unaccept { endpoint, field } => {
            if !prev
                .accepted
                .iter()
                .any(|a| &a.endpoint == endpoint && &a.field == field)
            {
                let known: Vec<String> = prev
                    .accepted
                    .iter()
                    .map(|a| format!("{} {}", a.endpoint, a.field))
                    .collect();
                return Err(ControlError::NotFound(format!(
                    "no accepted difference at {field} of {endpoint}; accepted now: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join("; ")
                    }
                )));
            }
            let mut next = prev.clone();
            next.accepted
                .retain(|a| !(&a.endpoint == endpoint && &a.field == field));
            Ok(next)
        }
    }
}

/// `next` with the change from `prev` recorded: who, why, when, and a
/// fresh step clock when the rollout moved.
pub fn record(prev: &RolloutState, mut next: RolloutState, actor: &Actor, now_ms: u64) -> RolloutState {
    if next.percent != prev.percent || next.step != prev.step || next.phase != prev.phase {
        next.step_since_ms = Some(now_ms);
    }
    next.last_change = Some(Change {
        who: actor.who.clone(),
        why: actor.why.clone(),
        at_ms: now_ms,
        from_percent: prev.percent,
        to_percent: next.percent,
        from_phase: prev.phase,
        to_phase: next.phase,
    });
    next
}
