//! Every listener, bound before anything starts, so a taken address fails
//! the start at once.

use std::net::SocketAddr;

use super::StartError;
use crate::config::Config;

/// The admin listener, bound before anything starts (its address names
/// this instance in a fleet).
pub(super) fn bind_admin(config: &Config) -> Result<(std::net::TcpListener, SocketAddr), StartError> {
    let addr: SocketAddr = config
        .admin
        .listen
        .parse()
        .map_err(|e| StartError::Setup(format!("admin.listen: {e}")))?;
    let listener = crate::server::bind(addr).map_err(|source| StartError::Bind {
        what: "admin",
        addr: config.admin.listen.clone(),
        source,
    })?;
    let addr = listener.local_addr().map_err(|e| StartError::Setup(e.to_string()))?;
    Ok((listener, addr))
}

/// Every proxy socket, bound before anything starts so a taken address
/// fails the start at once: one `SO_REUSEPORT` socket per worker and
/// listener.
pub(super) struct Sockets {
    pub(super) per_worker: Vec<(Option<std::net::TcpListener>, Option<std::net::TcpListener>)>,
    pub(super) proxy_addr: SocketAddr,
    pub(super) tls_addr: Option<SocketAddr>,
}

impl Sockets {
    pub(super) fn bind(config: &Config, workers: usize) -> Result<Self, StartError> {
        let group = |what: &'static str, text: &str| -> Result<Vec<std::net::TcpListener>, StartError> {
            let addr: SocketAddr = text
                .parse()
                .map_err(|e| StartError::Setup(format!("{what}: {text:?}: {e}")))?;
            crate::server::bind_workers(addr, workers).map_err(|source| StartError::Bind {
                what,
                addr: text.to_string(),
                source,
            })
        };
        let first_addr = |group: &Option<Vec<std::net::TcpListener>>| -> Result<Option<SocketAddr>, StartError> {
            group
                .as_ref()
                .map(|g| g[0].local_addr().map_err(|e| StartError::Setup(e.to_string())))
                .transpose()
        };
        let plain = (!config.listen.is_empty())
            .then(|| group("proxy", &config.listen))
            .transpose()?;
        let tls = config.tls.as_ref().map(|t| group("tls", &t.listen)).transpose()?;
        let (plain_addr, tls_addr) = (first_addr(&plain)?, first_addr(&tls)?);
        let proxy_addr = plain_addr
            .or(tls_addr)
            .ok_or_else(|| StartError::Setup("listen: no listener; set listen or tls.listen".into()))?;
        let mut plain = plain.map(Vec::into_iter);
        let mut tls = tls.map(Vec::into_iter);
        let per_worker = (0..workers)
            .map(|_| {
                (
                    plain.as_mut().and_then(Iterator::next),
                    tls.as_mut().and_then(Iterator::next),
                )
            })
            .collect();
        Ok(Self {
            per_worker,
            proxy_addr,
            tls_addr,
        })
    }
}
