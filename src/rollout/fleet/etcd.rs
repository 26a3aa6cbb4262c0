//! The slice of etcd's v3 API the fleet uses: ranges, transactions, leases
//! and watches, over one gRPC channel balanced across the endpoints.
//!
//! The client code is generated from etcd's own `.proto` files (build.rs).
//! Every unary call carries its own deadline (`dial_timeout`); watch and
//! keep-alive streams carry none, and HTTP/2 keep-alive pings find a dead
//! peer under them. With `username`, a token from `Authenticate` rides on
//! every call and is fetched again when etcd says it expired.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use crate::config::EtcdConfig;

#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod proto {
    pub mod etcdserverpb {
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    }
    pub mod mvccpb {
        include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
    }
    pub mod authpb {
        include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
    }
}

use proto::etcdserverpb as pb;
pub use proto::mvccpb::{event::EventType, Event, KeyValue};

/// What went wrong talking to etcd, said so that an operator can act.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("{0}")]
    Setup(String),
    #[error("etcd at {endpoints} did not answer {call}: {status}")]
    Call {
        endpoints: String,
        call: &'static str,
        status: Box<Status>,
    },
    #[error("etcd at {endpoints}: {what}")]
    Protocol { endpoints: String, what: String },
}

#[derive(Clone)]
pub struct Etcd {
    channel: Channel,
    endpoints: Arc<str>,
    timeout: Duration,
    credentials: Option<Arc<(String, String)>>,
    token: Arc<Mutex<Option<MetadataValue<tonic::metadata::Ascii>>>>,
}

/// A transaction's comparison, as the fleet uses them.
pub enum Compare {
    /// The key's last modification is at this revision (0: it does not exist).
    ModRevision(String, i64),
    /// The key was created at this revision (0: it does not exist).
    CreateRevision(String, i64),
}

pub enum Op {
    Put { key: String, value: Vec<u8>, lease: i64 },
    Get(String),
    Delete(String),
}

pub struct TxnOutcome {
    pub succeeded: bool,
    pub revision: i64,
    /// What the `Get`s of the branch taken found.
    pub found: Vec<KeyValue>,
}

/// Watch events as they come, with the revision the stream has reached.
pub struct Watch {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
}

pub enum WatchEvent {
    Events {
        revision: i64,
        events: Vec<Event>,
    },
    /// Nothing changed up to `revision` (an answer to `request_progress`).
    Progress {
        revision: i64,
    },
    /// Events were compacted away: re-read everything from `revision` on.
    Compacted {
        revision: i64,
    },
}

impl Etcd {
    /// A client for `cfg`'s endpoints; connects lazily, so a cluster that
    /// is down at start is not an error here (the first call says it).
    pub fn new(cfg: &EtcdConfig) -> Result<Etcd, EtcdError> {
        let timeout = cfg.dial_timeout.get();
        let tls = tls_config(cfg)?;
        let mut endpoints = Vec::new();
        for url in &cfg.endpoints {
            let mut e = Endpoint::from_shared(url.clone())
                .map_err(|e| EtcdError::Setup(format!("rollout.store.etcd.endpoints: {url:?}: {e}")))?
                .connect_timeout(timeout)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true);
            if url.starts_with("https://") {
                e = e
                    .tls_config(
                        tls.clone()
                            .unwrap_or_else(|| ClientTlsConfig::new().with_native_roots()),
                    )
                    .map_err(|e| EtcdError::Setup(format!("rollout.store.etcd TLS for {url}: {e}")))?;
            }
            endpoints.push(e);
        }
        let channel = Channel::balance_list(endpoints.into_iter());
        let credentials = match (&cfg.username, &cfg.password_file) {
            (Some(user), Some(file)) => {
                let password = std::fs::read_to_string(file).map_err(|e| {
                    EtcdError::Setup(format!("rollout.store.etcd.password_file {}: {e}", file.display()))
                })?;
                Some(Arc::new((user.clone(), password.trim().to_string())))
            }
            _ => None,
        };
        Ok(Etcd {
            channel,
            endpoints: cfg.endpoints.join(",").into(),
            timeout,
            credentials,
            token: Arc::new(Mutex::new(None)),
        })
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    fn failed(&self, call: &'static str, status: Status) -> EtcdError {
        EtcdError::Call {
            endpoints: self.endpoints.to_string(),
            call,
            status: Box::new(status),
        }
    }

    /// A request with the deadline and, with credentials, the token.
    async fn request<T>(&self, msg: T, deadline: bool) -> Result<Request<T>, EtcdError> {
        let mut req = Request::new(msg);
        if deadline {
            req.set_timeout(self.timeout);
        }
        if let Some(token) = self.token().await? {
            req.metadata_mut().insert("token", token);
        }
        Ok(req)
    }

