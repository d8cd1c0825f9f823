//! The bodies that keep their connection's [`Activity`] up to date: a request counts as in flight
//! until its body and its answer's are through, which the listener's idle watchdog and parking
//! read. One module, since the bodies write the very fields the connection reads.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use prometheus::IntGauge;

use super::stall;
use super::WireBody;
use http_body_util::Either;

/// How long a keep-alive connection is quiet before it parks.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// A body that keeps its connection counted as busy until its last frame was handed on, so an
/// idle connection is never parked in the middle of one.
///
/// As a response body, it is released when dropped too (hyper drops the body of a HEAD or 204
/// answer unread). As the client's request body ([`ClientBody`]), it must be read to its end:
/// hyper may still be reading it after the answer went out (a member that answered an upload
/// early), and a body dropped unfinished keeps its connection from ever parking, since hyper
/// drains or closes it and no byte of it may be read as a new request.
#[derive(Debug)]
pub struct Tracked<B> {
    body: B,
    in_flight: Option<InFlight>,
    must_finish: bool,
    /// An answer's body that gave hyper something (or nothing yet) and waits for it to come
    /// back: hyper polls again only once the client took what it had. Counted in
    /// [`Activity::awaiting`]; a connection whose answers wait longer than `send_timeout` is
    /// closed.
    awaits_client: bool,
}

/// The client's request body as the gateway reads it.
pub type ClientBody = Tracked<stall::Timed<Source>>;

/// Who reads the client's body off the connection: hyper (`Left`: HTTP/2, and HTTP/1.1 on its
/// auto builder) or ringfence's own HTTP/1.1 server (`Right`). `Either`'s error is boxed, and
/// read as [`BodyError::Read`](crate::body::BodyError::Read).
pub type Source = Either<Incoming, WireBody>;

impl ClientBody {
    /// The body of a request whose head came at `head` (one clock reading for the request's
    /// guards, the body's deadline and its latency: issue 15).
    pub(crate) fn new(
        body: Source,
        activity: &Arc<Activity>,
        limits: Limits,
        head: tokio::time::Instant,
    ) -> ClientBody {
        let in_flight = (!body.is_end_stream())
            .then(|| InFlight::begin_at(Arc::clone(activity), activity.at(head)));
        Tracked {
            body: stall::Timed::new(body, limits.body_read, limits.body_deadline, head),
            in_flight,
            must_finish: true,
            awaits_client: false,
        }
    }
}

impl ClientBody {
    /// Adds the length of every data frame read from now on to `counter` (the access log).
    pub fn count_into(&mut self, counter: Arc<std::sync::atomic::AtomicU64>) {
        self.body.count_into(counter);
    }
}

impl<B> Tracked<B> {
    /// An answer handed to hyper: it waits for the client to take it until its body is polled.
    pub(crate) fn answer(body: B, in_flight: InFlight) -> Tracked<B> {
        // The time first: an answer seen waiting is seen with it (park.rs, "Orderings").
        in_flight
            .0
            .progress
            .store(in_flight.0.now(), Ordering::Relaxed);
        in_flight.0.awaiting.fetch_add(1, Ordering::Release);
        Tracked {
            body,
            in_flight: Some(in_flight),
            must_finish: false,
            awaits_client: true,
        }
    }

