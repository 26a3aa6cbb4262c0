//! The guard's windows: what each instance served under the rollout's
//! current change, published under its lease as `PREFIX/windows/ID`, and
//! merged by the leader into the fleet's figures. Counts and histograms
//! add exactly; an instance still on an older change is left out, so
//! requests split under the previous percent are never judged as the new.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::etcd::EtcdError;
use super::members::Context;
use crate::compare::Compared;
use crate::rollout::arms::Arm;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub instance: String,
    /// The change (its recorded time) these requests were split under.
    pub change_at_ms: Option<u64>,
    pub old: Arm,
    pub new: Arm,
    /// Mirrored comparisons, when this instance mirrors.
    pub compared: Option<Compared>,
}

impl Window {
    fn minus(&self, base: &Window) -> Window {
        Window {
            instance: self.instance.clone(),
            change_at_ms: self.change_at_ms,
            old: self.old.minus(&base.old),
            new: self.new.minus(&base.new),
            compared: match (&self.compared, &base.compared) {
                (Some(c), Some(b)) => Some(c.minus(b)),
                (c, _) => *c,
            },
        }
    }
}

/// The fleet's figures for one test.
#[derive(Clone, Debug, Default)]
pub struct Merged {
    pub old: Arm,
    pub new: Arm,
    pub compared: Option<Compared>,
    /// Instances counted, and those left out (still on an older change).
    pub counted: Vec<String>,
    pub behind: Vec<String>,
}

/// Adds every window of `change`, less its instance's baseline (what it
/// had when the current test began).
pub fn merge(windows: &[Window], change: Option<u64>, baselines: &HashMap<String, Window>) -> Merged {
    let mut m = Merged::default();
    for w in windows {
        if w.change_at_ms != change {
            m.behind.push(w.instance.clone());
            continue;
        }
        let part = match baselines.get(&w.instance) {
            Some(base) if base.change_at_ms == change => w.minus(base),
            _ => w.clone(),
        };
        m.old.merge(&part.old);
        m.new.merge(&part.new);
        if let Some(c) = part.compared {
            m.compared.get_or_insert_with(Compared::default).merge(&c);
        }
        m.counted.push(w.instance.clone());
    }
    m
}

/// Publishes this instance's window under its lease.
pub async fn publish(ctx: &Context, window: &Window) -> Result<(), EtcdError> {
    let Some(lease) = ctx.live_lease() else {
        return Ok(());
    };
    let value = serde_json::to_vec(window).unwrap_or_default();
    ctx.store
        .etcd
        .put(&ctx.key(&format!("windows/{}", window.instance)), value, lease)
        .await?;
    Ok(())
}

/// Every instance's window as published.
pub async fn gather(ctx: &Context) -> Result<Vec<Window>, EtcdError> {
    let (kvs, _) = ctx.store.etcd.range(&ctx.key("windows/"), true).await?;
    Ok(kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::side::Side;

    fn window(id: &str, change: u64, n: u32) -> Window {
        let mut arms = crate::rollout::arms::Arms::new(std::time::Instant::now());
        for i in 0..n {
            arms.record(
                Side::Old,
                std::time::Instant::now(),
                0.01 + f64::from(i) * 1e-4,
                i % 7 == 0,
            );
            arms.record(Side::New, std::time::Instant::now(), 0.02, i % 5 == 0);
        }
        Window {
            instance: id.into(),
            change_at_ms: Some(change),
            old: arms.old,
            new: arms.new,
            compared: Some(Compared {
                comparisons: u64::from(n),
                real: u64::from(n / 10),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_fleet_is_the_sum_of_instances_on_the_same_change() {
        let ws = [window("a", 7, 100), window("b", 7, 50), window("c", 6, 80)];
        let m = merge(&ws, Some(7), &HashMap::new());
        assert_eq!(m.old.requests, 150);
        assert_eq!(m.new.errors, 20 + 10);
        assert_eq!(m.compared.unwrap().comparisons, 150);
        assert_eq!(m.counted, vec!["a", "b"]);
        assert_eq!(m.behind, vec!["c"], "an instance on an older change is left out");
        // A test begun later counts only what came after its baseline.
        let base: HashMap<_, _> = [("a".to_string(), window("a", 7, 40))].into();
        let later = merge(&ws, Some(7), &base);
        assert_eq!(later.old.requests, 150 - 40);
        assert_eq!(later.compared.unwrap().comparisons, 150 - 40);
    }
}
