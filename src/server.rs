//! Wiring: bind every listener, build the route table, run until told to stop,
//! then drain.
//!
//! [`Server::start`] returns once every socket is bound (port 0 resolved), so
//! tests and the ready file see real addresses. [`Server::drain`] performs the
//! shutdown sequence: readiness fails, accept loops stop, held long-polls are
//! answered, WebSocket sessions close with 1001, and tracked tasks get the
//! grace period to finish.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::config::Config;
use crate::error::Error;
use crate::gateway::{Gateway, GatewaySettings};
use crate::http::static_client::StaticClient;
use crate::metrics::Metrics;
use crate::net::{self, tls, ListenerLimits};
use crate::reload::Reloader;
use crate::routes::{RouteTable, Routes};
use crate::shutdown::Shutdown;

/// Binds a client-facing listener. `TCP_NODELAY` is set on the listening
/// socket, which accepted sockets inherit on Linux, so each connection does not
/// need a system call of its own for it (Bayeux replies are small and must not
/// wait for Nagle); on other systems the accept loop sets it per connection.
fn client_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Descriptors kept for everything but client connections: the listening
/// sockets, configuration and certificate files, the file watcher, upstream
/// connections and the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The per-listener connection bound that fits the process's descriptor limit.
///
/// Raises the soft open-files limit to the hard one first. If `listeners ×
/// wanted` client connections, the admin listener's and a reserve still do not
/// fit, each listener gets an equal share of what does, with a warning: past
/// the limit `accept` fails for everyone (the admin listener too), while a full
/// connection slot refuses one client.
/// Connections per listener when `max_connections` is not set and the
/// open-files limit allows it.
const DEFAULT_MAX_CONNECTIONS: usize = 50_000;

fn fit_to_descriptors(configured: Option<usize>, listeners: usize, admin: usize) -> usize {
    let wanted = configured.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit; keeping max_connections");
            return wanted;
        }
    };
    let fitted = fit(wanted, listeners, admin, limit);
    if fitted < wanted {
        let message = "max_connections per listener lowered to fit the open-files limit (raise `ulimit -n` to serve more)";
        // Only a bound someone chose is worth a warning; the default adapts quietly.
        if configured.is_some() {
            tracing::warn!(
                max_connections = wanted,
                open_files_limit = limit,
                lowered_to = fitted,
                "{message}"
            );
        } else {
            tracing::info!(
                open_files_limit = limit,
                max_connections = fitted,
                "{message}"
            );
        }
    }
    fitted
}

fn fit(wanted: usize, listeners: usize, admin: usize, limit: u64) -> usize {
    let listeners = listeners.max(1) as u64;
    let available = limit.saturating_sub(RESERVED_DESCRIPTORS + admin as u64);
    let share = (available / listeners).max(1);
    wanted.min(share.try_into().unwrap_or(usize::MAX))
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    config: Config,
    listeners: BTreeMap<String, SocketAddr>,
    admin: Option<SocketAddr>,
    routes: Routes,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    resolvers: Vec<(String, Arc<tls::CertResolver>)>,
    reloader: Option<Arc<Reloader>>,
    max_connections: usize,
}

