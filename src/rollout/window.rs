//! The guard's sliding window of live requests per side, fed from the live
//! sink and trimmed by age and by count.

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::sink::LiveSample;
use crate::side::Side;

/// Samples kept per side at most; the oldest go first.
const MAX_PER_SIDE: usize = 100_000;

#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub at: Instant,
    pub latency_s: f64,
    pub error: bool,
}

pub struct Window {
    span: Duration,
    pub old: VecDeque<Observation>,
    pub new: VecDeque<Observation>,
}

impl Window {
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            old: VecDeque::new(),
            new: VecDeque::new(),
        }
    }

    pub fn set_span(&mut self, span: Duration) {
        self.span = span;
    }

    pub fn push(&mut self, side: Side, obs: Observation) {
        let q = match side {
            Side::New => &mut self.new,
            _ => &mut self.old,
        };
        if q.len() >= MAX_PER_SIDE {
            q.pop_front();
        }
        q.push_back(obs);
    }

    /// Takes everything waiting in the sink.
    pub fn drain(&mut self, rx: &Receiver<LiveSample>, now: Instant) {
        while let Ok(s) = rx.try_recv() {
            self.push(
                s.side,
                Observation {
                    at: s.at,
                    latency_s: s.latency.as_secs_f64(),
                    error: s.error,
                },
            );
        }
        self.trim(now);
    }

    pub fn trim(&mut self, now: Instant) {
        let cutoff = now.checked_sub(self.span);
        for q in [&mut self.old, &mut self.new] {
            while let (Some(front), Some(c)) = (q.front(), cutoff) {
                if front.at < c {
                    q.pop_front();
                } else {
                    break;
                }
            }
        }
    }

    /// Forgets the requests split before `t` (a rollout change): they
    /// were served under the previous percent.
    pub fn forget_before(&mut self, t: Instant) {
        for q in [&mut self.old, &mut self.new] {
            q.retain(|o| o.at >= t);
        }
    }
}
