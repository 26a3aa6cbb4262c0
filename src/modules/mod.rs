//! Request modules: independent, testable steps chained in front of the
//! backends, the way a rate limiter and a WAF sit in front of an origin.
//!
//! A module meets a request in named phases, in this order:
//! 1. [`Module::on_request`], with the request head, before the split: it may
//!    rewrite the head, let it pass, or answer it early (a 429, a 403). An
//!    early answer reaches neither backend and is never mirrored.
//! 2. [`Module::on_response`], with the response head, on the way out.
//!
//! Phases are synchronous because the modules that exist need no I/O; one
//! that does returns [`Verdict::Wait`] with a future, and only it pays for
//! the box. A module that leaves `on_response` alone is skipped there.
//!
//! Adding a module is one file here and one line in [`build`].

pub mod rate_limit;
pub mod rules;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::Response;
use prometheus::IntCounter;

use crate::config::ModuleConfig;
use crate::metrics::Metrics;
use crate::proxy::ProxyBody;

/// What a module decided about a request.
pub enum Verdict {
    /// Go on to the next module.
    Continue,
    /// Answer now; no backend sees the request.
    Respond(Response<ProxyBody>),
    /// Decide later (a module that must do I/O).
    Wait(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}

/// What is known of a request body from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyHint {
    None,
    /// A declared length (`Content-Length`, or HTTP/2's).
    Length(u64),
    /// Chunked, or HTTP/2 without a length: known once read.
    Unknown,
}

/// What modules may read and leave for the rest of the path.
pub struct RequestCtx<'a> {
    /// The client: the peer, or whom a trusted proxy says it forwards for.
    pub client_ip: IpAddr,
    pub route: &'a str,
    /// The path to decide on: normalised (see `proxy::target::normalized`).
    pub path: &'a str,
    pub body: BodyHint,
    /// Names of tag rules that matched, for the access log.
    pub tags: Vec<Arc<str>>,
    /// Cut the request body off past this many bytes.
    pub body_limit: Option<u64>,
}

/// The outcome of one module on one request: a verdict and which of the
/// module's declared decisions it was (for the metric).
pub struct Outcome {
    pub verdict: Verdict,
    pub decision: usize,
}

impl Outcome {
    pub fn pass(decision: usize) -> Self {
        Self {
            verdict: Verdict::Continue,
            decision,
        }
    }
}

