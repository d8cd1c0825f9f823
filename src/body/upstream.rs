//! The body sent to a member: nothing, the checked bytes of a guarded request, or the client's
//! own body streamed through.

use std::pin::Pin;
use std::task::{Context, Poll};

use super::{BodyError, ClientBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

#[derive(Debug)]
pub enum UpstreamBody {
    Empty,
    /// Sent exactly as received and checked; `None` once sent.
    Buffered(Option<Bytes>),
    /// Boxed: a `ClientBody` inline made every future that carries a request body 96 bytes
    /// larger (and, with hyper-util's client, every slot of its 32-slot request channel: 3 KB
    /// per held long poll, issue 16).
    Streamed(Box<ClientBody>),
}

impl UpstreamBody {
    /// A copy for a retry: only bodies that are held in memory can be sent twice.
    pub fn try_clone(&self) -> Option<UpstreamBody> {
        match self {
            UpstreamBody::Empty => Some(UpstreamBody::Empty),
            UpstreamBody::Buffered(b) => Some(UpstreamBody::Buffered(b.clone())),
            UpstreamBody::Streamed(_) => None,
        }
    }

    /// A client body that is already known to be empty needs no stream, and can be retried.
    pub fn from_client(body: ClientBody) -> UpstreamBody {
        if body.is_end_stream() {
            UpstreamBody::Empty
        } else {
            UpstreamBody::Streamed(Box::new(body))
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Buffered(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Streamed(s) => Pin::new(&mut **s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Buffered(b) => b.is_none(),
            UpstreamBody::Streamed(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Buffered(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            UpstreamBody::Streamed(s) => s.size_hint(),
        }
    }
}

#[cfg(test)]
mod size_tests {
    /// The size every future that carries a request pays for the body type: 136 bytes with a
    /// `ClientBody` inline.
    #[test]
    fn an_upstream_body_is_small() {
        assert!(std::mem::size_of::<super::UpstreamBody>() <= 40);
    }
}
