//! What a quiet connection keeps: its socket (and TLS session, without buffers:
//! [`super::tls`]) and nothing else, until the client speaks again ([`parked`]). The own
//! HTTP/1.1 server (`super::http1`) parks a keep-alive connection after
//! [`crate::body::PARK_AFTER`] without a request, and waits the same way for a new connection's
//! first bytes.
//!
//! Also the small helpers that loop shares: [`Socket`], a stream that can wait for the client
//! without reading, and [`Beside`], the waker that lets a connection's task poll its timer and the
//! server's stop only when one of them woke it (most wake-ups are the socket's).
//!
//! # Orderings
//!
//! The request guards ([`super::InFlight`] in [`super::Tracked`]) end where their body is
//! finished or dropped: an answer's body on the connection's task, a request body on whichever
//! task reads it (the pool client's connection task for a streamed body), on another worker under
//! the multi-threaded runtime. A guard's end stores `last` and then decrements `in_flight` as a
//! release; the connection's task loads `in_flight` first, as an acquire
//! ([`super::Activity::busy`]): a request seen ended is seen with its end's time, so the idle and
//! park clocks never run from an older one. `awaiting` and `progress` (HTTP/2's answers, on the
//! streams' tasks): an answer stores its time, then counts itself waiting (release);
//! [`super::Activity::send_stalled`] loads the count (acquire), then the time.
//! On the current-thread runtime all of this runs on one thread and no ordering matters.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{self, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Activity, Limits};

/// How long closing a parked connection (TLS close_notify, FIN) may take.
pub(super) const CLOSE_WITHIN: Duration = Duration::from_secs(1);

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

/// Why a parked connection stopped waiting.
pub(super) enum Wake {
    /// The client sent something.
    Readable,
    /// Abandoned, or the server is stopping: close it.
    Close,
}

/// Waits, holding only the socket, until the client sends something or the connection is
/// abandoned (no request for the idle limit, or none at all for the first-request limit).
pub(super) async fn parked<T: Socket>(
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
pub(super) struct Beside {
    pub(super) woken: AtomicBool,
    /// The task's waker.
    task: Mutex<Option<Waker>>,
}

impl Beside {
    /// Wakes `current` from now on, if `task` (what was last stored) does not already.
    pub(super) fn follow(&self, current: &Waker, task: &mut Waker) {
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
