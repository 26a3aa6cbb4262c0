//! Aggregates comparisons per endpoint and field, keeps counts of raw
//! differences (old vs new) and noise (old vs twin, or old vs old again),
//! decides which fields are real differences, and keeps bounded samples.
//!
//! Noise model (Diffy's, with both thresholds): a field is a real difference
//! when its raw rate clearly exceeds its noise rate,
//! `raw > noise × (1 + relative)` and `raw − noise > absolute`. Rates are
//! per comparison of the endpoint, so the decision sharpens as traffic
//! flows, and the report always shows both rates next to the verdict.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::endpoint::EndpointNamer;
use super::latency::Latency;
use crate::config::Config;
use crate::diff::{Difference, Exchange, Kind};
use crate::shadow::Pair;

/// Name of the bucket that endpoints beyond the cap share.
pub const OVERFLOW: &str = "(other endpoints)";

/// Fields tracked per endpoint; beyond it they share one bucket, so a body
/// keyed by ids (`{"u123": …}`) cannot grow the report without bound.
pub const MAX_FIELDS: usize = 256;

/// Name of the bucket that fields beyond [`MAX_FIELDS`] share.
pub const OVERFLOW_FIELD: &str = "(other fields)";

/// The name a difference is counted under: its location with array indices
/// and id-like keys generalised (`body:/users/*/name`), or the overflow
/// bucket once the endpoint tracks [`MAX_FIELDS`] fields.
fn field_key(fields: &BTreeMap<String, FieldStats>, d: &Difference) -> String {
    let generalised = d.field();
    let name = match generalised.strip_prefix("body:") {
        Some(ptr) => {
            let mut out = String::from("body:");
            for tok in ptr.split('/').skip(1) {
                out.push('/');
                out.push_str(if super::endpoint::is_id_like(tok) { "*" } else { tok });
            }
            out
        }
        None => generalised,
    };
    if fields.contains_key(&name) || fields.len() < MAX_FIELDS {
        name
    } else {
        OVERFLOW_FIELD.to_string()
    }
}

/// Headers never stored or shown, whatever the config says.
pub const ALWAYS_REDACTED: &[&str] = &["authorization", "cookie", "set-cookie", "proxy-authorization"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Match,
    Diff,
    Noise,
    Ignored,
    Error,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Diff => "diff",
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
    pub noise: u64,
    pub ignored: u64,
    pub error: u64,
}

impl Results {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Match => self.matched += 1,
            Verdict::Diff => self.diff += 1,
            Verdict::Noise => self.noise += 1,
            Verdict::Ignored => self.ignored += 1,
            Verdict::Error => self.error += 1,
        }
    }
}

/// One side of a stored sample.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SideSample {
    pub status: u16,
    pub content_type: String,
    /// The body, decoded, shortened to a few KB.
    pub body: String,
    pub latency_ms: f64,
}

/// A request and both answers, kept as evidence for a field.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub at_ms: u64,
    pub request_id: String,
    pub route: String,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Request headers, sensitive ones redacted.
    pub headers: Vec<(String, String)>,
    pub request_body: String,
    pub old: SideSample,
    pub new: SideSample,
    pub difference: Difference,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FieldStats {
    /// Comparisons of old and new where this field differed.
    pub raw: u64,
    /// Baseline comparisons (old vs twin) where it differed.
    pub noise: u64,
    /// Differences that matched an ignore rule.
    pub ignored: u64,
    pub kinds: BTreeMap<Kind, u64>,
    #[serde(skip)]
    pub samples: VecDeque<Sample>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EndpointStats {
    pub route: String,
    pub compared: u64,
    /// Baseline comparisons made for this endpoint.
    pub baseline: u64,
    pub results: Results,
    pub fields: BTreeMap<String, FieldStats>,
    pub latency_old: Latency,
    pub latency_new: Latency,
}

/// Thresholds of the noise model.
#[derive(Clone, Copy, Debug)]
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
}

/// Per-minute comparison counts, for the diff-rate chart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Minute {
    pub start_ms: u64,
    pub compared: u64,
    pub diff: u64,
}

/// What one comparison did, for the metrics, the store and the guard.
pub struct Ingested {
    pub verdict: Verdict,
    pub endpoint: String,
    /// Field names and samples of the real differences found (for the store).
    pub real: Vec<(String, Sample)>,
}

pub struct Collector {
    namer: EndpointNamer,
    model: NoiseModel,
    samples_per_field: usize,
    max_endpoints: usize,
    redact: HashSet<String>,
    pub endpoints: HashMap<String, EndpointStats>,
    pub totals: Results,
    pub timeline: VecDeque<Minute>,
}

