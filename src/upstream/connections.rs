//! Upstream connections per member, as `ringfence_upstream_connections{member, state}`: each
//! connection made to a member counts open from its connect until it is dropped ([`Open`]), and
//! busy is the member's requests in flight, from the moment they are sent until their response
//! head; idle is the difference.
//!
//! How exact: the open count is exact. One request holds one connection, but a request counts
//! busy only until its response head, so a connection still streaming an answer's body counts
//! idle, and a request waiting for a new connection counts busy before its connection is open
//! (idle is never shown below 0). The counts (`metrics::ConnectionCounts`) are per member name,
//! shared by the pools of successive reloads, so that a reload's old pool draining its
//! connections is still counted.

use std::sync::Arc;

use crate::metrics::ConnectionCounts as Counts;

/// A connection counted open until dropped.
pub struct Open(Arc<Counts>);

impl Open {
    pub fn new(counts: &Arc<Counts>) -> Open {
        counts.opened();
        Open(Arc::clone(counts))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.closed();
    }
}
