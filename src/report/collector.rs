//! Aggregates comparisons per endpoint and field, keeps counts of raw
//! differences (old vs new) and noise (old vs twin, or old vs old again),
//! decides which fields are real differences, and keeps bounded samples.
//!
//! Noise model (Diffy's, with both thresholds): a field is a real difference
//! when its raw rate clearly exceeds its noise rate,
//! `raw > noise × (1 + relative)` and `raw − noise > absolute`. Rates are
//! per comparison of the endpoint, so the decision sharpens as traffic
//! flows, and the report always shows both rates next to the verdict.
//! A difference an engineer accepted counts as `accepted`, never as real.

use std::collections::{BTreeMap, HashSet, VecDeque};

use super::accept::Acceptance;
use super::endpoint::EndpointNamer;
use super::sample::{self, Sample};
use super::tally::{tick, EndpointStats, FieldStats, Minute, NoiseModel, Results, Tallies, Verdict};
use crate::config::Config;
use crate::diff::{Difference, Kind};
use crate::shadow::Pair;

/// Name of the bucket that endpoints beyond the cap share.
pub const OVERFLOW: &str = "(other endpoints)";

/// Fields tracked per endpoint; beyond it they share one bucket, so a body
/// keyed by ids (`{"u123": …}`) cannot grow the report without bound.
pub const MAX_FIELDS: usize = 256;

/// Name of the bucket that fields beyond [`MAX_FIELDS`] share.
pub const OVERFLOW_FIELD: &str = "(other fields)";

/// The name a difference is reported under: its location with array
/// indices and id-like keys generalised (`body:/users/*/name`).
pub fn field_of(d: &Difference) -> String {
    let generalised = d.field();
    match generalised.strip_prefix("body:") {
        Some(ptr) => {
            let mut out = String::from("body:");
            for tok in ptr.split('/').skip(1) {
                out.push('/');
                out.push_str(if super::endpoint::is_id_like(tok) { "*" } else { tok });
            }
            out
        }
        None => generalised,
    }
}

/// The name a difference is counted under: [`field_of`], or the overflow
/// bucket once the endpoint tracks [`MAX_FIELDS`] fields.
fn field_key(fields: &BTreeMap<String, FieldStats>, d: &Difference) -> String {
    let name = field_of(d);
    if fields.contains_key(&name) || fields.len() < MAX_FIELDS {
        name
    } else {
        OVERFLOW_FIELD.to_string()
    }
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
    pub endpoints: BTreeMap<String, EndpointStats>,
    pub totals: Results,
    pub timeline: VecDeque<Minute>,
    /// When the counts were last started afresh (`POST /report/reset`).
    pub since_ms: Option<u64>,
}

