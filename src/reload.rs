//! Hot reload of `routes.toml` and of the TLS certificates it names.
//!
//! Triggers: SIGHUP, and a watch on the directories holding the file and the
//! certificates (a directory watch, so an editor's write-to-temp-then-rename is
//! seen), backed by a slow content poll in case an event is missed. A reload
//! only happens when the bytes of the file or of a certificate changed.
//!
//! Reloads run one at a time (SIGHUP, the watcher and `Server::reload` share
//! one lock): the file is read and validated, the route change is planned
//! without touching anything (`routes::RouteTable::plan`), and only then
//! applied and swapped in. What a reload does:
//! - unchanged routes keep their engine: clients, subscriptions, queues and
//!   sockets notice nothing;
//! - changed tunables are stored into the live engine and apply to the next
//!   request, connect or socket;
//! - new prefixes start serving at once;
//! - removed prefixes are retired: held connects are answered with
//!   `reconnect: "handshake"`, sockets are closed, and the prefix answers 404;
//! - certificates are swapped in each listener's resolver: new handshakes get
//!   the new certificate, established connections keep theirs;
//! - listener addresses, the admin address and other `[server]` process settings
//!   need a restart; a change there is logged and otherwise ignored.
//!
//! A file that fails validation (or names a certificate that cannot be loaded)
//! changes nothing: the error is logged with file, line and key, and counted in
//! `bayeux_edge_reloads_total{result="error"}`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::Config;
use crate::config::ConfigError;
use crate::metrics::Metrics;
use crate::net::tls::{self, CertResolver, TlsError};
use crate::routes::{RouteTable, Routes};
use crate::shutdown::Shutdown;

/// How often the files are re-read in case a watch event was missed.
const POLL: Duration = Duration::from_secs(5);
/// Editors write in several steps; wait for the burst of events to settle.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// What one reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Prefixes added.
    pub added: Vec<String>,
    /// Prefixes retuned in place.
    pub retuned: Vec<String>,
    /// Prefixes retired.
    pub removed: Vec<String>,
    /// Listeners whose certificates were replaced.
    pub certificates: Vec<String>,
}

impl std::fmt::Display for Summary {
    /// `added /a; retuned /b` or `no change`, as the console lists it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            ("added", &self.added),
            ("retuned", &self.retuned),
            ("removed", &self.removed),
            ("certificates", &self.certificates),
        ];
        let mut any = false;
        for (what, list) in parts.iter().filter(|(_, l)| !l.is_empty()) {
            if any {
                f.write_str("; ")?;
            }
            write!(f, "{what} {}", list.join(", "))?;
            any = true;
        }
        if !any {
            f.write_str("no change")?;
        }
        Ok(())
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener's certificate cannot be loaded.
    #[error("listener {listener}: {source}")]
    Tls {
        /// The listener.
        listener: String,
        /// The cause.
        #[source]
        source: TlsError,
    },
}

#[derive(Debug)]
struct State {
    config: Config,
    /// Fingerprint of the files as last read, accepted or not, so a rejected
    /// file is not retried until it changes again.
    fingerprint: u64,
}

/// Re-reads the configuration and applies it to a running server.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    routes: Routes,
    resolvers: Vec<(String, Arc<CertResolver>)>,
    metrics: Arc<Metrics>,
    /// Handed to the engines of new routes.
    drain: Shutdown,
    state: Mutex<State>,
}

fn cert_paths(config: &Config) -> Vec<PathBuf> {
    config
        .server
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|t| {
            t.certificates
                .iter()
                .flat_map(|c| [c.cert.clone(), c.key.clone()])
        })
        .collect()
}

fn fingerprint(path: &Path, config: Option<&Config>) -> u64 {
    let mut h = DefaultHasher::new();
    std::fs::read(path).ok().hash(&mut h);
    if let Some(c) = config {
        for p in cert_paths(c) {
            std::fs::read(&p).ok().hash(&mut h);
        }
    }
    h.finish()
}

impl Reloader {
    /// A reloader for a server started from `config` (which must have a path).
    pub fn new(
        config: Config,
        routes: Routes,
        resolvers: Vec<(String, Arc<CertResolver>)>,
        metrics: Arc<Metrics>,
        drain: Shutdown,
    ) -> Option<Reloader> {
        let path = config.path.clone()?;
        let fp = fingerprint(&path, Some(&config));
        Some(Reloader {
            path,
            routes,
            resolvers,
            metrics,
            drain,
            state: Mutex::new(State {
                config,
                fingerprint: fp,
            }),
        })
    }

