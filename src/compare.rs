//! The analysis thread: takes mirrored pairs off the queue, compares them,
//! and feeds the report, the metrics, the store and the guard. It runs on its
//! own OS thread so that diffing never competes with the event loops for a
//! turn, and the live path only ever does a non-blocking `try_send` to it.

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::metrics::{Metrics, MirrorCounters};
use crate::report::collector::Collector;
use crate::report::store::{self, Record, Store};
use crate::report::tally::Verdict;
use crate::rollout::state::now_ms;
use crate::shadow::{Pair, Work};
use crate::snapshot::SnapshotCell;

const TALLY_EVERY: Duration = Duration::from_secs(5);
/// After a pair wakes the analysis thread, it lets the next ones gather
/// this long and takes them all at once: under load the thread is woken
/// about once per `GATHER`, not once per pair (each wake-up cost the
/// mirrors' thread a futex call, and a core two context switches). The
/// queue (`shadow.queue`, 4,096) holds this long at 400,000 pairs a second.
const GATHER: Duration = Duration::from_millis(10);
/// Slices kept at most: a day of a test held on a suspect reading.
const SLICES_KEPT: usize = 864_000;

/// What one comparison says to the guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardVerdict {
    /// A real (non-noise) difference.
    pub real: bool,
    /// The side answered 5xx.
    pub old_error: bool,
    pub new_error: bool,
}

/// Comparisons since a time, as the guard judges them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compared {
    pub comparisons: u64,
    pub real: u64,
    /// Same request, new answered 5xx and old did not.
    pub new_only_errors: u64,
    /// Same request, old answered 5xx and new did not.
    pub old_only_errors: u64,
}

impl Compared {
    pub fn add(&mut self, v: GuardVerdict) {
        self.comparisons += 1;
        self.real += u64::from(v.real);
        self.new_only_errors += u64::from(v.new_error && !v.old_error);
        self.old_only_errors += u64::from(v.old_error && !v.new_error);
    }

    /// These counts without `base`'s (an earlier tally of the same).
    pub fn minus(&self, base: &Compared) -> Compared {
        Compared {
            comparisons: self.comparisons.saturating_sub(base.comparisons),
            real: self.real.saturating_sub(base.real),
            new_only_errors: self.new_only_errors.saturating_sub(base.new_only_errors),
            old_only_errors: self.old_only_errors.saturating_sub(base.old_only_errors),
        }
    }

    pub fn merge(&mut self, other: &Compared) {
        self.comparisons += other.comparisons;
        self.real += other.real;
        self.new_only_errors += other.new_only_errors;
        self.old_only_errors += other.old_only_errors;
    }
}

/// Comparison verdicts for the guard's diff-rate and mirrored error checks,
/// tallied in slices of [`SLICE`]: a test counts everything since it began
/// (a sequential test needs it all, at any request rate), in memory that
/// grows with the test's length, not with its traffic.
#[derive(Default)]
pub struct DiffWindow {
    slices: Mutex<VecDeque<(Instant, Compared)>>,
}

/// The resolution of the tallies a test starts from.
const SLICE: Duration = Duration::from_millis(100);

impl DiffWindow {
    pub fn push(&self, v: GuardVerdict) {
        let now = Instant::now();
        let mut s = self.slices.lock().unwrap_or_else(|p| p.into_inner());
        match s.back_mut() {
            Some((start, c)) if now.duration_since(*start) < SLICE => c.add(v),
            _ => {
                if s.len() >= SLICES_KEPT {
                    s.pop_front();
                }
                let mut c = Compared::default();
                c.add(v);
                s.push_back((now, c));
            }
        }
    }

    /// What was compared since `since` (to the slice).
    pub fn count_since(&self, since: Instant) -> Compared {
        let s = self.slices.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = Compared::default();
        for (_, c) in s.iter().filter(|(start, _)| *start >= since) {
            total.merge(c);
        }
        total
    }

    /// Forgets the verdicts before `t` (a new test began).
    pub fn forget_before(&self, t: Instant) {
        self.slices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(start, _)| *start >= t);
    }
}

/// Handles to what the analysis thread maintains.
#[derive(Clone)]
pub struct Analysis {
    pub collector: Arc<Mutex<Collector>>,
    pub diffs: Arc<DiffWindow>,
    /// When a stopping gateway stops comparing: set once, by
    /// [`Analysis::stop_comparing_at`].
    stop_comparing_at: Arc<OnceLock<Instant>>,
}

impl Analysis {
    /// From `at` on, pairs still queued are counted as dropped comparisons
    /// instead of compared, and the thread ends without waiting for the
    /// mirrors still running (it notices within [`TALLY_EVERY`] when idle).
    /// A stopping gateway waits for this thread, which runs at nice 19: on
    /// a busy machine a full queue, and the mirrors behind it, kept the
    /// process alive for minutes after SIGTERM.
    pub fn stop_comparing_at(&self, at: Instant) {
        let _ = self.stop_comparing_at.set(at);
    }

