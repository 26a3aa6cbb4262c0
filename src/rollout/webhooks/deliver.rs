//! Sending to hooks: one HTTP client for all of them, the notifications'
//! bounded queue, each hook's own ordered queue and task (retries with
//! backoff), and the gates' calls.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use prometheus::IntCounterVec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{message, GateState, Links, Notice, Waiting};
use crate::config::{WebhookConfig, WebhookEvent};
use crate::rollout::state::{now_ms, Change, RolloutState};
use crate::snapshot::SnapshotCell;

/// Notifications waiting for delivery; beyond it they are dropped, counted.
const QUEUE: usize = 256;
/// Notifications waiting for one hook (it is slow or down) before more
/// are dropped.
const HOOK_QUEUE: usize = 64;
/// Attempts per delivery, and the wait before the second (doubling).
const ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Whether a hook of the running config is reached over TLS.
fn any_https(cell: &SnapshotCell) -> bool {
    cell.load()
        .config
        .rollout
        .webhooks
        .iter()
        .any(|h| h.url.starts_with("https://"))
}

type HookClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Webhooks {
    client: OnceLock<HookClient>,
    tx: mpsc::Sender<Notice>,
    cell: SnapshotCell,
    deliveries: IntCounterVec,
    gateway: String,
    links: Links,
    /// What the guard last judged: every notice carries its checks.
    guard: Arc<std::sync::Mutex<crate::rollout::checks::GuardReport>>,
    /// The gate the plan waits on, if any.
    pub gates: GateState,
}

