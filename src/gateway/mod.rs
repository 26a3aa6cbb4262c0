//! Assembles a running gateway: restores the rollout state, builds the first
//! snapshot, binds every listener (so a bad address fails at once), and
//! starts the worker event loops, the control loop (admin API and guard)
//! and the analysis thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::admin::state::{AdminState, Reloader};
use crate::compare::Analysis;
use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::pipeline::{Shared, Worker};
use crate::proxy::budget::Budget;
use crate::proxy::limit::Limits;
use crate::rollout::controller::Controller;
use crate::rollout::fleet::Fleet;
use crate::rollout::guard::{Guard, GuardReport};
use crate::rollout::persist;
use crate::rollout::sink::LiveSink;
use crate::shadow::{Dispatcher, ShadowRuntime};

mod restore;
mod sockets;
mod threads;

use self::restore::{restore, rollout_controller};
use self::sockets::{bind_admin, Sockets};
use self::threads::{ControlPlane, WorkerCrew};

/// Capacity of the queue of live samples for the guard.
const LIVE_QUEUE: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    State(#[from] persist::PersistError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Ignore a saved rollout state and start from the config's percent.
    pub reset_state: bool,
    /// Where the config came from, for reloads.
    pub config_path: Option<PathBuf>,
}

pub struct Gateway {
    /// The plain-text listener's address; the TLS one's when `listen: ""`.
    pub proxy_addr: SocketAddr,
    /// The TLS listener's address, when `tls:` is configured.
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub controller: Arc<Controller>,
    pub analysis: Analysis,
    pub metrics: Metrics,
    pub reloader: Reloader,
    /// What the guard last judged, as `/status` and the report show it.
    pub guard: Arc<Mutex<GuardReport>>,
    shutdown: CancellationToken,
    ready: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    analysis_thread: Option<JoinHandle<()>>,
}

/// What every worker shares: the snapshot, the guard's sink, the mirrors'
/// dispatcher and the capture.
fn live_path(
    config: &Config,
    metrics: &Metrics,
    cell: crate::snapshot::SnapshotCell,
    live: LiveSink,
    pairs: std::sync::mpsc::SyncSender<crate::shadow::Work>,
    shutdown: CancellationToken,
    admin_addr: SocketAddr,
) -> Result<Arc<Shared>, StartError> {
    let capture = match &config.capture {
        Some(c) => Some(
            crate::replay::capture::Capture::start(c, &config.diff.redact_headers, metrics.mirror.captured.clone())
                .map_err(|e| StartError::Setup(format!("capture.path {}: {e}", c.path.display())))?,
        ),
        None => None,
    };
    Ok(Arc::new(Shared {
        admin_addr,
        fallbacks: crate::proxy::fallback::Budget::default(),
        capture,
        shutdown,
        drain: config.server.drain_timeout.get(),
        snapshot: cell,
        metrics: metrics.clone(),
        live,
        shadow: Dispatcher::new(
            config.shadow.max_in_flight,
            Budget::exported(
                config.shadow.max_buffered_bytes,
                Some(metrics.mirror.shadow_buffered_bytes.clone()),
            ),
            ShadowRuntime::start(config.shadow.workers)
                .map_err(|e| StartError::Setup(format!("cannot start the mirrors' threads: {e}")))?,
            Some(pairs),
            metrics,
        ),
        limits: Limits::default(),
    }))
}

/// Cancels the shutdown token when dropped armed: a start that fails half
/// way stops the threads it had started (the fleet's leaves the store).
struct Unwind(Option<CancellationToken>);

impl Drop for Unwind {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.cancel();
        }
    }
}

