//! Deadlines that almost never fire, kept off tokio's timer lock: the pool's `response_timeout`
//! and the trail's `write_timeout`, one of each per guarded request.
//!
//! `tokio::time::timeout` makes a timer per call: it enters tokio's timer wheel (under the
//! driver's lock) when first polled and leaves it (under the lock again) when dropped, though it
//! almost never fires. Here a finished deadline's timer is kept, still in the wheel, on a shelf of
//! the thread that dropped it, one shelf per [`Kind`], and the next deadline of that kind takes
//! it: since every deadline of a kind is "now + the same wait", the next is never earlier than
//! the kept timer's, and moving a timer in the wheel to a later deadline is one atomic
//! compare-and-swap (tokio finds the new deadline when the old one comes). A wait shortened by
//! a reload is an earlier deadline, and that timer is moved in the wheel as any other. A timer
//! is taken only by the runtime it was made in (a thread that runs one runtime after another
//! lets the first's go: a timer of a runtime shut down panics when polled). A kept
//! timer whose deadline passes on the shelf wakes the task that last waited on it, for nothing,
//! and is set again, through the wheel, when next taken.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// Which shelf a deadline's timer comes from: deadlines of one kind share their wait.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `upstream.response_timeout`, from an attempt's start.
    Response,
    /// `audit.write_timeout`, from a request's lines being queued.
    Trail,
}

/// Timers kept per thread and kind; more are dropped (out of the wheel) as usual.
const SHELF: usize = 256;

/// Kept timers, each with the runtime whose driver it is in: a thread may run one runtime after
/// another, and a timer of a runtime shut down fires at once and panics when polled.
type Shelf = RefCell<Vec<(Id, Pin<Box<Sleep>>)>>;

thread_local! {
    static RESPONSE: Shelf = const { RefCell::new(Vec::new()) };
    static TRAIL: Shelf = const { RefCell::new(Vec::new()) };
}

fn with_shelf<R>(kind: Kind, f: impl FnOnce(&mut Vec<(Id, Pin<Box<Sleep>>)>) -> R) -> Option<R> {
    let key = match kind {
        Kind::Response => &RESPONSE,
        Kind::Trail => &TRAIL,
    };
    // `None` while the thread's locals are being torn down, or if `f` is re-entered.
    key.try_with(|shelf| shelf.try_borrow_mut().ok().map(|mut s| f(&mut s)))
        .ok()
        .flatten()
}

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

/// `future`, or [`Elapsed`] once `deadline` has passed, as `tokio::time::timeout_at` (the future
/// is polled first, so one ready at its deadline still counts).
pub fn within<F: Future>(kind: Kind, deadline: Instant, future: F) -> Within<F> {
    Within {
        future,
        timer: None,
        kind,
        deadline,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`within`].
    pub struct Within<F> {
        #[pin]
        future: F,
        timer: Option<(Id, Pin<Box<Sleep>>)>,
        kind: Kind,
        deadline: Instant,
    }

    impl<F> PinnedDrop for Within<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(kept) = this.timer.take() {
                // Not polled again to let go of the task's waker: a timer may not be polled
                // while its runtime shuts down. One that fires on the shelf wakes its last task
                // for nothing, once.
                let kind = *this.kind;
                let _ = with_shelf(kind, move |shelf| {
                    if shelf.len() < SHELF {
                        shelf.push(kept);
                    }
                });
            }
        }
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let deadline = *this.deadline;
        let (_, timer) = this.timer.get_or_insert_with(|| {
            let runtime = Handle::current().id();
            let kept = with_shelf(*this.kind, |shelf| {
                // Another runtime's timers are let go (its thread has moved on to this one).
                while let Some((id, timer)) = shelf.pop() {
                    if id == runtime {
                        return Some(timer);
                    }
                }
                None
            });
            match kept.flatten() {
                Some(mut timer) => {
                    timer.as_mut().reset(deadline);
                    (runtime, timer)
                }
                None => (runtime, Box::pin(tokio::time::sleep_until(deadline))),
            }
        });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_kept_timer_still_times_out_a_later_deadline_and_not_before() {
        let wait = Duration::from_secs(5);
        // A first deadline that does not fire leaves its timer on the shelf.
        let quick = within(Kind::Trail, Instant::now() + wait, async { 7 }).await;
        assert_eq!(quick, Ok(7));
        let pending = within(Kind::Trail, Instant::now() + wait, async {
            tokio::task::yield_now().await;
            8
        })
        .await;
        assert_eq!(pending, Ok(8));
        assert_eq!(with_shelf(Kind::Trail, |s| s.len()), Some(1), "kept");
        tokio::time::advance(Duration::from_secs(3)).await;
        // The kept timer, taken for a deadline 5 s from now (3 s after its own), fires then.
        let start = Instant::now();
        let never = within(Kind::Trail, start + wait, std::future::pending::<()>()).await;
        assert_eq!(never, Err(Elapsed));
        assert_eq!(
            Instant::now() - start,
            wait,
            "at its own deadline, not the kept one's"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_shortened_wait_fires_at_the_earlier_deadline() {
        let pending = within(
            Kind::Response,
            Instant::now() + Duration::from_secs(900),
            async {
                tokio::task::yield_now().await;
            },
        )
        .await;
        assert_eq!(pending, Ok(()));
        let start = Instant::now();
        let shorter = within(
            Kind::Response,
            start + Duration::from_secs(1),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(shorter, Err(Elapsed));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    /// A thread may run one runtime after another (tests do): a timer kept from the first
    /// belongs to its driver, and would fire at once, shut down, and panic when polled.
    #[test]
    fn a_timer_kept_under_another_runtime_is_not_taken() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
        };
        let first = runtime();
        first.block_on(async {
            let pending = within(
                Kind::Trail,
                Instant::now() + Duration::from_secs(5),
                async {
                    tokio::task::yield_now().await;
                },
            )
            .await;
            assert_eq!(pending, Ok(()));
        });
        drop(first);
        assert_eq!(with_shelf(Kind::Trail, |s| s.len()), Some(1), "kept");
        runtime().block_on(async {
            let start = Instant::now();
            let never = within(
                Kind::Trail,
                start + Duration::from_secs(5),
                std::future::pending::<()>(),
            )
            .await;
            assert_eq!(never, Err(Elapsed));
            assert_eq!(Instant::now() - start, Duration::from_secs(5));
        });
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_timer_that_fired_on_the_shelf_is_set_again_when_taken() {
        let pending = within(
            Kind::Response,
            Instant::now() + Duration::from_secs(2),
            async {
                tokio::task::yield_now().await;
            },
        )
        .await;
        assert_eq!(pending, Ok(()));
        // Its deadline passes while it is kept.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let start = Instant::now();
        let later = within(
            Kind::Response,
            start + Duration::from_secs(2),
            std::future::pending::<()>(),
        )
        .await;
        assert_eq!(later, Err(Elapsed));
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }
}