impl Webhooks {
    /// The hooks of the running config; `admin` is where `/status` and
    /// `/report` are reached (for the links in messages).
    pub fn new(
        cell: SnapshotCell,
        deliveries: IntCounterVec,
        gateway: String,
        admin: String,
        guard: Arc<std::sync::Mutex<crate::rollout::checks::GuardReport>>,
    ) -> Result<(Arc<Webhooks>, mpsc::Receiver<Notice>), String> {
        let client = OnceLock::new();
        // Built at start when a hook needs TLS, so that a missing trust
        // store is said at once; otherwise at the first delivery: reading
        // the system's roots takes milliseconds a gateway without hooks
        // (most) never needs.
        if any_https(&cell) {
            let _ = client.set(Self::build_client(&cell)?);
        }
        for hook in &cell.load().config.rollout.webhooks {
            for result in ["delivered", "failed", "dropped"] {
                deliveries.with_label_values(&[hook.name.as_str(), result]);
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        Ok((
            Arc::new(Webhooks {
                client,
                tx,
                cell,
                deliveries,
                links: Links {
                    status: format!("{admin}/status"),
                    report: format!("{admin}/report"),
                },
                gateway,
                guard,
                gates: GateState::default(),
            }),
            rx,
        ))
    }

    /// One client for every hook; HTTPS verified against the system's roots.
    fn build_client(cell: &SnapshotCell) -> Result<HookClient, String> {
        let trust = crate::tls::backend::Trust {
            ca_file: None,
            server_name: None,
            client_cert_file: None,
            client_key_file: None,
            insecure_skip_verify: false,
        };
        // No trusted roots on this system is no reason not to start: only
        // an https:// hook needs them, and its deliveries then say why.
        let tls = match crate::tls::backend::client_config("rollout.webhooks", trust, &[]) {
            Ok(tls) => tls,
            Err(e) => {
                if any_https(cell) {
                    tracing::warn!(target: "switchyard::webhooks", error = %e, "https:// webhooks cannot be verified: their calls will fail");
                }
                crate::tls::backend::unused()?
            }
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
    }

    /// The client, built on first use when no hook needed it at start.
    fn client(&self) -> Result<&HookClient, String> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let built = Self::build_client(&self.cell)?;
        Ok(self.client.get_or_init(|| built))
    }

    fn hooks(&self, event: WebhookEvent) -> Vec<WebhookConfig> {
        let snap = self.cell.load();
        snap.config
            .rollout
            .webhooks
            .iter()
            .filter(|h| {
                // `changed` hears every change; the others only their own.
                h.events.contains(&event) || (is_change(event) && h.events.contains(&WebhookEvent::Changed))
            })
            .cloned()
            .collect()
    }

    /// Whether any hook gates `event`.
    pub fn gates_on(&self, event: WebhookEvent) -> bool {
        self.cell
            .load()
            .config
            .rollout
            .webhooks
            .iter()
            .any(|h| h.events.contains(&event))
    }

    /// The notice of `event` about `change`, with the guard's checks.
    pub fn notice(&self, event: WebhookEvent, change: &Change) -> Notice {
        let checks =
            serde_json::to_value(&self.guard.lock().unwrap_or_else(|p| p.into_inner()).checks).unwrap_or_default();
        Notice {
            event: event.as_str(),
            gateway: self.gateway.clone(),
            from: change.from_percent,
            to: change.to_percent,
            phase: change.to_phase,
            who: change.who.clone(),
            why: change.why.clone(),
            at: change.at_ms,
            checks,
            links: self.links.clone(),
        }
    }

    /// Queues a notification; never waits.
    pub fn notify(&self, notice: Notice) {
        let event = notice.event;
        if self.cell.load().config.rollout.webhooks.is_empty() {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(n)) = self.tx.try_send(notice) {
            for hook in self.hooks(parse_event(n.event)) {
                self.deliveries
                    .with_label_values(&[hook.name.as_str(), "dropped"])
                    .inc();
            }
            tracing::warn!(target: "switchyard::webhooks", event, "webhook queue full: notification dropped");
        }
    }

    /// Delivers queued notifications until `shutdown`: each hook in the
    /// order the changes happened (a queue and a task of its own), hooks
    /// independently of each other (a slow one holds back only itself).
    pub async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Notice>, shutdown: CancellationToken) {
        let mut per_hook: HashMap<String, mpsc::Sender<Notice>> = HashMap::new();
        loop {
            let notice = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = rx.recv() => match n { Some(n) => n, None => return },
            };
            for hook in self.hooks(parse_event(notice.event)) {
                let queue = per_hook.entry(hook.name.clone()).or_insert_with(|| {
                    let (tx, mut hook_rx) = mpsc::channel::<Notice>(HOOK_QUEUE);
                    let (me, name, stop) = (self.clone(), hook.name.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        loop {
                            let n = tokio::select! {
                                _ = stop.cancelled() => return,
                                n = hook_rx.recv() => match n { Some(n) => n, None => return },
                            };
                            // The hook as configured now (a reload may change it).
                            let now = me
                                .cell
                                .load()
                                .config
                                .rollout
                                .webhooks
                                .iter()
                                .find(|h| h.name == name)
                                .cloned();
                            if let Some(hook) = now {
                                me.deliver(&hook, &n).await;
                            }
                        }
                    });
                    tx
                });
                if queue.try_send(notice.clone()).is_err() {
                    self.deliveries
                        .with_label_values(&[hook.name.as_str(), "dropped"])
                        .inc();
                    tracing::warn!(target: "switchyard::webhooks", hook = %hook.name, event = notice.event, "the hook's queue is full (it is slow or down): notification dropped");
                }
            }
        }
    }

    /// One notification to one hook, retried with backoff.
    async fn deliver(&self, hook: &WebhookConfig, notice: &Notice) {
        let body = message::body(notice, hook.format);
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            match self.post(hook, body.clone()).await {
                Ok((status, _)) if status.is_success() => {
                    self.deliveries
                        .with_label_values(&[hook.name.as_str(), "delivered"])
                        .inc();
                    return;
                }
                Ok((status, answer)) if attempt == ATTEMPTS => {
                    tracing::warn!(target: "switchyard::webhooks", hook = %hook.name, event = notice.event, %status, %answer, "webhook refused the notification; giving up");
                }
                Err(e) if attempt == ATTEMPTS => {
                    tracing::warn!(target: "switchyard::webhooks", hook = %hook.name, event = notice.event, error = %e, "webhook unreachable; giving up");
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    continue;
                }
            }
        }
        self.deliveries.with_label_values(&[hook.name.as_str(), "failed"]).inc();
    }

    /// POSTs `body` to `hook`: its status and the start of its answer.
    async fn post(&self, hook: &WebhookConfig, body: Vec<u8>) -> Result<(StatusCode, String), String> {
        let mut req = Request::post(&hook.url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &hook.secret_file {
            let secret = std::fs::read_to_string(path)
                .map_err(|e| format!("rollout.webhooks {}: secret_file {}: {e}", hook.name, path.display()))?;
            req = req.header(
                "x-switchyard-signature",
                message::signature(secret.trim().as_bytes(), &body),
            );
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{}: {e}", hook.url))?;
        let resp = tokio::time::timeout(hook.timeout.get(), self.client()?.request(req))
            .await
            .map_err(|_| format!("no answer within {}", hook.timeout))?
            .map_err(|e| std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()))?;
        let status = resp.status();
        let answer = tokio::time::timeout(hook.timeout.get(), resp.into_body().collect())
            .await
            .ok()
            .and_then(|b| b.ok())
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).chars().take(200).collect())
            .unwrap_or_default();
        Ok((status, answer))
    }

    /// Asks every gate hook of `events` about the move from `prev` to
    /// `next`; `Err` names the first that did not answer 2xx.
    pub async fn gate(
        &self,
        events: &[WebhookEvent],
        prev: &RolloutState,
        next: &RolloutState,
        who: &str,
        why: &str,
    ) -> Result<(), Waiting> {
        for event in events {
            for hook in self.hooks(*event) {
                let change = Change {
                    who: who.to_string(),
                    why: why.to_string(),
                    at_ms: now_ms(),
                    from_percent: prev.percent,
                    to_percent: next.percent,
                    from_phase: prev.phase,
                    to_phase: next.phase,
                };
                let body = message::body(&self.notice(*event, &change), hook.format);
                let answer = match self.post(&hook, body).await {
                    Ok((status, _)) if status.is_success() => {
                        self.deliveries.with_label_values(&[hook.name.as_str(), "passed"]).inc();
                        continue;
                    }
                    Ok((status, answer)) => format!("{status} {answer}").trim().to_string(),
                    Err(e) => e,
                };
                self.deliveries
                    .with_label_values(&[hook.name.as_str(), "refused"])
                    .inc();
                let since_ms = self
                    .gates
                    .get()
                    .filter(|w| w.gate == hook.name && w.to_percent == next.percent)
                    .map_or_else(now_ms, |w| w.since_ms);
                return Err(Waiting {
                    gate: hook.name.clone(),
                    event: event.as_str().into(),
                    last_answer: answer,
                    since_ms,
                    to_percent: next.percent,
                });
            }
        }
        Ok(())
    }
}

