//! The admin API: rollout control for SREs, the diff report, metrics and
//! health, on its own listener (loopback unless a token is configured).
//!
//! JSON in and out; every error is `{"error": "..."}` with a status that
//! says whose fault it was. Who may call what is decided first, in
//! [`super::access`]; bad input never changes state.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::access;
use crate::compare::Analysis;
use crate::config::{Config, ConfigErrors};
use crate::metrics::Metrics;
use crate::proxy::ProxyBody;
use crate::report::accept::parse_since;
use crate::report::gather::Sources;
use crate::rollout::controller::{Actor, ControlError, Controller, RollbackReason};
use crate::rollout::guard::GuardReport;

/// Largest request body the admin API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// Re-reads the config file and applies it (SIGHUP and `POST /reload`).
#[derive(Clone)]
pub struct Reloader {
    path: Option<PathBuf>,
    controller: Arc<Controller>,
    analysis: Analysis,
    metrics: Metrics,
    /// The TLS listener's certificates, re-read on every reload.
    tls: Option<Arc<crate::tls::Terminator>>,
}

impl Reloader {
    pub fn new(path: Option<PathBuf>, controller: Arc<Controller>, analysis: Analysis, metrics: Metrics) -> Self {
        Self {
            path,
            controller,
            analysis,
            metrics,
            tls: None,
        }
    }

    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::Terminator>>) -> Self {
        self.tls = tls;
        self
    }

    /// Re-reads the certificates first: a reload whose certificates cannot
    /// be used changes nothing.
    fn reload_certificates(&self, config: &Config) -> Result<(), String> {
        match (&self.tls, &config.tls) {
            (Some(terminator), Some(tls)) => terminator.reload(tls),
            (None, None) => Ok(()),
            (None, Some(_)) => Err("tls: a TLS listener cannot be added by a reload; restart the gateway".into()),
            (Some(_), None) => Err("tls: the TLS listener cannot be removed by a reload; restart the gateway".into()),
        }
    }

    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let fail = |errors: ConfigErrors| {
            self.metrics
                .upkeep
                .config_reloads
                .with_label_values(&["rejected"])
                .inc();
            for e in &errors.0 {
                tracing::error!(error = %e, "reload rejected; the running config stays in force");
            }
            Err(errors)
        };
        let Some(path) = &self.path else {
            return fail(ConfigErrors(vec![crate::config::ConfigError {
                source: "<reload>".into(),
                line: None,
                path: String::new(),
                message: "this gateway was not started from a config file".into(),
            }]));
        };
        let config = match Config::load(path) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let report_config = config.clone();
        if let Err(e) = self.reload_certificates(&config) {
            return fail(ConfigErrors(vec![crate::config::ConfigError {
                source: path.display().to_string(),
                line: None,
                path: String::new(),
                message: e,
            }]));
        }
        if let Err(e) = self.controller.reload(config) {
            return fail(ConfigErrors(vec![crate::config::ConfigError {
                source: path.display().to_string(),
                line: None,
                path: String::new(),
                message: e,
            }]));
        }
        self.analysis
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reconfigure(&report_config);
        self.metrics.upkeep.config_reloads.with_label_values(&["applied"]).inc();
        Ok(())
    }
}

pub struct AdminState {
    pub controller: Arc<Controller>,
    pub metrics: Metrics,
    pub analysis: Analysis,
    pub guard: Arc<Mutex<GuardReport>>,
    pub ready: Arc<AtomicBool>,
    pub reloader: Reloader,
}

impl AdminState {
    pub(super) fn report_sources(&self) -> Sources<'_> {
        Sources {
            controller: &self.controller,
            metrics: &self.metrics,
            analysis: &self.analysis,
            guard: &self.guard,
        }
    }
}

