//! Idle HTTP/1.1 connections hold no HTTP state. A keep-alive connection that has been quiet for
//! [`PARK_AFTER`] is taken out of hyper (its read and write buffers and its service slot, ~30 KB,
//! are freed) and only the socket, with its TLS session (and no TLS buffer: [`super::tls`]), is
//! kept until the client speaks again; then a fresh hyper connection takes it up. Busy
//! connections never park, so the hot path pays one branch per read.
//!
//! hyper gives its IO back only once a connection has ended, so parking ends it the one way that
//! leaves nothing behind: [`Parkable`] reports the end of the stream to hyper, in place of
//! "nothing to read yet", when no request is in flight (its answer sent and its body read to the
//! end), every written byte was flushed and no byte arrived since the last request ended. hyper
//! then closes the connection as idle (writing nothing) and [`Parkable`] keeps the socket open.
//! If hyper held the start of a next request when it was so ended (read in one piece with the
//! end of the last, pipelined), those unparsed bytes go first to a fresh hyper connection, at
//! once. Any other ending (the client closed, an error, a partially read request) ends the
//! connection for real.
//!
//! # Orderings
//!
//! hyper's HTTP/1 connection, [`Parkable`] and the loop of [`serve_http1`] run on the
//! connection's task. The request guards ([`super::InFlight`] in [`super::Tracked`]) end where
//! their body is finished or dropped: an answer's body on the connection's task (hyper writes it
//! there), but a request body on whichever task reads it (the pool client's connection task for
//! a streamed body, the HTTP/2 discarding task), on another worker under the multi-threaded
//! runtime. HTTP/2 ([`super::serve`]) also starts requests on its streams' tasks.
//!
//! | field of [`super::Activity`] | written by                                  | read by          |
//! |------------------------------|---------------------------------------------|------------------|
//! | `park`                       | connection task (loop sets, a start clears)  | connection task  |
//! | `in_flight`                  | +1 connection task (HTTP/1), -1 any task     | connection task  |
//! | `ended`, `last`              | a guard's end, any task (`last` at start too) | connection task  |
//! | `never_park`                 | a request body dropped unread, any task      | connection task  |
//! | `wake_when_idle`             | loop sets, the last guard's end clears       | both             |
//! | `awaiting`, `progress`       | answers' bodies (HTTP/2: the streams' tasks) | connection task  |
//!
//! A wrong [`Parkable::may_park`] cuts a client's connection under its next request or, after a
//! request body hyper drained because its reader dropped it, lets a fresh hyper read the body's
//! rest as a request. hyper fails a connection whose stream ends inside a message; the loop hands
//! what hyper had read and not parsed to the next hyper connection, which is sound only because
//! parking waits for every request's body to be read to its end (so those bytes can only begin a
//! request); what the atomics must tell truly is:
//!
//! - No guard is alive: `in_flight == 0`. Changed by read-modify-writes only, it is never wrong;
//!   and an HTTP/1 connection starts its guards on its own task, so a 0 it reads stays 0 until it
//!   starts one.
//! - No request body was dropped unread: `never_park`, set on another task just before that
//!   guard's decrement. With both Relaxed, the connection task could see the decrement without
//!   the flag, the very case the flag is for. So a guard's end decrements last, as a release, and
//!   the connection task loads `in_flight` first, as an acquire ([`super::Activity::busy`]): a
//!   guard seen ended is seen with everything its end wrote (`never_park`, `ended`, `last`).
//! - A request ended since bytes were last handed to hyper: `ended > read_at`. `ended` only grows
//!   and one task's reads of it never go back, so Relaxed suffices. An end on another task
//!   concurrent with a read (a body's tail and half the next head in one read, the body's guard
//!   ending after) counts as before it under any ordering; hyper then holds the half head, which
//!   the next hyper connection takes up at once (and that one does not park before a request
//!   ends after it: `read_at` is set when the held bytes are handed over).
//! - `park`, `dirty`, `read_at` and `parked` are the connection task's alone (tokio hands a task
//!   moved between workers over with a happens-before).
//!
//! Two more need an ordering, for timing rather than safety:
//!
//! - `wake_when_idle`: the loop sets it, then looks at `in_flight` again
//!   ([`super::Activity::wait_for_idle`]); the last guard's end
//!   decrements and then looks at the flag. All four SeqCst, one sees the other (the guard
//!   notifies, or the loop sees the end and does not wait); otherwise the loop could sleep past
//!   the end until its next timer (up to half of `send_timeout`) before parking.
//! - `awaiting` and `progress`: an answer stores its time, then counts itself waiting (release);
//!   [`super::Activity::send_stalled`] loads the count (acquire), then the time. An answer seen
//!   waiting is seen with its hand-over time, never an older one that would close the connection
//!   of an answer handed over just now (HTTP/2, whose answers start on the streams' tasks).
//!
//! On the current-thread runtime all of this runs on one thread and no ordering matters.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{self, Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Activity, BoxError, Counted, Limits, Serving};

