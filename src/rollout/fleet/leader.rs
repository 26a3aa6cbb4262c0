//! Which instance runs the fleet's guard: the one holding `PREFIX/leader`,
//! a key created under its lease. A dead leader's lease lapses, etcd
//! deletes the key, every instance hears it and campaigns at once, so the
//! guard moves within the lease's TTL.
//!
//! A leader that lost touch with etcd still believes it leads until it
//! learns otherwise, so leadership here lasts only while the lease was
//! confirmed within its TTL, and every change the guard makes is a
//! transaction fenced on the key's creation revision: a deposed leader's
//! write is refused by etcd itself.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::etcd::{Compare, Op};
use super::members::Context;

pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            set(&ctx, None);
            return;
        }
        let ttl = ctx.ttl();
        match ctx.live_lease() {
            None => set(&ctx, None),
            Some(lease) => {
                let key = ctx.key("leader");
                let id = ctx.view.id();
                let out = ctx
                    .store
                    .etcd
                    .txn(
                        vec![Compare::CreateRevision(key.clone(), 0)],
                        vec![Op::Put {
                            key: key.clone(),
                            value: id.clone().into_bytes(),
                            lease,
                        }],
                        vec![Op::Get(key)],
                    )
                    .await;
                match out {
                    Ok(o) if o.succeeded => {
                        tracing::info!(target: "switchyard::fleet", instance = %id, "this instance now runs the fleet's guard");
                        set(&ctx, Some(o.revision));
                    }
                    Ok(o) => {
                        let mine = o
                            .found
                            .first()
                            .filter(|kv| kv.value == id.as_bytes() && kv.lease == lease)
                            .map(|kv| kv.create_revision);
                        set(&ctx, mine);
                        if let Some(kv) = o.found.first() {
                            let leader = String::from_utf8_lossy(&kv.value).to_string();
                            ctx.view.write(|v| v.leader = Some(leader));
                        }
                    }
                    Err(e) => {
                        ctx.down(&e);
                        set(&ctx, None);
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = ctx.leader_gone.notified() => {}
            _ = tokio::time::sleep((ttl / 3).max(Duration::from_millis(200))) => {}
        }
    }
}

fn set(ctx: &Context, revision: Option<i64>) {
    let was = std::mem::replace(&mut *ctx.leadership.lock().unwrap_or_else(|p| p.into_inner()), revision);
    let leading = revision.is_some();
    ctx.view.write(|v| v.leading = leading);
    ctx.metrics.fleet.leader.set(i64::from(leading));
    if was.is_some() && !leading {
        tracing::warn!(target: "switchyard::fleet", "this instance no longer runs the fleet's guard");
    }
}
