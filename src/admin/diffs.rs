//! The admin calls an engineer makes about differences: accept one as
//! intended (and withdraw it), show a stored sample, replay it against
//! both systems now, and start the report afresh.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::reply::{control_error, error, json_body, json_response};
use super::state::AdminState;
use crate::proxy::ProxyBody;
use crate::replay::engine::Replayer;
use crate::replay::recorded::Recorded;
use crate::report::accept::{self, Acceptance};
use crate::report::collector::field_of;
use crate::rollout::state::now_ms;

/// Body of `POST /diffs/accept`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    endpoint: String,
    field: String,
    #[serde(default)]
    reason: String,
    /// `YYYY-MM-DD` (through that day, UTC) or `YYYY-MM-DDTHH:MM:SSZ`.
    #[serde(default)]
    until: Option<String>,
    /// Kinds to cover; by default the kinds seen at the field so far.
    #[serde(default)]
    kinds: Option<Vec<crate::diff::Kind>>,
    #[serde(default)]
    who: Option<String>,
}

/// Body of `POST /diffs/unaccept`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Unaccept {
    endpoint: String,
    field: String,
    #[serde(default)]
    who: Option<String>,
}

fn accepted_json(list: &[Acceptance]) -> serde_json::Value {
    let now = now_ms();
    json!({
        "accepted": list.iter().map(|a| {
            let mut v = serde_json::to_value(a).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("in_force".into(), a.in_force(now).into());
            }
            v
        }).collect::<Vec<_>>()
    })
}

pub async fn accept(state: &AdminState, req: Request<Incoming>) -> Response<ProxyBody> {
    let cmd: Accept = match json_body(req, false).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if cmd.endpoint.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "endpoint is empty; name it as the report does, e.g. \"GET /users/{id}\"",
        );
    }
    if cmd.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "reason is empty; say why this difference is intended (it is shown in the report)",
        );
    }
    let field = match accept::field_name(&cmd.field) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let until_ms = match cmd.until.as_deref().map(accept::parse_until).transpose() {
        Ok(u) => u,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = now_ms();
    if until_ms.is_some_and(|u| u <= now) {
        return error(
            StatusCode::BAD_REQUEST,
            "until is in the past; the acceptance would never apply",
        );
    }
    let kinds = match cmd.kinds {
        Some(k) if !k.is_empty() => k,
        _ => {
            let c = state.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
            let seen = c.kinds_at(&cmd.endpoint, &field);
            if seen.is_empty() {
                let known: Vec<String> = c.endpoints.keys().take(20).cloned().collect();
                let fields: Vec<String> = c
                    .endpoints
                    .get(&cmd.endpoint)
                    .map(|e| e.fields.keys().take(20).cloned().collect())
                    .unwrap_or_default();
                return error(
                    StatusCode::NOT_FOUND,
                    if c.endpoints.contains_key(&cmd.endpoint) {
                        format!(
                            "no difference has been seen at {field} of {} yet, so there is nothing to accept; fields with differences: {}; or name the kinds to accept (--kind missing; \"kinds\": [\"missing\"] in JSON)",
                            cmd.endpoint,
                            if fields.is_empty() { "none".into() } else { fields.join(", ") }
                        )
                    } else {
                        format!(
                            "the report has no endpoint {:?}; endpoints: {}",
                            cmd.endpoint,
                            if known.is_empty() {
                                "none yet".into()
                            } else {
                                known.join(", ")
                            }
                        )
                    },
                );
            }
            seen
        }
    };
    let acceptance = Acceptance {
        endpoint: cmd.endpoint,
        field,
        kinds,
        reason: cmd.reason,
        who: cmd
            .who
            .filter(|w| !w.trim().is_empty())
            .unwrap_or_else(|| "admin".into()),
        at_ms: now,
        until_ms,
    };
    match state.controller.accept(acceptance).await {
        Ok(list) => json_response(StatusCode::OK, &accepted_json(&list)),
        Err(e) => control_error(e),
    }
}

