//! The client side of TLS towards an `https://` backend: whom to trust (the
//! system's roots, or a private CA), what name to check, the client
//! certificate for backends that require mTLS, and session resumption
//! (rustls' in-memory cache, one per backend and worker).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::certs;
use std::path::Path;

/// What a backend's `tls:` section says, as this module needs it (the
/// config's own type stays in `config`, which calls in here to validate).
#[derive(Clone, Copy, Debug, Default)]
pub struct Trust<'a> {
    pub ca_file: Option<&'a Path>,
    pub server_name: Option<&'a str>,
    pub client_cert_file: Option<&'a Path>,
    pub client_key_file: Option<&'a Path>,
    pub insecure_skip_verify: bool,
}

/// A `tls:` setting that cannot be used: the key at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for TrustError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl From<TrustError> for String {
    fn from(e: TrustError) -> String {
        e.to_string()
    }
}

/// Blames `{path}.tls{key}`.
fn at(path: &str, key: &str) -> impl Fn(String) -> TrustError {
    let key = format!("{path}.tls{key}");
    move |message| TrustError {
        key: key.clone(),
        message,
    }
}

/// Builds the client configuration for one backend; `path` names the
/// backend's config keys in errors. `alpn` is left empty for hyper-rustls,
/// which writes its own.
pub fn client_config(path: &str, tls: Trust<'_>, alpn: &[&[u8]]) -> Result<ClientConfig, TrustError> {
    let builder = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| at(path, "")(e.to_string()))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(super::provider())))
    } else {
        builder.with_root_certificates(roots(path, tls.ca_file)?)
    };
    let mut config = match (tls.client_cert_file, tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs::read_chain(cert).map_err(at(path, ".client_cert_file"))?;
            let key = certs::read_key(key).map_err(at(path, ".client_key_file"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| at(path, ".client_key_file")(format!("does not fit the client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(at(path, "")(
                "client_cert_file and client_key_file go together; set both or neither".into(),
            ))
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration that trusts nothing, for connectors that must
/// have one but only ever speak plain TCP.
pub fn unused() -> Result<ClientConfig, String> {
    Ok(ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth())
}

/// The name to send and verify: `server_name`, else the URL's host.
pub fn server_name(path: &str, tls: Trust<'_>, host: &str) -> Result<ServerName<'static>, TrustError> {
    let name = tls
        .server_name
        .unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']'));
    ServerName::try_from(name.to_string())
        .map_err(|e| at(path, ".server_name")(format!("{name:?} is not a DNS name or IP address: {e}")))
}

fn roots(path: &str, ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, TrustError> {
    let Some(ca) = ca_file else {
        return system_roots().map_err(|e| at(path, "")(format!("{e}; set ca_file")));
    };
    let mut store = RootCertStore::empty();
    for cert in certs::read_chain(ca).map_err(at(path, ".ca_file"))? {
        store
            .add(cert)
            .map_err(|e| at(path, ".ca_file")(format!("{} holds a certificate that is no CA: {e}", ca.display())))?;
    }
    Ok(Arc::new(store))
}

/// The system's trusted roots, read once.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map_or(String::new(), |e| format!(" ({e})"));
                return Err(format!("the system has no trusted root certificates{why}"));
            }
            Ok(Arc::new(store))
        })
        .clone()
}

/// `insecure_skip_verify`: any certificate, any name. Signatures are still
/// checked, so the handshake itself is sound; only the identity is not.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
