//! Taps: an operator watching the events published on a route, live.
//!
//! A tap is not a session. It has no client id, is never counted among the
//! route's sessions or subscriptions, and takes nothing from any mailbox: the
//! publish path hands it the same serialized bytes it hands subscribers (a
//! reference count, no copy, no re-encoding), after the recipients are known.
//! It sees what subscribers could see: publishes to `/service/**` are never
//! serialized for delivery and so never reach a tap, and a tap's pattern must
//! be one a client could subscribe to.
//!
//! Bounds: at most [`MAX_TAPS`] per engine, and each tap holds at most
//! [`TAP_MESSAGES`] events and [`TAP_BYTES`] bytes (one event of any size fits
//! an empty tap, as in a mailbox). A tap whose reader falls behind drops the
//! newest events and counts them; the reader reports the count.
//!
//! Cost: with no tap open the publish path reads one relaxed atomic
//! ([`Taps::offer`]). With taps open it loads the tap list (an `ArcSwap`,
//! no lock), matches each tap's pattern against the channel and, for a
//! match, pushes into that tap's queue under its own short lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Engine;
use crate::bayeux::channel;

/// Most taps open on one engine at once.
pub const MAX_TAPS: usize = 8;
/// Most events waiting in one tap.
pub const TAP_MESSAGES: usize = 1024;
/// Most bytes waiting in one tap.
pub const TAP_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Bytes>,
    bytes: usize,
    closed: bool,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    pattern: Box<str>,
    queue: Mutex<Queue>,
    notify: Notify,
    dropped: AtomicU64,
}

impl Entry {
    fn push(&self, event: &Bytes) {
        {
            let mut q = self.queue.lock();
            let full = !q.events.is_empty()
                && (q.events.len() >= TAP_MESSAGES || q.bytes + event.len() > TAP_BYTES);
            if full || q.closed {
                drop(q);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            q.bytes += event.len();
            q.events.push_back(event.clone());
        }
        self.notify.notify_one();
    }

    fn close(&self) {
        self.queue.lock().closed = true;
        self.notify.notify_one();
    }
}

/// The taps of one engine.
#[derive(Debug, Default)]
pub(crate) struct Taps {
    /// Open taps; the publish path reads only this when there are none.
    open: AtomicUsize,
    entries: ArcSwap<Vec<Arc<Entry>>>,
    /// Serializes changes to `entries` (readers never take it).
    change: Mutex<()>,
    next_id: AtomicU64,
}

impl Taps {
    /// Hands a serialized event published to `name` to every tap whose
    /// pattern matches it.
    #[inline]
    pub(crate) fn offer(&self, name: &str, event: &Bytes) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.offer_slow(name, event);
    }

    #[cold]
    fn offer_slow(&self, name: &str, event: &Bytes) {
        for entry in self.entries.load().iter() {
            if channel::matches(&entry.pattern, name) {
                entry.push(event);
            }
        }
    }