pub async fn unaccept(state: &AdminState, req: Request<Incoming>) -> Response<ProxyBody> {
    let cmd: Unaccept = match json_body(req, false).await {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let field = match accept::field_name(&cmd.field) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let who = cmd.who.unwrap_or_else(|| "admin".into());
    match state.controller.unaccept(&cmd.endpoint, &field, &who).await {
        Ok(list) => json_response(StatusCode::OK, &accepted_json(&list)),
        Err(e) => control_error(e),
    }
}

pub fn list(state: &AdminState) -> Response<ProxyBody> {
    json_response(
        StatusCode::OK,
        &accepted_json(&state.controller.snapshot().rollout.accepted),
    )
}

/// The stored sample `id` with its endpoint and field, or the 404 to send.
fn stored(
    state: &AdminState,
    id: &str,
) -> Result<(String, String, crate::report::sample::Sample), Box<Response<ProxyBody>>> {
    let found = state
        .analysis
        .collector
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sample(id);
    found.ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no stored sample {id:?}; ids are in the report and in GET /diffs (samples beyond diff.samples_per_field are not kept)"),
        ))
    })
}

/// `GET /diffs/ID`: one stored sample, with its endpoint and field.
pub fn show(state: &AdminState, id: &str) -> Response<ProxyBody> {
    let (endpoint, field, sample) = match stored(state, id) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let backends = state.report_sources().backends();
    let view = crate::report::model::SampleView::new(&sample, &backends);
    let mut v = serde_json::to_value(view).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("endpoint".into(), endpoint.into());
        o.insert("field".into(), field.into());
    }
    json_response(StatusCode::OK, &v)
}

/// `POST /diffs/ID/replay`: sends the sample's request to old and new (and
/// the twin) now, compares with the same rules, and says whether the
/// difference it was kept for is still there.
pub async fn replay(state: &AdminState, id: &str) -> Response<ProxyBody> {
    let (endpoint, field, sample) = match stored(state, id) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let recorded = match Recorded::from_sample(&sample) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::CONFLICT, e),
    };
    let snap = state.controller.snapshot();
    let replayer = match Replayer::with_routes(&snap.config, snap.routes.clone()) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot reach the backends: {e}"),
            )
        }
    };
    let pair = match replayer.replay(&recorded).await {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                format!("the replay could not be compared: {e}"),
            )
        }
    };
    let now = now_ms();
    let comparison = crate::diff::compare_call(&pair.old, &pair.new, &pair.rules, &pair.target);
    // Each difference judged as the report judges its field now.
    let differences: Vec<serde_json::Value> = {
        let c = state.analysis.collector.lock().unwrap_or_else(|p| p.into_inner());
        let model = c.model();
        let stats = c.endpoints.get(&endpoint);
        comparison
            .counted()
            .map(|d| {
                let name = field_of(d);
                let verdict = if snap
                    .rollout
                    .accepted
                    .iter()
                    .any(|a| a.covers(&endpoint, &name, d.kind, now))
                {
                    "accepted"
                } else {
                    match stats.and_then(|e| e.fields.get(&name).map(|f| (e, f))) {
                        Some((e, f)) if !model.is_real(f.raw, e.compared, f.noise, e.baseline) && f.noise > 0 => {
                            "noise"
                        }
                        _ => "real",
                    }
                };
                json!({ "field": name, "kind": d.kind, "old": d.left, "new": d.right, "verdict": verdict })
            })
            .collect()
    };
    let at_field = |v: &str| {
        differences
            .iter()
            .any(|d| d["field"] == field.as_str() && d["verdict"] == v)
    };
    let verdict = if at_field("real") || at_field("noise") {
        "still differs"
    } else if at_field("accepted") {
        "differs as accepted"
    } else {
        "no longer differs"
    };
    let real_elsewhere = differences
        .iter()
        .filter(|d| d["verdict"] == "real" && d["field"] != field.as_str())
        .count();
    json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "endpoint": endpoint,
            "field": field,
            "still_differs": verdict == "still differs",
            "verdict": verdict,
            "real_differences_elsewhere": real_elsewhere,
            "differences": differences,
            "old": { "status": pair.old.status, "latency_ms": pair.old.latency.as_secs_f64() * 1000.0 },
            "new": { "status": pair.new.status, "latency_ms": pair.new.latency.as_secs_f64() * 1000.0 },
        }),
    )
}

/// `POST /report/reset`.
pub fn reset(state: &AdminState) -> Response<ProxyBody> {
    let at = state.analysis.reset();
    tracing::info!(target: "switchyard::rollout", since_ms = at, "diff report started afresh");
    json_response(StatusCode::OK, &json!({ "reset": true, "since_ms": at }))
}