    async fn token(&self) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, EtcdError> {
        let Some(creds) = &self.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(Some(t));
        }
        let mut auth = pb::auth_client::AuthClient::new(self.channel.clone());
        let mut req = Request::new(pb::AuthenticateRequest {
            name: creds.0.clone(),
            password: creds.1.clone(),
        });
        req.set_timeout(self.timeout);
        let token = auth
            .authenticate(req)
            .await
            .map_err(|s| self.failed("Authenticate", s))?
            .into_inner()
            .token;
        let value: MetadataValue<tonic::metadata::Ascii> = token.parse().map_err(|_| EtcdError::Protocol {
            endpoints: self.endpoints.to_string(),
            what: "Authenticate returned a token that is not ASCII".into(),
        })?;
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(value.clone());
        Ok(Some(value))
    }

    /// Forgets an expired token, so the next call authenticates again.
    fn check(&self, call: &'static str, status: Status) -> EtcdError {
        if status.code() == Code::Unauthenticated || status.message().contains("invalid auth token") {
            *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.failed(call, status)
    }

    /// Every key under `prefix` (or the one key), and the store's revision.
    pub async fn range(&self, key: &str, prefix: bool) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let mut kv = pb::kv_client::KvClient::new(self.channel.clone());
        let range_end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
        let req = self
            .request(
                pb::RangeRequest {
                    key: key.as_bytes().to_vec(),
                    range_end,
                    ..Default::default()
                },
                true,
            )
            .await?;
        let r = kv.range(req).await.map_err(|s| self.check("Range", s))?.into_inner();
        Ok((r.kvs, r.header.map_or(0, |h| h.revision)))
    }

    /// One transaction: if every comparison holds, `then`, else `otherwise`.
    pub async fn txn(&self, when: Vec<Compare>, then: Vec<Op>, otherwise: Vec<Op>) -> Result<TxnOutcome, EtcdError> {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let compare = when
            .into_iter()
            .map(|c| {
                let (key, target, union) = match c {
                    Compare::ModRevision(k, r) => (k, CompareTarget::Mod, TargetUnion::ModRevision(r)),
                    Compare::CreateRevision(k, r) => (k, CompareTarget::Create, TargetUnion::CreateRevision(r)),
                };
                pb::Compare {
                    result: CompareResult::Equal as i32,
                    target: target as i32,
                    key: key.into_bytes(),
                    range_end: Vec::new(),
                    target_union: Some(union),
                }
            })
            .collect();
        let ops = |ops: Vec<Op>| -> Vec<pb::RequestOp> {
            ops.into_iter()
                .map(|op| pb::RequestOp {
                    request: Some(match op {
                        Op::Put { key, value, lease } => pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: key.into_bytes(),
                            value,
                            lease,
                            ..Default::default()
                        }),
                        Op::Get(key) => pb::request_op::Request::RequestRange(pb::RangeRequest {
                            key: key.into_bytes(),
                            ..Default::default()
                        }),
                        Op::Delete(key) => pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                            key: key.into_bytes(),
                            ..Default::default()
                        }),
                    }),
                })
                .collect()
        };
        let mut kv = pb::kv_client::KvClient::new(self.channel.clone());
        let req = self
            .request(
                pb::TxnRequest {
                    compare,
                    success: ops(then),
                    failure: ops(otherwise),
                },
                true,
            )
            .await?;
        let r = kv.txn(req).await.map_err(|s| self.check("Txn", s))?.into_inner();
        let found = r
            .responses
            .into_iter()
            .filter_map(|op| match op.response {
                Some(pb::response_op::Response::ResponseRange(range)) => Some(range.kvs),
                _ => None,
            })
            .flatten()
            .collect();
        Ok(TxnOutcome {
            succeeded: r.succeeded,
            revision: r.header.map_or(0, |h| h.revision),
            found,
        })
    }

    pub async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<i64, EtcdError> {
        let mut kv = pb::kv_client::KvClient::new(self.channel.clone());
        let req = self
            .request(
                pb::PutRequest {
                    key: key.as_bytes().to_vec(),
                    value,
                    lease,
                    ..Default::default()
                },
                true,
            )
            .await?;
        let r = kv.put(req).await.map_err(|s| self.check("Put", s))?.into_inner();
        Ok(r.header.map_or(0, |h| h.revision))
    }

    /// A lease of `ttl`; its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let mut lease = pb::lease_client::LeaseClient::new(self.channel.clone());
        let req = self
            .request(
                pb::LeaseGrantRequest {
                    ttl: ttl.as_secs() as i64,
                    id: 0,
                },
                true,
            )
            .await?;
        let r = lease
            .lease_grant(req)
            .await
            .map_err(|s| self.check("LeaseGrant", s))?
            .into_inner();
        if !r.error.is_empty() {
            return Err(EtcdError::Protocol {
                endpoints: self.endpoints.to_string(),
                what: format!("LeaseGrant: {}", r.error),
            });
        }
        Ok(r.id)
    }

    /// Renews `lease` once; the seconds it has left (0: it is gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let mut client = pb::lease_client::LeaseClient::new(self.channel.clone());
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(pb::LeaseKeepAliveRequest { id: lease });
        let mut req = self.request(ReceiverStream::new(rx), false).await?;
        req.set_timeout(self.timeout);
        let mut answers = client
            .lease_keep_alive(req)
            .await
            .map_err(|s| self.check("LeaseKeepAlive", s))?
            .into_inner();
        let answer = tokio::time::timeout(self.timeout, answers.message())
            .await
            .map_err(|_| self.failed("LeaseKeepAlive", Status::deadline_exceeded("no answer in time")))?
            .map_err(|s| self.check("LeaseKeepAlive", s))?;
        drop(tx);
        Ok(answer.map_or(0, |a| a.ttl))
    }

    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        let mut client = pb::lease_client::LeaseClient::new(self.channel.clone());
        let req = self.request(pb::LeaseRevokeRequest { id: lease }, true).await?;
        client
            .lease_revoke(req)
            .await
            .map_err(|s| self.check("LeaseRevoke", s))?;
        Ok(())
    }

    /// Watches every key under `prefix` from `start` on, with progress
    /// notifications.
    pub async fn watch(&self, prefix: &str, start: i64) -> Result<Watch, EtcdError> {
        let mut client = pb::watch_client::WatchClient::new(self.channel.clone());
        let (tx, rx) = mpsc::channel(4);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                start_revision: start,
                progress_notify: true,
                ..Default::default()
            })),
        };
        let _ = tx.try_send(create);
        let req = self.request(ReceiverStream::new(rx), false).await?;
        let mut responses = client
            .watch(req)
            .await
            .map_err(|s| self.check("Watch", s))?
            .into_inner();
        // The first answer confirms the watch was created.
        match tokio::time::timeout(self.timeout, responses.message()).await {
            Ok(Ok(Some(r))) if r.created && !r.canceled => {}
            Ok(Ok(Some(r))) if r.compact_revision > 0 => {
                return Err(EtcdError::Protocol {
                    endpoints: self.endpoints.to_string(),
                    what: format!("watch from revision {start} is compacted (at {})", r.compact_revision),
                })
            }
            Ok(Ok(Some(r))) => {
                return Err(EtcdError::Protocol {
                    endpoints: self.endpoints.to_string(),
                    what: format!("watch not created: {}", r.cancel_reason),
                })
            }
            Ok(Ok(None)) => {
                return Err(EtcdError::Protocol {
                    endpoints: self.endpoints.to_string(),
                    what: "the watch stream closed at once".into(),
                })
            }
            Ok(Err(s)) => return Err(self.check("Watch", s)),
            Err(_) => return Err(self.failed("Watch", Status::deadline_exceeded("no answer in time"))),
        }
        Ok(Watch {
            requests: tx,
            responses,
        })
    }
}