pub use crate::body::PARK_AFTER;

/// How long closing a parked connection (TLS close_notify, FIN) may take.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);

/// A client socket that can wait for the client's next bytes without reading them.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn readable(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send;
}

impl Socket for TcpStream {
    async fn readable(&mut self) -> io::Result<()> {
        TcpStream::readable(self).await
    }
}

/// A TLS stream is boxed: a task's future keeps it, and its copies across the states of a
/// connection's loop, as one pointer.
impl<T: Socket> Socket for Box<T> {
    fn readable(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        (**self).readable()
    }
}

/// The client socket as hyper sees it.
pub struct Parkable<T> {
    inner: T,
    /// Received bytes the last hyper connection had not parsed when it was parked (half a
    /// request pipelined behind the last one): read before the socket.
    prefix: Bytes,
    activity: Arc<Activity>,
    /// Requests ended when bytes were last handed to hyper; None until a byte was (see
    /// [`Parkable::may_park`]).
    read_at: Option<u64>,
    /// Bytes were written and not yet flushed.
    dirty: bool,
    /// The end of the stream was reported to park the connection.
    parked: bool,
}

impl<T> Parkable<T> {
    fn new(inner: T, prefix: Bytes, activity: Arc<Activity>) -> Parkable<T> {
        Parkable {
            inner,
            prefix,
            activity,
            read_at: None,
            dirty: false,
            parked: false,
        }
    }

    /// Parking was asked for and hyper holds nothing: no request (or request body) in flight,
    /// nothing unflushed, and no byte handed over since the last request ended (which could be
    /// half a head) or, if none did, since this connection was taken up (a wake-up that brought
    /// no request bytes, such as a TLS record without data).
    fn may_park(&self) -> bool {
        let a = &self.activity;
        // `busy` first: it makes what the ended guards wrote visible ("Orderings").
        a.park.load(Ordering::Relaxed)
            && !self.dirty
            && !a.busy()
            && !a.never_park.load(Ordering::Relaxed)
            && self
                .read_at
                .is_none_or(|read_at| a.ended.load(Ordering::Relaxed) > read_at)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Parkable<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            this.read_at = Some(this.activity.ended.load(Ordering::Relaxed));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.may_park() => {
                this.parked = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.read_at = Some(this.activity.ended.load(Ordering::Relaxed));
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Parkable<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.dirty = true;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.dirty = true;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            this.dirty = false;
        }
        flushed
    }

