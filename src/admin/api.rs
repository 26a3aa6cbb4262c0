//! The admin API: rollout control for SREs, the diff report, metrics and
//! health, on its own listener (loopback unless a token is configured).
//!
//! JSON in and out ([`super::reply`]). Who may call what is decided first,
//! in [`super::access`]; bad input never changes state. The calls about
//! differences are in [`super::diffs`].

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::access;
use super::reply::{control_error, error, json_body, json_response, query_param, typed};
use super::state::AdminState;
use crate::proxy::ProxyBody;
use crate::report::accept::parse_since;
use crate::rollout::controller::{Actor, Op, RollbackReason};

/// Body of `PUT /rollout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPercent {
    percent: f64,
    #[serde(default)]
    who: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// With a fleet store: change only if the rollout is still at this
    /// epoch (the one the caller looked at), else 409.
    #[serde(default)]
    epoch: Option<u64>,
    /// Pass the plan's gates; recorded in why.
    #[serde(default)]
    force: bool,
}

/// Optional body of the other mutations.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    #[serde(default)]
    who: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// As [`SetPercent::epoch`]; a rollback ignores it (it never loses).
    #[serde(default)]
    epoch: Option<u64>,
    /// As [`SetPercent::force`].
    #[serde(default)]
    force: bool,
}

pub(super) fn actor(who: Option<String>, reason: Option<String>, default_why: &str) -> Actor {
    Actor::new(
        who.filter(|w| !w.trim().is_empty()).unwrap_or_else(|| "admin".into()),
        reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| default_why.into()),
    )
}

impl Default for SetPercent {
    fn default() -> Self {
        Self {
            percent: f64::NAN,
            who: None,
            reason: None,
            epoch: None,
            force: false,
        }
    }
}

/// Serves one admin request.
pub async fn handle(state: Arc<AdminState>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let mut resp = route(&state, req).await;
    resp.headers_mut()
        .insert(super::client::ADMIN_MARK, http::HeaderValue::from_static("1"));
    Ok(resp)
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
            let store_ok = state.fleet.as_ref().is_none_or(|f| f.view.ready());
            if !state.ready.load(Ordering::SeqCst) {
                typed(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            } else if !store_ok {
                typed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: the fleet store is unreachable (rollout.store.etcd.ready_without_store: false)\n",
                )
            } else {
                typed(StatusCode::OK, "text/plain", "ready\n")
            }
        }
        (&Method::GET, "/metrics") => typed(StatusCode::OK, crate::metrics::content_type(), state.metrics.render()),
        (&Method::GET, "/status") => json_response(StatusCode::OK, &status(state)),
        (&Method::PUT, "/rollout") => {
            let cmd: SetPercent = match json_body(req, false).await {
                Ok(c) => c,
                Err(r) => return *r,
            };
            let why = format!("set to {}%", cmd.percent);
            let mut a = actor(cmd.who, cmd.reason, &why);
            if cmd.force {
                a = a.forcing();
            }
            match c.change_if(Op::SetPercent(cmd.percent), &a, cmd.epoch, None).await {
                Ok(_) => json_response(StatusCode::OK, &status(state)),
                Err(e) => control_error(e),
            }
        }
        (&Method::POST, "/rollback" | "/pause" | "/resume" | "/promote" | "/step") => {
            let note: Note = match json_body(req, true).await {
                Ok(n) => n,
                Err(r) => return *r,
            };
            let verb = &path[1..];
            let mut a = actor(note.who, note.reason, verb);
            if note.force {
                a = a.forcing();
            }
            let op = match verb {
                "rollback" => None,
                "pause" => Some(Op::Pause),
                "resume" => Some(Op::Resume),
                "promote" => Some(Op::Promote),
                _ => Some(Op::Step),
            };
            let result = match op {
                None => c.rollback(&a, RollbackReason::Manual),
                Some(op) => c.change_if(op, &a, note.epoch, None).await,
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
            let r = match query_param(&req, "scope").as_deref() {
                None | Some("instance") => state.report_sources().report(from),
                Some("fleet") => match super::fleet::report(state, &req, from).await {
                    Ok(r) => r,
                    Err(e) => return *e,
                },
                Some(other) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("scope={other:?}: use scope=instance (this gateway) or scope=fleet (every instance in the fleet store)"),
                    )
                }
            };
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
    let history = state.controller.history();
    let recent = &history[history.len().saturating_sub(5)..];
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
        "recent_changes": recent,
        "guard": guard,
        "routes": routes,
        "backends": {
            "old": snap.config.backends.old.url,
            "new": snap.config.backends.new.url,
            "old_twin": snap.config.backends.old_twin.as_ref().map(|b| b.url.clone()),
        },
        "state_file": snap.config.rollout.state_file,
        "persisted": state.controller.persisted(),
        "gates": {
            "waiting": state.controller.webhooks().and_then(|w| w.gates.get()),
            "hooks": snap.config.rollout.webhooks.iter().map(|h| json!({
                "name": h.name,
                "events": h.events,
            })).collect::<Vec<_>>(),
        },
        "fleet": state.fleet.as_ref().map(|f| {
            let mut v = f.view.status(state.controller.epoch());
            v["rollback_pending"] = json!(state.controller.pending_rollback().is_some());
            v
        }),
    })
}