const TIMELINE_MINUTES: usize = 180;
const BODY_SNIPPET: usize = 4096;

impl Collector {
    pub fn new(config: &Config) -> Self {
        let mut redact: HashSet<String> = ALWAYS_REDACTED.iter().map(|s| s.to_string()).collect();
        redact.extend(config.diff.redact_headers.iter().map(|h| h.to_ascii_lowercase()));
        Self {
            namer: namer(config).unwrap_or_default(),
            model: NoiseModel {
                relative: config.diff.noise.relative_threshold,
                absolute: config.diff.noise.absolute_threshold,
            },
            samples_per_field: config.diff.samples_per_field,
            max_endpoints: config.diff.max_endpoints,
            redact,
            endpoints: HashMap::new(),
            totals: Results::default(),
            timeline: VecDeque::new(),
        }
    }

    /// Applies a reloaded config's report settings; counts are kept.
    pub fn reconfigure(&mut self, config: &Config) {
        let fresh = Self::new(config);
        self.namer = fresh.namer;
        self.model = fresh.model;
        self.samples_per_field = fresh.samples_per_field;
        self.max_endpoints = fresh.max_endpoints;
        self.redact = fresh.redact;
    }

    pub fn model(&self) -> NoiseModel {
        self.model
    }

    pub fn is_redacted(&self, header: &str) -> bool {
        self.redact.contains(header)
    }

    fn endpoint_key(&mut self, route: &str, method: &str, target: &str) -> String {
        let name = self.namer.name_on(route, method, target);
        if self.endpoints.contains_key(&name) || self.endpoints.len() < self.max_endpoints {
            name
        } else {
            OVERFLOW.to_string()
        }
    }

    /// Records a comparison that could not be made (a side failed).
    pub fn record_error(&mut self, route: &str, method: &str, target: &str, now_ms: u64) {
        let key = self.endpoint_key(route, method, target);
        let e = self.endpoints.entry(key).or_default();
        e.route = route.to_string();
        e.results.add(Verdict::Error);
        self.totals.add(Verdict::Error);
        self.tick(now_ms, false);
    }

    /// Compares a pair and records everything about it.
    pub fn ingest(&mut self, pair: &Pair, now_ms: u64) -> Ingested {
        let raw = crate::diff::compare_call(&pair.old, &pair.new, &pair.rules, &pair.target);
        let baseline = pair
            .twin
            .as_ref()
            .map(|t| crate::diff::compare_call(&pair.old, t, &pair.rules, &pair.target));
        let key = self.endpoint_key(&pair.route, pair.method.as_str(), &pair.target);
        let model = self.model;
        let cap = self.samples_per_field;
        let sample_base = self.sample_base(pair);

        let e = self.endpoints.entry(key.clone()).or_default();
        e.route = pair.route.to_string();
        e.compared += 1;
        e.latency_old.record_us(pair.old.latency.as_secs_f64() * 1e6);
        e.latency_new.record_us(pair.new.latency.as_secs_f64() * 1e6);
        if let Some(b) = &baseline {
            e.baseline += 1;
            let mut seen = HashSet::new();
            for d in b.counted() {
                let field = field_key(&e.fields, d);
                if seen.insert(field.clone()) {
                    e.fields.entry(field).or_default().noise += 1;
                }
            }
        }
        let mut seen = HashSet::new();
        for d in &raw.differences {
            let field = field_key(&e.fields, d);
            if !seen.insert(field.clone()) {
                continue;
            }
            let f = e.fields.entry(field).or_default();
            if d.ignored {
                f.ignored += 1;
            } else {
                f.raw += 1;
                *f.kinds.entry(d.kind).or_insert(0) += 1;
            }
        }

        // Judge each counted field with the counts as they are now.
        let mut real = Vec::new();
        let mut any_counted = false;
        let mut judged = HashSet::new();
        for d in raw.counted() {
            any_counted = true;
            let field = field_key(&e.fields, d);
            let (compared, base) = (e.compared, e.baseline);
            let Some(f) = e.fields.get_mut(&field) else {
                continue;
            };
            let is_real = model.is_real(f.raw, compared, f.noise, base);
            if !judged.insert(field.clone()) {
                continue;
            }
            let sample = Sample {
                difference: redact_difference(d, &self.redact),
                ..sample_base.clone()
            };
            if f.samples.len() >= cap {
                f.samples.pop_front();
            }
            f.samples.push_back(sample.clone());
            if is_real {
                real.push((field, sample));
            }
        }
        let verdict = if !real.is_empty() {
            Verdict::Diff
        } else if any_counted {
            Verdict::Noise
        } else if raw.is_ignored_only() {
            Verdict::Ignored
        } else {
            Verdict::Match
        };
        e.results.add(verdict);
        self.totals.add(verdict);
        self.tick(now_ms, verdict == Verdict::Diff);
        Ingested {
            verdict,
            endpoint: key,
            real,
        }
    }

