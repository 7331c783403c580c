//! The live route table: path prefixes mapped to isolated engines, or to an
//! HTTP upstream (an existing Faye server during a migration).
//!
//! [`Routes`] is an `ArcSwap` of an immutable [`RouteTable`]; a request loads it
//! once and uses that snapshot throughout. [`RouteTable::build`] turns a
//! validated [`Config`] into a table and, given the running table, reuses the
//! engine of every prefix that still exists (retuning it in place), so clients
//! of unchanged routes survive a reload. Prefixes match whole path segments:
//! `/staging/faye` serves `/staging/faye`, `/staging/faye/…` and
//! `/staging/faye.js`, never `/staging/fayeX`; the longest prefix wins.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;

use crate::engine::Engine;
use crate::upstream::Upstream;

/// What serves a route.
#[derive(Debug, Clone)]
pub enum Backend {
    /// An in-process Bayeux engine.
    Engine(Engine),
    /// An HTTP upstream that requests are forwarded to.
    Upstream(Arc<Upstream>),
}

/// One route: a prefix and what serves it.
#[derive(Debug, Clone)]
pub struct Route {
    /// The path prefix, e.g. `/staging/faye`.
    pub prefix: Arc<str>,
    /// The engine or upstream.
    pub backend: Backend,
}

impl Route {
    /// The engine, for engine routes.
    pub fn engine(&self) -> Option<&Engine> {
        match &self.backend {
            Backend::Engine(e) => Some(e),
            Backend::Upstream(_) => None,
        }
    }

