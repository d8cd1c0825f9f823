//! "Your line is written": the writer thread's answer to a request waiting for its decision
//! lines, delivered with one cross-thread wake per write instead of one per request.
//!
//! Waking a task from a thread outside its runtime costs a system call (the runtime's eventfd)
//! per task; at one guarded request per line that was a `write(2)` on every allowed request
//! (issue 15: 1 per request against 0.04 for the batch's own `write`). Here the writer marks each
//! line's [`Ack`] and wakes one relay task on the runtime, which wakes every waiting request
//! from inside it, where a wake is a push onto a run queue.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

const WAITING: u8 = 0;
const WRITTEN: u8 = 1;
const LOST: u8 = 2;

/// What the writer and the waiting requests of one trail share.
#[derive(Default)]
pub struct Signal {
    /// The writer wrote (or lost) lines someone waits for: the relay wakes the waiters.
    relay: Notify,
    /// Every request waiting for its line.
    waiters: Notify,
    /// A relay task runs; without one the writer wakes the waiters itself.
    relaying: AtomicBool,
}

impl Signal {
    /// Called by the writer once per write that settled a waited-for line.
    pub fn wake(&self) {
        if self.relaying.load(Ordering::Acquire) {
            self.relay.notify_one();
        } else {
            self.waiters.notify_waiters();
        }
    }

    /// Starts the relay on the caller's runtime unless one runs.
    fn ensure_relay(self: &Arc<Self>) {
        if self.relaying.load(Ordering::Acquire) || self.relaying.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.relaying.store(false, Ordering::Release);
            return;
        };
        // Cleared when the task is dropped (its runtime shuts down, polled or not): the writer
        // wakes waiters itself again, and the next waiter starts a relay on its own runtime.
        let running = Running(Arc::clone(self));
        runtime.spawn(async move {
            let signal = &running.0;
            loop {
                signal.relay.notified().await;
                signal.waiters.notify_waiters();
            }
        });
    }
}

struct Running(Arc<Signal>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.relaying.store(false, Ordering::Release);
        // A wake meant for the relay may have come in meanwhile.
        self.0.waiters.notify_waiters();
    }
}

/// A new acknowledgement: the writer's half travels with the line, the other waits.
pub fn pair(signal: &Arc<Signal>) -> (Ack, Written) {
    let state = Arc::new(AtomicU8::new(WAITING));
    (
        Ack {
            state: Some(Arc::clone(&state)),
            signal: Arc::clone(signal),
        },
        Written {
            state,
            signal: Arc::clone(signal),
        },
    )
}

/// The writer's half. Settled as written by [`Ack::written`], as lost when dropped unwritten
/// (the line could not be queued, or the writer is gone). The writer settles a whole write's
/// acknowledgements and then calls [`Signal::wake`] once.
pub struct Ack {
    state: Option<Arc<AtomicU8>>,
    signal: Arc<Signal>,
}

impl Ack {
    pub fn written(mut self) {
        if let Some(state) = self.state.take() {
            state.store(WRITTEN, Ordering::Release);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.store(LOST, Ordering::Release);
            self.signal.wake();
        }
    }
}

/// The waiting half.
pub struct Written {
    state: Arc<AtomicU8>,
    signal: Arc<Signal>,
}

impl Written {
    /// `true` once the line is written, `false` if it never will be.
    pub async fn wait(&self) -> bool {
        self.signal.ensure_relay();
        loop {
            // Registered before the state is read, so a wake between the two is not missed.
            let notified = self.signal.waiters.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.state.load(Ordering::Acquire) {
                WRITTEN => return true,
                LOST => return false,
                _ => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn settled(written: &Written) -> Option<bool> {
        tokio::time::timeout(Duration::from_secs(5), written.wait())
            .await
            .ok()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_ack_settled_from_another_thread_wakes_its_waiter_through_the_relay() {
        let signal = Arc::new(Signal::default());
        let (ack, written) = pair(&signal);
        let (lost, waiting_lost) = pair(&signal);
        let waiter = tokio::spawn(async move { (settled(&written).await, written) });
        let loser = tokio::spawn(async move { settled(&waiting_lost).await });
        tokio::task::yield_now().await;
        assert!(
            signal.relaying.load(Ordering::Acquire),
            "the first waiter starts the relay"
        );
        let writer = Arc::clone(&signal);
        std::thread::spawn(move || {
            ack.written();
            drop(lost);
            writer.wake();
        })
        .join()
        .unwrap();
        assert_eq!(waiter.await.unwrap().0, Some(true));
        assert_eq!(loser.await.unwrap(), Some(false));
    }

    #[test]
    fn a_relay_that_ended_with_its_runtime_is_started_again_by_the_next_waiter() {
        let signal = Arc::new(Signal::default());
        let (ack, written) = pair(&signal);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        // The relay dies with its runtime: a later waiter must still be woken.
        runtime.block_on(async { signal.ensure_relay() });
        drop(runtime);
        assert!(!signal.relaying.load(Ordering::Acquire));
        let woken = Arc::clone(&signal);
        // Either order of writer and waiter must end in `true`.
        let writer = std::thread::spawn(move || {
            ack.written();
            woken.wake();
        });
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert_eq!(other.block_on(settled(&written)), Some(true));
        writer.join().unwrap();
    }
}
