//! The CLI's client for the admin API: one request, a readable answer, and
//! the server's own message on failure.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not an admin URL (expected e.g. http://127.0.0.1:9901)")]
    BadUrl(String),
    #[error("cannot reach the admin API at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{status}: {message}")]
    Refused { status: StatusCode, message: String },
    #[error("{url} is not a Switchyard admin API: {what}. Nothing was changed; pass --admin with the admin.listen address, or -c with the gateway's config")]
    NotAdmin { url: String, what: String },
}

/// On every answer of the admin API, so the CLI knows what it talks to.
pub const ADMIN_MARK: &str = "x-switchyard-admin";

pub struct AdminClient {
    base: String,
    token: Option<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        base.parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("http") && u.authority().is_some())
            .ok_or_else(|| ClientError::BadUrl(base.clone()))?;
        Ok(Self {
            base,
            token: token.filter(|t| !t.is_empty()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Sends a request; returns the body of a 2xx answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Bytes, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header(&crate::pipeline::ADMIN_CALL_HEADER, "1");
        if let Some(t) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|_| ClientError::BadUrl(url.clone()))?;
        let resp = tokio::time::timeout(std::time::Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| ClientError::Unreachable {
                url: url.clone(),
                detail: "no answer within 30s".into(),
            })?
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                detail: std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()),
            })?;
        let status = resp.status();
        let from_admin = resp.headers().contains_key(ADMIN_MARK);
        let via_proxy = resp.headers().contains_key("x-switchyard-served-by");
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                detail: e.to_string(),
            })?
            .to_bytes();
        if !from_admin && status != StatusCode::MISDIRECTED_REQUEST {
            // Not an admin API: nothing it said is about the rollout.
            return Err(ClientError::NotAdmin {
                url: self.base.clone(),
                what: if via_proxy {
                    "it is Switchyard's proxy listener (a backend answered); the admin API listens on admin.listen (default 127.0.0.1:9901)".into()
                } else {
                    format!("it answered {status} with content-type {content_type}, without the x-switchyard-admin mark every admin answer carries")
                },
            });
        }
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                let main = v.get("error")?.as_str()?.to_string();
                let details: Vec<String> = v
                    .get("details")
                    .and_then(|d| d.as_array())
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                Some(if details.is_empty() {
                    main
                } else {
                    format!("{main}\n  {}", details.join("\n  "))
                })
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        Err(ClientError::Refused { status, message })
    }
}

/// A one-screen summary of `/status`.
pub fn format_status(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
    out.push_str(&format!("rollout   {}% of live traffic to new\n", num("percent")));
    out.push_str(&format!("phase     {}\n", text(v.get("phase"))));
    if v.get("persisted").and_then(|p| p.as_bool()) == Some(false) {
        out.push_str(
            "WARNING   this state is NOT saved in the state file (the disk refused it); see the gateway's log\n",
        );
    }
    let steps: Vec<String> = v
        .get("steps")
        .and_then(|s| s.as_array())
        .map(|a| a.iter().map(step_text).collect())
        .unwrap_or_default();
    let step = v.get("step").and_then(|s| s.as_u64());
    out.push_str(&format!(
        "plan      [{}]{}\n",
        steps.join(", "),
        step.map_or(String::new(), |s| format!(", at step {}", s + 1))
    ));
    if let Some(c) = v.get("last_change").filter(|c| !c.is_null()) {
        let at = c.get("at_ms").and_then(|x| x.as_u64()).unwrap_or(0);
        let ago = crate::rollout::state::now_ms().saturating_sub(at) / 1000;
        out.push_str(&format!(
            "changed   {}s ago by {}: {} ({}% → {}%)\n",
            ago,
            text(c.get("who")),
            text(c.get("why")),
            c.get("from_percent").and_then(|x| x.as_f64()).unwrap_or(0.0),
            c.get("to_percent").and_then(|x| x.as_f64()).unwrap_or(0.0)
        ));
    }
    if let Some(g) = v.get("guard") {
        out.push_str(&guard_lines(g));
    }
    if let Some(w) = v.get("gates").and_then(|g| g.get("waiting")).filter(|w| !w.is_null()) {
        out.push_str(&format!(
            "gate      waiting on gate {} ({}) before {}% (last answer: {})\n",
            text(w.get("gate")),
            text(w.get("event")),
            w.get("to_percent").and_then(|x| x.as_f64()).unwrap_or(0.0),
            text(w.get("last_answer"))
        ));
    }
    if let Some(f) = v.get("fleet").filter(|f| !f.is_null()) {
        out.push_str(&fleet_lines(f));
    }
    for r in v.get("routes").and_then(|r| r.as_array()).into_iter().flatten() {
        if r.get("override").is_some_and(|o| !o.is_null()) {
            out.push_str(&format!(
                "route     {} pinned at {}%\n",
                text(r.get("name")),
                r.get("percent").and_then(|x| x.as_f64()).unwrap_or(0.0)
            ));
        }
    }
    out
}

