//! The idle keep-alive connections of one pool, per member: at most `max_idle_per_member` each,
//! newest handed out first, none older than `idle_timeout`. A connection just sits in its list (no
//! task polls it); it is checked when taken out (see [`Conn::is_clean`]), and a reaper task, one
//! per pool and started with the first idle connection, closes the expired and the dead ones.
//!
//! Each list is a `Mutex<Vec<_>>` held only for one push or pop (never across an await, nor while
//! a socket is closed): uncontended in the common case, where one request takes and gives back
//! one connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::clock;

use super::conn::Conn;

pub struct Idle {
    members: Box<[Mutex<Vec<Parked>>]>,
    max: usize,
    timeout: Duration,
    /// `timeout` in milliseconds, less a tick of the coarse clock: a connection is dropped as
    /// soon as it might have been idle for `timeout`, never a tick later.
    expiry: u64,
    /// Set when the pool is replaced: nothing is kept any more.
    closed: AtomicBool,
    reaping: AtomicBool,
}

struct Parked {
    conn: Conn,
    /// When it was put back, on the coarse clock ([`clock::millis`]).
    since: u64,
}

impl Idle {
    pub fn new(members: usize, max: usize, timeout: Duration) -> Idle {
        Idle {
            members: (0..members).map(|_| Mutex::new(Vec::new())).collect(),
            max,
            timeout,
            expiry: (timeout.as_millis() as u64).saturating_sub(clock::resolution_millis()),
            closed: AtomicBool::new(false),
            reaping: AtomicBool::new(false),
        }
    }

    fn list(&self, member: usize) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        self.members[member]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest idle connection to `member` that is still good; the others met on the way are
    /// closed.
    pub fn take(&self, member: usize) -> Option<Conn> {
        loop {
            let parked = self.list(member).pop();
            let parked = parked?;
            let mut conn = parked.conn;
            if clock::since(parked.since) < self.expiry && conn.is_clean() {
                return Some(conn);
            }
        }
    }

    /// Keeps a connection whose exchange ended cleanly, unless the member already has its
    /// `max` idle ones (or the pool was replaced): then it is closed.
    pub fn put(self: &Arc<Self>, member: usize, mut conn: Conn) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        conn.reused = true;
        let parked = Parked {
            conn,
            since: clock::millis(),
        };
        let refused = {
            let mut list = self.list(member);
            if list.len() < self.max {
                list.push(parked);
                None
            } else {
                Some(parked)
            }
        };
        drop(refused);
        if !self.reaping.swap(true, Ordering::Relaxed) {
            self.reap();
        }
    }

    /// Closes every idle connection and keeps none from now on (a reload replaced the pool).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        for member in 0..self.members.len() {
            let all = std::mem::take(&mut *self.list(member));
            drop(all);
        }
    }

    /// Starts the reaper: every quarter of the idle timeout (10 ms to 1 s), it closes what has
    /// expired or been closed by the member; it ends with the pool.
    fn reap(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaping.store(false, Ordering::Relaxed);
            return;
        };
        let tick = (self.timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let weak: Weak<Idle> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(idle) = weak.upgrade() else { return };
                if idle.closed.load(Ordering::Relaxed) {
                    return;
                }
                for member in 0..idle.members.len() {
                    let mut gone = Vec::new();
                    {
                        let mut list = idle.list(member);
                        let mut i = 0;
                        while i < list.len() {
                            let parked = &mut list[i];
                            if clock::since(parked.since) >= idle.expiry || !parked.conn.is_clean()
                            {
                                gone.push(list.swap_remove(i));
                            } else {
                                i += 1;
                            }
                        }
                        // swap_remove broke the age order: newest last again.
                        list.sort_by_key(|p| p.since);
                    }
                    drop(gone);
                }
            }
        });
    }

    #[cfg(test)]
    pub fn len(&self, member: usize) -> usize {
        self.list(member).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::conn::Target;
    use tokio::io::AsyncWriteExt;

    /// A listener, and connections to it with the server's end of each.
    async fn pair(
        listener: &tokio::net::TcpListener,
        counts: &Arc<crate::metrics::ConnectionCounts>,
    ) -> (Conn, tokio::net::TcpStream) {
        let target = Target {
            host: "127.0.0.1".into(),
            port: listener.local_addr().unwrap().port(),
            tls: None,
        };
        let conn = Conn::connect(&target, Duration::from_secs(5), counts)
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (conn, server)
    }

    #[tokio::test]
    async fn only_clean_fresh_connections_are_kept_and_handed_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let counts = Arc::new(crate::metrics::ConnectionCounts::default());
        let idle = Arc::new(Idle::new(1, 2, Duration::from_millis(300)));
        let mut servers = Vec::new();
        for _ in 0..3 {
            let (conn, server) = pair(&listener, &counts).await;
            idle.put(0, conn);
            servers.push(server);
        }
        assert_eq!(idle.len(0), 2, "the cap");
        assert_eq!(counts.snapshot().0, 2, "the third was closed");
        // The member closes the newest one, and writes to the other unasked.
        drop(servers.pop());
        drop(servers.pop());
        servers[0].write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(idle.take(0).is_none(), "neither is handed out");
        assert_eq!(counts.snapshot().0, 0);

        let (conn, _server) = pair(&listener, &counts).await;
        idle.put(0, conn);
        let taken = idle.take(0).expect("a clean one is");
        assert!(taken.reused);
        idle.put(0, taken);
        // The reaper closes it after the idle timeout, with no checkout.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(idle.len(0), 0);
        assert_eq!(counts.snapshot().0, 0);

        let (conn, _server) = pair(&listener, &counts).await;
        idle.put(0, conn);
        idle.close();
        assert_eq!(idle.len(0), 0);
        let (conn, _server) = pair(&listener, &counts).await;
        idle.put(0, conn);
        assert_eq!(idle.len(0), 0, "a closed pool keeps nothing");
        assert_eq!(counts.snapshot().0, 0);
    }
}