    fn tick(&mut self, now_ms: u64, diff: bool) {
        let start = now_ms - now_ms % 60_000;
        if self.timeline.back().is_none_or(|m| m.start_ms != start) {
            self.timeline.push_back(Minute {
                start_ms: start,
                ..Default::default()
            });
            if self.timeline.len() > TIMELINE_MINUTES {
                self.timeline.pop_front();
            }
        }
        if let Some(m) = self.timeline.back_mut() {
            m.compared += 1;
            m.diff += u64::from(diff);
        }
    }

    fn sample_base(&self, pair: &Pair) -> Sample {
        let at_ms = pair
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let headers = pair
            .request_headers
            .iter()
            .map(|(k, v)| {
                let value = if self.redact.contains(k.as_str()) {
                    "[redacted]".to_string()
                } else {
                    String::from_utf8_lossy(v.as_bytes()).into_owned()
                };
                (k.as_str().to_string(), value)
            })
            .collect();
        Sample {
            at_ms,
            request_id: pair.request_id.clone(),
            route: pair.route.to_string(),
            method: pair.method.to_string(),
            target: pair.target.clone(),
            headers,
            request_body: snippet(&pair.request_body),
            old: side_sample(&pair.old),
            new: side_sample(&pair.new),
            difference: Difference::new("", Kind::ValueChanged),
        }
    }

    /// Puts back counts and samples read from the store after a restart.
    pub fn restore(
        &mut self,
        tallies: HashMap<String, EndpointStats>,
        samples: Vec<(String, String, Sample)>,
        totals: Option<Results>,
    ) {
        for (k, stats) in tallies {
            self.endpoints.insert(k, stats);
        }
        if let Some(t) = totals {
            self.totals = t;
        }
        for (endpoint, field, sample) in samples {
            if let Some(f) = self.endpoints.get_mut(&endpoint).and_then(|e| e.fields.get_mut(&field)) {
                if f.samples.len() >= self.samples_per_field {
                    f.samples.pop_front();
                }
                f.samples.push_back(sample);
            }
        }
    }
}

/// Endpoint names from `diff.endpoints` and each route's own templates.
fn namer(config: &Config) -> Result<EndpointNamer, String> {
    config
        .routes
        .iter()
        .try_fold(EndpointNamer::new(&config.diff.endpoints)?, |namer, r| {
            namer.with_route(&r.name, &r.diff.endpoints)
        })
}

fn redact_difference(d: &Difference, redact: &HashSet<String>) -> Difference {
    let mut d = d.clone();
    if let Some(name) = d.location.strip_prefix("header:") {
        if redact.contains(name) {
            d.left = d.left.map(|_| "[redacted]".into());
            d.right = d.right.map(|_| "[redacted]".into());
        }
    }
    d
}

fn snippet(bytes: &[u8]) -> String {
    let cut = bytes.len().min(BODY_SNIPPET);
    let mut s = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    if bytes.len() > BODY_SNIPPET {
        s.push('…');
    }
    s
}