fn is_change(event: WebhookEvent) -> bool {
    matches!(
        event,
        WebhookEvent::Changed
            | WebhookEvent::Paused
            | WebhookEvent::Resumed
            | WebhookEvent::Promoted
            | WebhookEvent::RolledBack
    )
}

fn parse_event(name: &str) -> WebhookEvent {
    serde_json::from_value(serde_json::Value::String(name.into())).unwrap_or(WebhookEvent::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::rollout::state::RolloutState;
    use crate::snapshot::{Published, Snapshot};

    fn webhooks(hooks: &str) -> Arc<Webhooks> {
        let yaml = format!(
            "backends: {{ old: {{ url: 'http://127.0.0.1:1' }}, new: {{ url: 'http://127.0.0.1:2' }} }}\nrollout: {{ webhooks: [{hooks}] }}\n"
        );
        let cfg = Arc::new(Config::from_yaml(&yaml, "t").unwrap());
        let m = Metrics::new();
        let snap = Snapshot::build(cfg, RolloutState::initial(0.0), 0, &m).unwrap();
        let cell = Arc::new(Published::new(snap));
        let guard = Arc::new(std::sync::Mutex::new(Default::default()));
        let (hooks, _rx) = Webhooks::new(
            cell,
            m.rollout.webhook_deliveries.clone(),
            "gw".into(),
            "http://a".into(),
            guard,
        )
        .unwrap();
        hooks
    }

    #[test]
    fn the_hooks_client_is_built_at_start_only_when_a_hook_needs_tls() {
        // Reading the system's trust store is most of a gateway's start-up
        // work; without an https:// hook it waits for the first delivery.
        assert!(webhooks("").client.get().is_none());
        assert!(
            webhooks("{ name: chat, url: 'http://127.0.0.1:9/x', events: [changed] }")
                .client
                .get()
                .is_none()
        );
        let tls = webhooks("{ name: chat, url: 'https://127.0.0.1:9/x', events: [changed] }");
        assert!(tls.client.get().is_some());
    }

    #[tokio::test]
    async fn a_delivery_builds_the_client_it_lacks() {
        let hooks = webhooks("{ name: chat, url: 'http://127.0.0.1:9/x', events: [changed] }");
        assert!(hooks.client().is_ok());
        assert!(hooks.client.get().is_some());
    }
}