pub(super) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(ProxyBody::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response<ProxyBody> {
    json_response(status, &json!({ "error": message.into() }))
}

pub(super) fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

pub(super) fn control_error(e: ControlError) -> Response<ProxyBody> {
    let status = match &e {
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlError::Conflict(_) => StatusCode::CONFLICT,
        ControlError::NotFound(_) => StatusCode::NOT_FOUND,
        ControlError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// Body of `PUT /rollout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPercent {
    percent: f64,
    #[serde(default)]
    who: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// Optional body of the other mutations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    #[serde(default)]
    who: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) fn actor(who: Option<String>, reason: Option<String>, default_why: &str) -> Actor {
    Actor::new(
        who.filter(|w| !w.trim().is_empty()).unwrap_or_else(|| "admin".into()),
        reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| default_why.into()),
    )
}

pub(super) async fn read_body(req: Request<Incoming>) -> Result<Bytes, Box<Response<ProxyBody>>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("request body is larger than {MAX_BODY} bytes"),
        ))),
        Err(e) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read request body: {e}"),
        ))),
    }
}

/// Parses a JSON body; the error is the 400 to send back.
pub(super) fn parse<T: for<'de> Deserialize<'de> + Default>(
    body: &[u8],
    allow_empty: bool,
) -> Result<T, Box<Response<ProxyBody>>> {
    if body.iter().all(u8::is_ascii_whitespace) && allow_empty {
        return Ok(T::default());
    }
    // serde would take `[25]` for `{"percent": 25}`; only objects are meant.
    if let Some(first) = body.iter().find(|b| !b.is_ascii_whitespace()) {
        if *first != b'{' {
            return Err(Box::new(error(
                StatusCode::BAD_REQUEST,
                "invalid JSON body: expected an object such as {\"percent\": 25}",
            )));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))))
}

impl Default for SetPercent {
    fn default() -> Self {
        Self {
            percent: f64::NAN,
            who: None,
            reason: None,
        }
    }
}

