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
