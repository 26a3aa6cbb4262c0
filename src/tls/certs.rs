//! Certificates and keys read from PEM files: the chain, the key checked
//! against it, and what an operator needs to know of each (the names it
//! covers, when it expires).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One certificate chain with its key, ready to serve.
#[derive(Clone, Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names (and IP addresses) the leaf covers, lowercase; `*.x` for
    /// wildcards.
    pub names: Vec<String>,
    /// The leaf's `notAfter`, in Unix seconds.
    pub not_after: i64,
    /// The first name, or the file when the leaf names nothing: the
    /// certificate's label in metrics and logs.
    pub label: String,
}

/// Reads a PEM chain (leaf first) from `path`.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(chain)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1) from `path`.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
        format!(
            "{} holds no private key (expected -----BEGIN PRIVATE KEY-----): {e}",
            path.display()
        )
    })
}

/// Loads a chain and its key, refusing a key that does not belong to the
/// certificate (rustls would otherwise fail every handshake).
pub fn load(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<LoadedCert, String> {
    let chain = read_chain(cert_file)?;
    let key = read_key(key_file)?;
    let (names, not_after) = describe(&chain[0]).map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{} is not the key of {} (the key and the certificate do not match)",
            key_file.display(),
            cert_file.display()
        ),
        other => format!("{}: {other}", key_file.display()),
    })?;
    let label = names
        .first()
        .cloned()
        .unwrap_or_else(|| cert_file.display().to_string());
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        not_after,
        label,
    })
}

/// The names a leaf covers (subjectAltName, else the subject's CN) and
/// its expiry.
fn describe(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) => {
                    let text = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip)
                            .map(|b| std::net::IpAddr::from(b).to_string())
                            .ok(),
                        16 => <[u8; 16]>::try_from(*ip)
                            .map(|b| std::net::IpAddr::from(b).to_string())
                            .ok(),
                        _ => None,
                    };
                    names.extend(text);
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok((names, cert.validity().not_after.timestamp()))
}
