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
    /// A work-stealing runtime, though each mirror is a single task: a
    /// task spawned into it from a live worker wakes its thread only when
    /// that thread sleeps. A current-thread runtime per thread was tried
    /// and undone: 1.1k fewer instructions per mirror on the mirrors'
    /// thread, but a task spawned into one from outside writes its
    /// wake-up eventfd every time, asleep or not, and that system call
    /// fell on the live worker once per mirrored request
    /// (bench/RESULTS.md).
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::ShadowRuntime;

    const DEADLINE: Duration = Duration::from_secs(10);

    #[test]
    fn mirrors_run_on_a_thread_of_their_own_at_the_lowest_priority() {
        let rt = ShadowRuntime::start(1).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..3 {
            let tx = tx.clone();
            rt.spawn(async move {
                let me = std::thread::current();
                let _ = tx.send((
                    me.id(),
                    me.name().map(str::to_string),
                    crate::background::current_nice(),
                ));
            });
        }
        let mut threads = std::collections::HashSet::new();
        for _ in 0..3 {
            let (id, name, nice) = rx.recv_timeout(DEADLINE).expect("a mirror never ran");
            assert_ne!(id, std::thread::current().id());
            assert_eq!(name.as_deref(), Some("switchyard-shadow"));
            assert_eq!(nice, Some(19), "a mirror would compete with live traffic as an equal");
            threads.insert(id);
        }
        assert_eq!(threads.len(), 1, "one worker, one thread");
    }

    #[test]
    fn dropping_the_runtime_drops_the_mirrors_in_flight() {
        struct Dropped(mpsc::Sender<()>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let rt = ShadowRuntime::start(2).unwrap();
        let (tx, rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        for _ in 0..2 {
            let held = Dropped(tx.clone());
            let started = started_tx.clone();
            rt.spawn(async move {
                let _held = held;
                let _ = started.send(());
                std::future::pending::<()>().await;
            });
        }
        for _ in 0..2 {
            started_rx.recv_timeout(DEADLINE).expect("a mirror never started");
        }
        drop(rt);
        for _ in 0..2 {
            rx.recv_timeout(DEADLINE)
                .expect("a mirror outlived its runtime: its connections would stay open");
        }
    }
}
