//! `GET /report?scope=fleet`: every registered instance's report, fetched
//! from its admin API and merged exactly ([`Report::merge`]): counts and
//! latency histograms added, samples capped.
//!
//! All or nothing: a fleet report missing an instance would look whole and
//! be wrong, so one that cannot be fetched fails the call, named.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::client::AdminClient;
use super::reply::error;
use super::state::AdminState;
use crate::proxy::ProxyBody;
use crate::report::model::Report;

/// The longest wait for one instance's report.
const FETCH: Duration = Duration::from_secs(10);

pub async fn report(
    state: &AdminState,
    _req: &Request<Incoming>,
    since: Option<u64>,
) -> Result<Report, Box<Response<ProxyBody>>> {
    let Some(fleet) = &state.fleet else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "scope=fleet needs a fleet store (rollout.store); this gateway runs on its own, so its report is the whole: drop scope=fleet",
        )));
    };
    if since.is_some() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "since= cannot be combined with scope=fleet: a report over part of the time cannot be merged exactly; ask each instance with scope=instance instead",
        )));
    }
    let members = fleet.view.members();
    if members.is_empty() {
        return Err(Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no instance is registered in the fleet store (is it reachable? see the fleet section of /status)",
        )));
    }
    let me = fleet.view.id();
    let token = state.controller.snapshot().admin_token.as_deref().map(str::to_string);
    let fetches = members.iter().map(|m| {
        let token = token.clone();
        let local = m.id == me;
        async move {
            if local {
                return Ok(state.report_sources().report(None));
            }
            let client = AdminClient::new(&format!("http://{}", m.admin), token).map_err(|e| e.to_string())?;
            let body = tokio::time::timeout(FETCH, client.call(Method::GET, "/report.json", None))
                .await
                .map_err(|_| format!("no answer in {FETCH:?}"))?
                .map_err(|e| e.to_string())?;
            serde_json::from_slice::<Report>(&body).map_err(|e| format!("its report does not read: {e}"))
        }
    });
    let results = futures_util::future::join_all(fetches).await;
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (m, r) in members.iter().zip(results) {
        match r {
            Ok(r) => reports.push(r),
            Err(e) => failed.push(format!("{} at {}: {e}", m.id, m.admin)),
        }
    }
    if !failed.is_empty() {
        return Err(Box::new(error(
            StatusCode::BAD_GATEWAY,
            format!(
                "the fleet report needs every instance's, and {} could not be fetched: {}. Check that each instance's admin API is reachable at the address it registered (rollout.store.etcd.advertise), or ask the others with scope=instance",
                failed.len(),
                failed.join("; ")
            ),
        )));
    }
    Report::merge(&reports).map_err(|e| Box::new(error(StatusCode::INTERNAL_SERVER_ERROR, e)))
}
