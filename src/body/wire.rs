//! A request body as ringfence's own HTTP/1.1 server reads it (`listener::http1`): whole when it
//! came with its head (most do, and then nothing is shared or locked), otherwise fed by the
//! connection's loop, which reads the socket only while the body's reader wants more (hyper's
//! `Incoming` works the same way: no read ahead of the reader, so a slow pool slows the client).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Why a body's framing could not be read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body is unreadable: {0}")]
pub struct Broken(pub &'static str);

/// The client's body on an own HTTP/1.1 connection.
#[derive(Debug)]
pub enum WireBody {
    /// All of it, or nothing left (`None`).
    Whole(Option<Bytes>),
    /// All of a chunked body, read with its head: its length is still not declared, so that it
    /// is sent on as a chunked body is (hyper's `Incoming` did not know it either), and an empty
    /// one is not taken for no body. `ended` once its end was read.
    Unsized { data: Option<Bytes>, ended: bool },
    /// Fed by the connection; `left` is what the declared length still owes, if declared.
    Fed { feed: Arc<Feed>, left: Option<u64> },
}

/// What the connection's loop and the body's reader share.
#[derive(Debug, Default)]
pub struct Feed(Mutex<FeedState>);

#[derive(Debug, Default)]
pub struct FeedState {
    /// Decoded bytes not yet taken.
    pub queue: VecDeque<Bytes>,
    /// Set once: the body's end, or why it has none.
    pub end: Option<Result<(), Broken>>,
    /// The reader waits for more.
    pub wanted: bool,
    /// The reader is gone: nothing more will be taken.
    pub dropped: bool,
    reader: Option<Waker>,
    connection: Option<Waker>,
}

impl Feed {
    pub fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FeedState {
    /// Hands decoded bytes to the reader.
    pub fn push(&mut self, data: Bytes) {
        self.queue.push_back(data);
        self.wanted = false;
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Ends the body, well or badly.
    pub fn finish(&mut self, end: Result<(), Broken>) {
        self.end.get_or_insert(end);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// The connection waits for the reader to want more (or go).
    pub fn park_connection(&mut self, waker: &Waker) {
        match &mut self.connection {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    fn wake_connection(&mut self) {
        if let Some(w) = self.connection.take() {
            w.wake();
        }
    }
}

impl WireBody {
    pub fn empty() -> WireBody {
        WireBody::Whole(None)
    }

    pub fn whole(bytes: Bytes) -> WireBody {
        WireBody::Whole((!bytes.is_empty()).then_some(bytes))
    }

    /// A chunked body read whole: sent on without a declared length.
    pub fn chunked_whole(bytes: Bytes) -> WireBody {
        WireBody::Unsized {
            data: (!bytes.is_empty()).then_some(bytes),
            ended: false,
        }
    }
}

impl Body for WireBody {
    type Data = Bytes;
    type Error = Broken;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Broken>>> {
        match self.get_mut() {
            WireBody::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            WireBody::Unsized { data, ended } => match data.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => {
                    *ended = true;
                    Poll::Ready(None)
                }
            },
            WireBody::Fed { feed, left } => {
                let mut state = feed.lock();
                if let Some(data) = state.queue.pop_front() {
                    if let Some(left) = left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                match state.end {
                    Some(Ok(())) => Poll::Ready(None),
                    Some(Err(broken)) => {
                        // Reported once; the body then ends.
                        state.end = Some(Ok(()));
                        Poll::Ready(Some(Err(broken)))
                    }
                    None => {
                        match &mut state.reader {
                            Some(w) if w.will_wake(cx.waker()) => {}
                            slot => *slot = Some(cx.waker().clone()),
                        }
                        // The connection is woken when the body begins to want more, not at
                        // every poll: the reader may be polled by the connection's own task (a
                        // guarded body the gateway reads), which would wake itself for ever.
                        if !state.wanted {
                            state.wanted = true;
                            state.wake_connection();
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            WireBody::Whole(bytes) => bytes.is_none(),
            WireBody::Unsized { ended, .. } => *ended,
            WireBody::Fed { feed, left } => {
                let state = feed.lock();
                // A declared length all read is the end, before the connection says so.
                state.queue.is_empty() && (state.end == Some(Ok(())) || *left == Some(0))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            WireBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            WireBody::Fed {
                left: Some(left), ..
            } => SizeHint::with_exact(*left),
            WireBody::Fed { left: None, .. } | WireBody::Unsized { .. } => SizeHint::default(),
        }
    }
}

impl Drop for WireBody {
    fn drop(&mut self) {
        if let WireBody::Fed { feed, .. } = self {
            let mut state = feed.lock();
            state.dropped = true;
            state.wake_connection();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_fed_body_asks_for_more_and_reads_what_was_pushed_then_its_end() {
        let feed = Arc::new(Feed::default());
        let mut body = WireBody::Fed {
            feed: Arc::clone(&feed),
            left: Some(4),
        };
        assert_eq!(body.size_hint().exact(), Some(4));
        let reader = tokio::spawn(async move {
            let mut read = Vec::new();
            while let Some(frame) = body.frame().await {
                read.extend_from_slice(&frame.unwrap().into_data().unwrap());
            }
            read
        });
        for part in ["ab", "cd"] {
            loop {
                if std::mem::take(&mut feed.lock().wanted) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            feed.lock().push(Bytes::from_static(part.as_bytes()));
        }
        feed.lock().finish(Ok(()));
        assert_eq!(reader.await.unwrap(), b"abcd");
        assert!(
            feed.lock().dropped,
            "the reader's end is seen by the connection"
        );
    }

    /// A declared length all read is the body's end, before the connection says so (session
    /// 29's review: a reader waited for the connection's word, or its own time limit).
    #[tokio::test]
    async fn a_declared_length_all_read_is_the_end() {
        let feed = Arc::new(Feed::default());
        let mut body = WireBody::Fed {
            feed: Arc::clone(&feed),
            left: Some(2),
        };
        assert!(!body.is_end_stream());
        feed.lock().push(Bytes::from_static(b"ab"));
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&data[..], b"ab");
        assert!(body.is_end_stream(), "two of two bytes read");
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    /// The reader wakes the connection when it begins to want more, not at each poll: it may be
    /// polled by the connection's own task, which would then wake itself for ever (session 29's
    /// review).
    #[test]
    fn the_reader_wakes_the_connection_once_per_want() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let woken = Arc::new(Count(std::sync::atomic::AtomicUsize::new(0)));
        let connection = Waker::from(Arc::clone(&woken));
        let feed = Arc::new(Feed::default());
        let mut body = WireBody::Fed {
            feed: Arc::clone(&feed),
            left: None,
        };
        let mut cx = Context::from_waker(Waker::noop());
        let wakes = || woken.0.load(std::sync::atomic::Ordering::SeqCst);
        feed.lock().park_connection(&connection);
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert_eq!(wakes(), 1, "it began to want more");
        for _ in 0..3 {
            feed.lock().park_connection(&connection);
            assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        }
        assert_eq!(wakes(), 1, "still the same want");
        // Fed, it wants more again once it has read what came.
        feed.lock().push(Bytes::from_static(b"x"));
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_ready());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert_eq!(wakes(), 2);
    }

    #[tokio::test]
    async fn a_broken_body_reports_its_error_once_then_ends() {
        let feed = Arc::new(Feed::default());
        feed.lock().finish(Err(Broken("a chunk size")));
        let mut body = WireBody::Fed { feed, left: None };
        assert_eq!(
            body.frame().await.unwrap().unwrap_err(),
            Broken("a chunk size")
        );
        assert!(body.frame().await.is_none());
    }
}
