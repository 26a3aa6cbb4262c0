//! HAR 1.2 (a browser's "Save all as HAR"): each entry's request becomes a
//! [`Recorded`] request. Only what a replay needs is read; responses are
//! not, as both systems are asked again.

use serde::Deserialize;

use super::recorded::{Recorded, VERSION};

#[derive(Deserialize)]
struct Har {
    log: Log,
}

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    version: Option<String>,
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default)]
    started_date_time: Option<String>,
    request: Request,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostData {
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    text: Option<String>,
    /// Not in the spec, but browsers write `base64` for binary uploads.
    #[serde(default)]
    encoding: Option<String>,
}

/// The requests of a HAR file, in its order.
pub fn parse(text: &str) -> Result<Vec<Recorded>, String> {
    let har: Har = serde_json::from_str(text).map_err(|e| format!("not a HAR 1.2 file: {e}"))?;
    if let Some(v) = &har.log.version {
        if !v.starts_with("1.") {
            return Err(format!("HAR version {v} is not one this reads (1.1, 1.2)"));
        }
    }
    let mut out = Vec::with_capacity(har.log.entries.len());
    for (i, e) in har.log.entries.into_iter().enumerate() {
        out.push(entry(e).map_err(|m| format!("entry {i}: {m}"))?);
    }
    if out.is_empty() {
        return Err("the HAR file has no entries".into());
    }
    Ok(out)
}

fn entry(e: Entry) -> Result<Recorded, String> {
    let r = e.request;
    let uri: http::Uri = r
        .url
        .parse()
        .map_err(|err| format!("url {:?} is not a URL: {err}", r.url))?;
    let Some(authority) = uri.authority() else {
        return Err(format!(
            "url {:?} is not absolute (HAR urls carry scheme and host)",
            r.url
        ));
    };
    if http::Method::from_bytes(r.method.as_bytes()).is_err() {
        return Err(format!("{:?} is not an HTTP method", r.method));
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut headers: Vec<(String, String)> = r
        .headers
        .into_iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .filter(|(k, _)| !k.starts_with(':'))
        .collect();
    let mut rec = Recorded {
        v: VERSION,
        at_ms: 0,
        request_id: String::new(),
        route: String::new(),
        method: r.method,
        target,
        host: Some(authority.as_str().to_string()),
        headers: Vec::new(),
        body: String::new(),
        body_base64: None,
    };
    if let Some(post) = r.post_data {
        let text = post.text.unwrap_or_default();
        if post.encoding.as_deref() == Some("base64") {
            rec.body_base64 = Some(text);
            rec.body_bytes()?;
        } else {
            rec.body = text;
        }
        if let Some(mime) = post.mime_type.filter(|m| !m.is_empty()) {
            if !headers.iter().any(|(k, _)| k == "content-type") {
                headers.push(("content-type".into(), mime));
            }
        }
    }
    rec.headers = headers;
    let _ = e.started_date_time;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_become_requests() {
        let har = r#"{"log":{"version":"1.2","creator":{"name":"t","version":"1"},"entries":[
          {"startedDateTime":"2026-11-30T10:00:00.000Z","time":1,"request":{"method":"POST","url":"https://shop.example/cart?x=1",
           "httpVersion":"h2","headers":[{"name":":authority","value":"shop.example"},{"name":"Accept","value":"*/*"}],
           "queryString":[],"cookies":[],"headersSize":-1,"bodySize":9,"postData":{"mimeType":"application/json","text":"{\"a\":1}"}},
           "response":{},"cache":{},"timings":{}}]}}"#;
        let r = parse(har).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].method, "POST");
        assert_eq!(r[0].target, "/cart?x=1");
        assert_eq!(r[0].host.as_deref(), Some("shop.example"));
        assert_eq!(r[0].body, "{\"a\":1}");
        assert!(r[0].headers.iter().any(|(k, v)| k == "accept" && v == "*/*"));
        assert!(r[0].headers.iter().any(|(k, _)| k == "content-type"));
        assert!(!r[0].headers.iter().any(|(k, _)| k.starts_with(':')));
    }

    #[test]
    fn a_relative_url_is_named() {
        let har = r#"{"log":{"entries":[{"request":{"method":"GET","url":"/x"}}]}}"#;
        let e = parse(har).unwrap_err();
        assert!(e.contains("entry 0") && e.contains("not absolute"), "{e}");
    }
}
