//! How many connections a backend gets at once, across every worker
//! (`backends.*.max_connections`; mirrors have their own budget). A request
//! that finds them all taken waits a bounded time (`queue_timeout`) and is
//! then answered 503, so a burst, a slow backend or a client holding
//! responses open cannot open thousands of sockets to a backend.
//!
//! Idle pooled connections hold a permit too; when the limit is reached they
//! are closed first, oldest first, so one worker's idle pool never starves
//! another worker's requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::side::Side;

/// Every permit is taken and none came free in time.
#[derive(Debug)]
pub struct Saturated {
    pub limit: usize,
    pub waited: Duration,
}

/// Something holding idle connections under a limit, which can give one
/// up (closing it) so that its permit serves a request that needs one.
pub trait Reclaim: Send + Sync {
    /// Closes the longest-idle connection; `false` when there is none.
    fn close_oldest(&self) -> bool;
}

pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    wait: Duration,
    pools: Mutex<Vec<Weak<dyn Reclaim>>>,
}

impl ConnectionLimit {
    pub fn new(max: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            wait,
            pools: Mutex::new(Vec::new()),
        })
    }

    /// A pool whose idle connections may be closed to free permits.
    pub fn register(&self, pool: &Arc<impl Reclaim + 'static>) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        let pool: Arc<dyn Reclaim> = pool.clone();
        pools.push(Arc::downgrade(&pool));
    }

    /// Permits in use now.
    pub fn in_use(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// A permit for one more connection (or one more HTTP/2 request).
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, Saturated> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.close_an_idle_connection() {
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                return Ok(p);
            }
        }
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Saturated {
                limit: self.max,
                waited: self.wait,
            }),
        }
    }

    fn close_an_idle_connection(&self) -> bool {
        let pools: Vec<Arc<dyn Reclaim>> = self
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        pools.iter().any(|p| p.close_oldest())
    }
}

/// The limits of one gateway's backends, shared by the workers that build
/// pools for the same generation of the config.
#[derive(Default)]
pub struct Limits {
    by_side: Mutex<HashMap<Side, (u64, Arc<ConnectionLimit>)>>,
}

impl Limits {
    pub fn get(&self, generation: u64, side: Side, max: usize, wait: Duration) -> Arc<ConnectionLimit> {
        let mut map = self.by_side.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&side) {
            Some((g, limit)) if *g == generation => limit.clone(),
            _ => {
                let limit = ConnectionLimit::new(max, wait);
                map.insert(side, (generation, limit.clone()));
                limit
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_limit_waits_then_refuses_and_a_freed_permit_is_taken() {
        let limit = ConnectionLimit::new(2, Duration::from_millis(50));
        let a = limit.acquire().await.unwrap();
        let _b = limit.acquire().await.unwrap();
        assert_eq!(limit.in_use(), 2);
        let refused = limit.acquire().await.unwrap_err();
        assert_eq!(refused.limit, 2);
        let waiting = {
            let limit = limit.clone();
            tokio::spawn(async move { limit.acquire().await.is_ok() })
        };
        tokio::task::yield_now().await;
        drop(a);
        assert!(waiting.await.unwrap(), "a permit freed during the wait is taken");
    }

    #[test]
    fn workers_of_one_generation_share_a_limit() {
        let limits = Limits::default();
        let a = limits.get(1, Side::New, 10, Duration::from_secs(1));
        let b = limits.get(1, Side::New, 10, Duration::from_secs(1));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &limits.get(1, Side::Old, 10, Duration::from_secs(1))));
        assert!(!Arc::ptr_eq(&a, &limits.get(2, Side::New, 10, Duration::from_secs(1))));
    }
}
