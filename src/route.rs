//! Routes: which configured route a request belongs to, and everything that
//! route resolved from its own settings and the top level. Compiled once per
//! config; first match wins; unmatched requests get the `default` route.

use std::sync::Arc;

use http::Method;

use crate::config::{Config, RouteConfig, StickyKey};
use crate::diff::grpc::GrpcSchema;
use crate::diff::rules::DiffRules;
use crate::metrics::{Metrics, MirrorCounters, RouteMetrics};
use crate::modules::{self, Chain, Module};

/// Which requests a route mirrors, and how much.
#[derive(Clone, Debug)]
pub struct ShadowPolicy {
    pub percent: f64,
    pub methods: Vec<Method>,
    pub max_body_bytes: usize,
}

impl ShadowPolicy {
    pub fn allows(&self, method: &Method) -> bool {
        self.percent > 0.0 && self.methods.contains(method)
    }
}

enum HostMatch {
    Exact(String),
    /// `*.example.com` stored as `.example.com`.
    Suffix(String),
}

pub struct Route {
    pub name: Arc<str>,
    host: Option<HostMatch>,
    path_prefix: Option<String>,
    methods: Option<Vec<Method>>,
    /// This route's own percent, when it overrides the global one.
    pub percent: Option<f64>,
    pub sticky: StickyKey,
    pub shadow: ShadowPolicy,
    pub diff: Arc<DiffRules>,
    pub chain: Chain,
    pub metrics: RouteMetrics,
    /// Its mirrors' outcome counters, when it mirrors at all.
    pub mirrors: Option<MirrorCounters>,
}

fn methods(list: &[String]) -> Vec<Method> {
    list.iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .collect()
}

/// The host a request is for, without port, lowercased.
fn request_host(parts: &http::request::Parts) -> Option<String> {
    let raw = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.host())?;
    let host = match raw.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => raw.split(':').next().unwrap_or(raw),
    };
    Some(host.to_ascii_lowercase())
}

impl Route {
    fn build(
        config: &Config,
        rc: Option<&RouteConfig>,
        shared: &[Arc<dyn Module>],
        grpc: &Option<Arc<GrpcSchema>>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let name: Arc<str> = Arc::from(rc.map_or("default", |r| r.name.as_str()));
        let mut chain_modules: Vec<Arc<dyn Module>> = shared.to_vec();
        let mut ignore_headers = config.diff.ignore_headers.clone();
        let mut ignore_fields = config.diff.ignore_fields.clone();
        let mut unordered = config.diff.unordered_arrays.clone();
        let mut tolerance = config.diff.float_tolerance;
        let mut shadow = ShadowPolicy {
            percent: config.shadow.percent,
            methods: methods(&config.shadow.methods),
            max_body_bytes: config.shadow.max_body_bytes,
        };
        let (mut host, mut path_prefix, mut route_methods, mut percent, mut sticky) =
            (None, None, None, None, config.rollout.sticky.clone());
        if let Some(rc) = rc {
            for m in &rc.modules {
                chain_modules.push(modules::build(m)?);
            }
            ignore_headers.extend(rc.diff.ignore_headers.iter().cloned());
            ignore_fields.extend(rc.diff.ignore_fields.iter().cloned());
            unordered.extend(rc.diff.unordered_arrays.iter().cloned());
            if let Some(t) = rc.diff.float_tolerance {
                tolerance = t;
            }
            if let Some(p) = rc.shadow.percent {
                shadow.percent = p;
            }
            if let Some(m) = &rc.shadow.methods {
                shadow.methods = methods(m);
            }
            if let Some(b) = rc.shadow.max_body_bytes {
                shadow.max_body_bytes = b;
            }
            host = rc.matcher.host.as_ref().map(|h| {
                let h = h.to_ascii_lowercase();
                match h.strip_prefix('*') {
                    Some(suffix) => HostMatch::Suffix(suffix.to_string()),
                    None => HostMatch::Exact(h),
                }
            });
            path_prefix = rc.matcher.path_prefix.clone();
            route_methods = rc.matcher.methods.as_deref().map(methods);
            percent = rc.rollout.percent;
            if let Some(s) = &rc.rollout.sticky {
                sticky = s.clone();
            }
        }
        Ok(Self {
            mirrors: (shadow.percent > 0.0).then(|| MirrorCounters::new(metrics, &name)),
            chain: Chain::new(&chain_modules, &name, metrics),
            metrics: RouteMetrics::new(metrics, &name),
            diff: Arc::new(
                DiffRules::new(ignore_headers, &ignore_fields, &unordered, tolerance)?.with_grpc(grpc.clone()),
            ),
            name,
            host,
            path_prefix,
            methods: route_methods,
            percent,
            sticky,
            shadow,
        })
    }