    /// The file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads now, whether or not the files changed.
    pub fn reload(&self) -> Result<Summary, ReloadError> {
        // One reload at a time: the state is read, planned against and
        // replaced as one step.
        let mut state = self.state.lock();
        let result = self.apply(&mut state);
        if result.is_err() {
            state.fingerprint = fingerprint(&self.path, Some(&state.config));
        }
        drop(state);
        let detail = match &result {
            Ok(summary) => summary.to_string(),
            Err(e) => e.to_string(),
        };
        self.metrics.reload(result.is_ok(), detail);
        match &result {
            Ok(s) => tracing::info!(
                file = %self.path.display(),
                added = ?s.added,
                retuned = ?s.retuned,
                removed = ?s.removed,
                certificates = ?s.certificates,
                "configuration reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "configuration rejected; the running configuration stays")
            }
        }
        result
    }

    /// Reloads if the file or a certificate changed since the last reload.
    pub fn reload_if_changed(&self) -> Option<Result<Summary, ReloadError>> {
        let current = {
            let st = self.state.lock();
            (st.fingerprint, st.config.clone())
        };
        let fp = fingerprint(&self.path, Some(&current.1));
        if fp == current.0 {
            return None;
        }
        Some(self.reload())
    }

    fn apply(&self, state: &mut State) -> Result<Summary, ReloadError> {
        let new = Config::load(&self.path)?;
        let old = &state.config;
        if new
            .server
            .listeners
            .iter()
            .map(|l| (&l.name, l.addr))
            .ne(old.server.listeners.iter().map(|l| (&l.name, l.addr)))
            || new.server.admin != old.server.admin
        {
            tracing::warn!("listener or admin addresses changed: they apply at the next restart");
        }
        // Load every certificate before changing anything, so a bad one rejects the whole file.
        let mut cert_updates = Vec::new();
        for spec in &new.server.listeners {
            let (Some(t), Some((_, resolver))) = (
                &spec.tls,
                self.resolvers.iter().find(|(n, _)| *n == spec.name),
            ) else {
                continue;
            };
            let certs = tls::load(t).map_err(|source| ReloadError::Tls {
                listener: spec.name.clone(),
                source,
            })?;
            cert_updates.push((spec.name.clone(), resolver.clone(), certs));
        }

        let plan = RouteTable::plan(&new, Some(&self.routes.load()));
        let (table, diff) = plan.apply(&self.drain);
        self.routes.store(table);
        for route in &diff.removed {
            route.retire();
        }
        let mut summary = Summary {
            added: diff.added,
            retuned: diff.retuned,
            removed: diff.removed.iter().map(|r| r.prefix.to_string()).collect(),
            certificates: Vec::new(),
        };
        for (name, resolver, certs) in cert_updates {
            resolver.replace(certs);
            summary.certificates.push(name);
        }
        state.fingerprint = fingerprint(&self.path, Some(&new));
        state.config = new;
        Ok(summary)
    }

    /// Watches for SIGHUP and file changes until the drain starts.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = self.watch(tx);
        if let Err(e) = &watcher {
            tracing::warn!(error = %e, "file watch unavailable; relying on SIGHUP and polling");
        }
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut poll = tokio::time::interval(POLL);
        poll.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.draining() => break,
                _ = async {
                    #[cfg(unix)]
                    if let Some(h) = hup.as_mut() { h.recv().await; return; }
                    std::future::pending::<()>().await
                } => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload()).await;
                }
                Some(()) = rx.recv() => {
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
                }
                _ = poll.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
                }
            }
        }
        drop(watcher);
    }

    fn watch(
        &self,
        tx: tokio::sync::mpsc::Sender<()>,
    ) -> notify::Result<notify::RecommendedWatcher> {
        use notify::{RecursiveMode, Watcher};
        let mut files: Vec<PathBuf> = vec![self.path.clone()];
        files.extend(cert_paths(&self.state.lock().config));
        let names: Vec<std::ffi::OsString> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_owned()))
            .collect();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                // Only events on the files of interest: the directory may hold other busy files.
                let relevant = res.is_ok_and(|ev| {
                    ev.paths
                        .iter()
                        .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
                });
                if relevant {
                    let _ = tx.try_send(());
                }
            })?;
        let dirs = files;
        let mut dirs: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|p| {
                p.parent().map(|d| {
                    if d.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        d.to_path_buf()
                    }
                })
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            watcher.watch(&d, RecursiveMode::NonRecursive)?;
        }
        Ok(watcher)
    }
}
