//! Where mirrors run: a runtime of their own, on `shadow.workers` threads at
//! the lowest CPU priority, with backend pools of their own under their own
//! connection budget (`shadow.max_connections` per backend). A slow, huge or
//! broken shadow answer is read here, never on a live worker, and under CPU
//! contention the kernel runs the live workers first.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::runtime::{Handle, Runtime};

use crate::proxy::forward::Upstreams;
use crate::proxy::limit::Limits;
use crate::snapshot::Snapshot;

pub struct ShadowRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
    upstreams: ArcSwap<Option<Arc<Upstreams>>>,
    limits: Limits,
    /// Keeps the kernel stamping received bytes, so that pairs are timed
    /// from their first one ([`crate::proxy::wire::Timing`]).
    _stamps: Option<std::net::UdpSocket>,
}

impl ShadowRuntime {
    pub fn start(workers: usize) -> std::io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .max_blocking_threads(1)
            .thread_name("switchyard-shadow")
            .on_thread_start(|| crate::background::lower_priority("shadow"))
            .enable_all()
            .build()?;
        Ok(Arc::new(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            upstreams: ArcSwap::from_pointee(None),
            limits: Limits::default(),
            _stamps: crate::proxy::wire::keep_stamps_on(),
        }))
    }

    pub fn spawn<F>(&self, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(work);
    }

    /// The mirrors' clients for the snapshot's backends, rebuilt when a
    /// reload changed them.
    pub fn upstreams(&self, snap: &Snapshot) -> Result<Arc<Upstreams>, String> {
        if let Some(current) = self.upstreams.load().as_ref() {
            if current.generation == snap.generation {
                return Ok(current.clone());
            }
        }
        let fresh = Arc::new(Upstreams::new(
            snap.generation,
            &snap.config.backends,
            &self.limits,
            Some(snap.config.shadow.max_connections),
        )?);
        self.upstreams.store(Arc::new(Some(fresh.clone())));
        Ok(fresh)
    }
}

impl Drop for ShadowRuntime {
    fn drop(&mut self) {
        // Dropped from inside another runtime at shutdown; never block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
