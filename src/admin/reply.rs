//! How the admin API reads a request and answers: JSON in and out, every
//! error `{"error": "..."}` with the status that says whose fault it was.

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use crate::proxy::ProxyBody;
use crate::rollout::controller::ControlError;

/// Largest request body the admin API reads.
pub const MAX_BODY: usize = 64 * 1024;

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
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

pub fn error(status: StatusCode, message: impl Into<String>) -> Response<ProxyBody> {
    json_response(status, &json!({ "error": message.into() }))
}

pub fn typed(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

pub fn control_error(e: ControlError) -> Response<ProxyBody> {
    let status = match &e {
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlError::Conflict(_) | ControlError::Gated(_) => StatusCode::CONFLICT,
        ControlError::Lost {
            message,
            current,
            epoch,
        } => {
            // The state as it is now, so the caller can decide again.
            return json_response(
                StatusCode::CONFLICT,
                &serde_json::json!({ "error": message, "current": current, "epoch": epoch }),
            );
        }
        ControlError::NotFound(_) => StatusCode::NOT_FOUND,
        ControlError::Persist(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ControlError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, Box<Response<ProxyBody>>> {
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
pub fn parse<T: for<'de> Deserialize<'de> + Default>(
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

/// A query parameter of an admin call, percent-decoded.
pub fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let raw = crate::split::query_param(req.uri().query()?, name)?;
    Some(
        percent_encoding::percent_decode_str(&raw.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Reads and parses a JSON body in one step; the error is the answer to send.
pub async fn json_body<T: for<'de> Deserialize<'de> + Default>(
    req: Request<Incoming>,
    allow_empty: bool,
) -> Result<T, Box<Response<ProxyBody>>> {
    let body = read_body(req).await?;
    parse(&body, allow_empty)
}
