//! The split: which side serves a request.
//!
//! A pinned request (force header `old`/`new`, from a client `force_from`
//! allows) goes where it says, except that after a rollback nothing reaches
//! `new`, pinned or not, until the percent is raised again. Otherwise
//! the sticky key is hashed with the rollout salt into a bucket in [0, 100),
//! and the request goes to `new` iff `bucket < percent`. Because a key's
//! bucket never changes, raising the percent only moves keys from old to
//! new, lowering it only moves them back, and every instance (and every
//! restart) with the same salt puts a key on the same side: stickiness needs
//! no shared state.

use std::net::IpAddr;

use http::request::Parts;
use http::HeaderMap;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::config::StickyKey;
use crate::side::Side;

/// Why a request went where it went (for the access log and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Forced,
    Sticky,
    Random,
}

/// The hash seed derived from a rollout salt.
pub fn seed(salt: &str) -> u64 {
    xxh3_64_with_seed(salt.as_bytes(), 0x5357_4954_4348_5944)
}

/// Maps a key to its bucket in [0, 100).
pub fn bucket(seed: u64, key: &[u8]) -> f64 {
    let h = xxh3_64_with_seed(key, seed);
    // 53 high bits give a uniform double in [0, 1) with no rounding up to 1.
    (h >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

/// Whether a bucket falls in the share served by `new`.
pub fn in_new(bucket: f64, percent: f64) -> bool {
    bucket < percent
}

/// The value of the sticky key in a request; `None` when the request lacks
/// it (the caller then falls back to the client address).
pub fn sticky_value<'a>(key: &StickyKey, parts: &'a Parts) -> Option<&'a [u8]> {
    match key {
        StickyKey::Header(name) => parts
            .headers
            .get(name.as_str())
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty()),
        StickyKey::Cookie(name) => cookie(&parts.headers, name).map(str::as_bytes),
        StickyKey::Query(name) => parts.uri.query().and_then(|q| query_param(q, name)).map(str::as_bytes),
        StickyKey::ClientIp | StickyKey::None | StickyKey::Global => None,
    }
}

/// Finds a cookie by name across every `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v)
        })
}

/// Finds a query parameter's raw (still percent-encoded) value.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// The value of the force header, if it names a side.
pub fn forced(parts: &Parts, header: &http::HeaderName) -> Option<Side> {
    let v = parts.headers.get(header)?.as_bytes();
    if v.eq_ignore_ascii_case(b"new") {
        Some(Side::New)
    } else if v.eq_ignore_ascii_case(b"old") {
        Some(Side::Old)
    } else {
        None
    }
}

/// Everything the split needs from the snapshot for one route.
pub struct SplitInput<'a> {
    pub force_header: &'a http::HeaderName,
    /// This client may pin (`rollout.force_from`).
    pub may_force: bool,
    /// The rollout is rolled back: new serves nothing.
    pub rolled_back: bool,
    pub sticky: &'a StickyKey,
    pub seed: u64,
    pub percent: f64,
}

/// Decides the serving side.
pub fn decide(input: &SplitInput<'_>, parts: &Parts, client_ip: IpAddr) -> (Side, Reason) {
    if input.may_force {
        if let Some(side) = forced(parts, input.force_header) {
            let side = if input.rolled_back { Side::Old } else { side };
            return (side, Reason::Forced);
        }
    }
    if input.percent <= 0.0 {
        return (Side::Old, Reason::Sticky);
    }
    if input.percent >= 100.0 {
        return (Side::New, Reason::Sticky);
    }
    if *input.sticky == StickyKey::None {
        let draw: f64 = rand::random::<f64>() * 100.0;
        return (
            if in_new(draw, input.percent) {
                Side::New
            } else {
                Side::Old
            },
            Reason::Random,
        );
    }
    let b = match sticky_value(input.sticky, parts) {
        Some(v) => bucket(input.seed, v),
        None => bucket(input.seed, ip_key(client_ip).as_ref()),
    };
    (
        if in_new(b, input.percent) { Side::New } else { Side::Old },
        Reason::Sticky,
    )
}

/// The client address as hash input; IPv4-mapped IPv6 hashes like IPv4.
fn ip_key(ip: IpAddr) -> IpKey {
    match ip {
        IpAddr::V4(v4) => IpKey::V4(v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpKey::V4(v4.octets()),
            None => IpKey::V6(v6.octets()),
        },
    }
}

