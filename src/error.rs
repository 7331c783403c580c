//! Start-up and operational errors of the server (not Bayeux protocol errors,
//! which are values sent to clients; see `bayeux::error`).

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::net::tls::TlsError;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `routes.toml` is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener's certificates could not be loaded.
    #[error("listener {listener}: {source}")]
    Tls {
        /// The listener's name.
        listener: String,
        /// The cause.
        #[source]
        source: TlsError,
    },
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Any other I/O failure at start-up (the ready file, the client bundle).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
