//! The threads of a running gateway: each worker's event loop, and the
//! control thread (admin API, guard, config watch).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::StartError;
use crate::admin::state::AdminState;
use crate::metrics::Metrics;
use crate::pipeline::Worker;
use crate::rollout::guard::Guard;

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Setup(format!("cannot start an event loop: {e}")))
}

/// The control thread: the admin API and the guard, on an event loop of
/// their own.
pub(super) struct ControlPlane {
    pub(super) listener: std::net::TcpListener,
    pub(super) admin: Arc<AdminState>,
    pub(super) guard: Guard,
    pub(super) protocols: Arc<crate::server::Protocols>,
    pub(super) shutdown: CancellationToken,
    pub(super) drain: std::time::Duration,
    /// Cancelled by the last worker out: the admin API outlives the
    /// workers' drain, so `/readyz` can say 503 while requests finish.
    pub(super) workers_done: CancellationToken,
    pub(super) ready: Arc<AtomicBool>,
    /// The webhooks' delivery task, run here.
    pub(super) webhooks: crate::rollout::webhooks::Shared,
    pub(super) notices: tokio::sync::mpsc::Receiver<crate::rollout::webhooks::Notice>,
}

impl ControlPlane {
    pub(super) fn spawn(self) -> Result<JoinHandle<()>, StartError> {
        let rt = runtime()?;
        std::thread::Builder::new()
            .name("switchyard-control".into())
            .spawn(move || {
                let ControlPlane {
                    listener,
                    admin,
                    guard,
                    protocols,
                    shutdown,
                    drain,
                    workers_done,
                    ready,
                    webhooks,
                    notices,
                } = self;
                rt.block_on(async move {
                    tokio::spawn(guard.run(shutdown.clone()));
                    tokio::spawn(webhooks.run(notices, shutdown.clone()));
                    tokio::spawn(crate::admin::watch::run(admin.reloader.clone(), shutdown.clone()));
                    let admin_stop = CancellationToken::new();
                    let stop = admin_stop.clone();
                    tokio::spawn(async move {
                        shutdown.cancelled().await;
                        ready.store(false, Ordering::SeqCst);
                        workers_done.cancelled().await;
                        stop.cancel();
                    });
                    let limit = Arc::new(Semaphore::new(256));
                    crate::server::serve(
                        listener,
                        None,
                        protocols,
                        limit,
                        admin_stop,
                        drain,
                        None,
                        move |req, _peer| crate::admin::api::handle(admin.clone(), req),
                    )
                    .await;
                })
            })
            .map_err(|e| StartError::Setup(format!("cannot start control thread: {e}")))
    }
}

/// What every worker thread is started with.
pub(super) struct WorkerCrew {
    pub(super) protocols: Arc<crate::server::Protocols>,
    /// `server.max_connections`, across workers and listeners.
    pub(super) limit: Arc<Semaphore>,
    pub(super) shutdown: CancellationToken,
    pub(super) drain: std::time::Duration,
    pub(super) metrics: Metrics,
    pub(super) terminator: Option<Arc<crate::tls::Terminator>>,
    /// Workers still serving; the last one out cancels `done`.
    pub(super) left: Arc<std::sync::atomic::AtomicUsize>,
    pub(super) done: CancellationToken,
}

impl WorkerCrew {
    /// One worker thread: its own event loop serving its plain and TLS
    /// sockets, then its tunnels' drain.
    pub(super) fn spawn(
        &self,
        i: usize,
        worker: Arc<Worker>,
        plain: Option<std::net::TcpListener>,
        tls: Option<std::net::TcpListener>,
    ) -> Result<JoinHandle<()>, StartError> {
        let rt = runtime()?;
        let (protocols, limit, shutdown, drain, metrics) = (
            self.protocols.clone(),
            self.limit.clone(),
            self.shutdown.clone(),
            self.drain,
            self.metrics.clone(),
        );
        let terminator = self.terminator.clone();
        let (left, done) = (self.left.clone(), self.done.clone());
        std::thread::Builder::new()
            .name(format!("switchyard-w{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    // This worker's access lines go to the writer a batch at
                    // a time; the tick ends with the event loop.
                    tokio::spawn(crate::logging::gather_access_lines());
                    let listen = |socket, tls| {
                        let worker = worker.clone();
                        crate::server::serve(
                            socket,
                            tls,
                            protocols.clone(),
                            limit.clone(),
                            shutdown.clone(),
                            drain,
                            Some(metrics.clone()),
                            move |req, peer| worker.clone().handle(req, peer),
                        )
                    };
                    let plain = plain.map(|socket| listen(socket, None));
                    let tls = tls.map(|socket| listen(socket, terminator));
                    tokio::join!(
                        async move {
                            if let Some(p) = plain {
                                p.await
                            }
                        },
                        async move {
                            if let Some(t) = tls {
                                t.await
                            }
                        }
                    );
                    // Upgraded connections live outside hyper's
                    // connections; they get the same drain time.
                    worker.tunnels().wait_closed().await;
                });
                crate::logging::flush_access_lines();
                if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                    done.cancel();
                }
            })
            .map_err(|e| StartError::Setup(format!("cannot start worker thread: {e}")))
    }
}
