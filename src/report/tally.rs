//! The counts behind the report: per endpoint and field, per minute, with
//! latency histograms. Plain values that add up exactly, so reports from
//! several gateways (or several slices of one stream) merge into the
//! report of the whole.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::latency::Latency;
use super::sample::Sample;
use crate::diff::Kind;

/// Minutes of timeline kept, globally and per endpoint.
pub const TIMELINE_MINUTES: usize = 180;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Match,
    Diff,
    /// Every counted difference was one an engineer accepted as intended.
    Accepted,
    Noise,
    Ignored,
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 6] = [
        Verdict::Match,
        Verdict::Diff,
        Verdict::Accepted,
        Verdict::Noise,
        Verdict::Ignored,
        Verdict::Error,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Diff => "diff",
            Verdict::Accepted => "accepted",
            Verdict::Noise => "noise",
            Verdict::Ignored => "ignored",
            Verdict::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub matched: u64,
    pub diff: u64,
    #[serde(default)]
    pub accepted: u64,
    pub noise: u64,
    pub ignored: u64,
    pub error: u64,
}

impl Results {
    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Match => self.matched += 1,
            Verdict::Diff => self.diff += 1,
            Verdict::Accepted => self.accepted += 1,
            Verdict::Noise => self.noise += 1,
            Verdict::Ignored => self.ignored += 1,
            Verdict::Error => self.error += 1,
        }
    }

    pub fn merge(&mut self, o: &Results) {
        self.matched += o.matched;
        self.diff += o.diff;
        self.accepted += o.accepted;
        self.noise += o.noise;
        self.ignored += o.ignored;
        self.error += o.error;
    }

    /// Comparisons made (errors are comparisons that could not be made).
    pub fn compared(&self) -> u64 {
        self.matched + self.diff + self.accepted + self.noise + self.ignored
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FieldStats {
    /// Comparisons of old and new where this field differed.
    pub raw: u64,
    /// Baseline comparisons (old vs twin) where it differed.
    pub noise: u64,
    /// Differences that matched an ignore rule.
    pub ignored: u64,
    /// Differences an engineer accepted as intended.
    #[serde(default)]
    pub accepted: u64,
    pub kinds: BTreeMap<Kind, u64>,
    #[serde(skip)]
    pub samples: VecDeque<Sample>,
}

impl FieldStats {
    /// Keeps `sample`, dropping the oldest beyond `cap`.
    pub fn keep(&mut self, sample: Sample, cap: usize) {
        while self.samples.len() >= cap.max(1) {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    pub fn merge(&mut self, o: &FieldStats, cap: usize) {
        self.raw += o.raw;
        self.noise += o.noise;
        self.ignored += o.ignored;
        self.accepted += o.accepted;
        for (k, n) in &o.kinds {
            *self.kinds.entry(*k).or_insert(0) += n;
        }
        let mut all: Vec<Sample> = self.samples.drain(..).chain(o.samples.iter().cloned()).collect();
        all.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then(a.id.cmp(&b.id)));
        all.dedup_by(|a, b| a.id == b.id && !a.id.is_empty());
        let skip = all.len().saturating_sub(cap.max(1));
        self.samples = all.into_iter().skip(skip).collect();
    }
}

/// Comparisons of one minute.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Minute {
    pub start_ms: u64,
    #[serde(flatten)]
    pub results: Results,
}

/// Adds a verdict at `now_ms` to a per-minute timeline.
pub fn tick(timeline: &mut VecDeque<Minute>, now_ms: u64, verdict: Verdict) {
    let start = now_ms - now_ms % 60_000;
    if timeline.back().is_none_or(|m| m.start_ms != start) {
        timeline.push_back(Minute {
            start_ms: start,
            ..Default::default()
        });
        if timeline.len() > TIMELINE_MINUTES {
            timeline.pop_front();
        }
    }
    if let Some(m) = timeline.back_mut() {
        m.results.add(verdict);
    }
}

/// Two timelines as one, minute by minute.
pub fn merge_timelines(a: &mut VecDeque<Minute>, b: &VecDeque<Minute>) {
    let mut by: BTreeMap<u64, Results> = BTreeMap::new();
    for m in a.iter().chain(b.iter()) {
        by.entry(m.start_ms).or_default().merge(&m.results);
    }
    let skip = by.len().saturating_sub(TIMELINE_MINUTES);
    *a = by
        .into_iter()
        .skip(skip)
        .map(|(start_ms, results)| Minute { start_ms, results })
        .collect();
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointStats {
    pub route: String,
    pub compared: u64,
    /// Baseline comparisons made for this endpoint.
    pub baseline: u64,
    pub results: Results,
    pub fields: BTreeMap<String, FieldStats>,
    pub latency_old: Latency,
    pub latency_new: Latency,
    /// The noise baseline's latency: old's copy, timed as the mirrored side
    /// is, so that old vs twin shows what timing alone makes of two equals.
    #[serde(default)]
    pub latency_twin: Latency,
    /// Old's latency on the pairs whose twin went out with it: what
    /// `latency_twin` is held against.
    #[serde(default)]
    pub latency_old_with_twin: Latency,
    /// Time to the body's last bytes, on the same pairs as `latency_old`
    /// and `latency_new`, where the kernel stamped both ends.
    #[serde(default)]
    pub latency_old_end: Latency,
    #[serde(default)]
    pub latency_new_end: Latency,
    /// Pairs whose sides went out too far apart to compare their latency.
    #[serde(default)]
    pub untimed: u64,
    #[serde(default)]
    pub timeline: VecDeque<Minute>,
}

impl EndpointStats {
    pub fn rates(&self, f: &FieldStats) -> (f64, f64) {
        let raw = if self.compared == 0 {
            0.0
        } else {
            f.raw as f64 / self.compared as f64
        };
        let noise = if self.baseline == 0 {
            0.0
        } else {
            f.noise as f64 / self.baseline as f64
        };
        (raw, noise)
    }

    pub fn merge(&mut self, o: &EndpointStats, samples_per_field: usize) {
        if self.route.is_empty() {
            self.route = o.route.clone();
        }
        self.compared += o.compared;
        self.baseline += o.baseline;
        self.results.merge(&o.results);
        for (name, f) in &o.fields {
            self.fields.entry(name.clone()).or_default().merge(f, samples_per_field);
        }
        self.latency_old.merge(&o.latency_old);
        self.latency_new.merge(&o.latency_new);
        self.latency_twin.merge(&o.latency_twin);
        self.latency_old_with_twin.merge(&o.latency_old_with_twin);
        self.latency_old_end.merge(&o.latency_old_end);
        self.latency_new_end.merge(&o.latency_new_end);
        self.untimed += o.untimed;
        merge_timelines(&mut self.timeline, &o.timeline);
    }
}

/// Thresholds of the noise model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseModel {
    pub relative: f64,
    pub absolute: f64,
}

impl NoiseModel {
    /// Whether a field with these counts is a real difference.
    pub fn is_real(&self, raw: u64, compared: u64, noise: u64, baseline: u64) -> bool {
        if compared == 0 || raw == 0 {
            return false;
        }
        let raw_rate = raw as f64 / compared as f64;
        let noise_rate = if baseline == 0 {
            0.0
        } else {
            noise as f64 / baseline as f64
        };
        raw_rate > noise_rate * (1.0 + self.relative) && raw_rate - noise_rate > self.absolute
    }
}

/// Everything a report counts, as one value: what the collector hands out
/// and what reports merge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tallies {
    pub endpoints: BTreeMap<String, EndpointStats>,
    pub totals: Results,
    pub timeline: VecDeque<Minute>,
    /// When the counts began (a reset), if not at start.
    pub since_ms: Option<u64>,
    pub samples_per_field: usize,
}

impl Tallies {
    pub fn merge(&mut self, o: &Tallies) {
        for (name, e) in &o.endpoints {
            self.endpoints
                .entry(name.clone())
                .or_default()
                .merge(e, self.samples_per_field);
        }
        self.totals.merge(&o.totals);
        merge_timelines(&mut self.timeline, &o.timeline);
        self.since_ms = match (self.since_ms, o.since_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}