fn side_sample(x: &Exchange) -> SideSample {
    let mut budget = crate::diff::decode::MAX_DECODED;
    let body = crate::diff::decode::decoded(&x.headers, &x.body, &mut budget).unwrap_or_else(|_| x.body.clone());
    SideSample {
        status: x.status,
        content_type: x
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: snippet(&body),
        latency_ms: x.latency.as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    fn config(extra: &str) -> Config {
        Config::from_yaml(
            &format!(
                "backends: {{ old: {{ url: 'http://127.0.0.1:1' }}, new: {{ url: 'http://127.0.0.1:2' }} }}\n{extra}"
            ),
            "t",
        )
        .unwrap()
    }

    fn ex(body: String) -> Exchange {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        Exchange {
            status: 200,
            headers,
            body: Bytes::from(body),
            truncated: false,
            latency: Duration::from_millis(3),
        }
    }

    fn pair(path: &str, old: String, new: String, twin: Option<String>) -> Pair {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer secret".parse().unwrap());
        headers.insert("x-user-id", "7".parse().unwrap());
        Pair {
            route: Arc::from("default"),
            rules: Arc::new(crate::diff::rules::DiffRules::default()),
            method: http::Method::GET,
            target: path.into(),
            request_headers: headers,
            request_body: Bytes::new(),
            request_id: "r1".into(),
            at: SystemTime::now(),
            live: crate::side::Side::Old,
            old: ex(old),
            new: ex(new),
            twin: twin.map(ex),
            hold: crate::proxy::budget::Budget::new(0).hold(),
        }
    }

    #[test]
    fn twin_noise_cancels_random_fields_but_not_planted_ones() {
        let mut c = Collector::new(&config(""));
        for i in 0..200 {
            let old = format!(r#"{{"ts":{i},"name":"a","n":1}}"#);
            let twin = format!(r#"{{"ts":{},"name":"a","n":1}}"#, i + 1000);
            let new = format!(r#"{{"ts":{},"name":"b","n":1}}"#, i + 2000);
            c.ingest(&pair(&format!("/users/{i}"), old, new, Some(twin)), 0);
        }
        let e = &c.endpoints["GET /users/{id}"];
        assert_eq!(e.compared, 200);
        let ts = &e.fields["body:/ts"];
        let name = &e.fields["body:/name"];
        let m = c.model();
        assert!(!m.is_real(ts.raw, e.compared, ts.noise, e.baseline), "ts is noise");
        assert!(m.is_real(name.raw, e.compared, name.noise, e.baseline), "name is real");
        assert_eq!(e.results.diff, 200);
    }

    #[test]
    fn a_pair_with_only_noise_is_counted_as_noise() {
        let mut c = Collector::new(&config(""));
        let got = c.ingest(
            &pair(
                "/x",
                r#"{"ts":1}"#.into(),
                r#"{"ts":2}"#.into(),
                Some(r#"{"ts":3}"#.into()),
            ),
            0,
        );
        assert_eq!(got.verdict, Verdict::Noise);
        assert!(got.real.is_empty());
        let got = c.ingest(
            &pair(
                "/x",
                r#"{"a":1}"#.into(),
                r#"{"a":1}"#.into(),
                Some(r#"{"a":1}"#.into()),
            ),
            0,
        );
        assert_eq!(got.verdict, Verdict::Match);
    }

    #[test]
    fn thresholds_follow_diffy() {
        let m = NoiseModel {
            relative: 0.2,
            absolute: 0.0003,
        };
        assert!(m.is_real(10, 100, 0, 100));
        assert!(!m.is_real(10, 100, 9, 100), "10% vs 9% is within 20%");
        assert!(m.is_real(20, 100, 10, 100));
        assert!(!m.is_real(1, 10_000, 0, 10_000), "0.01% is under the absolute floor");
        assert!(!m.is_real(0, 100, 0, 100));
    }

    #[test]
    fn endpoints_are_capped_with_an_overflow_bucket() {
        let mut c = Collector::new(&config("diff: { max_endpoints: 3 }"));
        for i in 0..50 {
            c.ingest(&pair(&format!("/p{i}/x"), "{}".into(), "{}".into(), None), 0);
        }
        assert_eq!(c.endpoints.len(), 4);
        assert_eq!(c.endpoints[OVERFLOW].compared, 47);
    }

    #[test]
    fn fields_keyed_by_ids_collapse_and_are_capped() {
        let mut c = Collector::new(&config(""));
        // Keys that are ids collapse to `*`…
        c.ingest(
            &pair(
                "/m",
                r#"{"users":{"3f2504e0-4f89-11d3-9a0c-0305e82c3301":1}}"#.into(),
                r#"{"users":{"3f2504e0-4f89-11d3-9a0c-0305e82c3301":2}}"#.into(),
                None,
            ),
            0,
        );
        assert!(c.endpoints["GET /m"].fields.contains_key("body:/users/*"));
        // …and names that are not ids are capped per endpoint.
        for i in 0..(MAX_FIELDS + 50) {
            c.ingest(
                &pair("/n", format!(r#"{{"k{i}x":1}}"#), format!(r#"{{"k{i}x":2}}"#), None),
                0,
            );
        }
        let e = &c.endpoints["GET /n"];
        assert_eq!(e.fields.len(), MAX_FIELDS + 1);
        assert_eq!(e.fields[OVERFLOW_FIELD].raw, 50);
    }

    #[test]
    fn samples_are_bounded_and_redacted() {
        let mut c = Collector::new(&config("diff: { samples_per_field: 3 }"));
        for i in 0..10 {
            c.ingest(
                &pair("/a", format!(r#"{{"v":{i}}}"#), format!(r#"{{"v":{}}}"#, i + 1), None),
                0,
            );
        }
        let f = &c.endpoints["GET /a"].fields["body:/v"];
        assert_eq!(f.samples.len(), 3);
        let s = &f.samples[0];
        let auth = s.headers.iter().find(|(k, _)| k == "authorization").unwrap();
        assert_eq!(auth.1, "[redacted]");
        assert!(s.headers.iter().any(|(k, v)| k == "x-user-id" && v == "7"));
    }
}