/// A query parameter of an admin call, percent-decoded.
pub(super) fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let raw = crate::split::query_param(req.uri().query()?, name)?;
    Some(
        percent_encoding::percent_decode_str(&raw.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Serves one admin request.
pub async fn handle(state: Arc<AdminState>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    Ok(route(&state, req).await)
}

async fn route(state: &AdminState, req: Request<Incoming>) -> Response<ProxyBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    {
        let snap = state.controller.snapshot();
        let kind = access::kind(&method, &path, &snap.config.admin.open_paths);
        let has_body = !req.body().is_end_stream();
        if let Err(refusal) = access::check(kind, req.headers(), has_body, snap.admin_token.as_deref()) {
            let mut r = error(refusal.status, refusal.message);
            if let Some(challenge) = refusal.challenge {
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static(challenge));
            }
            return r;
        }
    }
    let c = &state.controller;
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => typed(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => {
            if state.ready.load(Ordering::SeqCst) {
                typed(StatusCode::OK, "text/plain", "ready\n")
            } else {
                typed(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }
        (&Method::GET, "/metrics") => typed(StatusCode::OK, crate::metrics::content_type(), state.metrics.render()),
        (&Method::GET, "/status") => json_response(StatusCode::OK, &status(state)),
        (&Method::PUT, "/rollout") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let cmd: SetPercent = match parse(&body, false) {
                Ok(c) => c,
                Err(r) => return *r,
            };
            let why = format!("set to {}%", cmd.percent);
            match c.set_percent(cmd.percent, &actor(cmd.who, cmd.reason, &why)) {
                Ok(_) => json_response(StatusCode::OK, &status(state)),
                Err(e) => control_error(e),
            }
        }
        (&Method::POST, "/rollback" | "/pause" | "/resume" | "/promote" | "/step") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return *r,
            };
            let note: Note = match parse(&body, true) {
                Ok(n) => n,
                Err(r) => return *r,
            };
            let verb = &path[1..];
            let a = actor(note.who, note.reason, verb);
            let result = match verb {
                "rollback" => c.rollback(&a, RollbackReason::Manual),
                "pause" => c.pause(&a),
                "resume" => c.resume(&a),
                "promote" => c.promote(&a),
                _ => c.step(&a),
            };
            match result {
                Ok(_) => json_response(StatusCode::OK, &status(state)),
                Err(e) => control_error(e),
            }
        }
        (&Method::POST, "/reload") => match state.reloader.reload() {
            Ok(()) => json_response(StatusCode::OK, &json!({ "reloaded": true })),
            Err(errors) => json_response(
                StatusCode::BAD_REQUEST,
                &json!({
                    "error": "the new config was rejected; the running one stays in force",
                    "details": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
                }),
            ),
        },
        (&Method::GET, "/report" | "/report.json" | "/report.txt") => {
            let from = match query_param(&req, "since").map(|s| parse_since(&s, crate::rollout::state::now_ms())) {
                None => None,
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
            };
            let r = state.report_sources().report(from);
            match path.as_str() {
                "/report" => typed(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    crate::report::html::render(&r),
                ),
                "/report.txt" => typed(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    crate::report::text::render(&r),
                ),
                _ => json_response(StatusCode::OK, &serde_json::to_value(&r).unwrap_or_default()),
            }
        }
        (&Method::POST, "/report/reset") => super::diffs::reset(state),
        (&Method::GET, "/diffs") => {
            let limit = match query_param(&req, "limit").map(|l| l.parse::<usize>()) {
                None => 20,
                Some(Ok(n)) if (1..=1000).contains(&n) => n,
                Some(_) => return error(StatusCode::BAD_REQUEST, "limit must be a whole number from 1 to 1000"),
            };
            let samples = state.report_sources().samples(
                query_param(&req, "endpoint").as_deref(),
                query_param(&req, "field").as_deref(),
                limit,
            );
            json_response(StatusCode::OK, &serde_json::to_value(samples).unwrap_or_default())
        }
        (&Method::POST, "/diffs/accept") => super::diffs::accept(state, req).await,
        (&Method::POST, "/diffs/unaccept") => super::diffs::unaccept(state, req).await,
        (&Method::GET, "/diffs/accepted") => super::diffs::list(state),
        (_, "/diffs/accept" | "/diffs/unaccept" | "/report/reset") => {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} only answers POST"))
        }
        (&Method::GET, p) if sample_id(p).is_some_and(|(_, replay)| !replay) => {
            super::diffs::show(state, sample_id(p).map_or("", |(id, _)| id))
        }
        (&Method::POST, p) if sample_id(p).is_some_and(|(_, replay)| replay) => {
            super::diffs::replay(state, sample_id(p).map_or("", |(id, _)| id)).await
        }
        (
            _,
            "/healthz" | "/readyz" | "/metrics" | "/status" | "/report" | "/report.json" | "/report.txt" | "/diffs"
            | "/diffs/accepted",
        ) => error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} only answers GET")),
        (_, "/rollout") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "/rollout only answers PUT with {\"percent\": N}",
        ),
        (_, "/rollback" | "/pause" | "/resume" | "/promote" | "/step" | "/reload") => {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} only answers POST"))
        }
        _ => error(StatusCode::NOT_FOUND, format!("no admin endpoint {method} {path}")),
    }
}

/// `/diffs/ID` (show) or `/diffs/ID/replay`: the id, and whether it is a replay.
fn sample_id(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix("/diffs/")?;
    let (id, replay) = match rest.strip_suffix("/replay") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some((id, replay))
}

/// The body of `GET /status`.
pub fn status(state: &AdminState) -> serde_json::Value {
    let snap = state.controller.snapshot();
    let r = &snap.rollout;
    let guard = state.guard.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let routes: Vec<serde_json::Value> = snap
        .routes
        .all()
        .map(|route| {
            json!({
                "name": &*route.name,
                "percent": snap.percent_for(route),
                "override": route.percent,
                "shadow_percent": route.shadow.percent,
            })
        })
        .collect();
    json!({
        "percent": r.percent,
        "phase": r.phase,
        "step": r.step,
        "steps": snap.config.rollout.steps,
        "step_every": snap.config.rollout.step_every.map(|d| d.to_string()),
        "paused": r.phase == crate::rollout::state::Phase::Paused,
        "last_change": r.last_change,
        "guard": guard,
        "routes": routes,
        "backends": {
            "old": snap.config.backends.old.url,
            "new": snap.config.backends.new.url,
            "old_twin": snap.config.backends.old_twin.as_ref().map(|b| b.url.clone()),
        },
        "state_file": snap.config.rollout.state_file,
        "persisted": state.controller.persisted(),
    })
}
