//! A byte budget shared by threads: the mirrors' (`shadow.max_buffered_bytes`)
//! bounds every mirrored body the gateway holds at once (request bodies read
//! ahead, live answers copied by the tee, shadow answers being read, pairs
//! waiting for analysis). A hold that does not fit is refused at once, so
//! the caller drops and counts; nothing ever waits for room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;

pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Mirrors `used` for Prometheus.
    gauge: Option<IntGauge>,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Self> {
        Self::exported(limit, None)
    }

    pub fn exported(limit: usize, gauge: Option<IntGauge>) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
            gauge,
        })
    }

    /// Bytes held now, for the gauge.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty hold, to grow as bytes arrive.
    pub fn hold(self: &Arc<Self>) -> Hold {
        Hold {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn try_take(&self, n: usize) -> bool {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = used.checked_add(n).filter(|next| *next <= self.limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if let Some(g) = &self.gauge {
                        g.add(n as i64);
                    }
                    return true;
                }
                Err(actual) => used = actual,
            }
        }
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget({} of {})", self.used(), self.limit)
    }
}

/// Bytes held against the budget, given back when dropped.
#[derive(Debug)]
pub struct Hold {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Hold {
    /// Takes `n` more bytes; `false` (and nothing taken) when they do not fit.
    pub fn try_grow(&mut self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        let ok = self.budget.try_take(n);
        if ok {
            self.bytes += n;
        }
        ok
    }

    /// Moves another hold's bytes into this one.
    pub fn absorb(&mut self, mut other: Hold) {
        self.bytes += std::mem::take(&mut other.bytes);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
            if let Some(g) = &self.budget.gauge {
                g.sub(self.bytes as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_take_what_fits_and_give_it_back() {
        let b = Budget::new(100);
        let mut a = b.hold();
        assert!(a.try_grow(60));
        let mut c = b.hold();
        assert!(!c.try_grow(41), "past the limit nothing is taken");
        assert!(c.try_grow(40));
        assert_eq!(b.used(), 100);
        a.absorb(c);
        assert_eq!((a.bytes(), b.used()), (100, 100));
        drop(a);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn concurrent_holds_never_overshoot() {
        let b = Budget::new(1000);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..1000 {
                        let mut h = b.hold();
                        if h.try_grow(7) {
                            assert!(b.used() <= 1000);
                            held.push(h);
                        }
                        if held.len() > 20 {
                            held.clear();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.used(), 0);
    }
}
