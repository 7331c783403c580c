//! The live route table: path prefixes mapped to isolated engines, or to an
//! HTTP upstream (an existing Faye server during a migration).
//!
//! [`Routes`] is an `ArcSwap` of an immutable [`RouteTable`]; a request loads it
//! once and uses that snapshot throughout. A reload is planned, then applied:
//! [`RouteTable::plan`] compares a validated [`Config`] with the running table
//! without touching anything, and [`Plan::apply`] reuses the engine of every
//! prefix that still exists (retuning it in place), creates the new ones and
//! returns the table to store, so clients of unchanged routes survive a reload. Prefixes match whole path segments:
//! `/staging/faye` serves `/staging/faye`, `/staging/faye/…` and
//! `/staging/faye.js`, never `/staging/fayeX`; the longest prefix wins.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::{Config, EngineSettings, RouteSpec};
use crate::shutdown::Shutdown;

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

/// What a reload changes relative to the running table.
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

/// How one route of the new table comes to be.
#[derive(Debug)]
enum Step {
    /// The running route, untouched.
    Keep(Route),
    /// The running engine with new tunables.
    Retune(Route, Box<EngineSettings>),
    /// A new engine or upstream.
    Create(Box<RouteSpec>),
}

/// A reload worked out but not yet applied: computing it changes nothing, so a
/// plan can be thrown away. [`Plan::apply`] creates, retunes and builds the
/// table; storing it and retiring what left is the caller's (see `reload`).
#[derive(Debug)]
pub struct Plan {
    steps: Vec<Step>,
    removed: Vec<Route>,
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
    /// Works out what serving `config` takes, given the running table: which
    /// routes stay, which engines are retuned, which are created and which
    /// leave. Pure: nothing running is touched.
    pub fn plan(config: &Config, current: Option<&RouteTable>) -> Plan {
        let mut steps = Vec::with_capacity(config.routes.len());
        let mut kept: Vec<&Route> = Vec::new();
        for spec in &config.routes {
            let existing = current.and_then(|t| t.routes.iter().find(|r| *r.prefix == spec.prefix));
            let step = match (existing, &spec.upstream) {
                // Another engine kind or Redis target is a new engine: the
                // running one's sessions live somewhere else.
                (
                    Some(
                        r @ Route {
                            backend: Backend::Engine(engine),
                            ..
                        },
                    ),
                    None,
                ) if engine.storage() == spec.storage => {
                    kept.push(r);
                    if *engine.settings() == spec.settings {
                        Step::Keep(r.clone())
                    } else {
                        Step::Retune(r.clone(), Box::new(spec.settings.clone()))
                    }
                }
                (
                    Some(
                        r @ Route {
                            backend: Backend::Upstream(up),
                            ..
                        },
                    ),
                    Some(url),
                ) if up.url() == url => {
                    kept.push(r);
                    Step::Keep(r.clone())
                }
                _ => Step::Create(Box::new(spec.clone())),
            };
            steps.push(step);
        }
        let removed = current
            .map(|t| {
                t.routes
                    .iter()
                    .filter(|r| !kept.iter().any(|k| k.same_backend(r)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Plan { steps, removed }
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

impl Plan {
    /// Carries the plan out: new engines are created (their sweepers started,
    /// so call this inside a runtime) and retuned ones take their tunables.
    /// Returns the table to store and what changed.
    pub fn apply(self, drain: &Shutdown) -> (RouteTable, Diff) {
        let mut diff = Diff {
            removed: self.removed,
            ..Diff::default()
        };
        let mut routes = Vec::with_capacity(self.steps.len());
        for step in self.steps {
            let route = match step {
                Step::Keep(route) => {
                    diff.unchanged.push(route.prefix.to_string());
                    route
                }
                Step::Retune(route, settings) => {
                    if let Some(engine) = route.engine() {
                        engine.retune(*settings);
                    }
                    diff.retuned.push(route.prefix.to_string());
                    route
                }
                Step::Create(spec) => {
                    diff.added.push(spec.prefix.clone());
                    let backend = match &spec.upstream {
                        None => {
                            let engine = Engine::with_storage(
                                &spec.prefix,
                                spec.settings.clone(),
                                &spec.storage,
                                drain.clone(),
                            )
                            .unwrap_or_else(|e| {
                                // Validation already parsed the URL. Should the
                                // client still refuse it, the route must not
                                // quietly serve from one process's memory: it
                                // is retired, and `/readyz` says so.
                                tracing::error!(route = %spec.prefix, error = %e, "redis engine not available; route not served");
                                let engine =
                                    Engine::new(&spec.prefix, spec.settings.clone(), drain.clone());
                                engine.retire();
                                engine
                            });
                            engine.spawn_sweeper();
                            Backend::Engine(engine)
                        }
                        Some(url) => Backend::Upstream(Arc::new(Upstream::new(url, &spec.prefix))),
                    };
                    Route {
                        prefix: Arc::from(spec.prefix.as_str()),
                        backend,
                    }
                }
            };
            routes.push(route);
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        (RouteTable { routes }, diff)
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
        let (table, diff) = RouteTable::plan(&config, None).apply(&Shutdown::default());
        assert_eq!(diff.added.len(), 2);
        assert_eq!(&*table.lookup("/a/b/c").unwrap().0.prefix, "/a/b");
        assert_eq!(&*table.lookup("/a/bc").unwrap().0.prefix, "/a");
        assert!(table.lookup("/ab").is_none());

        let text2 = "[[route]]\nprefix = \"/a\"\ntimeout_secs = 3\n[[route]]\nprefix = \"/c\"\n";
        let config2 = Config::parse(text2, "t", std::path::Path::new(".")).unwrap();
        let plan = RouteTable::plan(&config2, Some(&table));
        assert_eq!(
            *table.lookup("/a").unwrap().0.engine().unwrap().settings(),
            config.routes[0].settings,
            "planning retunes nothing"
        );
        let (table2, diff2) = plan.apply(&Shutdown::default());
        assert_eq!(diff2.retuned, ["/a"]);
        assert_eq!(diff2.added, ["/c"]);
        assert_eq!(diff2.removed.len(), 1);
        let old_a = table.lookup("/a").unwrap().0.engine().unwrap();
        let new_a = table2.lookup("/a").unwrap().0.engine().unwrap();
        assert!(old_a.same(new_a));
    }

    #[tokio::test]
    async fn a_new_engine_kind_or_redis_target_is_a_new_engine() {
        let env = [
            ("URL_1", "redis://127.0.0.1:1/"),
            ("URL_2", "redis://127.0.0.1:2/"),
        ];
        let parse =
            |text: &str| Config::parse_with(text, "t", std::path::Path::new("."), &env).unwrap();
        let memory = parse("[[route]]\nprefix = \"/a\"\n");
        let redis_1 =
            parse("[[route]]\nprefix = \"/a\"\nengine = \"redis\"\nredis_url_env = \"URL_1\"\n");
        let redis_1_tuned = parse("[[route]]\nprefix = \"/a\"\nengine = \"redis\"\nredis_url_env = \"URL_1\"\nredis_stream_max_len = 500\n");
        let redis_2 =
            parse("[[route]]\nprefix = \"/a\"\nengine = \"redis\"\nredis_url_env = \"URL_2\"\n");
        let drain = Shutdown::default();
        let (t0, _) = RouteTable::plan(&memory, None).apply(&drain);
        let (t1, d1) = RouteTable::plan(&redis_1, Some(&t0)).apply(&drain);
        assert_eq!(
            (d1.added.len(), d1.removed.len()),
            (1, 1),
            "memory to redis"
        );
        assert!(t1.routes()[0].engine().unwrap().is_shared());
        let (t2, d2) = RouteTable::plan(&redis_1_tuned, Some(&t1)).apply(&drain);
        assert_eq!(d2.retuned, ["/a"], "a Redis tunable retunes in place");
        let (t3, d3) = RouteTable::plan(&redis_2, Some(&t2)).apply(&drain);
        assert_eq!((d3.added.len(), d3.removed.len()), (1, 1), "another Redis");
        for t in [t0, t1, t2, t3] {
            for r in t.routes() {
                r.retire();
            }
        }
    }
}
