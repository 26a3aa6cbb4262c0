//! Logging setup: `tracing` with a filter from the config (overridable by
//! `RUST_LOG`), as text or one JSON object per line, written to stderr by
//! background threads.
//!
//! A worker never waits for the log: each line is handed to a bounded queue
//! and written by its own thread; when stderr is slow or blocked (a full
//! pipe, a stuck collector) lines are dropped and counted
//! (`switchyard_log_lines_dropped_total`), never the event loop stalled. The
//! access log has a queue of its own, so a flood of requests cannot push
//! warnings and errors out, and each worker hands its access lines over in
//! batches ([`batches`]). `logging.level` filters the log, not the access
//! log: `access_log: true` writes a line per request at any level.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LoggingConfig};

mod access_line;
mod batches;

pub use batches::{flush as flush_access_lines, gather_on_this_thread as gather_access_lines};

/// The target of access log lines.
pub const ACCESS: &str = "switchyard::access";

/// Lines queued before new ones are dropped.
const LOG_QUEUE: usize = 16_384;

/// Lines each sink dropped: the log's (counted by its writer) and the
/// access log's.
static DROPS: OnceLock<(ErrorCounter, Arc<AtomicU64>)> = OnceLock::new();

/// Keeps the log writers running; dropping it flushes what is queued (up to
/// about a second each). Hold it until the process is done.
pub struct LogGuard {
    _log: WorkerGuard,
    _access: batches::AccessGuard,
}

/// Installs the global subscriber. `None` when one is installed already
/// (tests start several gateways in one process; the first wins).
pub fn init(cfg: &LoggingConfig) -> Option<LogGuard> {
    if DROPS.get().is_some() {
        return None;
    }
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info")));
    // The writer thread drains its queue into a buffer and flushes when the
    // queue is empty: a busy log is written many lines per system call.
    let (log_writer, log_guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE)
        .thread_name("switchyard-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let (access_sink, access_guard) = match batches::AccessSink::start(std::io::stderr(), "switchyard-access-log") {
        Ok(started) => started,
        Err(e) => {
            eprintln!("error: cannot start the access log's writer thread: {e}");
            return None;
        }
    };
    let counters = (log_writer.error_counter(), access_sink.dropped());
    let json = cfg.format == LogFormat::Json;
    // The access sink is there even with `access_log: false`: a reload may
    // turn it on, and the request path decides per request whether to log.
    Registry::default()
        .with(sink(log_writer, json, filter))
        .with(
            access_line::AccessLines {
                sink: access_sink,
                json,
            }
            .with_filter(filter_fn(|m| m.target() == ACCESS)),
        )
        .try_init()
        .ok()?;
    let _ = DROPS.set(counters);
    Some(LogGuard {
        _log: log_guard,
        _access: access_guard,
    })
}

/// The log's layer: every line but the access log's, at the configured level.
fn sink<S>(writer: NonBlocking, json: bool, level: EnvFilter) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = if json {
        fmt.json().flatten_event(true).with_current_span(false).boxed()
    } else {
        fmt.boxed()
    };
    fmt.with_filter(filter_fn(|m| m.target() != ACCESS))
        .with_filter(level)
        .boxed()
}

/// Lines each sink has dropped so far (`log`, `access`); empty before
/// [`init`].
pub fn dropped_lines() -> Vec<(&'static str, u64)> {
    DROPS
        .get()
        .map(|(log, access)| {
            vec![
                ("log", log.dropped_lines() as u64),
                ("access", access.load(Ordering::Relaxed)),
            ]
        })
        .unwrap_or_default()
}
