//! The header names a backend connection answered with last, so that the
//! next answer's names are recognised instead of rebuilt.
//!
//! A backend answers with the same fields in the same order nearly every
//! time (NGINX: `Server`, `Date`, `Content-Type`, `Content-Length`…).
//! Building a `HeaderName` from bytes looks the name up among the standard
//! ones and lowercases it: about 120 instructions a field, with the check
//! of what the field is for, a sixth of a response head's parse. Comparing
//! the bytes with those that stood at the same place last time is one
//! `memcmp`. (Comparing them with the name itself, ignoring case, went byte
//! by byte and cost more than building it.) Each remembered name also
//! carries what the backend leg does with it ([`Role`]), decided once.

use http::header::{InvalidHeaderName, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::HeaderName;

/// Places remembered: a head with more fields builds the rest each time.
const REMEMBERED: usize = 32;

/// What the backend leg does with a response header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// `Content-Length`: frames the body, and is passed on.
    Length,
    /// `Transfer-Encoding`: frames the body; hop-by-hop.
    TransferCoding,
    /// `Connection`: says whether the connection stays open, and names
    /// more hop-by-hop fields.
    Connection,
    /// `Upgrade`: hop-by-hop, except in a switch of protocols, where the
    /// client must see it.
    Upgrade,
    /// Any other field about this connection alone: never passed on.
    HopByHop,
    /// Everything else: passed on as it came.
    EndToEnd,
}

impl Role {
    /// Whether the field goes on to the client; `switching`: in a `101
    /// Switching Protocols` answer.
    pub(super) fn passed_on(self, switching: bool) -> bool {
        match self {
            Role::Length | Role::EndToEnd => true,
            Role::Upgrade => switching,
            Role::TransferCoding | Role::Connection | Role::HopByHop => false,
        }
    }

    fn of(name: &HeaderName) -> Role {
        if name == CONTENT_LENGTH {
            Role::Length
        } else if name == TRANSFER_ENCODING {
            Role::TransferCoding
        } else if name == CONNECTION {
            Role::Connection
        } else if name == UPGRADE {
            Role::Upgrade
        } else if crate::proxy::headers::is_hop_by_hop(name) {
            Role::HopByHop
        } else {
            Role::EndToEnd
        }
    }
}

/// One connection's memory of the names its last answers carried, by place:
/// each as the backend spelled it, the name it spells, and its role.
#[derive(Debug, Default)]
pub struct KnownNames {
    seen: Vec<(Box<[u8]>, HeaderName, Role)>,
}

impl KnownNames {
    /// The name whose bytes are `raw`, found at place `at` of a head, with
    /// its role: the one remembered there when it matches, else built (and
    /// remembered) from the bytes.
    pub(super) fn name(&mut self, at: usize, raw: &[u8]) -> Result<(HeaderName, Role), InvalidHeaderName> {
        if let Some((spelled, known, role)) = self.seen.get(at) {
            if **spelled == *raw {
                return Ok((known.clone(), *role));
            }
        }
        let name = HeaderName::from_bytes(raw)?;
        let role = Role::of(&name);
        let remembered = (Box::from(raw), name.clone(), role);
        if let Some(slot) = self.seen.get_mut(at) {
            *slot = remembered;
        } else if at == self.seen.len() && at < REMEMBERED {
            self.seen.push(remembered);
        }
        Ok((name, role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_the_one_its_bytes_spell_in_any_case_remembered_or_not() {
        let mut names = KnownNames::default();
        for raw in ["Content-Type", "content-type", "CONTENT-TYPE", "cOnTeNt-TyPe"] {
            let (name, role) = names.name(0, raw.as_bytes()).unwrap();
            assert_eq!(name, HeaderName::from_bytes(raw.as_bytes()).unwrap(), "{raw}");
            assert_eq!(role, Role::EndToEnd);
        }
        for raw in ["X-Trace", "x-trace", "X-TRACE"] {
            let (name, _) = names.name(1, raw.as_bytes()).unwrap();
            assert_eq!(name.as_str(), "x-trace", "{raw}");
        }
    }

    #[test]
    fn another_name_at_a_place_is_built_and_remembered_instead() {
        let mut names = KnownNames::default();
        names.name(0, b"Server").unwrap();
        // Same length, one byte apart: not the remembered name.
        let (name, role) = names.name(0, b"Servet").unwrap();
        assert_eq!(name.as_str(), "servet");
        assert_eq!(role, Role::EndToEnd);
        assert_eq!(names.seen[0].1.as_str(), "servet");
        assert_eq!(names.name(0, b"Content-Length").unwrap().1, Role::Length);
    }

    #[test]
    fn bytes_that_are_no_name_are_refused_even_where_a_name_is_remembered() {
        let mut names = KnownNames::default();
        names.name(0, b"x-a").unwrap();
        for bad in [&b"x a"[..], b"x-a ", b"x\0a", b"", b"x-\xc3\xa9"] {
            assert!(names.name(0, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            names.name(0, b"X-A").unwrap().0.as_str(),
            "x-a",
            "the name is still there"
        );
    }

    #[test]
    fn roles_follow_the_hop_by_hop_list() {
        let mut names = KnownNames::default();
        let cases = [
            ("Content-Length", Role::Length),
            ("Transfer-Encoding", Role::TransferCoding),
            ("Connection", Role::Connection),
            ("Upgrade", Role::Upgrade),
            ("Keep-Alive", Role::HopByHop),
            ("TE", Role::HopByHop),
            ("Trailer", Role::HopByHop),
            ("Proxy-Authenticate", Role::HopByHop),
            ("Date", Role::EndToEnd),
            ("X-Proxy", Role::EndToEnd),
        ];
        for (at, (raw, role)) in cases.into_iter().enumerate() {
            let (name, got) = names.name(at, raw.as_bytes()).unwrap();
            assert_eq!(got, role, "{raw}");
            assert_eq!(
                got.passed_on(false),
                !crate::proxy::headers::is_hop_by_hop(&name),
                "{raw}"
            );
            // Only a switch of protocols passes a hop-by-hop field on: its `Upgrade`.
            assert_eq!(
                got.passed_on(true),
                got.passed_on(false) || got == Role::Upgrade,
                "{raw}"
            );
            // Found again at its place, with the same role.
            assert_eq!(names.name(at, raw.as_bytes()).unwrap(), (name, role));
        }
    }

    #[test]
    fn places_past_the_remembered_ones_are_built_every_time() {
        let mut names = KnownNames::default();
        for at in 0..REMEMBERED + 8 {
            let raw = format!("x-{at}");
            assert_eq!(names.name(at, raw.as_bytes()).unwrap().0.as_str(), raw);
        }
        assert_eq!(names.seen.len(), REMEMBERED);
    }
}
