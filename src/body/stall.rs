//! A request body that must keep coming: a client that stops sending in the middle of a body
//! holds a connection slot for as long as the server waits, so the wait for the next bytes is
//! bounded (nginx's `client_body_timeout`), and so is the whole body (`body_deadline`), since a
//! byte at a time would reset the first. The first clock runs only while ringfence is waiting
//! for the client, never while the body sits unread behind a slow pool.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a client's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body's framing or its connection failed (hyper's error, or the own server's).
    #[error(transparent)]
    Read(Box<dyn std::error::Error + Send + Sync>),
    #[error("the client sent no part of the body for {0:?}")]
    Stalled(Duration),
    #[error("the client did not send the whole body within {0:?}")]
    Late(Duration),
}

/// A body whose reader gives up when the client sends nothing for `limit` while it is waited for.
#[derive(Debug)]
pub struct Timed<B> {
    body: B,
    limit: Duration,
    /// When the whole body must have arrived, and how long after its head that is.
    deadline: Instant,
    total: Duration,
    /// Made on the first wait only: most bodies arrive with their head and never need it.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    stalled: bool,
    /// Where the bytes read are added up, when the access log wants them.
    counted: Option<Arc<AtomicU64>>,
}

impl<B> Timed<B> {
    /// A body whose head came at `head`.
    pub fn new(body: B, limit: Duration, total: Duration, head: Instant) -> Timed<B> {
        Timed {
            body,
            limit,
            deadline: crate::clock::after(head, total),
            total,
            timer: None,
            waiting: false,
            stalled: false,
            counted: None,
        }
    }

    /// Adds the length of every data frame read from now on to `counter`.
    pub fn count_into(&mut self, counter: Arc<AtomicU64>) {
        self.counted = Some(counter);
    }
}

impl From<hyper::Error> for BodyError {
    fn from(e: hyper::Error) -> BodyError {
        BodyError::Read(e.into())
    }
}

/// `Either`'s error ([`super::Source`]): hyper's or the own server's, boxed.
impl From<Box<dyn std::error::Error + Send + Sync>> for BodyError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> BodyError {
        BodyError::Read(e)
    }
}

impl<B> Body for Timed<B>
where
    B: Body + Unpin,
    B::Error: Into<BodyError>,
    B::Data: bytes::Buf,
{
    type Data = B::Data;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BodyError>>> {
        let this = self.get_mut();
        if this.stalled {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                if let (Some(counter), Some(Ok(f))) = (&this.counted, &frame) {
                    let n = f.data_ref().map_or(0, bytes::Buf::remaining);
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = (Instant::now() + this.limit).min(this.deadline);
                let timer = match &mut this.timer {
                    Some(timer) => {
                        if !this.waiting {
                            timer.as_mut().reset(deadline);
                        }
                        timer
                    }
                    None => this
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                this.waiting = true;
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.stalled = true;
                        let error = if Instant::now() >= this.deadline {
                            BodyError::Late(this.total)
                        } else {
                            BodyError::Stalled(this.limit)
                        };
                        Poll::Ready(Some(Err(error)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stalled || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A client's body whose bytes come when the test sends them.
    struct Fed(mpsc::UnboundedReceiver<&'static str>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = hyper::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|bytes| bytes.map(|b| Ok(Frame::data(Bytes::from_static(b.as_bytes())))))
        }
    }

    fn fed(limit: u64, total: u64) -> (mpsc::UnboundedSender<&'static str>, Timed<Fed>) {
        let (send, receive) = mpsc::unbounded_channel();
        let body = Timed::new(
            Fed(receive),
            Duration::from_secs(limit),
            Duration::from_secs(total),
            Instant::now(),
        );
        (send, body)
    }

    async fn next(body: &mut Timed<Fed>) -> Result<Bytes, BodyError> {
        let frame = body.frame().await.expect("a frame")?;
        Ok(frame.into_data().expect("data"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_fails_once_nothing_came_for_the_read_limit() {
        let (send, mut body) = fed(5, 30);
        let start = Instant::now();
        send.send("{").unwrap();
        assert_eq!(next(&mut body).await.unwrap(), "{");
        let error = next(&mut body).await.unwrap_err();
        assert!(matches!(error, BodyError::Stalled(_)), "{error:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none(), "ended after the error");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_trickles_fails_at_its_deadline() {
        let (send, mut body) = fed(5, 30);
        let start = Instant::now();
        tokio::spawn(async move {
            // A byte every 4 s never trips the 5 s read limit.
            while send.send(" ").is_ok() {
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
        });
        let error = loop {
            if let Err(e) = next(&mut body).await {
                break e;
            }
        };
        assert!(matches!(error, BodyError::Late(_)), "{error:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    /// The read limit runs only while the body is waited for: a body left unread (behind a slow
    /// pool) is not the client's stall.
    #[tokio::test(start_paused = true)]
    async fn the_read_limit_runs_only_while_the_body_is_waited_for() {
        let (send, mut body) = fed(5, 60);
        let start = Instant::now();
        send.send("{").unwrap();
        assert_eq!(next(&mut body).await.unwrap(), "{");
        tokio::time::sleep(Duration::from_secs(20)).await;
        send.send("}").unwrap();
        assert_eq!(next(&mut body).await.unwrap(), "}");
        let error = next(&mut body).await.unwrap_err();
        assert!(matches!(error, BodyError::Stalled(_)), "{error:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(25));
    }
}
