//! `server.watch_config: true`: reload when the config file's content
//! changes, as SIGHUP does (same validation; a rejected file leaves the
//! running config in force and is tried again only once it changes again).
//!
//! Polled, not `inotify`: a Kubernetes ConfigMap update swaps a symlink two
//! levels up (`..data`), which file watches on the path itself miss; one
//! read of a small file a second costs nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::state::Reloader;

const EVERY: Duration = Duration::from_secs(1);

pub async fn run(reloader: Reloader, shutdown: CancellationToken) {
    let Some(path) = reloader.path().map(|p| p.to_path_buf()) else {
        return;
    };
    let mut seen = std::fs::read(&path).ok();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !reloader.watching() {
            continue;
        }
        let now = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            // Mid-swap, or gone: nothing to load; the next tick looks again.
            Err(_) => continue,
        };
        if now == seen {
            continue;
        }
        seen = now;
        tracing::info!(path = %path.display(), "the config file changed: reloading (server.watch_config)");
        if reloader.reload().is_ok() {
            tracing::info!("config reloaded");
        }
    }
}
