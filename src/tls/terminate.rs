//! The TLS listener's side: a server configuration built from `tls:`,
//! swapped whole on reload (open connections keep the one they shook hands
//! with), and a handshake under one deadline, counted by outcome.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ProducesTickets, ServerConfig, ServerSessionMemoryCache, StoresServerSessions};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::certs::{self, LoadedCert};
use super::resolver::SniResolver;
use crate::config::{TlsConfig, TlsVersion};
use crate::metrics::EdgeMetrics;

/// What a completed handshake agreed on.
#[derive(Clone, Debug, Default)]
pub struct Handshake {
    /// The name the client asked for (SNI), if any.
    pub server_name: Option<String>,
    /// `h2` or `http/1.1`, when the client offered ALPN.
    pub alpn: Option<&'static str>,
}

struct Current {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

/// Terminates TLS for every worker; shared, reloadable.
pub struct Terminator {
    current: ArcSwap<Current>,
    /// Kept across reloads, so tickets and session ids issued before a
    /// reload still resume after it.
    ticketer: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
    metrics: Option<EdgeMetrics>,
}

impl Terminator {
    pub fn new(cfg: &TlsConfig, metrics: Option<EdgeMetrics>) -> Result<Self, String> {
        let ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("cannot make a TLS ticket key: {e}"))?;
        let sessions: Arc<dyn StoresServerSessions> = ServerSessionMemoryCache::new(16_384);
        let current = build(cfg, &ticketer, &sessions, metrics.as_ref())?;
        Ok(Self {
            current: ArcSwap::from_pointee(current),
            ticketer,
            sessions,
            metrics,
        })
    }

    /// Re-reads the certificates; on any error the ones in use stay.
    pub fn reload(&self, cfg: &TlsConfig) -> Result<(), String> {
        let fresh = build(cfg, &self.ticketer, &self.sessions, self.metrics.as_ref())?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }

    /// Runs the server side of a handshake within the configured time.
    pub async fn accept(&self, stream: TcpStream) -> Result<(TlsStream<TcpStream>, Handshake), &'static str> {
        let current = self.current.load_full();
        let outcome = tokio::time::timeout(current.timeout, current.acceptor.accept(stream)).await;
        let result = match outcome {
            Err(_) => Err("timeout"),
            Ok(Err(e)) => Err(failure_reason(&e)),
            Ok(Ok(tls)) => {
                let (_, conn) = tls.get_ref();
                let alpn = match conn.alpn_protocol() {
                    Some(b"h2") => Some("h2"),
                    Some(b"http/1.1") => Some("http/1.1"),
                    _ => None,
                };
                let hs = Handshake {
                    server_name: conn.server_name().map(str::to_string),
                    alpn,
                };
                Ok((tls, hs))
            }
        };
        if let Some(m) = &self.metrics {
            match &result {
                Ok((_, hs)) => m.handshakes.with_label_values(&[hs.alpn.unwrap_or("none")]).inc(),
                Err(reason) => m.handshake_failures.with_label_values(&[reason]).inc(),
            }
        }
        result
    }
}

/// Loads every certificate of `cfg`, in order.
pub fn load_all(cfg: &TlsConfig) -> Result<Vec<LoadedCert>, String> {
    let provider = super::provider();
    cfg.certificates
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            certs::load(&pair.cert_file, &pair.key_file, &provider).map_err(|e| format!("tls.certificates[{i}]: {e}"))
        })
        .collect()
}

fn build(
    cfg: &TlsConfig,
    ticketer: &Arc<dyn ProducesTickets>,
    sessions: &Arc<dyn StoresServerSessions>,
    metrics: Option<&EdgeMetrics>,
) -> Result<Current, String> {
    let loaded = load_all(cfg)?;
    let resolver = SniResolver::new(&loaded).ok_or("tls.certificates: at least one certificate is needed")?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut server = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls.min_version: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    server.ticketer = ticketer.clone();
    server.session_storage = sessions.clone();
    if let Some(m) = metrics {
        // Certificates gone from the config must not linger as series.
        m.certificate_expiry.reset();
        for cert in &loaded {
            m.certificate_expiry
                .with_label_values(&[&cert.label])
                .set(cert.not_after as f64);
        }
    }
    for cert in &loaded {
        tracing::info!(
            certificate = %cert.label,
            names = %cert.names.join(","),
            expires = %crate::calendar::date(cert.not_after),
            "TLS certificate loaded"
        );
    }
    Ok(Current {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        timeout: cfg.handshake_timeout.get(),
    })
}

/// A failed handshake's `reason` label.
fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{Error, PeerIncompatible};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => "closed",
            _ => "other",
        };
    };
    match tls {
        Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
        | Error::InvalidMessage(rustls::InvalidMessage::UnknownProtocolVersion) => "not_tls",
        Error::NoApplicationProtocol => "alpn",
        Error::PeerIncompatible(p) => match p {
            PeerIncompatible::NoCipherSuitesInCommon => "cipher",
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic => "version",
            _ => "protocol",
        },
        Error::AlertReceived(_) => "alert",
        Error::InvalidMessage(_) | Error::PeerMisbehaved(_) | Error::InappropriateHandshakeMessage { .. } => "protocol",
        _ => "other",
    }
}