pub trait Module: Send + Sync + 'static {
    /// The `module` label.
    fn name(&self) -> &'static str;

    /// Every value the `decision` label can take; fixed when built.
    fn decisions(&self) -> Vec<String>;

    fn on_request(&self, req: &mut http::request::Parts, ctx: &mut RequestCtx<'_>) -> Outcome;

    fn on_response(&self, _resp: &mut http::response::Parts, _ctx: &RequestCtx<'_>) {}

    /// Whether `on_response` does anything (so the chain can skip it).
    fn wants_response(&self) -> bool {
        false
    }
}

/// The one registration point: a config entry to a module.
pub fn build(cfg: &ModuleConfig) -> Result<Arc<dyn Module>, String> {
    Ok(match cfg {
        ModuleConfig::RateLimit(c) => Arc::new(rate_limit::RateLimit::new(c)),
        ModuleConfig::Rules(c) => Arc::new(rules::Rules::new(c)?),
    })
}

struct Link {
    module: Arc<dyn Module>,
    decisions: Vec<IntCounter>,
}

/// The modules of one route, in order, with their metric handles resolved.
#[derive(Default)]
pub struct Chain {
    links: Vec<Link>,
    any_response_phase: bool,
}

impl Chain {
    pub fn new(modules: &[Arc<dyn Module>], route: &str, metrics: &Metrics) -> Self {
        let links: Vec<Link> = modules
            .iter()
            .map(|m| Link {
                decisions: m
                    .decisions()
                    .iter()
                    .map(|d| metrics.live.module_decisions.with_label_values(&[m.name(), route, d]))
                    .collect(),
                module: m.clone(),
            })
            .collect();
        let any_response_phase = links.iter().any(|l| l.module.wants_response());
        Self {
            links,
            any_response_phase,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.links.iter().map(|l| l.module.name()).collect()
    }

    /// Runs every module's request phase; the first early answer wins.
    pub async fn on_request(
        &self,
        req: &mut http::request::Parts,
        ctx: &mut RequestCtx<'_>,
    ) -> Option<Response<ProxyBody>> {
        for link in &self.links {
            let out = link.module.on_request(req, ctx);
            if let Some(c) = link.decisions.get(out.decision) {
                c.inc();
            }
            let mut verdict = out.verdict;
            loop {
                match verdict {
                    Verdict::Continue => break,
                    Verdict::Respond(r) => return Some(r),
                    Verdict::Wait(f) => verdict = f.await,
                }
            }
        }
        None
    }

    pub fn on_response(&self, resp: &mut http::response::Parts, ctx: &RequestCtx<'_>) {
        if !self.any_response_phase {
            return;
        }
        for link in self.links.iter().rev() {
            if link.module.wants_response() {
                link.module.on_response(resp, ctx);
            }
        }
    }
}

/// A context for driving modules in unit tests.
#[cfg(test)]
pub(crate) fn ctx() -> RequestCtx<'static> {
    RequestCtx {
        client_ip: "127.0.0.1"
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        route: "default",
        path: "/",
        body: BodyHint::None,
        tags: Vec::new(),
        body_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decides after an await: the seam for modules that must do I/O.
    struct Later;

    impl Module for Later {
        fn name(&self) -> &'static str {
            "later"
        }
        fn decisions(&self) -> Vec<String> {
            vec!["asked".into()]
        }
        fn on_request(&self, req: &mut http::request::Parts, _ctx: &mut RequestCtx<'_>) -> Outcome {
            let deny = req.uri.path() == "/deny";
            Outcome {
                verdict: Verdict::Wait(Box::pin(async move {
                    tokio::task::yield_now().await;
                    if deny {
                        Verdict::Respond(crate::proxy::error::plain(http::StatusCode::FORBIDDEN, "no\n"))
                    } else {
                        Verdict::Continue
                    }
                })),
                decision: 0,
            }
        }
    }

    /// Adds a response header on the way out.
    struct Stamp;

    impl Module for Stamp {
        fn name(&self) -> &'static str {
            "stamp"
        }
        fn decisions(&self) -> Vec<String> {
            vec!["seen".into()]
        }
        fn on_request(&self, _req: &mut http::request::Parts, _ctx: &mut RequestCtx<'_>) -> Outcome {
            Outcome::pass(0)
        }
        fn on_response(&self, resp: &mut http::response::Parts, _ctx: &RequestCtx<'_>) {
            resp.headers.insert("x-stamp", http::HeaderValue::from_static("1"));
        }
        fn wants_response(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn async_modules_answer_after_their_future() {
        let metrics = Metrics::new();
        let chain = Chain::new(
            &[Arc::new(Later) as Arc<dyn Module>, Arc::new(Stamp)],
            "default",
            &metrics,
        );
        assert_eq!(chain.names(), vec!["later", "stamp"]);
        let mut deny = http::Request::get("/deny").body(()).unwrap().into_parts().0;
        let resp = chain.on_request(&mut deny, &mut ctx()).await.expect("an early answer");
        assert_eq!(resp.status(), 403);
        let mut ok = http::Request::get("/ok").body(()).unwrap().into_parts().0;
        assert!(chain.on_request(&mut ok, &mut ctx()).await.is_none());
        // Both requests were counted by the first module, one by the second.
        let count = |module: &str, decision: &str| {
            metrics
                .live
                .module_decisions
                .with_label_values(&[module, "default", decision])
                .get()
        };
        assert_eq!(count("later", "asked"), 2);
        assert_eq!(count("stamp", "seen"), 1);
    }

    #[test]
    fn the_response_phase_runs_only_for_modules_that_want_it() {
        let metrics = Metrics::new();
        let chain = Chain::new(&[Arc::new(Stamp) as Arc<dyn Module>], "default", &metrics);
        let mut resp = http::Response::new(()).into_parts().0;
        chain.on_response(&mut resp, &ctx());
        assert_eq!(resp.headers["x-stamp"], "1");
        let empty = Chain::new(&[], "default", &metrics);
        assert!(empty.is_empty());
        let mut resp = http::Response::new(()).into_parts().0;
        empty.on_response(&mut resp, &ctx());
        assert!(resp.headers.is_empty());
    }
}
