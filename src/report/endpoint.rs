//! Endpoints: the unit a diff report groups by, `METHOD /path/{template}`.
//!
//! `/users/17` and `/users/42` are one endpoint. Templates come from
//! `diff.endpoints` first; otherwise id-like segments (numbers, UUIDs, long
//! hex, long opaque tokens) collapse to `{id}`. The number of endpoints is
//! capped by the collector, so a scanner walking random paths costs one bucket.

/// A configured path template such as `/users/{id}/orders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
    segments: Vec<Option<String>>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| format!("endpoint template {text:?} must start with '/'"))?;
        let mut segments = Vec::new();
        for seg in rest.split('/') {
            if let Some(inner) = seg.strip_prefix('{') {
                let name = inner
                    .strip_suffix('}')
                    .ok_or_else(|| format!("endpoint template {text:?} has an unclosed '{{' in {seg:?}"))?;
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(format!(
                        "endpoint template {text:?} has an empty or nested parameter in {seg:?}"
                    ));
                }
                segments.push(None);
            } else if seg.contains(['{', '}']) {
                return Err(format!(
                    "endpoint template {text:?}: a parameter must be a whole segment, as in /users/{{id}}"
                ));
            } else {
                segments.push(Some(seg.to_string()));
            }
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for seg in &self.segments {
            match (seg, parts.next()) {
                (_, None) => return false,
                (Some(lit), Some(p)) if lit != p => return false,
                _ => {}
            }
        }
        parts.next().is_none()
    }
}

/// Whether a path segment looks like an identifier rather than a name.
pub fn is_id_like(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let hexish = seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let hex_digits = seg.bytes().filter(u8::is_ascii_hexdigit).count();
    if hexish && hex_digits >= 16 && seg.bytes().any(|b| b.is_ascii_digit()) {
        return true; // UUIDs, hashes, object ids
    }
    // Long opaque tokens with digits (base64 ids, slugs with ids are kept).
    seg.len() >= 20 && seg.bytes().any(|b| b.is_ascii_digit()) && !seg.contains('.')
}

/// Names the endpoint of a request.
#[derive(Clone, Debug, Default)]
pub struct EndpointNamer {
    templates: Vec<Template>,
    /// Templates a route declares, tried first for that route's requests.
    by_route: std::collections::HashMap<String, Vec<Template>>,
}

fn parse_all(templates: &[String]) -> Result<Vec<Template>, String> {
    templates.iter().map(|t| Template::parse(t)).collect()
}

impl EndpointNamer {
    pub fn new(templates: &[String]) -> Result<Self, String> {
        Ok(Self {
            templates: parse_all(templates)?,
            by_route: Default::default(),
        })
    }

    /// Adds a route's own templates, tried first for its requests.
    pub fn with_route(mut self, route: &str, templates: &[String]) -> Result<Self, String> {
        if !templates.is_empty() {
            self.by_route.insert(route.to_string(), parse_all(templates)?);
        }
        Ok(self)
    }

    /// `METHOD /template` for a request on `route`; queries never take part.
    pub fn name_on(&self, route: &str, method: &str, path: &str) -> String {
        let p = path.split('?').next().unwrap_or("/");
        if let Some(t) = self.by_route.get(route).and_then(|ts| ts.iter().find(|t| t.matches(p))) {
            return format!("{method} {}", t.as_str());
        }
        self.name(method, path)
    }

    /// `METHOD /template`; query strings never take part.
    pub fn name(&self, method: &str, path: &str) -> String {
        let path = path.split('?').next().unwrap_or("/");
        if let Some(t) = self.templates.iter().find(|t| t.matches(path)) {
            return format!("{method} {}", t.as_str());
        }
        let mut out = String::with_capacity(path.len() + method.len() + 1);
        out.push_str(method);
        out.push(' ');
        for (i, seg) in path.trim_start_matches('/').split('/').enumerate() {
            if i > 0 || path.starts_with('/') {
                out.push('/');
            }
            out.push_str(if is_id_like(seg) { "{id}" } else { seg });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_ids() {
        let n = EndpointNamer::default();
        assert_eq!(n.name("GET", "/users/17"), "GET /users/{id}");
        assert_eq!(n.name("GET", "/users/42?x=1"), "GET /users/{id}");
        assert_eq!(
            n.name("GET", "/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301/items"),
            "GET /orders/{id}/items"
        );
        assert_eq!(
            n.name("GET", "/blobs/9f86d081884c7d659a2feaa0c55ad015"),
            "GET /blobs/{id}"
        );
        assert_eq!(n.name("GET", "/search"), "GET /search");
        assert_eq!(n.name("GET", "/"), "GET /");
        assert_eq!(n.name("GET", "/v2/users"), "GET /v2/users");
    }

    #[test]
    fn templates_win_over_collapsing() {
        let n = EndpointNamer::new(&["/users/{name}/profile".into()]).unwrap();
        assert_eq!(n.name("GET", "/users/alice/profile"), "GET /users/{name}/profile");
        assert_eq!(n.name("GET", "/users/alice"), "GET /users/alice");
    }

    #[test]
    fn route_templates_come_first_for_their_route() {
        let n = EndpointNamer::new(&["/shop/{item}".into()])
            .unwrap()
            .with_route("shop", &["/shop/{sku}/reviews".into()])
            .unwrap();
        assert_eq!(
            n.name_on("shop", "GET", "/shop/lamp/reviews"),
            "GET /shop/{sku}/reviews"
        );
        assert_eq!(n.name_on("shop", "GET", "/shop/lamp"), "GET /shop/{item}");
        assert_eq!(
            n.name_on("default", "GET", "/shop/lamp/reviews"),
            "GET /shop/lamp/reviews"
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Template::parse("users/{id}")
            .unwrap_err()
            .contains("must start with '/'"));
        assert!(Template::parse("/users/{id").unwrap_err().contains("unclosed"));
        assert!(Template::parse("/users/{}").unwrap_err().contains("empty"));
        assert!(Template::parse("/users/x{id}").unwrap_err().contains("whole segment"));
    }
}
