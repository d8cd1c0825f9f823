//! The access log's line for one request (SPEC §9 "Access log"): begun with the request, given
//! its status and member with the answer's head, and written when the answer's body is done
//! (or dropped), with the bytes that went each way. Nothing of this exists when the access log
//! is off.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};

use crate::audit::{self, Access, AccessLog};
use crate::route::Traffic;

/// One request's access line, being filled in.
pub struct Entry {
    log: AccessLog,
    started: Instant,
    id: HeaderValue,
    client: std::net::IpAddr,
    /// Copied out: the request's own value is a slice of the buffer its head was read into,
    /// which this entry, kept until the answer's last byte, would keep (issue 16).
    host: Option<Box<str>>,
    method: http::Method,
    path: Box<str>,
    bytes_in: Arc<AtomicU64>,
    status: u16,
    member: Option<Box<str>>,
    traffic: Traffic,
}

impl Entry {
    pub fn new(
        log: &AccessLog,
        started: Instant,
        id: &HeaderValue,
        client: std::net::IpAddr,
        head: &crate::request::Head,
    ) -> Entry {
        Entry {
            log: log.clone(),
            started,
            id: id.clone(),
            client,
            host: crate::request::host(head)
                .ok()
                .map(|host| host.to_str().unwrap_or("").into()),
            method: head.method.clone(),
            path: head.target.path().into(),
            bytes_in: Arc::default(),
            status: 0,
            member: None,
            traffic: Traffic::Passthrough,
        }
    }

    /// Where the request body's bytes are added up.
    pub fn bytes_in(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes_in)
    }

    pub fn answered(&mut self, status: u16, traffic: Traffic, member: Option<&str>) {
        self.status = status;
        self.traffic = traffic;
        self.member = member.map(Box::from);
    }

    fn write(&self, bytes_out: u64) {
        fn text(v: &HeaderValue) -> &str {
            v.to_str().unwrap_or("")
        }
        self.log.record(&Access {
            v: audit::VERSION,
            kind: "access",
            ts: std::time::SystemTime::now(),
            id: text(&self.id),
            client: &self.client.to_string(),
            host: self.host.as_deref().unwrap_or(""),
            method: self.method.as_str(),
            path: &self.path,
            status: self.status,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            duration_ms: millis(self.started),
            member: self.member.as_deref(),
            route: self.traffic.label(),
        });
    }
}

pub fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An answer's body that writes its request's access line when it is done or dropped.
#[derive(Debug)]
pub struct Logged<B> {
    body: B,
    entry: Option<Box<Entry>>,
    bytes_out: u64,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("id", &self.id).finish()
    }
}

impl<B> Logged<B> {
    pub fn new(body: B, entry: Option<Box<Entry>>) -> Logged<B> {
        Logged {
            body,
            entry,
            bytes_out: 0,
        }
    }

    fn finish(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.write(self.bytes_out);
        }
    }
}

impl<B: Body + Unpin> Body for Logged<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(f))) if this.entry.is_some() => {
                this.bytes_out += f.data_ref().map_or(0, |d| d.remaining() as u64);
            }
            Poll::Ready(None) => this.finish(),
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

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        self.finish();
    }
}
