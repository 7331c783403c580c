//! I/O deadlines that hyper and tungstenite do not provide.
//!
//! [`WriteDeadline`] wraps every accepted socket, under TLS and HTTP: when the
//! peer stops reading, a write stays pending, and after `timeout` without any
//! progress the write fails with `TimedOut`, which ends the connection (HTTP/1,
//! HTTP/2 and upgraded WebSockets alike) and frees what it had queued. A peer
//! that reads slowly but steadily is never cut off: the clock restarts with every
//! byte the socket accepts.
//!
//! [`ReadDeadline`] wraps an upgraded WebSocket: the peer must finish a message
//! within `message` of its first byte arriving, and must send something (a
//! message or a control frame) at least every `idle`. The session reports each
//! whole frame with [`ReadDeadline::frame_done`].
//!
//! Both keep one timer, allocated the first time it is needed and moved only
//! when a deadline comes closer; a timer that fires early is re-armed, so a busy
//! socket costs no timer operations.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::budget::Charge;
use tokio::time::{Instant, Sleep};

/// Polls a lazily created timer towards `deadline`. Ready when it has passed.
fn poll_deadline(
    timer: &mut Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    cx: &mut Context<'_>,
) -> Poll<()> {
    if Instant::now() >= deadline {
        return Poll::Ready(());
    }
    let sleep = match timer {
        Some(t) => {
            // Only move the timer closer; a later deadline is handled when
            // the early one fires and finds time left.
            if t.deadline() > deadline || t.is_elapsed() {
                t.as_mut().reset(deadline);
            }
            t
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    loop {
        match sleep.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(()),
            Poll::Ready(()) => sleep.as_mut().reset(deadline),
        }
    }
}

static WRITE_TIMEOUTS: AtomicU64 = AtomicU64::new(0);
static READ_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

/// Writes given up on because the peer stopped reading, since the process started.
pub fn write_timeouts() -> u64 {
    WRITE_TIMEOUTS.load(Ordering::Relaxed)
}

/// WebSocket reads given up on (silent peer or unfinished message), since the process started.
pub fn read_timeouts() -> u64 {
    READ_TIMEOUTS.load(Ordering::Relaxed)
}

fn timed_out(counter: &AtomicU64, what: &'static str) -> io::Error {
    counter.fetch_add(1, Ordering::Relaxed);
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// A socket whose writes fail after `timeout` without progress.
#[derive(Debug)]
pub struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// When the current blocked write gives up; `None` while writes flow.
    blocked_until: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            blocked_until: None,
            timer: None,
        }
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn outcome<T>(
        &mut self,
        poll: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.blocked_until = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let until = *self
                    .blocked_until
                    .get_or_insert_with(|| Instant::now() + self.timeout);
                match poll_deadline(&mut self.timer, until, cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(timed_out(&WRITE_TIMEOUTS, "peer stopped reading")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.outcome(poll, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.outcome(poll, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.outcome(poll, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.outcome(poll, cx)
    }
}

/// A WebSocket's byte stream with an idle bound and a bound on how long one
/// message may take to arrive.
#[derive(Debug)]
pub struct ReadDeadline<S> {
    inner: S,
    idle: Duration,
    message: Duration,
    last_frame: Instant,
    /// When bytes of a frame not yet complete first arrived.
    partial_since: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes read since the last whole message, counted against the
    /// process's bound on unfinished input.
    budget: Option<Charge>,
}

impl<S> ReadDeadline<S> {
    /// Wraps `inner`; the idle clock starts now.
    pub fn new(inner: S, idle: Duration, message: Duration) -> Self {
        ReadDeadline {
            inner,
            idle,
            message,
            last_frame: Instant::now(),
            partial_since: None,
            timer: None,
            budget: None,
        }
    }

    /// Counts what is read before a message completes against `charge`: past
    /// the bound, reading fails with `OutOfMemory`.
    pub fn with_budget(mut self, charge: Charge) -> Self {
        self.budget = Some(charge);
        self
    }

    /// Records that a whole frame was read: the idle clock restarts and no
    /// partial message is pending.
    pub fn frame_done(&mut self) {
        self.last_frame = Instant::now();
        self.partial_since = None;
        if let Some(b) = self.budget.as_mut() {
            b.release();
        }
    }

    /// Changes the idle bound (the route was retuned).
    pub fn set_idle(&mut self, idle: Duration) {
        self.idle = idle;
    }

    fn deadline(&self) -> Instant {
        match self.partial_since {
            Some(t) => (t + self.message).min(self.last_frame + self.idle),
            None => self.last_frame + self.idle,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 && self.partial_since.is_none() {
                    self.partial_since = Some(Instant::now());
                }
                if let Some(b) = self.budget.as_mut() {
                    if !b.add(read) {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::OutOfMemory,
                            "the server's bound on unfinished input is reached",
                        )));
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let this = &mut *self;
                let deadline = this.deadline();
                match poll_deadline(&mut this.timer, deadline, cx) {
                    Poll::Ready(()) if this.partial_since.is_some() => Poll::Ready(Err(timed_out(
                        &READ_TIMEOUTS,
                        "message not completed in time",
                    ))),
                    Poll::Ready(()) => Poll::Ready(Err(timed_out(&READ_TIMEOUTS, "idle"))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_the_peer_never_reads_times_out() {
        let (a, _b) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(a, Duration::from_secs(30));
        let start = Instant::now();
        let err = w.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_steady_reader_is_not_cut_off() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(a, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            while total < 256 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += b.read(&mut buf).await.unwrap();
            }
            total
        });
        w.write_all(&[1u8; 256]).await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 256);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_idle_and_a_partial_message_expires_sooner() {
        let (a, _b) = tokio::io::duplex(64);
        let mut r = ReadDeadline::new(a, Duration::from_secs(90), Duration::from_secs(30));
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let err = r.read(&mut buf).await.unwrap_err();
        assert_eq!(err.to_string(), "idle");
        assert_eq!(start.elapsed(), Duration::from_secs(90));

        let (a, mut b) = tokio::io::duplex(64);
        let mut r = ReadDeadline::new(a, Duration::from_secs(90), Duration::from_secs(30));
        b.write_all(b"x").await.unwrap();
        let start = Instant::now();
        assert_eq!(r.read(&mut buf).await.unwrap(), 1);
        let err = r.read(&mut buf).await.unwrap_err();
        assert_eq!(err.to_string(), "message not completed in time");
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn frames_keep_the_idle_clock_running() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut r = ReadDeadline::new(a, Duration::from_secs(90), Duration::from_secs(30));
        let mut buf = [0u8; 8];
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            b.write_all(b"y").await.unwrap();
            assert_eq!(r.read(&mut buf).await.unwrap(), 1);
            r.frame_done();
        }
        let start = Instant::now();
        assert!(r.read(&mut buf).await.is_err());
        assert_eq!(start.elapsed(), Duration::from_secs(90));
    }
}