    fn same_backend(&self, other: &Route) -> bool {
        match (&self.backend, &other.backend) {
            (Backend::Engine(a), Backend::Engine(b)) => a.same(b),
            (Backend::Upstream(a), Backend::Upstream(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Ends the route's sessions (engine) when it leaves the table.
    pub fn retire(&self) {
        if let Backend::Engine(e) = &self.backend {
            e.retire();
        }
    }
}

/// An immutable snapshot of every route, longest prefix first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// What [`RouteTable::build`] changed relative to the running table.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    /// Prefixes that are new.
    pub added: Vec<String>,
    /// Prefixes whose tunables changed (engine kept).
    pub retuned: Vec<String>,
    /// Prefixes kept as they were.
    pub unchanged: Vec<String>,
    /// Engines no longer referenced; the caller retires them after the swap.
    pub removed: Vec<Route>,
}

/// Where a request path landed inside a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `{prefix}` itself or a path below it; the rest after the prefix (may be empty).
    Path(&'a str),
    /// `{prefix}.ext`, e.g. `/bayeux.js`: the extension without the dot.
    Extension(&'a str),
}

impl RouteTable {
    /// Builds a table from `config`, reusing engines from `current` by prefix.
    /// New engines get their sweeper started, so call this inside a runtime.
    pub fn build(config: &Config, current: Option<&RouteTable>) -> (RouteTable, Diff) {
        let mut diff = Diff::default();
        let mut routes = Vec::with_capacity(config.routes.len());
        for spec in &config.routes {
            let existing = current.and_then(|t| t.routes.iter().find(|r| *r.prefix == spec.prefix));
            let backend = match (&spec.upstream, existing.map(|r| &r.backend)) {
                (None, Some(Backend::Engine(engine))) => {
                    if *engine.settings() != spec.settings {
                        engine.retune(spec.settings.clone());
                        diff.retuned.push(spec.prefix.clone());
                    } else {
                        diff.unchanged.push(spec.prefix.clone());
                    }
                    Backend::Engine(engine.clone())
                }
                (Some(url), Some(Backend::Upstream(up))) if up.url() == url => {
                    diff.unchanged.push(spec.prefix.clone());
                    Backend::Upstream(up.clone())
                }
                (None, _) => {
                    let engine = Engine::new(&spec.prefix, spec.settings.clone());
                    engine.spawn_sweeper();
                    diff.added.push(spec.prefix.clone());
                    Backend::Engine(engine)
                }
                (Some(url), _) => {
                    diff.added.push(spec.prefix.clone());
                    Backend::Upstream(Arc::new(Upstream::new(url, &spec.prefix)))
                }
            };
            routes.push(Route {
                prefix: Arc::from(spec.prefix.as_str()),
                backend,
            });
        }
        if let Some(current) = current {
            for route in &current.routes {
                if !routes.iter().any(|r| r.same_backend(route)) {
                    diff.removed.push(route.clone());
                }
            }
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        (RouteTable { routes }, diff)
    }

    /// Every route, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route serving `path`, by longest whole-segment prefix.
    pub fn lookup<'p>(&self, path: &'p str) -> Option<(&Route, Target<'p>)> {
        self.routes
            .iter()
            .find_map(|route| match_prefix(&route.prefix, path).map(|t| (route, t)))
    }
}

fn match_prefix<'p>(prefix: &str, path: &'p str) -> Option<Target<'p>> {
    if prefix == "/" {
        return Some(Target::Path(path));
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() || rest.starts_with('/') {
        return Some(Target::Path(rest));
    }
    let ext = rest.strip_prefix('.')?;
    (!ext.is_empty() && !ext.contains(['/', '.'])).then_some(Target::Extension(ext))
}

/// The shared, swappable route table.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    table: Arc<ArcSwap<RouteTable>>,
}

impl Routes {
    /// A handle serving `table`.
    pub fn new(table: RouteTable) -> Self {
        Routes {
            table: Arc::new(ArcSwap::from_pointee(table)),
        }
    }

    /// The current snapshot; load once per request.
    pub fn load(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Publishes a new table.
    pub fn store(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_segment_prefixes() {
        assert_eq!(match_prefix("/bayeux", "/bayeux"), Some(Target::Path("")));
        assert_eq!(match_prefix("/bayeux", "/bayeux/"), Some(Target::Path("/")));
        assert_eq!(
            match_prefix("/bayeux", "/bayeux/a/b/c"),
            Some(Target::Path("/a/b/c"))
        );
        assert_eq!(
            match_prefix("/bayeux", "/bayeux.js"),
            Some(Target::Extension("js"))
        );
        assert_eq!(match_prefix("/bayeux", "/bayeuxfoo"), None);
        assert_eq!(match_prefix("/bayeux", "/bayeux.a.b"), None);
        assert_eq!(match_prefix("/bayeux", "/other"), None);
        assert_eq!(
            match_prefix("/", "/anything"),
            Some(Target::Path("/anything"))
        );
    }

    #[tokio::test]
    async fn longest_prefix_wins_and_reload_keeps_engines() {
        let text = "[[route]]\nprefix = \"/a\"\n[[route]]\nprefix = \"/a/b\"\n";
        let config = Config::parse(text, "t", std::path::Path::new(".")).unwrap();
        let (table, diff) = RouteTable::build(&config, None);
        assert_eq!(diff.added.len(), 2);
        assert_eq!(&*table.lookup("/a/b/c").unwrap().0.prefix, "/a/b");
        assert_eq!(&*table.lookup("/a/bc").unwrap().0.prefix, "/a");
        assert!(table.lookup("/ab").is_none());

        let text2 = "[[route]]\nprefix = \"/a\"\ntimeout_secs = 3\n[[route]]\nprefix = \"/c\"\n";
        let config2 = Config::parse(text2, "t", std::path::Path::new(".")).unwrap();
        let (table2, diff2) = RouteTable::build(&config2, Some(&table));
        assert_eq!(diff2.retuned, ["/a"]);
        assert_eq!(diff2.added, ["/c"]);
        assert_eq!(diff2.removed.len(), 1);
        let old_a = table.lookup("/a").unwrap().0.engine().unwrap();
        let new_a = table2.lookup("/a").unwrap().0.engine().unwrap();
        assert!(old_a.same(new_a));
    }
}
