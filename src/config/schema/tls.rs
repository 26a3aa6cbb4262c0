//! TLS: the listener that terminates it, and how each backend is reached
//! over it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults;
use crate::config::HumanDuration;

/// `tls:` — a second listener that terminates TLS (or the only one, with
/// `listen: ""`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener, `host:port`.
    pub listen: String,
    /// PEM chain + key pairs. SNI picks by each certificate's names; the
    /// first is served to clients that send no name or an unknown one.
    pub certificates: Vec<CertificatePair>,
    /// Oldest protocol version offered: "1.2" or "1.3".
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Time a client has for the whole handshake.
    #[serde(default = "defaults::tls_handshake_timeout")]
    pub handshake_timeout: HumanDuration,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertificatePair {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

/// `backends.X.tls:` — how an `https://` backend is verified and what it is
/// shown.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    /// PEM file of the CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name sent as SNI and checked against the certificate, when it is not
    /// the URL's host (an IP address in the URL, a shared certificate).
    #[serde(default)]
    pub server_name: Option<String>,
    /// A client certificate (PEM chain) for backends that require mTLS.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Accept any certificate. For a lab only: `check` warns about it.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl BackendTls {
    /// The section as the TLS client reads it.
    pub fn trust(&self) -> crate::tls::backend::Trust<'_> {
        crate::tls::backend::Trust {
            ca_file: self.ca_file.as_deref(),
            server_name: self.server_name.as_deref(),
            client_cert_file: self.client_cert_file.as_deref(),
            client_key_file: self.client_key_file.as_deref(),
            insecure_skip_verify: self.insecure_skip_verify,
        }
    }
}

/// `backends.X.protocol:` — the HTTP version spoken to a backend.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackendProtocol {
    Http1,
    /// Prior knowledge on plain TCP (h2c); ALPN `h2` only over TLS.
    Http2,
    /// ALPN over TLS (h2 when offered, else HTTP/1.1); HTTP/1.1 on plain TCP.
    #[default]
    Auto,
}

impl BackendProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendProtocol::Http1 => "http1",
            BackendProtocol::Http2 => "http2",
            BackendProtocol::Auto => "auto",
        }
    }
}
