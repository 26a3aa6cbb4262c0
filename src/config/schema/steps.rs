//! `rollout.steps`: the step plan. A step is a percent, or
//! `{ percent, pause, step_every }`: `pause: true` holds the plan there
//! until an SRE resumes it (Argo Rollouts' indefinite pause), and a step's
//! own `step_every` replaces `rollout.step_every` for that step.

use serde::{Deserialize, Serialize};

use crate::config::HumanDuration;

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub percent: f64,
    /// Reaching this step pauses the plan until `rollout resume`.
    pub pause: bool,
    /// How long this step holds before the guard takes the next one.
    pub step_every: Option<HumanDuration>,
}

/// A step as written: a bare percent or a map.
#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum Written {
    Percent(f64),
    Full(FullStep),
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FullStep {
    percent: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pause: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    step_every: Option<HumanDuration>,
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Untagged enums hide why neither form fit; say what a step is.
        let value = serde_yaml::Value::deserialize(d)?;
        match serde_yaml::from_value::<Written>(value.clone()) {
            Ok(Written::Percent(percent)) => Ok(Step {
                percent,
                pause: false,
                step_every: None,
            }),
            Ok(Written::Full(f)) => Ok(Step {
                percent: f.percent,
                pause: f.pause,
                step_every: f.step_every,
            }),
            Err(_) => {
                let why = serde_yaml::from_value::<FullStep>(value)
                    .err()
                    .map_or_else(String::new, |e| format!(" ({e})"));
                Err(serde::de::Error::custom(format!(
                    "a step is a percent (25) or {{ percent: 25, pause: true, step_every: \"10m\" }}{why}"
                )))
            }
        }
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.pause && self.step_every.is_none() {
            return Written::Percent(self.percent).serialize(s);
        }
        Written::Full(FullStep {
            percent: self.percent,
            pause: self.pause,
            step_every: self.step_every,
        })
        .serialize(s)
    }
}

impl From<f64> for Step {
    fn from(percent: f64) -> Self {
        Step {
            percent,
            pause: false,
            step_every: None,
        }
    }
}

/// The percents of a plan, in order.
pub fn percents(steps: &[Step]) -> Vec<f64> {
    steps.iter().map(|s| s.percent).collect()
}