    /// The answer no longer waits for the client (its body is being polled, or is done).
    fn taken(&mut self) {
        if std::mem::take(&mut self.awaits_client) {
            if let Some(in_flight) = &self.in_flight {
                in_flight.0.awaiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let answer = !this.must_finish;
        if answer {
            this.taken();
            if let Some(in_flight) = &this.in_flight {
                in_flight
                    .0
                    .progress
                    .store(in_flight.0.now(), Ordering::Relaxed);
            }
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.in_flight = None,
            // Read to its end: hyper's client asks for nothing past the last frame of a body
            // whose length it knows, and drops it.
            Poll::Ready(Some(Ok(_))) if this.must_finish && this.body.is_end_stream() => {
                this.in_flight = None;
            }
            Poll::Ready(Some(Ok(_))) if answer => {
                if let Some(in_flight) = &this.in_flight {
                    in_flight.0.awaiting.fetch_add(1, Ordering::Release);
                    this.awaits_client = true;
                }
            }
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.taken();
    }
}

/// When a connection counts as abandoned.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    /// No request began this long after accept (a client that connects and says nothing).
    pub(crate) first_request: Duration,
    /// A request head not complete this long after the connection began to wait for it (a
    /// slow-loris client): hyper's own header timer, kept by the connection's loop instead.
    pub(crate) head: Duration,
    /// No request in flight and none for this long (an idle keep-alive connection).
    pub(crate) idle: Duration,
    /// No bytes of a request body for this long while it is read (a client that stalls).
    pub(crate) body_read: Duration,
    /// A request body not complete this long after its head (a client that trickles).
    pub(crate) body_deadline: Duration,
    /// An answer the client does not take for this long (it reads nothing, or gives an HTTP/2
    /// stream no flow-control window): the connection is closed (nginx's `send_timeout`).
    pub(crate) send: Duration,
}

/// Requests in flight on one connection and when the last one began or ended. Long polls keep a
/// request in flight, so they are never cut off as idle.
///
/// Its clock is tokio's, so tests can pause it. Which task touches which field, and why the
/// orderings suffice: listener/park.rs, "Orderings".
#[derive(Debug)]
pub(crate) struct Activity {
    opened: tokio::time::Instant,
    pub(crate) in_flight: AtomicUsize,
    /// Milliseconds after `opened`; `u64::MAX` until the first request.
    last: AtomicU64,
    /// Requests in flight in the whole process (`ringfence_http_requests_in_flight`).
    requests: IntGauge,
    /// Answers handed to hyper that wait for the client to take them ([`Tracked::answer`]).
    awaiting: AtomicUsize,
    /// Milliseconds after `opened` when an answer's body was last polled.
    progress: AtomicU64,
}

impl Activity {
    pub(crate) fn new(requests: IntGauge) -> Activity {
        Activity {
            requests,
            awaiting: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            opened: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(u64::MAX),
        }
    }

    /// Milliseconds since the connection opened, on tokio's clock.
    pub(crate) fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// [`Activity::now`] at `instant`, a reading of tokio's clock already made.
    pub(crate) fn at(&self, instant: tokio::time::Instant) -> u64 {
        instant.saturating_duration_since(self.opened).as_millis() as u64
    }

    /// How long until the connection counts as abandoned; zero when it already does.
    /// Whether a request or request body is in flight. Read before any field its end writes:
    /// a guard seen ended is seen with all it wrote (park.rs, "Orderings").
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn remaining(&self, limits: Limits) -> Duration {
        if self.busy() {
            // Not abandoned while busy; looked at again in time to see an answer left untaken.
            return limits.idle.min(limits.send / 2);
        }
        let (since, limit) = match self.last.load(Ordering::Relaxed) {
            u64::MAX => (0, limits.first_request),
            last => (last, limits.idle),
        };
        let idle = Duration::from_millis(self.now().saturating_sub(since));
        limit.saturating_sub(idle)
    }

    /// Whether an answer has waited longer than `send_timeout` for the client to take it, with
    /// no answer making progress meanwhile: the client reads nothing (or an HTTP/2 client gives
    /// no window), and the connection only holds a slot.
    pub(crate) fn send_stalled(&self, limits: Limits) -> bool {
        self.awaiting.load(Ordering::Acquire) > 0
            && Duration::from_millis(
                self.now()
                    .saturating_sub(self.progress.load(Ordering::Relaxed)),
            ) > limits.send
    }

    /// Whether no request has ended on this connection yet.
    pub(crate) fn before_first_request(&self) -> bool {
        self.last.load(Ordering::Relaxed) == u64::MAX
    }

    /// When a connection woken from parking begins to wait for a head, as [`Activity::head_left`]
    /// takes it: now, but before its first request the connection's opening (0), so that the
    /// first head is due within the limit of the accept however its bytes are spread.
    pub(crate) fn woken(&self) -> u64 {
        if self.before_first_request() {
            0
        } else {
            self.now()
        }
    }

    /// How long a connection waiting for a request head, as hyper began to (at `since`, in
    /// [`Activity::now`]'s milliseconds) or since its last request ended, has left to receive
    /// it; None while a request is in flight. The last request's end is noted when it ends
    /// anyway, so this needs no clock reading per request.
    pub(crate) fn head_left(&self, since: u64, limit: Duration) -> Option<Duration> {
        if self.busy() {
            return None;
        }
        let start = match self.last.load(Ordering::Relaxed) {
            u64::MAX => since,
            last => last.max(since),
        };
        let waited = Duration::from_millis(self.now().saturating_sub(start));
        Some(limit.saturating_sub(waited))
    }

    /// How long until a served connection has been quiet for [`PARK_AFTER`]; None while a
    /// request is in flight, before the first one, and once it must never park.
    pub(crate) fn park_in(&self) -> Option<Duration> {
        if self.busy() {
            return None;
        }
        match self.last.load(Ordering::Relaxed) {
            u64::MAX => None,
            last => {
                let quiet = Duration::from_millis(self.now().saturating_sub(last));
                Some(PARK_AFTER.saturating_sub(quiet))
            }
        }
    }
}

/// One request (or its body) in flight on a connection, until dropped: also when its future is
/// dropped unfinished (an HTTP/2 stream reset), so the idle watchdog still sees the connection go
/// idle. Only the request's own guard counts in the process-wide gauge.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>, bool);

impl InFlight {
    #[cfg(test)]
    fn begin(activity: Arc<Activity>) -> InFlight {
        let now = activity.now();
        InFlight::begin_at(activity, now)
    }

    /// Begun `now` ([`Activity::now`]'s milliseconds).
    fn begin_at(activity: Arc<Activity>, now: u64) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        activity.last.store(now, Ordering::Relaxed);
        InFlight(activity, false)
    }

    #[cfg(test)]
    pub(crate) fn request(activity: Arc<Activity>) -> InFlight {
        let now = activity.now();
        InFlight::request_at(activity, now)
    }

    /// A request's own guard, begun `now` ([`Activity::now`]'s milliseconds).
    pub(crate) fn request_at(activity: Arc<Activity>, now: u64) -> InFlight {
        activity.requests.inc();
        let mut guard = InFlight::begin_at(activity, now);
        guard.1 = true;
        guard
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.1 {
            self.0.requests.dec();
        }
        self.0.last.store(self.0.now(), Ordering::Relaxed);
        // Last, as a release: a connection that sees the guard gone sees its `last` too.
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    const LIMITS: Limits = Limits {
        first_request: Duration::from_secs(10),
        head: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        body_read: Duration::from_secs(5),
        body_deadline: Duration::from_secs(30),
        send: Duration::from_secs(20),
    };

    fn activity() -> Arc<Activity> {
        Arc::new(Activity::new(
            IntGauge::new("requests", "requests").unwrap(),
        ))
    }

    async fn advance(ms: u64) {
        tokio::time::advance(Duration::from_millis(ms)).await;
    }

    /// An answer's body that has nothing yet.
    struct Waiting;

    impl Body for Waiting {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, std::convert::Infallible>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_abandoned_at_the_first_request_limit_then_at_the_idle_limit() {
        let a = activity();
        assert_eq!(a.remaining(LIMITS), Duration::from_secs(10));
        advance(4_000).await;
        assert_eq!(a.remaining(LIMITS), Duration::from_secs(6));
        let request = InFlight::request(Arc::clone(&a));
        advance(100_000).await;
        assert_eq!(
            a.remaining(LIMITS),
            Duration::from_secs(10),
            "never abandoned while busy; looked at again within half the send timeout"
        );
        drop(request);
        assert_eq!(a.remaining(LIMITS), Duration::from_secs(60));
        advance(59_999).await;
        assert_eq!(a.remaining(LIMITS), Duration::from_millis(1));
        advance(1).await;
        assert_eq!(a.remaining(LIMITS), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_is_timed_from_its_connection_being_taken_up_or_the_last_request_end() {
        let a = activity();
        advance(3_000).await;
        // Woken by its first bytes: the first head is still timed from the opening.
        let taken_up = a.woken();
        assert_eq!(taken_up, 0);
        advance(4_000).await;
        assert_eq!(
            a.head_left(taken_up, LIMITS.head),
            Some(Duration::from_secs(3)),
            "the first head: from the connection's opening, not its first bytes"
        );
        let request = InFlight::request(Arc::clone(&a));
        advance(60_000).await;
        assert_eq!(a.head_left(taken_up, LIMITS.head), None, "none in flight");
        drop(request);
        advance(9_999).await;
        assert_eq!(
            a.head_left(taken_up, LIMITS.head),
            Some(Duration::from_millis(1)),
            "the next: from the last request's end"
        );
        advance(1).await;
        assert_eq!(a.head_left(taken_up, LIMITS.head), Some(Duration::ZERO));
        // Parked, then taken up again: from the new taking up.
        advance(50_000).await;
        let taken_up = a.woken();
        assert_eq!(taken_up, a.now());
        advance(2_000).await;
        assert_eq!(
            a.head_left(taken_up, LIMITS.head),
            Some(Duration::from_secs(8))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_may_park_after_its_requests_and_park_after_of_quiet() {
        let a = activity();
        assert_eq!(a.park_in(), None, "not before the first request");
        let request = InFlight::request(Arc::clone(&a));
        let body = InFlight::begin(Arc::clone(&a));
        advance(1_000).await;
        drop(request);
        assert_eq!(a.park_in(), None, "not while a body is read");
        advance(100).await;
        drop(body);
        assert_eq!(a.park_in(), Some(PARK_AFTER));
        advance(PARK_AFTER.as_millis() as u64 - 1).await;
        assert_eq!(a.park_in(), Some(Duration::from_millis(1)));
        advance(1).await;
        assert_eq!(a.park_in(), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_left_untaken_for_the_send_timeout_stalls_its_connection() {
        let a = activity();
        advance(60_000).await;
        let mut answer = Tracked::answer(Waiting, InFlight::request(Arc::clone(&a)));
        assert!(
            !a.send_stalled(LIMITS),
            "a fresh answer is timed from now, not from the connection's start"
        );
        advance(20_000).await;
        assert!(!a.send_stalled(LIMITS));
        advance(1).await;
        assert!(a.send_stalled(LIMITS));
        // hyper polls it: taken, and waiting for nothing from the client.
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut answer).poll_frame(&mut cx).is_pending());
        assert!(!a.send_stalled(LIMITS));
        advance(60_000).await;
        assert!(
            !a.send_stalled(LIMITS),
            "a pool's slow answer is not the client's"
        );
        drop(answer);
        assert_eq!(a.awaiting.load(Ordering::Relaxed), 0);
        assert_eq!(a.in_flight.load(Ordering::Relaxed), 0);
    }
}