impl Watch {
    /// Asks etcd for a progress notification (answered as `Progress`).
    pub fn request_progress(&self) {
        let _ = self.requests.try_send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        });
    }

    /// The next answer; `Ok(None)` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, Status> {
        let Some(r) = self.responses.message().await? else {
            return Ok(None);
        };
        let revision = r.header.as_ref().map_or(0, |h| h.revision);
        if r.compact_revision > 0 {
            return Ok(Some(WatchEvent::Compacted {
                revision: r.compact_revision,
            }));
        }
        if r.canceled {
            return Err(Status::cancelled(format!(
                "etcd cancelled the watch: {}",
                r.cancel_reason
            )));
        }
        if r.events.is_empty() {
            return Ok(Some(WatchEvent::Progress { revision }));
        }
        Ok(Some(WatchEvent::Events {
            revision,
            events: r.events,
        }))
    }
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn tls_config(cfg: &EtcdConfig) -> Result<Option<ClientTlsConfig>, EtcdError> {
    let read = |key: &str, p: &std::path::Path| {
        std::fs::read(p).map_err(|e| EtcdError::Setup(format!("rollout.store.etcd.{key} {}: {e}", p.display())))
    };
    if cfg.ca_file.is_none() && cfg.cert_file.is_none() {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new();
    match &cfg.ca_file {
        Some(ca) => tls = tls.ca_certificate(Certificate::from_pem(read("ca_file", ca)?)),
        None => tls = tls.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
        tls = tls.identity(Identity::from_pem(read("cert_file", cert)?, read("key_file", key)?));
    }
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(super::prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(super::prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(super::prefix_end(b"\xff"), vec![0]);
    }
}
