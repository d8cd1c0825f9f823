//! Upstream connections per member, as `ringfence_upstream_connections{member, state}`: a
//! connector wrapper counts the connections open to each member (one more when a connect
//! succeeds, one less when hyper drops the connection's IO), and busy is the member's requests in
//! flight, from the moment they are sent until their response head; idle is the difference.
//!
//! How exact: the open count is exact. With HTTP/1.1 one request holds one connection, but a
//! request counts busy only until its response head, so a connection still streaming an answer's
//! body counts idle, and a request waiting for a new connection counts busy before its connection
//! is open (idle is never shown below 0). Over HTTP/2 many busy requests share one connection.
//! The counts (`metrics::ConnectionCounts`) are per member name, shared by the pools of
//! successive reloads, so that a reload's old pool draining its connections is still counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

use crate::metrics::ConnectionCounts as Counts;

/// Wraps the pool's connector: each connection made to a member is counted open until dropped.
#[derive(Clone)]
pub struct Counting<C> {
    inner: C,
    members: Arc<[(Authority, Arc<Counts>)]>,
}

impl<C> Counting<C> {
    pub fn new(inner: C, members: Vec<(Authority, Arc<Counts>)>) -> Counting<C> {
        Counting {
            inner,
            members: members.into(),
        }
    }
}

type Connecting<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<C> tower_service::Service<Uri> for Counting<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Response: 'static,
{
    type Response = Counted<C::Response>;
    type Error = C::Error;
    type Future = Connecting<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let counts = uri.authority().and_then(|a| {
            self.members
                .iter()
                .find(|(m, _)| m == a)
                .map(|(_, c)| Arc::clone(c))
        });
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            if let Some(c) = &counts {
                c.opened();
            }
            Ok(Counted { io, counts })
        })
    }
}

/// A connection's IO, counted open until dropped.
pub struct Counted<T> {
    io: T,
    counts: Option<Arc<Counts>>,
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        if let Some(c) = &self.counts {
            c.closed();
        }
    }
}

impl<T: Connection> Connection for Counted<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Unpin> Read for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