/// The fleet's part of `switchyard status`: the store, the epoch each
/// instance applied, and whether the last change reached them all.
fn fleet_lines(f: &serde_json::Value) -> String {
    let epoch = f.get("epoch").and_then(|x| x.as_u64()).unwrap_or(0);
    let store = f.get("store");
    let up = store
        .and_then(|s| s.get("up"))
        .and_then(|x| x.as_bool())
        .unwrap_or(false);
    let mut out = format!(
        "fleet     epoch {epoch}, store {} ({}){}\n",
        if up { "up" } else { "UNREACHABLE" },
        store
            .and_then(|s| s.get("endpoints"))
            .and_then(|e| e.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(","))
            .unwrap_or_default(),
        if up {
            String::new()
        } else {
            format!(
                ": serving with the last state applied; {}",
                text(store.and_then(|s| s.get("error")))
            )
        }
    );
    if f.get("rollback_pending").and_then(|x| x.as_bool()) == Some(true) {
        out.push_str("WARNING   a rollback made here has not reached the fleet store yet (in force here, retried until it lands)\n");
    }
    let converged = f.get("converged").and_then(|x| x.as_bool()).unwrap_or(false);
    let took = f
        .get("last_convergence")
        .filter(|c| !c.is_null())
        .map(|c| {
            format!(
                " (epoch {} reached every instance in {:.0} ms)",
                c.get("epoch").and_then(|x| x.as_u64()).unwrap_or(0),
                c.get("seconds").and_then(|x| x.as_f64()).unwrap_or(0.0) * 1000.0
            )
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "          {}{took}; guard runs on {}\n",
        if converged {
            "every instance applied this epoch".to_string()
        } else {
            format!(
                "NOT converged: behind are {}",
                f.get("behind")
                    .and_then(|b| b.as_array())
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )
        },
        text(f.get("leader"))
    ));
    for m in f.get("instances").and_then(|i| i.as_array()).into_iter().flatten() {
        let e = m.get("epoch").and_then(|x| x.as_u64()).unwrap_or(0);
        out.push_str(&format!(
            "  {:<24} admin {:<22} epoch {:<8} {}{}\n",
            text(m.get("id")),
            text(m.get("admin")),
            e,
            if m.get("ready").and_then(|x| x.as_bool()) == Some(true) {
                "ready"
            } else {
                "not ready"
            },
            if e < epoch { "  (behind)" } else { "" }
        ));
    }
    out
}