    fn out_of_time(&self) -> bool {
        self.stop_comparing_at.get().is_some_and(|at| Instant::now() >= *at)
    }

    /// Starts the report's counts afresh; the store records it within
    /// [`TALLY_EVERY`], so a restart does not bring the old counts back.
    pub fn reset(&self) -> u64 {
        let at = now_ms();
        self.collector.lock().unwrap_or_else(|p| p.into_inner()).reset(at);
        at
    }

    /// Builds the collector (restored from the store when there is one) and
    /// starts the thread. The thread ends when every sender is gone.
    pub fn start(
        config: &Config,
        metrics: Metrics,
        rx: Receiver<Work>,
        cell: SnapshotCell,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let mut collector = Collector::new(config);
        let mut store = None;
        if let Some(cfg) = &config.diff.store {
            let replay = store::replay(cfg)?;
            let restored = replay.tallies.len();
            collector.restore(replay.tallies, replay.samples, replay.totals, replay.since_ms);
            if restored > 0 || replay.skipped > 0 {
                tracing::info!(path = %cfg.path.display(), endpoints = restored, skipped_lines = replay.skipped, "diff report restored from the store");
            }
            store = Some(Store::open(cfg)?);
        }
        let since = collector.since_ms;
        let analysis = Self {
            collector: Arc::new(Mutex::new(collector)),
            diffs: Arc::new(DiffWindow::default()),
            stop_comparing_at: Arc::default(),
        };
        let worker = Worker {
            analysis: analysis.clone(),
            metrics,
            failures: FailureLog::default(),
            store,
            dirty: HashSet::new(),
            rewrite_all: false,
            written_since: since,
            cell,
            left_at_stop: 0,
        };
        let handle = std::thread::Builder::new()
            .name("switchyard-analysis".into())
            .spawn(move || {
                crate::background::lower_priority("analysis");
                worker.run(rx)
            })?;
        Ok((analysis, handle))
    }
}

/// Logs store failures at most once a minute, with how many there were:
/// a full disk must not turn into a log flood.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    since_last: u64,
}

impl FailureLog {
    fn failed(&mut self, metrics: &Metrics, e: &std::io::Error) {
        metrics.upkeep.diff_store_write_failures.inc();
        self.since_last += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            tracing::error!(error = %e, failures = self.since_last, "cannot append to the diff store; records are lost until it can (the file keeps whole lines only)");
            self.last = Some(Instant::now());
            self.since_last = 0;
        }
    }
}

struct Worker {
    analysis: Analysis,
    metrics: Metrics,
    failures: FailureLog,
    store: Option<Store>,
    dirty: HashSet<String>,
    /// The store rotated while tallies were written: write them all again
    /// next time, so the newest file stands alone.
    rewrite_all: bool,
    /// The reset the store last recorded.
    written_since: Option<u64>,
    /// Where the accepted differences are read from, per comparison.
    cell: SnapshotCell,
    /// Pairs left uncompared because the gateway was stopping.
    left_at_stop: u64,
}

