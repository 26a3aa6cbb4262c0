//! Address ranges in the config (`trusted_proxies`, `force_from`): a CIDR
//! such as `10.0.0.0/8`, or a single address standing for itself.

use std::net::IpAddr;

use ipnet::IpNet;

/// Parses one entry; the error says what was expected.
pub fn parse(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "{text:?} is not an address or a CIDR range (e.g. 10.0.0.0/8, 192.0.2.7 or fd00::/8)"
    ))
}

/// A compiled list of ranges; an address in any of them is "in".
#[derive(Clone, Debug, Default)]
pub struct Ranges(Vec<IpNet>);

impl Ranges {
    /// Compiles a validated list (entries that do not parse are skipped;
    /// validation has already refused them).
    pub fn new(list: &[String]) -> Self {
        Self(list.iter().filter_map(|t| parse(t).ok()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges() {
        let r = Ranges::new(&["10.0.0.0/8".into(), "192.0.2.7".into(), "fd00::/8".into()]);
        assert!(r.contains("10.200.3.4".parse().unwrap()));
        assert!(r.contains("192.0.2.7".parse().unwrap()));
        assert!(!r.contains("192.0.2.8".parse().unwrap()));
        assert!(r.contains("fd12::1".parse().unwrap()));
        assert!(
            r.contains("::ffff:10.1.1.1".parse().unwrap()),
            "IPv4-mapped IPv6 is IPv4"
        );
        assert!(!Ranges::default().contains("10.0.0.1".parse().unwrap()));
        assert_eq!(parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse("10.0.0.0/33").unwrap_err().contains("not an address or a CIDR"));
        assert!(parse("proxy.internal").is_err());
    }
}
