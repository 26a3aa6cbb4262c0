//! Assembles a running gateway: restores the rollout state, builds the first
//! snapshot, binds every listener (so a bad address fails at once), and
//! starts the worker event loops, the control loop (admin API and guard)
//! and the analysis thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
use crate::rollout::persist::{self, Loaded, RollbackSlot};
use crate::rollout::sink::LiveSink;
use crate::rollout::state::{now_ms, Change, RolloutState};
use crate::shadow::{Dispatcher, ShadowRuntime};
use crate::snapshot::Snapshot;

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

/// The admin listener, bound before anything starts (its address names
/// this instance in a fleet).
fn bind_admin(config: &Config) -> Result<(std::net::TcpListener, SocketAddr), StartError> {
    let addr: SocketAddr = config
        .admin
        .listen
        .parse()
        .map_err(|e| StartError::Setup(format!("admin.listen: {e}")))?;
    let listener = crate::server::bind(addr).map_err(|source| StartError::Bind {
        what: "admin",
        addr: config.admin.listen.clone(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|e| StartError::Setup(e.to_string()))?;
    Ok((listener, addr))
}

fn runtime() -> Result<tokio::runtime::Runtime, StartError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Setup(format!("cannot start an event loop: {e}")))
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
        let (rollout, epoch, rollback_pending) = match &fleet {
            Some(f) => {
                let s = f
                    .start_state(rollout, config.rollout.state_file.as_deref())
                    .map_err(StartError::Setup)?;
                (s.state, s.epoch, s.rollback_pending)
            }
            None => (rollout, 0, false),
        };
        let config = Arc::new(config);
        let snapshot = Snapshot::build(config.clone(), rollout, 0, &metrics).map_err(StartError::Setup)?;
        let cell = Arc::new(crate::snapshot::Published::new(snapshot));
        let mut controller = Controller::new(cell.clone(), metrics.clone(), slot);
        if let Some(f) = &fleet {
            controller = controller.with_store(f.store.clone(), epoch);
        }
        let controller = Arc::new(controller);
        if rollback_pending {
            controller.hold_rollback();
        }
        let ready = Arc::new(AtomicBool::new(false));
        let shutdown = CancellationToken::new();
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
        let capture = match &config.capture {
            Some(c) => Some(
                crate::replay::capture::Capture::start(c, &config.diff.redact_headers, metrics.mirror.captured.clone())
                    .map_err(|e| StartError::Setup(format!("capture.path {}: {e}", c.path.display())))?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            capture,
            shutdown: shutdown.clone(),
            drain: config.server.drain_timeout.get(),
            snapshot: cell.clone(),
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
                Some(pair_tx),
                metrics.clone(),
            ),
            limits: Limits::default(),
        });

        let terminator = config
            .tls
            .as_ref()
            .map(|tls| crate::tls::Terminator::new(tls, Some(metrics.edge.clone())).map(Arc::new))
            .transpose()
            .map_err(StartError::Setup)?;

        let guard_report = Arc::new(Mutex::new(GuardReport::default()));
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
            builder: crate::server::builder(&config.server),
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
            listener: admin_listener,
            admin,
            guard,
            builder: crate::server::builder(&config.server),
            shutdown: shutdown.clone(),
            drain: config.server.drain_timeout.get(),
            workers_done,
            ready: ready.clone(),
        }
        .spawn()?;
        threads.push(control);

        ready.store(true, Ordering::SeqCst);
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
    pub fn shutdown(&self) {
        self.ready.store(false, Ordering::SeqCst);
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

/// The control thread: the admin API and the guard, on an event loop of
/// their own.
struct ControlPlane {
    listener: std::net::TcpListener,
    admin: Arc<AdminState>,
    guard: Guard,
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    shutdown: CancellationToken,
    drain: std::time::Duration,
    /// Cancelled by the last worker out: the admin API outlives the
    /// workers' drain, so `/readyz` can say 503 while requests finish.
    workers_done: CancellationToken,
    ready: Arc<AtomicBool>,
}

impl ControlPlane {
    fn spawn(self) -> Result<JoinHandle<()>, StartError> {
        let rt = runtime()?;
        std::thread::Builder::new()
            .name("switchyard-control".into())
            .spawn(move || {
                let ControlPlane {
                    listener,
                    admin,
                    guard,
                    builder,
                    shutdown,
                    drain,
                    workers_done,
                    ready,
                } = self;
                rt.block_on(async move {
                    tokio::spawn(guard.run(shutdown.clone()));
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
                        builder,
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
struct WorkerCrew {
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    /// `server.max_connections`, across workers and listeners.
    limit: Arc<Semaphore>,
    shutdown: CancellationToken,
    drain: std::time::Duration,
    metrics: Metrics,
    terminator: Option<Arc<crate::tls::Terminator>>,
    /// Workers still serving; the last one out cancels `done`.
    left: Arc<std::sync::atomic::AtomicUsize>,
    done: CancellationToken,
}

impl WorkerCrew {
    /// One worker thread: its own event loop serving its plain and TLS
    /// sockets, then its tunnels' drain.
    fn spawn(
        &self,
        i: usize,
        worker: Arc<Worker>,
        plain: Option<std::net::TcpListener>,
        tls: Option<std::net::TcpListener>,
    ) -> Result<JoinHandle<()>, StartError> {
        let rt = runtime()?;
        let (builder, limit, shutdown, drain, metrics) = (
            self.builder.clone(),
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
                    let listen = |socket, tls| {
                        let worker = worker.clone();
                        crate::server::serve(
                            socket,
                            tls,
                            builder.clone(),
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
                if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                    done.cancel();
                }
            })
            .map_err(|e| StartError::Setup(format!("cannot start worker thread: {e}")))
    }
}

/// Every proxy socket, bound before anything starts so a taken address
/// fails the start at once: one `SO_REUSEPORT` socket per worker and
/// listener.
struct Sockets {
    per_worker: Vec<(Option<std::net::TcpListener>, Option<std::net::TcpListener>)>,
    proxy_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
}

impl Sockets {
    fn bind(config: &Config, workers: usize) -> Result<Self, StartError> {
        let group = |what: &'static str, text: &str| -> Result<Vec<std::net::TcpListener>, StartError> {
            let addr: SocketAddr = text
                .parse()
                .map_err(|e| StartError::Setup(format!("{what}: {text:?}: {e}")))?;
            crate::server::bind_workers(addr, workers).map_err(|source| StartError::Bind {
                what,
                addr: text.to_string(),
                source,
            })
        };
        let first_addr = |group: &Option<Vec<std::net::TcpListener>>| -> Result<Option<SocketAddr>, StartError> {
            group
                .as_ref()
                .map(|g| g[0].local_addr().map_err(|e| StartError::Setup(e.to_string())))
                .transpose()
        };
        let plain = (!config.listen.is_empty())
            .then(|| group("proxy", &config.listen))
            .transpose()?;
        let tls = config.tls.as_ref().map(|t| group("tls", &t.listen)).transpose()?;
        let (plain_addr, tls_addr) = (first_addr(&plain)?, first_addr(&tls)?);
        let proxy_addr = plain_addr
            .or(tls_addr)
            .ok_or_else(|| StartError::Setup("listen: no listener; set listen or tls.listen".into()))?;
        let mut plain = plain.map(Vec::into_iter);
        let mut tls = tls.map(Vec::into_iter);
        let per_worker = (0..workers)
            .map(|_| {
                (
                    plain.as_mut().and_then(Iterator::next),
                    tls.as_mut().and_then(Iterator::next),
                )
            })
            .collect();
        Ok(Self {
            per_worker,
            proxy_addr,
            tls_addr,
        })
    }
}

/// The rollout state to start from, and the rollback slot beside the state
/// file. A state file that cannot be written refuses the start: the first
/// rollback must not be the moment that is found out.
fn restore(config: &Config, opts: &Options) -> Result<(RolloutState, Option<RollbackSlot>), StartError> {
    let initial = RolloutState::initial(config.rollout.percent);
    let Some(path) = &config.rollout.state_file else {
        return Ok((initial, None));
    };
    persist::check_writable(path)?;
    let slot = RollbackSlot::prepare(path)?;
    if opts.reset_state {
        // Saved with a change of its own, so an older rollback in the slot
        // cannot come back at the next restart.
        let mut fresh = initial;
        fresh.last_change = Some(Change {
            who: "switchyard serve --reset-state".into(),
            why: "state reset at start".into(),
            at_ms: now_ms(),
            from_percent: fresh.percent,
            to_percent: fresh.percent,
            from_phase: fresh.phase,
            to_phase: fresh.phase,
        });
        persist::save(path, &fresh)?;
        return Ok((fresh, Some(slot)));
    }
    let state = match persist::load(path)? {
        Some(Loaded { state, from_slot: true }) => {
            tracing::warn!(
                path = %path.display(),
                slot = %persist::slot_path(path).display(),
                "the last run rolled back but could not write the state file; starting rolled back, from the rollback slot"
            );
            if let Err(e) = persist::save(path, &state) {
                tracing::error!(error = %e, "the state file still cannot be written");
            }
            state
        }
        Some(Loaded { state, .. }) => {
            tracing::info!(path = %path.display(), percent = state.percent, phase = state.phase.as_str(), "rollout state restored");
            state
        }
        None => initial,
    };
    Ok((state, Some(slot)))
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