impl Gateway {
    pub fn start(config: Config, opts: Options) -> Result<Gateway, StartError> {
        let (rollout, slot) = restore(&config, &opts)?;

        let metrics = Metrics::new();
        let workers = match config.server.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (admin_listener, admin_addr) = bind_admin(&config)?;
        let sockets = Sockets::bind(&config, workers)?;
        let fleet = match &config.rollout.store {
            Some(_) => {
                metrics.enable_fleet();
                Some(Fleet::new(&config, admin_addr, sockets.proxy_addr.to_string()).map_err(StartError::Setup)?)
            }
            None => None,
        };
        let config = Arc::new(config);
        let (controller, cell) = rollout_controller(&config, &metrics, rollout, slot, fleet.as_ref())?;
        let ready = Arc::new(AtomicBool::new(false));
        let shutdown = CancellationToken::new();
        // A start that fails from here on stops what it had started.
        let mut unwind = Unwind(Some(shutdown.clone()));
        let mut threads = Vec::new();
        let fleet = match fleet {
            Some(f) => {
                let (ctx, thread) = f
                    .start(controller.clone(), metrics.clone(), ready.clone(), shutdown.clone())
                    .map_err(StartError::Setup)?;
                threads.push(thread);
                Some(ctx)
            }
            None => None,
        };

        let (pair_tx, pair_rx) = std::sync::mpsc::sync_channel(config.shadow.queue);
        let (analysis, analysis_thread) = Analysis::start(&config, metrics.clone(), pair_rx, cell.clone())
            .map_err(|e| StartError::Setup(format!("cannot open the diff store: {e}")))?;
        let (live, live_rx) = LiveSink::new(LIVE_QUEUE, metrics.rollout.samples_dropped.clone());
        let cell_for_hooks = cell.clone();
        let shared = live_path(&config, &metrics, cell, live, pair_tx, shutdown.clone(), admin_addr)?;

        let terminator = config
            .tls
            .as_ref()
            .map(|tls| crate::tls::Terminator::new(tls, Some(metrics.edge.clone())).map(Arc::new))
            .transpose()
            .map_err(StartError::Setup)?;

        let guard_report = Arc::new(Mutex::new(GuardReport::default()));
        let (webhooks, notices) = crate::rollout::webhooks::Webhooks::new(
            cell_for_hooks,
            metrics.rollout.webhook_deliveries.clone(),
            fleet.as_ref().map_or_else(|| admin_addr.to_string(), |f| f.view.id()),
            format!("http://{admin_addr}"),
            guard_report.clone(),
        )
        .map_err(StartError::Setup)?;
        controller.set_webhooks(webhooks.clone());
        let reloader = Reloader::new(
            opts.config_path.clone(),
            controller.clone(),
            analysis.clone(),
            metrics.clone(),
        )
        .with_tls(terminator.clone());
        // The last worker out closes the admin API (see ControlPlane).
        let workers_done = CancellationToken::new();
        let crew = WorkerCrew {
            protocols: Arc::new(crate::server::protocols(&config.server)),
            limit: Arc::new(Semaphore::new(config.server.max_connections)),
            shutdown: shutdown.clone(),
            drain: config.server.drain_timeout.get(),
            metrics: metrics.clone(),
            terminator: terminator.clone(),
            left: Arc::new(std::sync::atomic::AtomicUsize::new(workers)),
            done: workers_done.clone(),
        };
        let (proxy_addr, tls_addr) = (sockets.proxy_addr, sockets.tls_addr);
        for (i, (plain, tls)) in sockets.per_worker.into_iter().enumerate() {
            let worker = Arc::new(Worker::new(shared.clone()).map_err(StartError::Setup)?);
            threads.push(crew.spawn(i, worker, plain, tls)?);
        }
        drop(shared);

        let admin = Arc::new(AdminState {
            controller: controller.clone(),
            metrics: metrics.clone(),
            analysis: analysis.clone(),
            guard: guard_report.clone(),
            ready: ready.clone(),
            reloader: reloader.clone(),
            fleet: fleet.clone(),
        });
        let guard = Guard::new(
            controller.clone(),
            live_rx,
            Some(analysis.diffs.clone()),
            metrics.clone(),
            guard_report.clone(),
        )
        .in_fleet(fleet.clone());
        let control = ControlPlane {
            webhooks,
            notices,
            listener: admin_listener,
            admin,
            guard,
            protocols: Arc::new(crate::server::protocols(&config.server)),
            shutdown: shutdown.clone(),
            drain: config.server.drain_timeout.get(),
            workers_done,
            ready: ready.clone(),
        }
        .spawn()?;
        threads.push(control);

        ready.store(true, Ordering::SeqCst);
        unwind.0 = None;
        let snap = controller.snapshot();
        tracing::info!(
            proxy = %proxy_addr,
            tls = %tls_addr.map_or("off".to_string(), |a| a.to_string()),
            admin = %admin_addr,
            workers,
            percent = snap.rollout.percent,
            phase = snap.rollout.phase.as_str(),
            "switchyard is serving"
        );
        Ok(Gateway {
            proxy_addr,
            tls_addr,
            admin_addr,
            controller,
            analysis,
            metrics,
            reloader,
            guard: guard_report,
            shutdown,
            ready,
            threads,
            analysis_thread: Some(analysis_thread),
        })
    }

    /// The diff report as it stands.
    pub fn report(&self) -> crate::report::model::Report {
        crate::report::gather::Sources {
            controller: &self.controller,
            metrics: &self.metrics,
            analysis: &self.analysis,
            guard: &self.guard,
        }
        .report(None)
    }

    /// `/readyz` turns 503 (and the fleet hears this instance is not
    /// ready); everything keeps serving. The first half of a shutdown with
    /// `server.shutdown_delay`.
    pub fn unready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Starts a graceful shutdown; returns at once. `/readyz` turns 503.
    /// Connections and the analysis queue get `server.drain_timeout` each.
    pub fn shutdown(&self) {
        self.ready.store(false, Ordering::SeqCst);
        let drain = self.controller.snapshot().config.server.drain_timeout.get();
        self.analysis.stop_comparing_at(Instant::now() + drain);
        self.shutdown.cancel();
    }

    /// Re-reads the config file and swaps it in.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        self.reloader.reload()
    }

    /// Waits for every thread to finish (after [`Gateway::shutdown`]).
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.analysis_thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