/// Waits up to `wait` for work, then lets more gather for [`GATHER`] and
/// takes all of it into `batch`. False once every sender is gone.
fn next_batch<T>(rx: &Receiver<T>, wait: Duration, batch: &mut Vec<T>) -> bool {
    match rx.recv_timeout(wait) {
        Ok(first) => batch.push(first),
        Err(RecvTimeoutError::Timeout) => return true,
        Err(RecvTimeoutError::Disconnected) => return false,
    }
    std::thread::sleep(GATHER);
    loop {
        match rx.try_recv() {
            Ok(more) => batch.push(more),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
}

impl Worker {
    fn run(mut self, rx: Receiver<Work>) {
        let mut last_tally = Instant::now();
        let mut batch = Vec::new();
        loop {
            let open = next_batch(&rx, TALLY_EVERY, &mut batch);
            for work in batch.drain(..) {
                self.take(work);
            }
            if !open {
                break;
            }
            if self.analysis.out_of_time() {
                // Mirrors still running hold the queue open for as long as
                // they take, and what they bring now would not be compared:
                // count what is queued and end.
                while let Ok(work) = rx.try_recv() {
                    self.take(work);
                }
                break;
            }
            if last_tally.elapsed() >= TALLY_EVERY {
                self.write_tallies(false);
                last_tally = Instant::now();
            }
        }
        self.write_tallies(false);
        if let Some(s) = &mut self.store {
            let _ = s.sync();
        }
        if self.left_at_stop > 0 {
            tracing::warn!(
                pairs = self.left_at_stop,
                "stopping: pairs still queued after server.drain_timeout were not compared (counted as dropped comparisons)"
            );
        }
    }

    fn take(&mut self, work: Work) {
        match work {
            Work::Compare(_, counters) if self.analysis.out_of_time() => {
                counters.compared("dropped");
                self.left_at_stop += 1;
            }
            Work::Compare(pair, counters) => self.process(*pair, &counters),
            Work::Failed { route, method, target } => {
                let mut c = self.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
                c.record_error(&route, method.as_str(), &target, now_ms());
            }
        }
    }

    fn process(&mut self, pair: Pair, counters: &MirrorCounters) {
        let snap = self.cell.load();
        let ingested = {
            let mut c = self.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
            c.ingest(&pair, now_ms(), &snap.rollout.accepted)
        };
        counters.compared(ingested.verdict.as_str());
        self.analysis.diffs.push(GuardVerdict {
            real: ingested.verdict == Verdict::Diff,
            old_error: pair.old.status >= 500,
            new_error: pair.new.status >= 500,
        });
        if ingested.verdict == Verdict::Diff {
            tracing::debug!(endpoint = %ingested.endpoint, request_id = %pair.request_id, fields = ingested.real.len(), "real difference");
        }
        if !self.dirty.contains(&ingested.endpoint) {
            self.dirty.insert(ingested.endpoint.clone());
        }
        let mut rotated = false;
        if let Some(store) = &mut self.store {
            for (field, sample) in ingested.real {
                let rec = Record::Diff {
                    endpoint: ingested.endpoint.clone(),
                    field,
                    sample: Box::new(sample),
                };
                match store.append(&rec) {
                    Ok(r) => rotated |= r,
                    Err(e) => self.failures.failed(&self.metrics, &e),
                }
            }
        }
        if rotated {
            self.write_tallies(true);
        }
    }

    /// Writes the counts of changed endpoints (all of them after a rotation).
    fn write_tallies(&mut self, all: bool) {
        let all = all || std::mem::take(&mut self.rewrite_all);
        let Some(store) = &mut self.store else {
            self.dirty.clear();
            return;
        };
        let reset = {
            let c = self.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
            c.since_ms != self.written_since
        };
        if self.dirty.is_empty() && !all && !reset {
            return;
        }
        let c = self.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
        if c.since_ms != self.written_since {
            if let Some(at_ms) = c.since_ms {
                if let Err(e) = store.append(&Record::Reset { at_ms }) {
                    self.failures.failed(&self.metrics, &e);
                }
            }
            self.written_since = c.since_ms;
        }
        let names: Vec<String> = if all {
            c.endpoints.keys().cloned().collect()
        } else {
            self.dirty.drain().collect()
        };
        for name in names {
            if let Some(stats) = c.endpoints.get(&name) {
                let rec = Record::Tally {
                    endpoint: name,
                    stats: Box::new(stats.clone()),
                };
                if let Err(e) = store.append(&rec) {
                    self.failures.failed(&self.metrics, &e);
                }
            }
        }
        if let Err(e) = store.append(&Record::Totals {
            results: c.totals.clone(),
        }) {
            self.failures.failed(&self.metrics, &e);
        }
        let _ = store.sync();
        self.dirty.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_counts_every_comparison_since_it_began_at_any_rate() {
        // A window of the last 200,000 verdicts used to stand here: at
        // 10,000 comparisons a second, a test saw only its last 20 s.
        let w = DiffWindow::default();
        let began = Instant::now();
        for i in 0..300_000u32 {
            w.push(GuardVerdict {
                real: i % 10 == 0,
                old_error: i % 100 == 1,
                new_error: i % 50 == 1,
            });
        }
        let c = w.count_since(began);
        assert_eq!(c.comparisons, 300_000);
        assert_eq!(c.real, 30_000);
        // i ≡ 1 (mod 100) is an error on both sides: not one side's alone.
        assert_eq!((c.new_only_errors, c.old_only_errors), (3_000, 0));
        w.forget_before(Instant::now() + SLICE);
        assert_eq!(w.count_since(began), Compared::default());
    }

    #[test]
    fn pairs_that_gathered_while_the_thread_slept_are_taken_in_one_wake_up() {
        let (tx, rx) = std::sync::mpsc::sync_channel(100);
        for i in 0..50 {
            tx.send(i).unwrap();
        }
        let mut batch = Vec::new();
        assert!(super::next_batch(&rx, Duration::from_secs(5), &mut batch));
        assert_eq!(
            batch,
            (0..50).collect::<Vec<_>>(),
            "one wake-up takes every pair queued"
        );
        drop(tx);
        batch.clear();
        assert!(
            !super::next_batch(&rx, Duration::from_secs(5), &mut batch),
            "no senders left"
        );
        assert!(batch.is_empty());
    }
}
