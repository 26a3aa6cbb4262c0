//! Who may call what on the admin API, decided before any handler runs.
//!
//! The API fails closed: the token is the one read when the snapshot was
//! built (never "no token" because a file went missing), every read outside
//! `admin.open_paths` needs it when one is set (as Bearer, or as the
//! password of HTTP Basic so a browser can open the report), and a mutation
//! is refused when it comes from a web page (a foreign `Origin`, a
//! cross-site fetch) or carries a body that is not JSON, even on a
//! token-less loopback admin: a page in a browser can reach loopback too.

use base64::Engine as _;
use http::{header, HeaderMap, Method, StatusCode};
use subtle::ConstantTimeEq;

/// Why a call was refused, and what the caller should do about it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    /// The `WWW-Authenticate` challenge of a 401.
    pub challenge: Option<&'static str>,
}

const HOW_TO_AUTHENTICATE: &str =
    "the CLI takes --token, SWITCHYARD_ADMIN_TOKEN, or -c CONFIG to read admin.token or admin.token_file";

/// What a call is, for the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A read anyone may make (`admin.open_paths`).
    Open,
    /// A read that needs the token when one is set.
    Read,
    /// A call that changes something.
    Mutation,
}

pub fn kind(method: &Method, path: &str, open_paths: &[String]) -> Kind {
    match *method {
        Method::GET | Method::HEAD if open_paths.iter().any(|p| p == path) => Kind::Open,
        Method::GET | Method::HEAD => Kind::Read,
        _ => Kind::Mutation,
    }
}

/// Checks one call; `has_body` says whether it carries a request body.
pub fn check(kind: Kind, headers: &HeaderMap, has_body: bool, token: Option<&str>) -> Result<(), Refusal> {
    if kind == Kind::Open {
        return Ok(());
    }
    if kind == Kind::Mutation {
        from_this_origin(headers)?;
        if has_body && !is_json(headers) {
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "a request body must be JSON: send Content-Type: application/json".into(),
                challenge: None,
            });
        }
    }
    let Some(token) = token else { return Ok(()) };
    let challenge = match kind {
        // A browser opening the report prompts for Basic credentials.
        Kind::Read => "Basic realm=\"switchyard admin\", charset=\"UTF-8\"",
        _ => "Bearer",
    };
    match presented(headers) {
        None => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: format!(
                "{} needs the admin token: send Authorization: Bearer <token> ({HOW_TO_AUTHENTICATE})",
                if kind == Kind::Mutation {
                    "this call"
                } else {
                    "this page"
                }
            ),
            challenge: Some(challenge),
        }),
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: format!("the admin token given does not match this gateway's ({HOW_TO_AUTHENTICATE})"),
            challenge: Some(challenge),
        }),
    }
}

/// The token in `Authorization`: a Bearer token, or Basic's password.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_user, password) = text.split_once(':')?;
        return Some(password.to_string());
    }
    None
}

/// Refuses calls a web page made: an `Origin` other than the admin's own
/// (`http://` + the `Host` it was reached at), or a fetch the browser marks
/// as coming from another site.
fn from_this_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let refuse = |why: String| Refusal {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "{why}: the admin API takes changes from the CLI, scripts and its own pages, never from other web pages"
        ),
        challenge: None,
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Err(refuse(format!("Sec-Fetch-Site is {site:?}")));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| !host.is_empty() && origin.eq_ignore_ascii_case(&format!("{scheme}{host}")));
        if !own {
            return Err(refuse(format!("Origin {origin:?} is not this admin API")));
        }
    }
    Ok(())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const TOKEN: Option<&str> = Some("s3cret-token");

    #[test]
    fn open_reads_need_nothing_and_other_reads_need_the_token() {
        let open = vec!["/metrics".to_string()];
        assert_eq!(kind(&Method::GET, "/metrics", &open), Kind::Open);
        assert_eq!(kind(&Method::GET, "/report", &open), Kind::Read);
        assert_eq!(kind(&Method::POST, "/metrics", &open), Kind::Mutation);
        assert!(check(Kind::Open, &headers(&[]), false, TOKEN).is_ok());
        let r = check(Kind::Read, &headers(&[]), false, TOKEN).unwrap_err();
        assert_eq!(r.status, 401);
        assert!(r.challenge.unwrap().starts_with("Basic"));
        assert!(r.message.contains("--token") && r.message.contains("SWITCHYARD_ADMIN_TOKEN"));
        assert!(
            check(Kind::Read, &headers(&[]), false, None).is_ok(),
            "no token, no check"
        );
    }

    #[test]
    fn bearer_and_basic_passwords_are_accepted_and_a_wrong_one_says_so() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("anyone:s3cret-token")
        );
        assert!(check(Kind::Read, &headers(&[("authorization", &basic)]), false, TOKEN).is_ok());
        assert!(check(
            Kind::Mutation,
            &headers(&[("authorization", "Bearer s3cret-token")]),
            false,
            TOKEN
        )
        .is_ok());
        let wrong = check(
            Kind::Mutation,
            &headers(&[("authorization", "Bearer nope")]),
            false,
            TOKEN,
        )
        .unwrap_err();
        assert!(
            wrong.message.starts_with("the admin token given does not match"),
            "{}",
            wrong.message
        );
        let missing = check(Kind::Mutation, &headers(&[]), false, TOKEN).unwrap_err();
        assert!(
            missing.message.starts_with("this call needs the admin token"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn web_pages_cannot_mutate_even_without_a_token() {
        let page = headers(&[("host", "127.0.0.1:9901"), ("origin", "http://evil.example")]);
        assert_eq!(check(Kind::Mutation, &page, false, None).unwrap_err().status, 403);
        let other_port = headers(&[("host", "127.0.0.1:9901"), ("origin", "http://127.0.0.1:3000")]);
        assert_eq!(check(Kind::Mutation, &other_port, false, None).unwrap_err().status, 403);
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(check(Kind::Mutation, &cross, false, None).unwrap_err().status, 403);
        let same_site = headers(&[("sec-fetch-site", "same-site")]);
        assert_eq!(check(Kind::Mutation, &same_site, false, None).unwrap_err().status, 403);
        let own = headers(&[("host", "127.0.0.1:9901"), ("origin", "http://127.0.0.1:9901")]);
        assert!(check(Kind::Mutation, &own, false, None).is_ok());
        assert!(
            check(Kind::Mutation, &headers(&[]), false, None).is_ok(),
            "the CLI sends no Origin"
        );
    }

    #[test]
    fn a_mutation_body_must_be_json() {
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(check(Kind::Mutation, &form, true, None).unwrap_err().status, 415);
        assert_eq!(
            check(Kind::Mutation, &headers(&[]), true, None).unwrap_err().status,
            415
        );
        let json = headers(&[("content-type", "application/json; charset=utf-8")]);
        assert!(check(Kind::Mutation, &json, true, None).is_ok());
        assert!(
            check(Kind::Mutation, &form, false, None).is_ok(),
            "no body, nothing to check"
        );
    }
}
