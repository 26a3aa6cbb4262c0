//! Intended differences: an engineer says "new answers differently here on
//! purpose" (a field renamed in v2), and from then on that difference counts
//! as `accepted`, not against the rollout. An acceptance names exactly what
//! it covers: one endpoint, one field, the kinds of difference seen there
//! when it was made. Another kind of difference on the same field (its type
//! changed, where it had been renamed) is still real.
//!
//! Acceptances live in the rollout state, so they are persisted with it and
//! every request's snapshot carries them.

use serde::{Deserialize, Serialize};

use crate::diff::Kind;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// The endpoint as the report names it: `GET /users/{id}`.
    pub endpoint: String,
    /// The field as the report names it: `body:/username`, `status`,
    /// `header:etag`.
    pub field: String,
    /// The kinds of difference covered.
    pub kinds: Vec<Kind>,
    pub reason: String,
    pub who: String,
    /// When it was made (Unix ms).
    pub at_ms: u64,
    /// When it stops applying (Unix ms), if ever.
    #[serde(default)]
    pub until_ms: Option<u64>,
}

impl Acceptance {
    pub fn in_force(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }

    pub fn covers(&self, endpoint: &str, field: &str, kind: Kind, now_ms: u64) -> bool {
        self.endpoint == endpoint && self.field == field && self.kinds.contains(&kind) && self.in_force(now_ms)
    }
}

/// The field name the report uses for what a person typed: `/username` and
/// `body:/username` are the same body field; `status`, `body` and
/// `header:NAME` stand as they are (header names lower-case).
pub fn field_name(typed: &str) -> Result<String, String> {
    let t = typed.trim();
    if t.is_empty() {
        return Err("field is empty; name one as the report shows it, e.g. /username, status or header:etag".into());
    }
    if t.starts_with('/') {
        return Ok(format!("body:{t}"));
    }
    if t == "status" || t == "body" || t.starts_with("body:/") {
        return Ok(t.to_string());
    }
    if let Some(name) = t.strip_prefix("header:") {
        if name.is_empty() {
            return Err("header: needs a name, e.g. header:etag".into());
        }
        return Ok(format!("header:{}", name.to_ascii_lowercase()));
    }
    Err(format!(
        "field {t:?} is not one the report names: use a JSON pointer such as /username (a body field), status, body, or header:NAME"
    ))
}

/// Parses `2027-01-31` (the end of that day, UTC) or `2027-01-31T12:00:00Z`
/// into Unix ms.
pub fn parse_until(s: &str) -> Result<u64, String> {
    parse_time(s, true).map_err(|e| format!("until {e}"))
}

/// Parses a point in time given as a date (its start, or with `end_of_day`
/// its end, UTC) or `YYYY-MM-DDTHH:MM:SSZ`, into Unix ms.
pub fn parse_time(s: &str, end_of_day: bool) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)");
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut it = date.split('-').map(|p| p.parse::<i64>());
    let (Some(Ok(y)), Some(Ok(m)), Some(Ok(d)), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return Err(bad());
    }
    let secs_of_day = match time {
        None if end_of_day => 86_400,
        None => 0,
        Some(t) => {
            let mut it = t.split(':').map(|p| p.parse::<i64>());
            let (Some(Ok(h)), Some(Ok(mi)), Some(Ok(se)), None) = (it.next(), it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0..60).contains(&se) {
                return Err(bad());
            }
            h * 3600 + mi * 60 + se
        }
    };
    let days = days_from_civil(y, m, d);
    Ok(((days * 86_400 + secs_of_day) * 1000) as u64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `since` as an admin call or the CLI takes it: a time (see
/// [`parse_time`]) or a duration before `now_ms` (`15m`, `2h`).
pub fn parse_since(s: &str, now_ms: u64) -> Result<u64, String> {
    if let Ok(d) = crate::config::duration::parse(s) {
        return Ok(now_ms.saturating_sub(d.as_millis() as u64));
    }
    parse_time(s, false).map_err(|e| format!("since {e}, or a duration ago such as 15m or 2h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_as_the_report_names_them() {
        assert_eq!(field_name("/username").unwrap(), "body:/username");
        assert_eq!(field_name("body:/a/b").unwrap(), "body:/a/b");
        assert_eq!(field_name("status").unwrap(), "status");
        assert_eq!(field_name("header:ETag").unwrap(), "header:etag");
        assert!(field_name("username").unwrap_err().contains("JSON pointer"));
    }

    #[test]
    fn until_dates_end_with_their_day() {
        assert_eq!(parse_until("1970-01-01").unwrap(), 86_400_000);
        assert_eq!(parse_until("2027-01-31T00:00:00Z").unwrap(), 1_801_353_600_000);
        assert_eq!(parse_until("2027-01-31").unwrap(), 1_801_440_000_000);
        assert!(parse_until("31/01/2027").is_err());
        assert!(parse_until("2027-13-01").is_err());
        assert_eq!(parse_since("2027-01-31", 0).unwrap(), 1_801_353_600_000);
        assert_eq!(parse_since("15m", 1_000_000).unwrap(), 100_000);
        assert!(parse_since("yesterday", 0).unwrap_err().contains("15m"));
    }

    #[test]
    fn an_acceptance_covers_its_kinds_until_it_expires() {
        let a = Acceptance {
            endpoint: "GET /u/{id}".into(),
            field: "body:/username".into(),
            kinds: vec![Kind::Missing],
            reason: "renamed".into(),
            who: "t".into(),
            at_ms: 0,
            until_ms: Some(100),
        };
        assert!(a.covers("GET /u/{id}", "body:/username", Kind::Missing, 50));
        assert!(!a.covers("GET /u/{id}", "body:/username", Kind::TypeChanged, 50));
        assert!(!a.covers("GET /u/{id}", "body:/name", Kind::Missing, 50));
        assert!(!a.covers("GET /u/{id}", "body:/username", Kind::Missing, 100));
    }
}
