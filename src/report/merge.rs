//! Reports as values that add up: a report turns back into the tallies it
//! was built from, and several reports merge into the report of the whole
//! (several gateways, or saved reports of one).

use std::collections::BTreeMap;

use super::accept::Acceptance;
use super::model::{Context, Report, SAMPLES_SHOWN};
use super::tally::{EndpointStats, FieldStats, Results, Tallies};
use crate::rollout::state::Change;

impl Report {
    /// The counts this report was built from. Exact for a report built
    /// without a `since` window.
    pub fn tallies(&self) -> Tallies {
        let mut endpoints = BTreeMap::new();
        for e in &self.endpoints {
            let fields = e
                .fields
                .iter()
                .map(|f| {
                    let stats = FieldStats {
                        raw: f.raw,
                        noise: f.noise,
                        ignored: f.ignored,
                        accepted: f.accepted,
                        kinds: f.kinds.iter().copied().collect(),
                        samples: f.samples.iter().rev().map(|s| s.sample.clone()).collect(),
                    };
                    (f.field.clone(), stats)
                })
                .collect();
            let stats = EndpointStats {
                route: e.route.clone(),
                compared: e.compared,
                baseline: e.baseline,
                results: e.results.clone(),
                fields,
                latency_old: e.latency.histograms.old.clone(),
                latency_new: e.latency.histograms.new.clone(),
                latency_twin: e.latency.histograms.twin.clone(),
                latency_old_with_twin: e.latency.histograms.old_with_twin.clone(),
                latency_old_end: e.latency.histograms.old_end.clone(),
                latency_new_end: e.latency.histograms.new_end.clone(),
                untimed: e.latency.untimed,
                timeline: e.timeline.iter().map(|p| p.minute()).collect(),
            };
            endpoints.insert(e.endpoint.clone(), stats);
        }
        let h = &self.headline;
        Tallies {
            endpoints,
            totals: Results {
                matched: h.matched,
                diff: h.real_diffs,
                accepted: h.accepted,
                noise: h.noise,
                ignored: h.ignored,
                error: h.errors,
            },
            timeline: self.timeline.iter().map(|p| p.minute()).collect(),
            since_ms: self.since_ms,
            samples_per_field: SAMPLES_SHOWN,
        }
    }