    fn matches(&self, parts: &http::request::Parts, path: &str) -> bool {
        if let Some(ms) = &self.methods {
            if !ms.contains(&parts.method) {
                return false;
            }
        }
        if let Some(p) = &self.path_prefix {
            if !path.starts_with(p.as_str()) {
                return false;
            }
        }
        if let Some(h) = &self.host {
            let Some(host) = request_host(parts) else {
                return false;
            };
            let ok = match h {
                HostMatch::Exact(e) => host == *e,
                HostMatch::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

/// Every route of a config, in order, and the default.
pub struct RouteTable {
    routes: Vec<Route>,
    default: Route,
}

impl RouteTable {
    pub fn build(config: &Config, metrics: &Metrics) -> Result<Self, String> {
        let shared: Vec<Arc<dyn Module>> = config.modules.iter().map(modules::build).collect::<Result<_, _>>()?;
        let grpc = config
            .diff
            .grpc
            .descriptor_set
            .as_deref()
            .map(|p| GrpcSchema::load(p).map(Arc::new))
            .transpose()
            .map_err(|e| format!("diff.grpc.descriptor_set: {e}"))?;
        Ok(Self {
            routes: config
                .routes
                .iter()
                .map(|rc| Route::build(config, Some(rc), &shared, &grpc, metrics))
                .collect::<Result<_, _>>()?,
            default: Route::build(config, None, &shared, &grpc, metrics)?,
        })
    }

    /// First matching route, else the default; `path` is the request's
    /// path as normalised (`proxy::target::normalized`), so that no spelling
    /// of a path escapes its route.
    pub fn select(&self, parts: &http::request::Parts, path: &str) -> &Route {
        self.routes
            .iter()
            .find(|r| r.matches(parts, path))
            .unwrap_or(&self.default)
    }

    pub fn all(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().chain(std::iter::once(&self.default))
    }

    pub fn by_name(&self, name: &str) -> Option<&Route> {
        self.all().find(|r| &*r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> RouteTable {
        let base = "backends: { old: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }\n";
        let cfg = Config::from_yaml(&format!("{base}{yaml}"), "t").unwrap();
        RouteTable::build(&cfg, &Metrics::new()).unwrap()
    }

    fn pick(t: &RouteTable, b: http::request::Builder) -> String {
        let parts = b.body(()).unwrap().into_parts().0;
        let path = crate::proxy::target::normalized(parts.uri.path()).into_owned();
        t.select(&parts, &path).name.to_string()
    }

    #[test]
    fn first_match_wins_and_default_catches_the_rest() {
        let t = table(
            "routes:\n  - name: pay\n    match: { path_prefix: /api/payments }\n  - name: api\n    match: { path_prefix: /api }\n  - name: shop\n    match: { host: '*.shop.example', methods: [GET] }\n",
        );
        assert_eq!(pick(&t, http::Request::get("/api/payments/1")), "pay");
        assert_eq!(pick(&t, http::Request::get("/api/users")), "api");
        assert_eq!(
            pick(&t, http::Request::get("/x").header("host", "eu.shop.example:8080")),
            "shop"
        );
        assert_eq!(
            pick(&t, http::Request::post("/x").header("host", "eu.shop.example")),
            "default"
        );
        assert_eq!(
            pick(&t, http::Request::get("/x").header("host", "shop.example")),
            "default"
        );
        assert_eq!(pick(&t, http::Request::get("/")), "default");
        for spelling in [
            "//api/payments/1",
            "/api/./payments/1",
            "/api/%70ayments/1",
            "/x/../api/payments/1",
        ] {
            assert_eq!(pick(&t, http::Request::get(spelling)), "pay", "{spelling}");
        }
    }

    #[test]
    fn routes_inherit_what_they_omit() {
        let t = table(
            "shadow: { percent: 100, methods: [GET] }\nrollout: { sticky: 'header:x-user' }\nroutes:\n  - name: pay\n    match: { path_prefix: /pay }\n    rollout: { percent: 0 }\n    shadow: { percent: 10 }\n",
        );
        let pay = t.by_name("pay").unwrap();
        assert_eq!(pay.percent, Some(0.0));
        assert_eq!(pay.shadow.percent, 10.0);
        assert_eq!(pay.shadow.methods, vec![Method::GET]);
        assert_eq!(pay.sticky, StickyKey::Header("x-user".into()));
        let d = t.by_name("default").unwrap();
        assert_eq!(d.percent, None);
        assert_eq!(d.shadow.percent, 100.0);
    }
}