impl Collector {
    pub fn new(config: &Config) -> Self {
        Self {
            namer: namer(config).unwrap_or_default(),
            model: NoiseModel {
                relative: config.diff.noise.relative_threshold,
                absolute: config.diff.noise.absolute_threshold,
            },
            samples_per_field: config.diff.samples_per_field,
            max_endpoints: config.diff.max_endpoints,
            redact: sample::redaction(&config.diff.redact_headers),
            endpoints: BTreeMap::new(),
            totals: Results::default(),
            timeline: VecDeque::new(),
            since_ms: None,
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

    /// Starts every count afresh (a redeploy of new): what is reported from
    /// now on is about the new build only.
    pub fn reset(&mut self, now_ms: u64) {
        self.endpoints.clear();
        self.totals = Results::default();
        self.timeline.clear();
        self.since_ms = Some(now_ms);
    }

    /// A copy of every count and sample, to build a report from.
    pub fn tallies(&self) -> Tallies {
        Tallies {
            endpoints: self.endpoints.clone(),
            totals: self.totals.clone(),
            timeline: self.timeline.clone(),
            since_ms: self.since_ms,
            samples_per_field: self.samples_per_field,
        }
    }

    /// The kinds of difference seen at a field of an endpoint (what an
    /// acceptance made now would cover).
    pub fn kinds_at(&self, endpoint: &str, field: &str) -> Vec<Kind> {
        self.endpoints
            .get(endpoint)
            .and_then(|e| e.fields.get(field))
            .map(|f| f.kinds.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The stored sample with this id, with its endpoint and field.
    pub fn sample(&self, id: &str) -> Option<(String, String, Sample)> {
        self.endpoints.iter().find_map(|(name, e)| {
            e.fields.iter().find_map(|(field, f)| {
                f.samples
                    .iter()
                    .find(|s| s.id == id)
                    .map(|s| (name.clone(), field.clone(), s.clone()))
            })
        })
    }

    /// The endpoint name a request is counted under (without making room).
    pub fn endpoint_name(&self, route: &str, method: &str, target: &str) -> String {
        self.namer.name_on(route, method, target)
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
        tick(&mut e.timeline, now_ms, Verdict::Error);
        self.totals.add(Verdict::Error);
        tick(&mut self.timeline, now_ms, Verdict::Error);
    }

    /// Compares a pair and records everything about it; differences an
    /// acceptance in `accepted` covers count as accepted.
    pub fn ingest(&mut self, pair: &Pair, now_ms: u64, accepted: &[Acceptance]) -> Ingested {
        let raw = crate::diff::compare_call(&pair.old, &pair.new, &pair.rules, &pair.target);
        let baseline = pair
            .twin
            .as_ref()
            .map(|t| crate::diff::compare_call(&pair.old, t, &pair.rules, &pair.target));
        let key = self.endpoint_key(&pair.route, pair.method.as_str(), &pair.target);
        let model = self.model;
        let cap = self.samples_per_field;
        // Made once, and only for a comparison that keeps a sample: decoding
        // three bodies for a match would be spent for nothing.
        let mut sample_base: Option<Sample> = None;

        // The key is handed back in `Ingested`: cloned only for a new endpoint.
        if !self.endpoints.contains_key(&key) {
            self.endpoints.insert(key.clone(), EndpointStats::default());
        }
        let Some(e) = self.endpoints.get_mut(&key) else {
            unreachable!("inserted above");
        };
        if e.route != *pair.route {
            e.route = pair.route.to_string();
        }
        e.compared += 1;
        // Latencies compare only between requests sent at the same instant:
        // new against old, or, when old went out apart from a mirrored new,
        // against old's twin, which went out with it.
        let old_then = if pair.timed.pair {
            Some((&pair.old, pair.ends.old))
        } else if pair.live == crate::side::Side::Old && pair.timed.twin_with_mirror {
            pair.twin.as_ref().map(|t| (t, pair.ends.twin))
        } else {
            None
        };
        match old_then {
            Some((old, old_end)) => {
                e.latency_old.record_us(old.latency.as_secs_f64() * 1e6);
                e.latency_new.record_us(pair.new.latency.as_secs_f64() * 1e6);
                if let (Some(o), Some(n)) = (old_end, pair.ends.new) {
                    e.latency_old_end.record_us(o.as_secs_f64() * 1e6);
                    e.latency_new_end.record_us(n.as_secs_f64() * 1e6);
                }
            }
            None => e.untimed += 1,
        }
        // The baseline: old and its twin, on the pairs where they went out together.
        if let (Some(t), true) = (&pair.twin, pair.timed.twin) {
            e.latency_twin.record_us(t.latency.as_secs_f64() * 1e6);
            e.latency_old_with_twin.record_us(pair.old.latency.as_secs_f64() * 1e6);
        }
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
        // Count each field once per comparison: as ignored, accepted or raw.
        let is_accepted = |field: &str, d: &Difference| accepted.iter().any(|a| a.covers(&key, field, d.kind, now_ms));
        let mut seen = HashSet::new();
        let mut any_accepted = false;
        for d in &raw.differences {
            let field = field_key(&e.fields, d);
            if !seen.insert(field.clone()) {
                continue;
            }
            let accepted_here = !d.ignored && is_accepted(&field, d);
            let f = e.fields.entry(field).or_default();
            if d.ignored {
                f.ignored += 1;
            } else if accepted_here {
                f.accepted += 1;
                any_accepted = true;
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
            let field = field_key(&e.fields, d);
            if is_accepted(&field, d) || !judged.insert(field.clone()) {
                continue;
            }
            any_counted = true;
            let (compared, base) = (e.compared, e.baseline);
            let Some(f) = e.fields.get_mut(&field) else {
                continue;
            };
            let is_real = model.is_real(f.raw, compared, f.noise, base);
            let base_sample = sample_base.get_or_insert_with(|| sample_of(pair, &self.redact));
            let sample = Sample {
                id: Sample::id_for(&base_sample.request_id, base_sample.at_ms, &field),
                difference: sample::redact_difference(d, &self.redact),
                ..base_sample.clone()
            };
            f.keep(sample.clone(), cap);
            if is_real {
                real.push((field, sample));
            }
        }
        let verdict = if !real.is_empty() {
            Verdict::Diff
        } else if any_accepted {
            Verdict::Accepted
        } else if any_counted {
            Verdict::Noise
        } else if raw.is_ignored_only() {
            Verdict::Ignored
        } else {
            Verdict::Match
        };
        e.results.add(verdict);
        tick(&mut e.timeline, now_ms, verdict);
        self.totals.add(verdict);
        tick(&mut self.timeline, now_ms, verdict);
        Ingested {
            verdict,
            endpoint: key,
            real,
        }
    }

    /// Puts back counts and samples read from the store after a restart.
    pub fn restore(
        &mut self,
        tallies: BTreeMap<String, EndpointStats>,
        samples: Vec<(String, String, Sample)>,
        totals: Option<Results>,
        since_ms: Option<u64>,
    ) {
        for (k, stats) in tallies {
            self.endpoints.insert(k, stats);
        }
        if let Some(t) = totals {
            self.totals = t;
        }
        self.since_ms = since_ms;
        for (endpoint, field, mut sample) in samples {
            if sample.id.is_empty() {
                sample.id = Sample::id_for(&sample.request_id, sample.at_ms, &field);
            }
            if let Some(f) = self.endpoints.get_mut(&endpoint).and_then(|e| e.fields.get_mut(&field)) {
                f.keep(sample, self.samples_per_field);
            }
        }
    }
}

/// What every sample a pair leaves shares: the request and the answers.
fn sample_of(pair: &Pair, redact: &HashSet<String>) -> Sample {
    let at_ms = pair
        .at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let (request_body, request_body_cut) = sample::snippet(&pair.request_body);
    Sample {
        id: String::new(),
        at_ms,
        request_id: pair.request_id.clone(),
        route: pair.route.to_string(),
        method: pair.method.to_string(),
        target: pair.target.clone(),
        headers: sample::stored_headers(&pair.request_headers, redact),
        request_body,
        request_body_cut,
        old: sample::side_sample(&pair.old),
        new: sample::side_sample(&pair.new),
        twin: pair.twin.as_ref().map(sample::side_sample),
        difference: sample::no_difference(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Exchange;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    impl Collector {
        fn ingest_plain(&mut self, pair: &Pair, now_ms: u64) -> Ingested {
            self.ingest(pair, now_ms, &[])
        }
    }

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
            timed: crate::shadow::Timed::TOGETHER,
            ends: crate::shadow::Ends::default(),
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
            c.ingest_plain(&pair(&format!("/users/{i}"), old, new, Some(twin)), 0);
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
        let got = c.ingest_plain(
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
        let got = c.ingest_plain(
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
            c.ingest_plain(&pair(&format!("/p{i}/x"), "{}".into(), "{}".into(), None), 0);
        }
        assert_eq!(c.endpoints.len(), 4);
        assert_eq!(c.endpoints[OVERFLOW].compared, 47);
    }

    #[test]
    fn fields_keyed_by_ids_collapse_and_are_capped() {
        let mut c = Collector::new(&config(""));
        // Keys that are ids collapse to `*`…
        c.ingest_plain(
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
            c.ingest_plain(
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
            c.ingest_plain(
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

    fn renamed(c: &mut Collector, i: usize, new: &str, accepted: &[Acceptance]) -> Verdict {
        let old = format!(r#"{{"username":"u{i}","n":1}}"#);
        c.ingest(
            &pair(&format!("/users/{i}"), old, new.to_string(), None),
            1_000,
            accepted,
        )
        .verdict
    }

    #[test]
    fn an_accepted_difference_counts_as_accepted_and_another_kind_stays_real() {
        let mut c = Collector::new(&config(""));
        assert_eq!(renamed(&mut c, 1, r#"{"user_name":"u1","n":1}"#, &[]), Verdict::Diff);
        let kinds = c.kinds_at("GET /users/{id}", "body:/username");
        assert_eq!(kinds, vec![Kind::Missing]);
        let acc = |fields: &[&str]| -> Vec<Acceptance> {
            fields
                .iter()
                .map(|f| Acceptance {
                    endpoint: "GET /users/{id}".into(),
                    field: f.to_string(),
                    kinds: c.kinds_at("GET /users/{id}", f),
                    reason: "renamed in v2".into(),
                    who: "t".into(),
                    at_ms: 0,
                    until_ms: Some(2_000),
                })
                .collect()
        };
        let both = acc(&["body:/username", "body:/user_name"]);
        assert_eq!(
            renamed(&mut c, 2, r#"{"user_name":"u2","n":1}"#, &both),
            Verdict::Accepted
        );
        // The same field with its type changed is not what was accepted.
        assert_eq!(renamed(&mut c, 3, r#"{"username":3,"n":1}"#, &both), Verdict::Diff);
        // An accepted field beside a real one: the comparison is real.
        assert_eq!(renamed(&mut c, 4, r#"{"user_name":"u4","n":2}"#, &both), Verdict::Diff);
        let e = &c.endpoints["GET /users/{id}"];
        assert_eq!(e.fields["body:/username"].accepted, 2);
        assert_eq!(e.results.accepted, 1);
        assert_eq!(c.totals.accepted, 1);
        // Past `until` the acceptance no longer applies.
        let old = r#"{"username":"u5","n":1}"#.to_string();
        let v = c
            .ingest(
                &pair("/users/5", old, r#"{"user_name":"u5","n":1}"#.into(), None),
                2_000,
                &both,
            )
            .verdict;
        assert_eq!(v, Verdict::Diff);
    }

    #[test]
    fn samples_have_ids_that_find_them() {
        let mut c = Collector::new(&config(""));
        c.ingest_plain(&pair("/a", r#"{"v":1}"#.into(), r#"{"v":2}"#.into(), None), 0);
        let s = &c.endpoints["GET /a"].fields["body:/v"].samples[0];
        assert_eq!(s.id.len(), 12);
        let (endpoint, field, found) = c.sample(&s.id).unwrap();
        assert_eq!((endpoint.as_str(), field.as_str()), ("GET /a", "body:/v"));
        assert_eq!(&found, s);
        assert!(c.sample("nope").is_none());
    }
}