    /// Several reports (several gateways, or saved reports of one) as one:
    /// counts and histograms added exactly, samples capped, the rollout as
    /// the newest report saw it.
    pub fn merge(reports: &[Report]) -> Result<Report, String> {
        let Some(newest) = reports.iter().max_by_key(|r| r.generated_ms) else {
            return Err("no reports to merge".into());
        };
        if let Some(r) = reports.iter().find(|r| r.window_from_ms.is_some()) {
            return Err(format!(
                "a report made with since={} counts only part of its fields and cannot be merged exactly; save reports without --since",
                r.window_from_ms.unwrap_or_default()
            ));
        }
        let mut tallies = Tallies {
            samples_per_field: SAMPLES_SHOWN,
            ..Tallies::default()
        };
        let mut accepted: Vec<Acceptance> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        let (mut served_old, mut served_new, mut gateways) = (0, 0, 0);
        for r in reports {
            tallies.merge(&r.tallies());
            served_old += r.headline.served_old;
            served_new += r.headline.served_new;
            gateways += r.gateways;
            for a in &r.accepted {
                if !accepted.iter().any(|b| b == &a.acceptance) {
                    accepted.push(a.acceptance.clone());
                }
            }
            for c in &r.changes {
                if !changes.contains(c) {
                    changes.push(c.clone());
                }
            }
        }
        changes.sort_by_key(|c| c.at_ms);
        Ok(Report::build(
            &tallies,
            Context {
                generated_ms: newest.generated_ms,
                served_old,
                served_new,
                percent: newest.headline.percent,
                phase: newest.headline.phase.clone(),
                backends: newest.backends.clone(),
                guard: newest.guard.clone(),
                accepted,
                changes,
                model: newest.noise_model,
                window_from_ms: None,
                gateways,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Exchange;
    use crate::report::collector::Collector;
    use crate::report::model::Backends;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    fn config() -> crate::config::Config {
        crate::config::Config::from_yaml(
            "backends: { old: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }\n",
            "t",
        )
        .unwrap()
    }

    fn ex(body: String, ms: u64, status: u16) -> Exchange {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        Exchange {
            status,
            headers,
            body: Bytes::from(body),
            truncated: false,
            latency: Duration::from_micros(ms),
        }
    }

    /// One request of a made-up stream: which endpoint, which fields
    /// differ, latencies, and whether there is a twin.
    #[derive(Clone, Debug)]
    struct Call {
        endpoint: u8,
        a: u8,
        b: u8,
        twin: bool,
        old_us: u64,
        new_us: u64,
        minute: u64,
    }

    fn pair(c: &Call) -> crate::shadow::Pair {
        let body = |a: u8, b: u8| format!(r#"{{"a":{a},"b":{b},"c":1}}"#);
        crate::shadow::Pair {
            route: Arc::from("default"),
            rules: Arc::new(crate::diff::rules::DiffRules::default()),
            method: http::Method::GET,
            target: format!("/e{}/{}", c.endpoint, c.a),
            request_headers: http::HeaderMap::new(),
            request_body: Bytes::new(),
            request_id: format!("r{}-{}-{}", c.endpoint, c.a, c.b),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(c.minute * 60),
            live: crate::side::Side::Old,
            old: ex(body(0, 0), c.old_us, 200),
            new: ex(body(c.a % 3, c.b % 2), c.new_us, if c.b == 7 { 500 } else { 200 }),
            twin: c.twin.then(|| ex(body(0, c.b % 2), c.old_us + 5, 200)),
            timed: crate::shadow::Timed {
                pair: c.a != 5,
                twin: true,
                twin_with_mirror: c.a != 4,
            },
            ends: crate::shadow::Ends {
                old: Some(Duration::from_micros(c.old_us * 3)),
                new: Some(Duration::from_micros(c.new_us * 3)),
                twin: None,
            },
            hold: crate::proxy::budget::Budget::new(0).hold(),
        }
    }

    fn report_of(calls: &[Call]) -> Report {
        let mut c = Collector::new(&config());
        for call in calls {
            c.ingest(&pair(call), call.minute * 60_000, &[]);
        }
        Report::build(
            &c.tallies(),
            Context {
                generated_ms: 1,
                served_old: calls.len() as u64,
                served_new: 0,
                percent: 0.0,
                phase: "idle".into(),
                backends: Backends {
                    old: "http://o".into(),
                    new: "http://n".into(),
                    old_twin: None,
                },
                guard: Default::default(),
                accepted: Vec::new(),
                changes: Vec::new(),
                model: c.model(),
                window_from_ms: None,
                gateways: 1,
            },
        )
    }

    /// What does not depend on the order comparisons came in: counts per
    /// endpoint and field, field verdicts, histograms, comparisons per
    /// minute. (Whether one comparison was `diff` or `noise` was judged
    /// with the counts of its moment, so those add up instead.)
    fn order_free(r: &Report) -> Vec<String> {
        let mut out = vec![format!("{} {}", r.headline.comparisons, r.headline.errors)];
        for e in &r.endpoints {
            let minutes: Vec<(u64, u64)> = e.timeline.iter().map(|p| (p.start_ms, p.compared)).collect();
            out.push(format!(
                "{} {} {} {:?} {:?} {:?}",
                e.endpoint, e.compared, e.baseline, e.latency.histograms, minutes, e.latency.new
            ));
            for f in &e.fields {
                out.push(format!(
                    "{} {} {:?} {} {} {} {} {:?} {} {}",
                    e.endpoint,
                    f.field,
                    f.verdict,
                    f.raw,
                    f.noise,
                    f.ignored,
                    f.accepted,
                    f.kinds,
                    f.rate,
                    f.noise_rate
                ));
            }
        }
        // Endpoints are ordered by their diff rate, which is judged as above.
        out.sort();
        out
    }

    fn results(r: &Report) -> Vec<(String, Results)> {
        r.endpoints
            .iter()
            .map(|e| (e.endpoint.clone(), e.results.clone()))
            .collect()
    }

    fn call() -> impl Strategy<Value = Call> {
        (
            0u8..4,
            0u8..6,
            0u8..8,
            any::<bool>(),
            50u64..50_000,
            50u64..50_000,
            0u64..5,
        )
            .prop_map(|(endpoint, a, b, twin, old_us, new_us, minute)| Call {
                endpoint,
                a,
                b,
                twin,
                old_us,
                new_us,
                minute,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The merge of the reports of a split stream is the report of the
        /// whole stream: counts, verdicts, rates and histograms exact.
        #[test]
        fn merging_the_parts_gives_the_whole(mut calls in prop::collection::vec(call(), 1..120), cut in 0usize..120) {
            calls.sort_by_key(|c| c.minute);
            let cut = cut.min(calls.len());
            let whole = report_of(&calls);
            let parts = [report_of(&calls[..cut]), report_of(&calls[cut..])];
            let merged = Report::merge(&parts).unwrap();
            prop_assert_eq!(merged.gateways, 2);
            prop_assert_eq!(order_free(&merged), order_free(&whole));
            // The verdicts of each part add up exactly.
            for (name, got) in results(&merged) {
                let mut want = Results::default();
                for p in &parts {
                    if let Some((_, r)) = results(p).into_iter().find(|(n, _)| *n == name) {
                        want.merge(&r);
                    }
                }
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn a_saved_report_reads_back_and_merges_with_itself() {
        let calls: Vec<Call> = (0..40)
            .map(|i| Call {
                endpoint: (i % 3) as u8,
                a: (i % 5) as u8,
                b: (i % 8) as u8,
                twin: i % 2 == 0,
                old_us: 900 + i,
                new_us: 1500 + i,
                minute: i / 10,
            })
            .collect();
        let r = report_of(&calls);
        let text = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let twice = Report::merge(&[back.clone(), back]).unwrap();
        assert_eq!(twice.headline.comparisons, 2 * r.headline.comparisons);
        let e = &twice.endpoints[0];
        let one = r.endpoints.iter().find(|x| x.endpoint == e.endpoint).unwrap();
        assert_eq!(e.latency.histograms.old.total, 2 * one.latency.histograms.old.total);
        // Quantiles of a histogram added to itself do not move.
        assert_eq!(e.latency.old.p50_ms, one.latency.old.p50_ms);
    }
}
