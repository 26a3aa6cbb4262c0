//! What a guard check says to a person besides its decision, as `/status`
//! and the report carry it (computed in [`super::explain`]).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// What each side contributed: requests, or mirrored comparisons.
    pub samples_old: u64,
    pub samples_new: u64,
    /// The p-value, and the test it comes from.
    pub p_value: Option<f64>,
    pub test: String,
    pub effect: Option<Effect>,
    pub verdict: Verdict,
    /// Why inconclusive: "needs 40 more requests on new", or how far the
    /// evidence is.
    pub because: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// e.g. `new/old latency (Hodges–Lehmann)`, `5xx rate new − old`.
    pub name: String,
    pub value: f64,
    /// The 95 % confidence interval.
    pub low: f64,
    pub high: f64,
    /// `ratio` or `points` (percentage points) or `share`.
    pub unit: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}