    fn add(&self, pattern: &str) -> Result<Arc<Entry>, TapRefused> {
        let _change = self.change.lock();
        let current = self.entries.load_full();
        if current.len() >= MAX_TAPS {
            return Err(TapRefused::TooMany);
        }
        let entry = Arc::new(Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            pattern: Box::from(pattern),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
        });
        let mut next = Vec::with_capacity(current.len() + 1);
        next.extend(current.iter().cloned());
        next.push(entry.clone());
        self.entries.store(Arc::new(next));
        self.open.store(current.len() + 1, Ordering::Relaxed);
        Ok(entry)
    }

    fn remove(&self, id: u64) {
        let _change = self.change.lock();
        let current = self.entries.load_full();
        let next: Vec<Arc<Entry>> = current.iter().filter(|e| e.id != id).cloned().collect();
        self.open.store(next.len(), Ordering::Relaxed);
        self.entries.store(Arc::new(next));
    }

    /// Ends every tap (the route was retired): readers see the end of the stream.
    pub(crate) fn close(&self) {
        let _change = self.change.lock();
        self.open.store(0, Ordering::Relaxed);
        for entry in self.entries.swap(Arc::new(Vec::new())).iter() {
            entry.close();
        }
    }

    /// Taps open now.
    pub(crate) fn len(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Why a tap was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TapRefused {
    /// The pattern is not a channel name or pattern a client could subscribe
    /// to on this route (`/meta/**` and `/service/**` are never delivered).
    #[error("not a channel or pattern that can be subscribed to on this route")]
    Invalid,
    /// The route already has [`MAX_TAPS`] taps open.
    #[error("too many taps open on this route")]
    TooMany,
    /// The route was retired.
    #[error("the route is being retired")]
    Retired,
}

/// An open tap: the events published on its route to channels its pattern
/// matches, from the moment it opened. Dropping it closes it.
#[derive(Debug)]
pub struct Tap {
    engine: Engine,
    entry: Arc<Entry>,
}

impl Tap {
    /// The pattern it watches.
    pub fn pattern(&self) -> &str {
        &self.entry.pattern
    }

    /// Events dropped so far because the reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.entry.dropped.load(Ordering::Relaxed)
    }

    /// Waits for events and takes up to `max` of them, oldest first; `None`
    /// once the tap is closed (its route was retired).
    pub async fn next(&mut self, max: usize) -> Option<Vec<Bytes>> {
        loop {
            // A push between the check and the wait leaves a permit, so it is not missed.
            let notified = self.entry.notify.notified();
            {
                let mut q = self.entry.queue.lock();
                if !q.events.is_empty() {
                    let n = q.events.len().min(max.max(1));
                    let events: Vec<Bytes> = q.events.drain(..n).collect();
                    q.bytes -= events.iter().map(Bytes::len).sum::<usize>();
                    return Some(events);
                }
                if q.closed {
                    return None;
                }
            }
            notified.await;
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.engine.inner.taps.remove(self.entry.id);
    }
}

impl Engine {
    /// Opens a tap on `pattern` (a channel name or a wildcard pattern a client
    /// could subscribe to). See the module documentation for its bounds.
    pub fn tap(&self, pattern: &str) -> Result<Tap, TapRefused> {
        let bounds = self.settings().channel_bounds();
        if !bounds.admits(pattern) || !channel::is_subscribable(pattern) {
            return Err(TapRefused::Invalid);
        }
        if self.is_retired() {
            return Err(TapRefused::Retired);
        }
        let entry = self.inner.taps.add(pattern)?;
        // A retire that ran between the check and the add closed the list before
        // this entry joined it; close it here so the reader still sees the end.
        if self.is_retired() {
            entry.close();
        }
        Ok(Tap {
            engine: self.clone(),
            entry,
        })
    }

    /// Taps open on this engine.
    pub fn taps(&self) -> usize {
        self.inner.taps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::Shutdown;
    use serde_json::{json, Map, Value};

    fn event(channel: &str, data: Value) -> Map<String, Value> {
        let v = json!({"channel": channel, "data": data});
        v.as_object().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn a_tap_sees_matching_publishes_and_is_not_a_session() {
        let engine = Engine::new("/t", Default::default(), Shutdown::default());
        let mut tap = engine.tap("/a/*").unwrap();
        assert_eq!(engine.taps(), 1);
        engine
            .publish("/a/1", &event("/a/1", json!(1)))
            .await
            .unwrap();
        engine
            .publish("/b/1", &event("/b/1", json!(2)))
            .await
            .unwrap();
        engine
            .publish("/a/2", &event("/a/2", json!(3)))
            .await
            .unwrap();
        let got = tap.next(10).await.unwrap();
        let got: Vec<Value> = got
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                json!({"channel": "/a/1", "data": 1}),
                json!({"channel": "/a/2", "data": 3})
            ]
        );
        let stats = engine.stats();
        assert_eq!(
            (stats.clients, stats.subscriptions, stats.delivered),
            (0, 0, 0)
        );
        drop(tap);
        assert_eq!(engine.taps(), 0);
    }

    #[tokio::test]
    async fn a_tap_that_falls_behind_drops_and_counts() {
        let engine = Engine::new("/t", Default::default(), Shutdown::default());
        let mut tap = engine.tap("/a").unwrap();
        for i in 0..TAP_MESSAGES + 5 {
            engine.publish("/a", &event("/a", json!(i))).await.unwrap();
        }
        assert_eq!(tap.dropped(), 5);
        let got = tap.next(usize::MAX).await.unwrap();
        assert_eq!(got.len(), TAP_MESSAGES);
        engine
            .publish("/a", &event("/a", json!("after")))
            .await
            .unwrap();
        assert_eq!(tap.next(10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn taps_are_bounded_refuse_service_channels_and_end_with_the_route() {
        let engine = Engine::new("/t", Default::default(), Shutdown::default());
        assert_eq!(engine.tap("/service/x").unwrap_err(), TapRefused::Invalid);
        assert_eq!(engine.tap("/meta/**").unwrap_err(), TapRefused::Invalid);
        assert_eq!(engine.tap("nope").unwrap_err(), TapRefused::Invalid);
        let mut taps: Vec<Tap> = (0..MAX_TAPS).map(|_| engine.tap("/**").unwrap()).collect();
        assert_eq!(engine.tap("/**").unwrap_err(), TapRefused::TooMany);
        // Service publishes are never serialized for delivery, so taps see none.
        engine
            .publish("/service/x", &event("/service/x", json!(1)))
            .await
            .unwrap();
        engine.retire();
        for tap in &mut taps {
            assert!(tap.next(10).await.is_none());
        }
        assert_eq!(engine.tap("/a").unwrap_err(), TapRefused::Retired);
    }
}
