//! The rollout record on etcd: `PREFIX/rollout` holds the state as JSON,
//! and the key's modification revision is the state's epoch. Every change
//! is a transaction on the epoch it was computed from, so a change made
//! from a stale view loses (409) instead of overwriting a newer one.

use super::etcd::{Compare, Etcd, EtcdError, KeyValue, Op};
use crate::rollout::state::RolloutState;

/// What a compare-and-set came to.
pub enum Cas {
    /// Written: the new state's epoch.
    Done(u64),
    /// Someone changed the rollout first: what it is now.
    Lost { state: Box<RolloutState>, epoch: u64 },
}

#[derive(Clone)]
pub struct RolloutStore {
    pub etcd: Etcd,
    pub prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("{key} in etcd does not hold a rollout state this version reads: {error}")]
    Unreadable { key: String, error: String },
}

impl RolloutStore {
    pub fn key(&self) -> String {
        format!("{}/rollout", self.prefix)
    }

    pub fn decode(&self, kv: &KeyValue) -> Result<(RolloutState, u64), StoreError> {
        let state = serde_json::from_slice(&kv.value).map_err(|e| StoreError::Unreadable {
            key: self.key(),
            error: e.to_string(),
        })?;
        Ok((state, kv.mod_revision as u64))
    }

    /// The stored state and its epoch; `None` before any instance wrote one.
    pub async fn load(&self) -> Result<Option<(RolloutState, u64)>, StoreError> {
        let (kvs, _) = self.etcd.range(&self.key(), false).await?;
        kvs.first().map(|kv| self.decode(kv)).transpose()
    }

    /// Writes `next` if the stored state is still at `epoch` (0: absent),
    /// and, with `fence`, only while that key was created at that revision
    /// (the guard's leadership).
    pub async fn cas(&self, epoch: u64, next: &RolloutState, fence: Option<(&str, i64)>) -> Result<Cas, StoreError> {
        let key = self.key();
        let value = serde_json::to_vec(next).map_err(|e| StoreError::Unreadable {
            key: key.clone(),
            error: e.to_string(),
        })?;
        let mut when = vec![Compare::ModRevision(key.clone(), epoch as i64)];
        if let Some((leader_key, rev)) = fence {
            when.push(Compare::CreateRevision(leader_key.to_string(), rev));
        }
        let out = self
            .etcd
            .txn(
                when,
                vec![Op::Put {
                    key: key.clone(),
                    value,
                    lease: 0,
                }],
                vec![Op::Get(key)],
            )
            .await?;
        if out.succeeded {
            return Ok(Cas::Done(out.revision as u64));
        }
        match out.found.first() {
            Some(kv) => {
                let (state, epoch) = self.decode(kv)?;
                Ok(Cas::Lost {
                    state: Box::new(state),
                    epoch,
                })
            }
            // Lost to the fence (no longer the leader), or the key was
            // deleted by hand: nothing to adopt.
            None => Err(StoreError::Etcd(EtcdError::Protocol {
                endpoints: self.etcd.endpoints().to_string(),
                what: format!(
                    "the transaction on {} was refused and the key is gone or the guard's leadership lapsed",
                    self.key()
                ),
            })),
        }
    }
}