/// A check's explanation on one line: verdict, samples, effect with its
/// interval, p-value.
fn explain_line(x: &serde_json::Value) -> String {
    let num = |k: &str| x.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let mut parts = vec![format!(
        "→ {}{}",
        text(x.get("verdict")),
        x.get("because")
            .and_then(|b| b.as_str())
            .map_or(String::new(), |b| format!(" ({b})"))
    )];
    parts.push(format!("n old {} / new {}", num("samples_old"), num("samples_new")));
    if let Some(e) = x.get("effect").filter(|e| !e.is_null()) {
        let f = |k: &str| e.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0);
        let unit = e.get("unit").and_then(|u| u.as_str()).unwrap_or("");
        let show = |v: f64| match unit {
            "ratio" => format!("×{v:.3}"),
            "points" => format!("{v:+.2} pts"),
            _ => format!("{:.2}%", v * 100.0),
        };
        parts.push(format!(
            "{} {} [{}, {}]",
            text(e.get("name")),
            show(f("value")),
            show(f("low")),
            show(f("high"))
        ));
    }
    if let Some(p) = x.get("p_value").and_then(|p| p.as_f64()) {
        parts.push(format!(
            "p {} ({})",
            if p < 1e-4 {
                format!("{p:.1e}")
            } else {
                format!("{p:.4}")
            },
            text(x.get("test"))
        ));
    }
    parts.join(" · ")
}

/// `25`, or `25 (pause)`, `25 (10m)` for a step with options.
fn step_text(x: &serde_json::Value) -> String {
    if let Some(p) = x.as_f64() {
        return p.to_string();
    }
    let mut out = x.get("percent").and_then(|p| p.as_f64()).unwrap_or(0.0).to_string();
    let mut notes = Vec::new();
    if x.get("pause").and_then(|p| p.as_bool()) == Some(true) {
        notes.push("pause".to_string());
    }
    if let Some(every) = x.get("step_every").and_then(|e| e.as_str()) {
        notes.push(every.to_string());
    }
    if !notes.is_empty() {
        out.push_str(&format!(" ({})", notes.join(", ")));
    }
    out
}

fn text(x: Option<&serde_json::Value>) -> String {
    x.and_then(|x| x.as_str()).unwrap_or("-").to_string()
}

/// The guard's part of `switchyard status`: the test under way, and each
/// check's reading and how far it is from a decision.
fn guard_lines(g: &serde_json::Value) -> String {
    let enabled = g.get("enabled").and_then(|x| x.as_bool()).unwrap_or(false);
    let num = |k: &str| g.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let test = g.get("test").filter(|t| !t.is_null());
    let mut out = format!(
        "guard     {}, test {} of this rollout, look {} (old {} / new {} requests since it began); false alarms held to {} per rollout\n",
        if enabled { "on" } else { "off" },
        test.and_then(|t| t.get("number")).and_then(|x| x.as_u64()).unwrap_or(0),
        test.and_then(|t| t.get("looks")).and_then(|x| x.as_u64()).unwrap_or(0),
        num("requests_old"),
        num("requests_new"),
        g.get("false_alarm_rate").and_then(|x| x.as_f64()).unwrap_or(0.0)
    );
    if let Some(why) = g.get("not_acting").and_then(|w| w.as_str()) {
        out.push_str(&format!("  not acting: {why}\n"));
    }
    if let Some(held) = g.get("holding").and_then(|w| w.as_str()) {
        out.push_str(&format!("  {held}\n"));
    }
    let checks = g.get("checks").and_then(|c| c.as_array());
    if test.is_some() && checks.is_none_or(|c| c.is_empty()) {
        out.push_str("  a new test has begun: its first look comes within rollout.guard.interval\n");
    }
    for c in checks.into_iter().flatten() {
        let progress = c.get("progress").and_then(|x| x.as_f64()).map_or(String::new(), |p| {
            format!(" [{:>3.0}% to a failure]", (p * 100.0).min(999.0))
        });
        out.push_str(&format!(
            "  {:<13} {:<12}{progress} {}\n",
            text(c.get("name")),
            text(c.get("state")),
            text(c.get("detail"))
        ));
        if let Some(x) = c.get("explain").filter(|x| !x.is_null()) {
            out.push_str(&format!("  {:<13} {}\n", "", explain_line(x)));
        }
    }
    if let Some(a) = g.get("last_action").and_then(|a| a.as_str()) {
        out.push_str(&format!("  last action: {a}\n"));
    }
    out
}
