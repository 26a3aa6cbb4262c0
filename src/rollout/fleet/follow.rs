//! Every instance follows the store: one read of the whole prefix, then a
//! watch from the revision after it, applying each change with one
//! snapshot swap.
//!
//! Watches neither reconnect nor always say when they died, so this loop
//! owns that: a silent stream is asked for progress and dropped when it
//! does not answer; a stream that ends, errs or reports compaction (the
//! events in between are gone) leads to a fresh read and a new watch from
//! the revision of that read, never from "now", which would leave a gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::etcd::{Event, EventType, KeyValue, WatchEvent};
use super::members::{converge, Context};
use super::view::Member;
use crate::rollout::checks::GuardReport;

/// A watch this long without a word is asked for progress.
const QUIET: Duration = Duration::from_secs(3);

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let prefix = format!("{}/", ctx.store.prefix);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let (kvs, revision) = match ctx.store.etcd.range(&prefix, true).await {
            Ok(r) => r,
            Err(e) => {
                ctx.down(&e);
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        ctx.up();
        reread(&ctx, &kvs).await;
        let mut watch = match ctx.store.etcd.watch(&prefix, revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                ctx.down(&e);
                backoff.wait(&shutdown).await;
                continue;
            }
        };
        backoff.reset();
        let timeout = ctx.store.etcd.timeout();
        let mut heard = Instant::now();
        let mut asked: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = watch.next() => match next {
                    Ok(Some(WatchEvent::Events { events, .. })) => {
                        heard = Instant::now();
                        asked = None;
                        ctx.up();
                        for e in &events {
                            apply(&ctx, e).await;
                        }
                    }
                    Ok(Some(WatchEvent::Progress { .. })) => {
                        heard = Instant::now();
                        asked = None;
                        ctx.up();
                    }
                    Ok(Some(WatchEvent::Compacted { revision })) => {
                        tracing::warn!(target: "switchyard::fleet", revision, "the store compacted events this instance had not seen; reading the rollout afresh");
                        break;
                    }
                    Ok(None) => {
                        ctx.down(&"the watch on the fleet store ended");
                        break;
                    }
                    Err(status) => {
                        ctx.down(&format!("the watch on the fleet store failed: {status}"));
                        break;
                    }
                },
                _ = tick.tick() => {
                    match asked {
                        None if heard.elapsed() >= QUIET => {
                            watch.request_progress();
                            asked = Some(Instant::now());
                        }
                        Some(at) if at.elapsed() >= timeout => {
                            ctx.down(&format!("the watch on the fleet store went silent (no answer to a progress request in {timeout:?})"));
                            break;
                        }
                        _ => {}
                    }
                }
            }
        }
        backoff.wait(&shutdown).await;
    }
}

/// Replaces what this instance knows with a fresh read of the prefix.
async fn reread(ctx: &Context, kvs: &[KeyValue]) {
    let rollout = ctx.store.key();
    ctx.view.write(|v| {
        v.members.clear();
        v.leader = None;
        v.guard = None;
    });
    let mut saw_rollout = false;
    for kv in kvs {
        saw_rollout |= kv.key == rollout.as_bytes();
        put(ctx, kv).await;
    }
    if !saw_rollout {
        recreate(ctx).await;
    }
    if ctx.view.read(|v| v.leader.is_none()) {
        ctx.leader_gone.notify_one();
    }
    converge(ctx);
}

async fn apply(ctx: &Context, e: &Event) {
    let Some(kv) = &e.kv else { return };
    if e.r#type == EventType::Delete as i32 {
        delete(ctx, kv).await;
    } else {
        put(ctx, kv).await;
    }
}

async fn put(ctx: &Context, kv: &KeyValue) {
    let key = String::from_utf8_lossy(&kv.key);
    let Some(rest) = key.strip_prefix(&format!("{}/", ctx.store.prefix)) else {
        return;
    };
    if rest == "rollout" {
        match ctx.store.decode(kv) {
            Ok((state, epoch)) => {
                if ctx.controller.apply_remote(state, epoch) {
                    converge(ctx);
                }
            }
            Err(e) => {
                tracing::error!(target: "switchyard::fleet", error = %e, "ignoring a rollout state this version cannot read; fix the key or roll back")
            }
        }
    } else if let Some(id) = rest.strip_prefix("instances/") {
        match serde_json::from_slice::<Member>(&kv.value) {
            Ok(m) => {
                let joined = ctx.view.write(|v| v.members.insert(m.id.clone(), m.clone()).is_none());
                if joined {
                    tracing::info!(target: "switchyard::fleet", instance = %m.id, admin = %m.admin, epoch = m.epoch, "an instance joined the fleet");
                }
                converge(ctx);
            }
            Err(e) => {
                tracing::warn!(target: "switchyard::fleet", instance = %id, error = %e, "ignoring an instance record this version cannot read")
            }
        }
    } else if rest == "leader" {
        let leader = String::from_utf8_lossy(&kv.value).to_string();
        ctx.view.write(|v| v.leader = Some(leader));
    } else if rest == "guard" {
        if let Ok(report) = serde_json::from_slice::<GuardReport>(&kv.value) {
            ctx.view.write(|v| v.guard = Some(report));
        }
    }
}

async fn delete(ctx: &Context, kv: &KeyValue) {
    let key = String::from_utf8_lossy(&kv.key);
    let Some(rest) = key.strip_prefix(&format!("{}/", ctx.store.prefix)) else {
        return;
    };
    if rest == "rollout" {
        tracing::warn!(target: "switchyard::fleet", key = %key, "the rollout key was deleted from the store; writing this instance's state back");
        recreate(ctx).await;
    } else if let Some(id) = rest.strip_prefix("instances/") {
        if ctx.view.write(|v| v.members.remove(id).is_some()) {
            tracing::info!(target: "switchyard::fleet", instance = %id, "an instance left the fleet");
        }
        converge(ctx);
    } else if rest == "leader" {
        ctx.view.write(|v| v.leader = None);
        ctx.leader_gone.notify_one();
    } else if rest == "guard" {
        ctx.view.write(|v| v.guard = None);
    }
}

/// The store has no rollout: it gets this instance's.
async fn recreate(ctx: &Context) {
    let state = ctx.controller.state();
    match ctx.store.cas(0, &state, None).await {
        Ok(super::store::Cas::Done(epoch)) => {
            ctx.controller.apply_remote(state, epoch);
        }
        Ok(super::store::Cas::Lost { state, epoch }) => {
            ctx.controller.apply_remote(*state, epoch);
        }
        Err(e) => ctx.down(&e),
    }
}
