//! `capture:` — a sample of live requests written to a JSONL file (the
//! [`Recorded`] format) for `switchyard replay --file`. Headers are
//! redacted by the same rules as stored diffs. The live path only decides
//! and hands the record over with a non-blocking `try_send`; a thread of
//! its own writes and rotates the file. A full queue drops the record and
//! counts it, never delays the request.

use std::collections::HashSet;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use http::Method;
use prometheus::IntCounterVec;

use super::recorded::{Recorded, VERSION};
use crate::config::CaptureConfig;
use crate::report::sample;
use crate::report::store::Store;

/// Records waiting for the writer at most.
const QUEUE: usize = 4096;

pub struct Capture {
    percent: f64,
    methods: Vec<Method>,
    max_body_bytes: usize,
    redact: HashSet<String>,
    tx: SyncSender<Recorded>,
    counted: IntCounterVec,
}

impl Capture {
    /// Opens the file (or fails at start, not at the first request) and
    /// starts the writer thread, which ends when the capture is dropped.
    pub fn start(cfg: &CaptureConfig, redact_headers: &[String], counted: IntCounterVec) -> std::io::Result<Arc<Self>> {
        let store = Store::open_at(&cfg.path, cfg.max_bytes, cfg.max_files)?;
        let (tx, rx) = sync_channel(QUEUE);
        let writer_counts = counted.clone();
        std::thread::Builder::new()
            .name("switchyard-capture".into())
            .spawn(move || {
                crate::background::lower_priority("capture");
                write_all(store, rx, writer_counts)
            })?;
        Ok(Arc::new(Self {
            percent: cfg.percent,
            methods: cfg
                .methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            max_body_bytes: cfg.max_body_bytes,
            redact: sample::redaction(redact_headers),
            tx,
            counted,
        }))
    }

    /// Whether to record a request with this method (the sample is drawn here).
    pub fn wants(&self, method: &Method) -> bool {
        self.methods.contains(method) && (self.percent >= 100.0 || rand::random::<f64>() * 100.0 < self.percent)
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Counts a request not recorded because its body was over the limit.
    pub fn skipped_body(&self) {
        self.counted.with_label_values(&["skipped_body"]).inc();
    }

    /// Hands one request to the writer.
    pub fn record(&self, parts: &http::request::Parts, route: &str, request_id: &str, body: &[u8]) {
        if body.len() > self.max_body_bytes {
            self.skipped_body();
            return;
        }
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()));
        let rec = Recorded {
            v: VERSION,
            at_ms: crate::rollout::state::now_ms(),
            request_id: request_id.to_string(),
            route: route.to_string(),
            method: parts.method.to_string(),
            target: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            host,
            headers: sample::stored_headers(&parts.headers, &self.redact),
            body: String::new(),
            body_base64: None,
        }
        .with_body(body);
        match self.tx.try_send(rec) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counted.with_label_values(&["dropped"]).inc();
            }
        }
    }
}

fn write_all(mut store: Store, rx: Receiver<Recorded>, counted: IntCounterVec) {
    let mut last_error: Option<std::time::Instant> = None;
    while let Ok(rec) = rx.recv() {
        match store.append_json(&rec) {
            Ok(_) => counted.with_label_values(&["written"]).inc(),
            Err(e) => {
                counted.with_label_values(&["failed"]).inc();
                if last_error.is_none_or(|t| t.elapsed().as_secs() >= 60) {
                    tracing::error!(error = %e, "cannot append to the capture file; records are lost until it can");
                    last_error = Some(std::time::Instant::now());
                }
            }
        }
    }
    let _ = store.sync();
}