impl Server {
    /// Binds every listener of `config` and starts serving.
    pub async fn start(config: Config) -> Result<Server, Error> {
        let shutdown = Shutdown::new(config.server.drain_grace);
        let metrics = Arc::new(Metrics::default());
        let (table, _) = RouteTable::build(&config, None);
        let routes = Routes::new(table);
        let client = StaticClient::load(config.server.client_dir.as_deref()).map_err(|source| {
            Error::Io {
                what: "reading the Faye browser bundle".to_owned(),
                source,
            }
        })?;
        if !client.is_available() {
            tracing::warn!(
                "the Faye browser bundle is not available: {{prefix}}/client.js will answer 404"
            );
        }
        let gateway = Gateway::new(
            routes.clone(),
            client,
            shutdown.clone(),
            GatewaySettings {
                body_timeout: config.server.header_read_timeout,
                trusted_proxies: config.server.trusted_proxies.clone(),
            },
        );
        let max_connections = fit_to_descriptors(
            config.server.max_connections,
            config.server.listeners.len(),
            config.server.admin_max_connections,
        );
        let limits = ListenerLimits {
            max_connections,
            tls_handshake_timeout: config.server.tls_handshake_timeout,
            header_read_timeout: config.server.header_read_timeout,
            write_timeout: config.server.write_timeout,
        };

        let mut bound = Vec::new();
        let mut resolvers = Vec::new();
        for spec in &config.server.listeners {
            let acceptor = match &spec.tls {
                Some(t) => {
                    let certs = tls::load(t).map_err(|source| Error::Tls {
                        listener: spec.name.clone(),
                        source,
                    })?;
                    let resolver = Arc::new(tls::CertResolver::new(certs));
                    resolvers.push((spec.name.clone(), resolver.clone()));
                    Some(TlsAcceptor::from(tls::server_config(resolver)))
                }
                None => None,
            };
            let listener = client_listener(spec.addr).map_err(|source| Error::Bind {
                addr: spec.addr,
                source,
            })?;
            let addr = listener.local_addr().map_err(|source| Error::Bind {
                addr: spec.addr,
                source,
            })?;
            bound.push((spec.name.clone(), addr, listener, acceptor));
        }
        let admin_listener = match config.server.admin {
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::Bind { addr, source })?;
                Some(l)
            }
            None => None,
        };

        let mut listeners = BTreeMap::new();
        for (name, addr, listener, acceptor) in bound {
            tracing::info!(listener = %name, %addr, tls = acceptor.is_some(), "listening");
            listeners.insert(name.clone(), addr);
            tokio::spawn(net::serve(
                Arc::from(name.as_str()),
                listener,
                acceptor,
                gateway.clone(),
                limits.clone(),
                metrics.clone(),
            ));
        }
        let admin = match admin_listener {
            Some(l) => {
                let addr = l.local_addr().ok();
                if let Some(a) = addr {
                    tracing::info!(addr = %a, "admin listening");
                }
                tokio::spawn(admin::serve(
                    l,
                    config.server.admin_max_connections,
                    routes.clone(),
                    shutdown.clone(),
                    metrics.clone(),
                ));
                addr
            }
            None => None,
        };
        for route in routes.load().routes() {
            tracing::info!(prefix = %route.prefix, "serving route");
        }
        let reloader = Reloader::new(
            config.clone(),
            routes.clone(),
            resolvers.clone(),
            metrics.clone(),
        )
        .map(Arc::new);
        match &reloader {
            Some(r) => {
                tokio::spawn(r.clone().run(shutdown.clone()));
            }
            None => {
                // SIGHUP would otherwise terminate the process.
                #[cfg(unix)]
                if let Ok(mut hup) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                {
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            tracing::warn!(
                                "SIGHUP: serving the embedded configuration; nothing to reload"
                            );
                        }
                    });
                }
            }
        }
        Ok(Server {
            config,
            listeners,
            admin,
            routes,
            shutdown,
            metrics,
            resolvers,
            reloader,
            max_connections,
        })
    }

    /// The bound address of the listener called `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.get(name).copied()
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// The live route table.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The drain handle.
    pub fn shutdown_handle(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Process-wide metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The certificate resolvers by listener name (for certificate reload).
    pub fn resolvers(&self) -> &[(String, Arc<tls::CertResolver>)] {
        &self.resolvers
    }

    /// Reloads the configuration file now (as SIGHUP does). `None` when the
    /// server was started from text rather than a file.
    pub fn reload(&self) -> Option<Result<crate::reload::Summary, String>> {
        self.reloader.as_ref().map(|r| r.reload())
    }

    /// The ready-file document: pid and every bound address.
    pub fn ready_json(&self) -> String {
        let listeners: serde_json::Map<String, serde_json::Value> = self
            .listeners
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.to_string())))
            .collect();
        serde_json::json!({
            "pid": std::process::id(),
            "listeners": listeners,
            "admin": self.admin.map(|a| a.to_string()),
        })
        .to_string()
    }

    /// Writes [`Server::ready_json`] to `path` atomically.
    pub fn write_ready_file(&self, path: &Path) -> Result<(), Error> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.ready_json())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| Error::Io {
                what: format!("writing {}", path.display()),
                source,
            })
    }

    /// The per-listener connection bound in force (after fitting it to the
    /// open-files limit).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Drains: stop accepting, answer held polls, close sockets with 1001, and
    /// wait up to `grace` for every tracked task. True if everything ended in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        tracing::info!(grace_secs = grace.as_secs_f64(), "draining");
        self.shutdown.drain();
        let clean = self.shutdown.wait(grace).await;
        for route in self.routes.load().routes() {
            route.retire();
        }
        clean
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connections_fit_the_descriptor_limit() {
        assert_eq!(super::fit(50_000, 2, 64, 1_048_576), 50_000);
        // 1024 - 64 reserved - 64 admin = 896, shared by two listeners.
        assert_eq!(super::fit(50_000, 2, 64, 1024), 448);
        assert_eq!(super::fit(100, 2, 64, 1024), 100);
        assert_eq!(super::fit(100, 1, 64, 10), 1);
    }
}