enum IpKey {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl AsRef<[u8]> for IpKey {
    fn as_ref(&self) -> &[u8] {
        match self {
            IpKey::V4(b) => b,
            IpKey::V6(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    fn input<'a>(h: &'a http::HeaderName, sticky: &'a StickyKey, percent: f64) -> SplitInput<'a> {
        SplitInput {
            force_header: h,
            may_force: true,
            rolled_back: false,
            sticky,
            seed: seed("switchyard"),
            percent,
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn buckets_are_uniform_within_tolerance() {
        let s = seed("salt");
        let n = 100_000;
        let hits = (0..n)
            .filter(|i| in_new(bucket(s, format!("user-{i}").as_bytes()), 25.0))
            .count();
        let share = hits as f64 / n as f64;
        // 5 sigma of a binomial(100k, 0.25) is ≈ 0.0069.
        assert!((share - 0.25).abs() < 0.007, "share {share}");
    }

    #[test]
    fn fractional_percent_is_honoured() {
        let s = seed("salt");
        let n = 1_000_000;
        let hits = (0..n)
            .filter(|i| in_new(bucket(s, format!("u{i}").as_bytes()), 0.1))
            .count();
        // Expect 1000; 5 sigma ≈ 158.
        assert!((842..=1158).contains(&hits), "hits {hits}");
    }

    #[test]
    fn raising_percent_only_moves_keys_to_new() {
        let s = seed("salt");
        let steps = [1.0, 5.0, 25.0, 50.0, 100.0];
        for i in 0..20_000 {
            let b = bucket(s, format!("k{i}").as_bytes());
            let sides: Vec<bool> = steps.iter().map(|p| in_new(b, *p)).collect();
            // Once new, always new as the percent rises.
            assert!(sides.windows(2).all(|w| !w[0] || w[1]), "key k{i} went back: {sides:?}");
        }
    }

    #[test]
    fn salt_changes_the_cohort() {
        let a = seed("one");
        let b = seed("two");
        let differ = (0..1000)
            .filter(|i| {
                let k = format!("k{i}");
                in_new(bucket(a, k.as_bytes()), 50.0) != in_new(bucket(b, k.as_bytes()), 50.0)
            })
            .count();
        assert!(differ > 350, "only {differ} keys moved");
    }

    #[test]
    fn force_header_wins_over_percent() {
        let h = http::HeaderName::from_static("x-switchyard-backend");
        let sticky = StickyKey::Header("x-user-id".into());
        let p = parts(http::Request::get("/").header("x-switchyard-backend", "NEW"));
        assert_eq!(decide(&input(&h, &sticky, 0.0), &p, LOCAL), (Side::New, Reason::Forced));
        let p = parts(http::Request::get("/").header("x-switchyard-backend", "old"));
        assert_eq!(
            decide(&input(&h, &sticky, 100.0), &p, LOCAL),
            (Side::Old, Reason::Forced)
        );
        let p = parts(http::Request::get("/").header("x-switchyard-backend", "bogus"));
        assert_eq!(decide(&input(&h, &sticky, 100.0), &p, LOCAL).0, Side::New);
    }

    #[test]
    fn a_rollback_beats_a_pin_to_new_and_force_from_gates_pins() {
        let h = http::HeaderName::from_static("x-switchyard-backend");
        let sticky = StickyKey::Header("x-user-id".into());
        let p = parts(http::Request::get("/").header("x-switchyard-backend", "new"));
        let rolled_back = SplitInput {
            rolled_back: true,
            ..input(&h, &sticky, 0.0)
        };
        assert_eq!(decide(&rolled_back, &p, LOCAL), (Side::Old, Reason::Forced));
        let outsider = SplitInput {
            may_force: false,
            ..input(&h, &sticky, 0.0)
        };
        assert_eq!(decide(&outsider, &p, LOCAL), (Side::Old, Reason::Sticky));
    }

    #[test]
    fn sticky_key_sources() {
        let p = parts(
            http::Request::get("/a?x=1&uid=abc&y")
                .header("cookie", "a=1; sid=s3cr3t")
                .header("x-user-id", "u-7"),
        );
        assert_eq!(
            sticky_value(&StickyKey::Header("x-user-id".into()), &p),
            Some(&b"u-7"[..])
        );
        assert_eq!(sticky_value(&StickyKey::Cookie("sid".into()), &p), Some(&b"s3cr3t"[..]));
        assert_eq!(sticky_value(&StickyKey::Query("uid".into()), &p), Some(&b"abc"[..]));
        assert_eq!(sticky_value(&StickyKey::Query("y".into()), &p), None);
        assert_eq!(sticky_value(&StickyKey::Cookie("zzz".into()), &p), None);
    }

    #[test]
    fn missing_key_falls_back_to_client_ip_consistently() {
        let h = http::HeaderName::from_static("x-switchyard-backend");
        let sticky = StickyKey::Header("x-user-id".into());
        let p = parts(http::Request::get("/"));
        let first = decide(&input(&h, &sticky, 50.0), &p, LOCAL).0;
        for _ in 0..100 {
            assert_eq!(decide(&input(&h, &sticky, 50.0), &p, LOCAL).0, first);
        }
    }

    #[test]
    fn random_split_follows_percent() {
        let h = http::HeaderName::from_static("x-switchyard-backend");
        let p = parts(http::Request::get("/"));
        let n = 20_000;
        let hits = (0..n)
            .filter(|_| decide(&input(&h, &StickyKey::None, 30.0), &p, LOCAL).0 == Side::New)
            .count();
        let share = hits as f64 / n as f64;
        assert!((share - 0.30).abs() < 0.017, "share {share}");
    }
}
