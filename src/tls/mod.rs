//! TLS on both sides of the gateway, on rustls with the `ring` provider
//! (named everywhere, so no second provider in the dependency tree can make
//! rustls guess): the listener's certificates and handshakes
//! ([`terminate`]), certificate files ([`certs`]), the SNI choice
//! ([`resolver`]) and the client side towards backends ([`backend`]).

pub mod backend;
pub mod certs;
pub mod resolver;
pub mod terminate;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use terminate::{Handshake, Terminator};

/// The one crypto provider, for servers and clients alike.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