    /// hyper shuts the stream down when the connection ends; a parked one stays open.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.parked {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Why a parked connection stopped waiting.
enum Wake {
    /// The client sent something.
    Readable,
    /// Abandoned, or the server is stopping: close it.
    Close,
}

/// Waits, holding only the socket, until the client sends something or the connection is
/// abandoned (no request for the idle limit, or none at all for the first-request limit).
async fn parked<T: Socket>(
    io: &mut T,
    stop: &CancellationToken,
    activity: &Activity,
    limits: Limits,
) -> io::Result<Wake> {
    loop {
        let wait = activity.remaining(limits);
        if wait.is_zero() {
            return Ok(Wake::Close);
        }
        tokio::select! {
            r = io.readable() => return r.map(|()| Wake::Readable),
            () = stop.cancelled() => return Ok(Wake::Close),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Wakes a connection's task for the waits beside hyper's connection (its timer, the stop, the
/// idle notice), noting that one of them did: the task is woken about twice a request by
/// hyper's IO, and polling the three waits each time (a timer's and two notices' bookkeeping,
/// as `select!` does) cost more than hyper's connection itself.
#[derive(Default)]
struct Beside {
    woken: AtomicBool,
    /// The task's waker.
    task: Mutex<Option<Waker>>,
}

impl Beside {
    /// Wakes `current` from now on, if `task` (what was last stored) does not already.
    fn follow(&self, current: &Waker, task: &mut Waker) {
        if !task.will_wake(current) {
            task.clone_from(current);
            *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(current.clone());
        }
    }
}

impl task::Wake for Beside {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Before the task is woken: its poll then sees the flag.
        self.woken.store(true, Ordering::Release);
        if let Some(task) = &*self.task.lock().unwrap_or_else(PoisonError::into_inner) {
            task.wake_by_ref();
        }
    }
}

/// Serves one HTTP/1.1 connection, parking it whenever it is quiet; on shutdown, or once
/// abandoned, it finishes the request in flight and closes.
pub async fn serve_http1<T, S, B>(
    builder: &http1::Builder,
    mut io: T,
    serving: Serving<S>,
    parked_gauge: &IntGauge,
) -> Result<(), BoxError>
where
    T: Socket,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Unpin
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Serving {
        mut service,
        stop,
        activity,
        limits,
    } = serving;
    let mut prefix = Bytes::new();
    let beside = Arc::new(Beside::default());
    let beside_waker = Waker::from(Arc::clone(&beside));
    let mut task = Waker::noop().clone();
    // What the awaited head is timed from, besides the last request's end: the connection's
    // opening, then each waking from parking. A fresh hyper connection that takes over part of
    // a head keeps that head's clock.
    let mut taken_up = 0;
    loop {
        if prefix.is_empty() {
            let waiting = Counted::new(parked_gauge);
            let wake = parked(&mut io, &stop, &activity, limits).await;
            drop(waiting);
            match wake? {
                Wake::Readable => taken_up = activity.woken(),
                Wake::Close => {
                    let _ = tokio::time::timeout(CLOSE_WITHIN, io.shutdown()).await;
                    return Ok(());
                }
            }
        }
        activity.park.store(false, Ordering::Relaxed);
        let parkable = Parkable::new(io, std::mem::take(&mut prefix), Arc::clone(&activity));
        // Boxed so that a parked connection's task does not keep room for hyper's state.
        let mut conn = Box::new(builder.serve_connection(TokioIo::new(parkable), service));
        let mut closing = false;
        let result = loop {
            if activity.send_stalled(limits) {
                // Dropped, not closed gracefully: that would wait for the untaken answer.
                tracing::debug!("an answer left untaken for send_timeout; connection closed");
                return Ok(());
            }
            // hyper's header timer, kept here: a head not complete in time closes the
            // connection without an answer, as hyper's did.
            let head = activity.head_left(taken_up, limits.head);
            if head == Some(Duration::ZERO) {
                tracing::debug!("no request head within header_read_timeout; connection closed");
                return Ok(());
            }
            let head = head.unwrap_or(Duration::MAX);
            let abandon = activity.remaining(limits);
            if abandon.is_zero() && !closing {
                Pin::new(&mut *conn).graceful_shutdown();
                closing = true;
            }
            if closing {
                let check = if abandon.is_zero() {
                    limits.send / 2
                } else {
                    abandon
                };
                tokio::select! {
                    r = &mut *conn => break r,
                    () = tokio::time::sleep(check.min(head)) => continue,
                }
            }
            // Asleep until the connection may park, or, while a request is in flight (or before
            // the first), until one ends: busy connections are not woken on a timer.
            let (wait, until_idle) = match activity.park_in() {
                Some(p) if p.is_zero() => {
                    activity.park.store(true, Ordering::Relaxed);
                    (PARK_AFTER, false)
                }
                Some(p) => (p, false),
                None if activity.wait_for_idle() => (abandon, true),
                // The last request ended meanwhile: looked at again.
                None => continue,
            };
            // At most half the send timeout: an answer left untaken is seen in time.
            let wait = wait.min(abandon).min(limits.send / 2).min(head);
            let sleep = tokio::time::sleep(wait);
            let cancelled = stop.cancelled();
            let idle = activity.idle.notified();
            let (mut sleep, mut cancelled, mut idle) = (pin!(sleep), pin!(cancelled), pin!(idle));
            // The three waits are polled afresh, then only when one of them woke the task.
            beside.woken.store(true, Ordering::Release);
            let woke = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = Pin::new(&mut *conn).poll(cx) {
                    return Poll::Ready(Some(r));
                }
                beside.follow(cx.waker(), &mut task);
                if !beside.woken.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                let mut cx = Context::from_waker(&beside_waker);
                if cancelled.as_mut().poll(&mut cx).is_ready() {
                    Pin::new(&mut *conn).graceful_shutdown();
                    closing = true;
                    return Poll::Ready(None);
                }
                if until_idle && idle.as_mut().poll(&mut cx).is_ready() {
                    return Poll::Ready(None);
                }
                sleep.as_mut().poll(&mut cx).map(|()| None)
            })
            .await;
            if let Some(r) = woke {
                break r;
            }
        };
        let parts = (*conn).into_parts();
        let parkable = parts.io.into_inner();
        if !parkable.parked {
            return result.map_err(Into::into);
        }
        if !parts.read_buf.is_empty() || !parkable.prefix.is_empty() {
            // hyper held the start of a next request, read with the end of the last (pipelined)
            // or after it, when the parking's end of stream failed it: nothing of it was parsed,
            // so a fresh hyper connection takes it up at once, and does not park before that
            // request has ended. Its header read timeout bounds a head that never completes.
            prefix = if parkable.prefix.is_empty() {
                parts.read_buf
            } else {
                [&parts.read_buf[..], &parkable.prefix[..]].concat().into()
            };
        } else if let Err(e) = result {
            return Err(e.into());
        }
        io = parkable.inner;
        service = parts.service;
    }
}
