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
use crate::budget::IncomingBudget;
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

/// A bound client listener, not yet serving.
struct Bound {
    name: String,
    addr: SocketAddr,
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    resolver: Option<Arc<tls::CertResolver>>,
}

fn bind_listeners(config: &Config) -> Result<Vec<Bound>, Error> {
    let mut bound = Vec::new();
    for spec in &config.server.listeners {
        let resolver = match &spec.tls {
            Some(t) => {
                let certs = tls::load(t).map_err(|source| Error::Tls {
                    listener: spec.name.clone(),
                    source,
                })?;
                Some(Arc::new(tls::CertResolver::new(certs)))
            }
            None => None,
        };
        let bind_error = |source| Error::Bind {
            addr: spec.addr,
            source,
        };
        let listener = client_listener(spec.addr).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        bound.push(Bound {
            name: spec.name.clone(),
            addr,
            listener,
            acceptor: resolver
                .clone()
                .map(|r| TlsAcceptor::from(tls::server_config(r))),
            resolver,
        });
    }
    Ok(bound)
}

fn gateway(config: &Config, routes: Routes, shutdown: Shutdown) -> Result<Gateway, Error> {
    let client =
        StaticClient::load(config.server.client_dir.as_deref()).map_err(|source| Error::Io {
            what: "reading the Faye browser bundle".to_owned(),
            source,
        })?;
    if !client.is_available() {
        tracing::warn!(
            "the Faye browser bundle is not available: {{prefix}}/client.js will answer 404"
        );
    }
    let settings = GatewaySettings {
        body_timeout: config.server.header_read_timeout,
        trusted_proxies: config.server.trusted_proxies.clone(),
        incoming: IncomingBudget::new(config.server.max_incoming_bytes),
    };
    Ok(Gateway::new(routes, client, shutdown, settings))
}

/// Watches the configuration file, when the server was started from one.
fn start_reloader(
    config: Config,
    routes: &Routes,
    resolvers: Vec<(String, Arc<tls::CertResolver>)>,
    metrics: &Arc<Metrics>,
    shutdown: &Shutdown,
) -> Option<Arc<Reloader>> {
    let reloader = Reloader::new(
        config,
        routes.clone(),
        resolvers,
        metrics.clone(),
        shutdown.clone(),
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
    reloader
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    listeners: BTreeMap<String, SocketAddr>,
    admin: Option<SocketAddr>,
    routes: Routes,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    reloader: Option<Arc<Reloader>>,
}

impl Server {
    /// Binds every listener of `config` and starts serving.
    pub async fn start(config: Config) -> Result<Server, Error> {
        let shutdown = Shutdown::new(config.server.drain_grace);
        let metrics = Arc::new(Metrics::default());
        let (table, _) = RouteTable::plan(&config, None).apply(&shutdown);
        let routes = Routes::new(table);
        let gateway = gateway(&config, routes.clone(), shutdown.clone())?;
        let limits = ListenerLimits {
            max_connections: fit_to_descriptors(
                config.server.max_connections,
                config.server.listeners.len(),
                config.server.admin_max_connections,
            ),
            tls_handshake_timeout: config.server.tls_handshake_timeout,
            header_read_timeout: config.server.header_read_timeout,
            write_timeout: config.server.write_timeout,
        };
        // Everything is bound before anything is served, so a bad address or
        // certificate stops the start with nothing half running.
        let bound = bind_listeners(&config)?;
        let admin_listener = match config.server.admin {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::Bind { addr, source })?,
            ),
            None => None,
        };

        let mut listeners = BTreeMap::new();
        let mut resolvers = Vec::new();
        for b in bound {
            tracing::info!(listener = %b.name, addr = %b.addr, tls = b.acceptor.is_some(), "listening");
            listeners.insert(b.name.clone(), b.addr);
            resolvers.extend(b.resolver.map(|r| (b.name.clone(), r)));
            tokio::spawn(net::serve(
                Arc::from(b.name.as_str()),
                b.listener,
                b.acceptor,
                gateway.clone(),
                limits.clone(),
                metrics.clone(),
            ));
        }
        let admin = admin_listener.and_then(|l| {
            let addr = l.local_addr().ok()?;
            tracing::info!(%addr, "admin listening");
            let settings = admin::AdminSettings {
                max_connections: config.server.admin_max_connections,
                token: config.server.admin_token.clone(),
            };
            tokio::spawn(admin::serve(
                l,
                settings,
                routes.clone(),
                shutdown.clone(),
                metrics.clone(),
            ));
            Some(addr)
        });
        for route in routes.load().routes() {
            tracing::info!(prefix = %route.prefix, "serving route");
        }
        let reloader = start_reloader(config, &routes, resolvers, &metrics, &shutdown);
        Ok(Server {
            listeners,
            admin,
            routes,
            shutdown,
            metrics,
            reloader,
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

    /// Reloads the configuration file now (as SIGHUP does). `None` when the
    /// server was started from text rather than a file.
    pub fn reload(&self) -> Option<Result<crate::reload::Summary, crate::reload::ReloadError>> {
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

    /// Drains: stop accepting, answer held polls, close sockets with 1001, and
    /// wait up to `grace` for every tracked task. True if everything ended in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        tracing::info!(grace_secs = grace.as_secs_f64(), "draining");
        self.shutdown.drain();
        let clean = self.shutdown.wait(grace).await;
        for route in self.routes.load().routes() {
            // Redis routes: every client's position is saved before the local
            // copies go, so clients resume on other nodes with their ids.
            if let Some(engine) = route.engine() {
                engine.checkpoint_all().await;
            }
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
