//! A trail's delivery: a bounded queue of lines and the one thread that writes them to the sink,
//! as many lines per write as have arrived (group commit). A sender may wait until its line is
//! written; a line the sink cannot take yet is kept and retried, never skipped, so a sink that
//! comes back receives every line in order, and a line that is lost is counted.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use super::ack::{self, Ack, Signal};
use super::syslog::{self, Severity};

/// The metrics of one trail: lines by result, and lines waiting.
#[derive(Clone)]
pub struct Counters {
    pub lines: IntCounterVec,
    pub queued: IntGauge,
    written: IntCounter,
    dropped: IntCounter,
    failed: IntCounter,
}

impl Counters {
    /// `lines` names the `{result}` counter, `queued` the gauge (registered by `Metrics`).
    pub fn new(lines: &str, lines_help: &str, queued: &str, queued_help: &str) -> Counters {
        let vec =
            IntCounterVec::new(Opts::new(lines, lines_help), &["result"]).expect("valid metric");
        let queued = IntGauge::new(queued, queued_help).expect("valid metric");
        Counters {
            written: vec.with_label_values(&["written"]),
            dropped: vec.with_label_values(&["dropped"]),
            failed: vec.with_label_values(&["failed"]),
            lines: vec,
            queued,
        }
    }
}

/// One line for the sink (its text ends in `\n`), and who waits for it.
pub struct Line {
    pub text: String,
    /// The syslog MSGID: the line's kind (`decision`, `outcome`, `config`, `access`).
    pub kind: &'static str,
    pub severity: Severity,
    /// When the line was made: its syslog TIMESTAMP.
    made: std::time::SystemTime,
    written: Option<Ack>,
}

impl Line {
    pub fn new(text: String, kind: &'static str, severity: Severity) -> Line {
        Line::made_at(text, kind, severity, std::time::SystemTime::now())
    }

    #[cfg(test)]
    pub(crate) fn made(&self) -> std::time::SystemTime {
        self.made
    }

    /// A line of a record made at `made` (its `ts`), which is then its syslog TIMESTAMP too.
    pub fn made_at(
        text: String,
        kind: &'static str,
        severity: Severity,
        made: std::time::SystemTime,
    ) -> Line {
        Line {
            text,
            kind,
            severity,
            made,
            written: None,
        }
    }
}

enum Entry {
    Line(Line),
    /// Reopen the file by its path (logrotate): lines before it go to the old file.
    Reopen,
    /// Answered once every line before it is written (or could not be within the caller's wait).
    Flush(mpsc::SyncSender<()>),
}

/// The queue was full, or the writer is gone: the lines were not queued (and were counted).
#[derive(Debug, Clone, Copy)]
pub struct Full;

/// Whether [`Queue::push`] also holds a place for a line to come ([`Reservation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spare {
    No,
    /// When one is free; the lines are queued either way (`on_full = "drop"`).
    IfFree,
    /// Or nothing is queued: a request whose outcome could not be recorded is not forwarded
    /// (`on_full = "refuse"`; fresh-eyes round 8, N2).
    Required,
}

/// What [`Queue::push`] queued: who waits for the lines, and a place held for one more.
#[derive(Default)]
pub struct Pushed {
    pub written: Option<ack::Written>,
    pub reservation: Option<Reservation>,
}

/// A place held for a line to come (a forwarded request's outcome), outside the queue's own
/// bound: requests in flight hold them, and must not take the room decision lines need
/// (fresh-eyes round 7, N1). Released if the line never comes.
pub struct Reservation(Option<Arc<Queue>>);

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            queue.held.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The sending side, shared by every request.
pub struct Queue {
    tx: Sender<Entry>,
    queued: AtomicUsize,
    /// Places held for lines to come ([`Reservation`]), at most `capacity` besides the queue.
    held: AtomicUsize,
    capacity: usize,
    counters: Counters,
    /// How the writer tells waiting senders their lines are written.
    signal: Arc<Signal>,
}

/// Where lines are written. `write` takes the waiting lines in order and says how many it wrote.
pub trait Sink: Send {
    fn write(&mut self, lines: &[Line]) -> Result<(), Partial>;
    /// Reopens a file by its path; other sinks have nothing to reopen.
    fn reopen(&mut self) {}
    /// Housekeeping after lines were written and their senders told, so that none of them
    /// waits for it.
    fn settle(&mut self) {}
}

/// `sent` lines were written before `error`; `lost` when the next line can never be (it is
/// dropped and counted `failed` instead of retried).
pub struct Partial {
    pub sent: usize,
    pub error: io::Error,
    pub lost: bool,
}

impl Queue {
    /// Starts the writer thread `name` on `sink`.
    pub fn start(
        name: &str,
        sink: Box<dyn Sink>,
        capacity: usize,
        counters: Counters,
    ) -> io::Result<Arc<Queue>> {
        let (tx, rx) = mpsc::channel();
        let queue = Arc::new(Queue {
            tx,
            queued: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            capacity,
            counters,
            signal: Arc::default(),
        });
        let shared = Arc::clone(&queue);
        let label = name.to_owned();
        std::thread::Builder::new()
            .name(format!("ringfence-{name}"))
            .spawn(move || Writer::new(&shared, sink, label).run(&rx))?;
        Ok(queue)
    }

    /// Queues `lines` all together or not at all. With `spare`, a place is also held for a line
    /// to come ([`Reservation`]: a forwarded request's outcome, which a queue filled meanwhile
    /// must not lose) out of `capacity` such places. With `wait`, the returned receiver is
    /// answered once the last of the lines is written (lines are written in order).
    pub fn push(
        self: &Arc<Self>,
        lines: impl ExactSizeIterator<Item = Line>,
        wait: bool,
        spare: Spare,
    ) -> Result<Pushed, Full> {
        let n = lines.len();
        // The place first: with `Required`, lines are queued only once the outcome has its own.
        let reservation = match spare {
            Spare::No => None,
            Spare::IfFree => self.hold(),
            Spare::Required => match self.hold() {
                Some(place) => Some(place),
                None => {
                    self.counters.dropped.inc_by(n as u64);
                    return Err(Full);
                }
            },
        };
        // A request of many lines (a batch's parts) may fill only half the queue: a flood of
        // them cannot take the room single requests need (fresh-eyes round 6, F1).
        let limit = if n > 1 {
            self.capacity / 2
        } else {
            self.capacity
        };
        self.room(n, limit)?;
        let written = self.send(lines, wait)?;
        Ok(Pushed {
            written,
            reservation,
        })
    }

    /// Queues lines that follow a request's own and that nobody waits for, in the half of the
    /// queue a request of many lines may fill, however few they are: with them a request has
    /// more than one line.
    pub fn push_after(
        self: &Arc<Self>,
        lines: impl ExactSizeIterator<Item = Line>,
    ) -> Result<(), Full> {
        self.room(lines.len(), self.capacity / 2)?;
        self.send(lines, false).map(drop)
    }

    /// Counts `n` lines as queued if the queue then holds no more than `limit`; else drops
    /// them, counted.
    fn room(&self, n: usize, limit: usize) -> Result<(), Full> {
        if n > 0 {
            let before = self.queued.fetch_add(n, Ordering::AcqRel);
            if before + n > limit {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                self.counters.dropped.inc_by(n as u64);
                return Err(Full);
            }
        }
        Ok(())
    }

    /// Holds one of the `capacity` places for lines to come, if one is free.
    fn hold(self: &Arc<Self>) -> Option<Reservation> {
        if self.held.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.held.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Reservation(Some(Arc::clone(self))))
    }

    /// Queues a line in the place `reservation` held, whatever the queue holds.
    pub fn push_reserved(&self, line: Line, mut reservation: Reservation) {
        reservation.0 = None;
        self.held.fetch_sub(1, Ordering::AcqRel);
        self.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.send(std::iter::once(line), false);
    }

    /// Sends lines whose places are taken.
    fn send(
        &self,
        lines: impl ExactSizeIterator<Item = Line>,
        wait: bool,
    ) -> Result<Option<ack::Written>, Full> {
        let n = lines.len();
        self.counters.queued.add(n as i64);
        let (mut ack, written) = if wait && n > 0 {
            let (tx, rx) = ack::pair(&self.signal);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        for (i, mut line) in lines.enumerate() {
            if i + 1 == n {
                line.written = ack.take();
            }
            if self.tx.send(Entry::Line(line)).is_err() {
                // The writer is gone (it panicked): nothing is written any more.
                let unsent = (n - i) as u64;
                self.counters.failed.inc_by(unsent);
                self.counters.queued.sub(unsent as i64);
                self.queued.fetch_sub(n - i, Ordering::AcqRel);
                return Err(Full);
            }
        }
        Ok(written)
    }

    pub fn reopen(&self) {
        let _ = self.tx.send(Entry::Reopen);
    }

    /// Waits up to `within` for every line queued so far to be written; returns how many were
    /// still waiting when it gave up (0 when all were written).
    pub fn flush(&self, within: Duration) -> usize {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.tx.send(Entry::Flush(tx)).is_ok() && rx.recv_timeout(within).is_ok() {
            return 0;
        }
        self.queued.load(Ordering::Acquire)
    }
}

/// The writer thread's state.
struct Writer<'q> {
    queue: &'q Queue,
    sink: Box<dyn Sink>,
    pending: VecDeque<Line>,
    flushes: Vec<mpsc::SyncSender<()>>,
    /// How long to wait before retrying a sink that failed; zero while it works.
    backoff: Duration,
    name: String,
}

const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Lines written at most per write, so that waiting senders hear back steadily.
const MAX_BATCH: usize = 4096;

impl<'q> Writer<'q> {
    fn new(queue: &'q Queue, sink: Box<dyn Sink>, name: String) -> Writer<'q> {
        Writer {
            queue,
            sink,
            pending: VecDeque::new(),
            flushes: Vec::new(),
            backoff: Duration::ZERO,
            name,
        }
    }

    fn run(mut self, rx: &Receiver<Entry>) {
        loop {
            // Block for work only when nothing waits; while the sink fails, wake to retry.
            let first = if self.pending.is_empty() {
                let first = rx.recv().map_err(|_| RecvTimeoutError::Disconnected);
                // Woken by a line: let the thread that sent it go on first (on a shared core it
                // is about to send more), so that one write takes many lines.
                std::thread::yield_now();
                first
            } else if self.backoff.is_zero() {
                rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            } else {
                rx.recv_timeout(self.backoff)
            };
            match first {
                Ok(entry) => self.take(entry),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Every sender is gone (the process is ending): one last try, and what the
                    // sink still refuses is counted lost.
                    self.write_pending();
                    let left = self.pending.len();
                    self.done(left, false);
                    return;
                }
            }
            while self.pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(entry) => self.take(entry),
                    Err(_) => break,
                }
            }
            self.write_pending();
        }
    }

    fn take(&mut self, entry: Entry) {
        match entry {
            Entry::Line(line) => self.pending.push_back(line),
            Entry::Reopen => {
                self.write_pending();
                self.sink.reopen();
            }
            Entry::Flush(done) => self.flushes.push(done),
        }
    }

    /// Writes what waits, in order, as far as the sink takes it.
    fn write_pending(&mut self) {
        while !self.pending.is_empty() {
            let slice = self.pending.make_contiguous();
            let upto = slice.len().min(MAX_BATCH);
            match self.sink.write(&slice[..upto]) {
                Ok(()) => self.done(upto, true),
                Err(partial) => {
                    self.done(partial.sent, true);
                    if partial.lost {
                        tracing::error!(
                            trail = %self.name, error = %partial.error,
                            "a line the sink can never take was dropped (counted as failed)"
                        );
                        self.done(1, false);
                        continue;
                    }
                    if self.backoff.is_zero() {
                        tracing::error!(
                            trail = %self.name, error = %partial.error, waiting = self.pending.len(),
                            "cannot write the trail; its lines wait in the queue and are retried"
                        );
                    }
                    self.backoff = (self.backoff * 2)
                        .max(Duration::from_millis(25))
                        .min(MAX_BACKOFF);
                    return;
                }
            }
        }
        if !self.backoff.is_zero() {
            tracing::info!(trail = %self.name, "the trail's sink takes lines again");
            self.backoff = Duration::ZERO;
        }
        for done in self.flushes.drain(..) {
            let _ = done.try_send(());
        }
        self.sink.settle();
    }

    /// The first `n` waiting lines are written (`ok`) or lost.
    fn done(&mut self, n: usize, ok: bool) {
        let mut settled = false;
        for line in self.pending.drain(..n) {
            if let Some(ack) = line.written {
                settled = true;
                if ok {
                    ack.written();
                } // else dropped: lost
            }
        }
        if settled {
            // One wake for the whole write (a lost line's drop has woken already).
            self.queue.signal.wake();
        }
        if n == 0 {
            return;
        }
        let counters = &self.queue.counters;
        if ok {
            &counters.written
        } else {
            &counters.failed
        }
        .inc_by(n as u64);
        counters.queued.sub(n as i64);
        self.queue.queued.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A byte stream: a file (reopened by its path), stdout or stderr. A write cut short resumes
/// where it stopped, so a line is never doubled nor torn.
pub struct Stream {
    out: Box<dyn Write + Send>,
    path: Option<PathBuf>,
    /// Bytes of the first waiting line already written.
    partial: usize,
    /// A file's pages, handed to the disk and let go as the trail grows.
    cache: Option<PageCache>,
}

impl Stream {
    pub fn file(path: &Path) -> io::Result<Stream> {
        let file = open(path)?;
        Ok(Stream {
            cache: PageCache::of(&file),
            out: Box::new(file),
            path: Some(path.to_owned()),
            partial: 0,
        })
    }

    pub fn stdout() -> Stream {
        Stream {
            out: Box::new(io::stdout()),
            path: None,
            partial: 0,
            cache: None,
        }
    }

    pub fn stderr() -> Stream {
        Stream {
            out: Box::new(io::stderr()),
            path: None,
            partial: 0,
            cache: None,
        }
    }
}

pub fn open(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl Sink for Stream {
    fn write(&mut self, lines: &[Line]) -> Result<(), Partial> {
        let mut slices: Vec<IoSlice<'_>> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let skip = if i == 0 { self.partial } else { 0 };
                IoSlice::new(&l.text.as_bytes()[skip..])
            })
            .collect();
        let mut written = 0usize;
        let mut bufs = &mut slices[..];
        // Line ends, as byte offsets into this write.
        let ends: Vec<usize> = bufs
            .iter()
            .scan(0, |end, s| {
                *end += s.len();
                Some(*end)
            })
            .collect();
        while !bufs.is_empty() {
            match self.out.write_vectored(bufs) {
                Ok(0) => {
                    return Err(self.cut(&ends, written, io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut bufs, n);
                    if let Some(cache) = &mut self.cache {
                        cache.end += n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.cut(&ends, written, e)),
            }
        }
        self.partial = 0;
        if let Err(error) = self.out.flush() {
            return Err(Partial {
                sent: lines.len(),
                error,
                lost: false,
            });
        }
        Ok(())
    }

    fn settle(&mut self) {
        if let Some(cache) = &mut self.cache {
            cache.advise();
        }
    }

    fn reopen(&mut self) {
        let Some(path) = &self.path else { return };
        let _ = self.out.flush();
        match open(path) {
            Ok(file) => {
                self.cache = PageCache::of(&file);
                self.out = Box::new(file);
                // A line cut short in the old file is written whole to the new one.
                self.partial = 0;
                tracing::info!(path = %path.display(), "audit trail reopened");
            }
            Err(e) => tracing::error!(
                path = %path.display(), error = %e,
                "cannot reopen the trail; writing on to the file already open"
            ),
        }
    }
}

/// The trail file's page cache, kept small: each 256 KiB the trail grows, that chunk is handed
/// to the disk (`POSIX_FADV_DONTNEED` starts its writeback, without waiting for it) and the
/// 2 MiB before it, written back by then, are let go (a page still being written is kept, and
/// let go at a later chunk). Small chunks keep each call short: on a core the requests share,
/// 4 MiB at once held it ~1 ms and raised their p99 by a fifth. As RocksDB's `bytes_per_sync` does for its
/// logs: left to the kernel, a trail written at 25 MB/s (~35,000 guarded requests a second)
/// stays dirty in memory for `vm.dirty_expire_centisecs` (30 s), evicts the host's useful
/// cache, and a power cut loses all of it; and each new page of it costs a page the kernel must
/// find (in a VM whose free pages go back to the host, ~5 µs a page: the writer's CPU per line
/// rose fivefold after ~500 MB, docs/performance.md). Advice only: a failure changes nothing
/// but the memory the trail keeps, and a file truncated or rotated under it is advised at the
/// wrong offsets, which is as harmless.
struct PageCache {
    file: std::fs::File,
    /// Where the trail's end is, as far as this writer knows.
    end: u64,
    /// Where it was when last advised ([`Sink::settle`]: after the lines' senders were told,
    /// so that no request waits for the disk being handed its chunk).
    advised: u64,
}

/// How much of the trail is handed to the disk at once.
const CACHE_CHUNK: u64 = 256 << 10;
/// How many chunks behind the end the trail is let go.
const CACHE_BEHIND: u64 = 8;

impl PageCache {
    fn of(file: &std::fs::File) -> Option<PageCache> {
        let end = file.metadata().ok()?.len();
        Some(PageCache {
            end,
            advised: end,
            file: file.try_clone().ok()?,
        })
    }

    fn advise(&mut self) {
        let before = std::mem::replace(&mut self.advised, self.end);
        for (offset, len) in cache_advice(before, self.end) {
            let _ = rustix::fs::fadvise(
                &self.file,
                offset,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::DontNeed,
            );
        }
    }
}

/// The ranges to advise when the trail grew from `before` to `after` bytes: for each chunk
/// boundary crossed, the chunk just completed (its writeback starts) and the
/// [`CACHE_BEHIND`] chunks before it (written back since, let go).
fn cache_advice(before: u64, after: u64) -> impl Iterator<Item = (u64, u64)> {
    (before / CACHE_CHUNK + 1..=after / CACHE_CHUNK).flat_map(|k| {
        let done = ((k - 1) * CACHE_CHUNK, CACHE_CHUNK);
        let from = (k - 1).saturating_sub(CACHE_BEHIND);
        let old = (k >= 2).then(|| (from * CACHE_CHUNK, (k - 1 - from) * CACHE_CHUNK));
        std::iter::once(done).chain(old)
    })
}

impl Stream {
    /// Where a failed write stopped: the whole lines written, and the bytes of the next.
    fn cut(&mut self, ends: &[usize], written: usize, error: io::Error) -> Partial {
        let sent = ends.partition_point(|&end| end <= written);
        let start = if sent == 0 { 0 } else { ends[sent - 1] };
        let carried = if sent == 0 { self.partial } else { 0 };
        self.partial = carried + (written - start);
        Partial {
            sent,
            error,
            lost: false,
        }
    }
}

/// The syslog sink: one RFC 5424 message per line, its MSGID the line's kind.
pub struct ToSyslog(pub syslog::Syslog);

impl Sink for ToSyslog {
    fn write(&mut self, lines: &[Line]) -> Result<(), Partial> {
        let messages: Vec<syslog::Message<'_>> = lines
            .iter()
            .map(|l| syslog::Message {
                severity: l.severity,
                msgid: l.kind,
                ts: l.made,
                text: l.text.strip_suffix('\n').unwrap_or(&l.text),
            })
            .collect();
        self.0.send(&messages).map_err(|p| Partial {
            sent: p.sent,
            lost: p.error.line_at_fault(),
            error: io::Error::other(p.error),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each chunk the trail completes is handed to the disk once, and let go in the calls
    /// that follow, up to [`CACHE_BEHIND`] chunks back.
    #[test]
    fn the_trail_is_handed_to_the_disk_a_chunk_at_a_time() {
        const C: u64 = CACHE_CHUNK;
        const B: u64 = CACHE_BEHIND;
        let advised = |before, after| cache_advice(before, after).collect::<Vec<_>>();
        assert_eq!(advised(0, C - 1), []);
        assert_eq!(advised(C - 1, C), [(0, C)]);
        assert_eq!(advised(C, 2 * C - 1), []);
        assert_eq!(advised(2 * C - 10, 2 * C + 10), [(C, C), (0, C)]);
        assert_eq!(advised(3 * C - 1, 3 * C), [(2 * C, C), (0, 2 * C)]);
        // A write over several boundaries advises each.
        assert_eq!(
            advised(C + 5, 3 * C + 5),
            [(C, C), (0, C), (2 * C, C), (0, 2 * C)]
        );
        // Far into the trail, only the last B chunks are let go again.
        let k = 100;
        assert_eq!(
            advised(k * C - 1, k * C),
            [((k - 1) * C, C), ((k - 1 - B) * C, B * C)]
        );
        // A trail reopened at its length goes on from there.
        assert_eq!(advised(10 * C + 1, 11 * C), [(10 * C, C), (2 * C, B * C)]);
    }

    /// A sink that takes nothing, so that every line stays queued.
    struct Refusing;

    impl Sink for Refusing {
        fn write(&mut self, _: &[Line]) -> Result<(), Partial> {
            Err(Partial {
                sent: 0,
                error: io::Error::other("down"),
                lost: false,
            })
        }
    }

    fn lines(n: usize) -> std::vec::IntoIter<Line> {
        (0..n)
            .map(|i| Line::new(format!("{i}\n"), "decision", Severity::Info))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn queue(capacity: usize) -> Arc<Queue> {
        let counters = Counters::new("t_lines", "t", "t_queued", "t");
        Queue::start("test", Box::new(Refusing), capacity, counters).unwrap()
    }

    #[test]
    fn lines_are_queued_all_or_none_and_many_only_into_half_the_queue() {
        let q = queue(10);
        assert!(q.push(lines(5), false, Spare::No).is_ok(), "5 of 10: half");
        assert!(
            q.push(lines(2), false, Spare::No).is_err(),
            "7 of 10 for a request of many"
        );
        for _ in 0..5 {
            assert!(q.push(lines(1), false, Spare::No).is_ok());
        }
        assert!(q.push(lines(1), false, Spare::No).is_err(), "full");
        assert_eq!(q.queued.load(Ordering::Acquire), 10);
        assert_eq!(q.counters.dropped.get(), 3);
        assert_eq!(q.counters.queued.get(), 10);
    }

    #[test]
    fn held_places_take_no_room_from_the_queue_and_their_lines_always_fit() {
        let q = queue(2);
        let first = q
            .push(lines(1), false, Spare::IfFree)
            .unwrap()
            .reservation
            .unwrap();
        let second = q
            .push(lines(0), false, Spare::Required)
            .unwrap()
            .reservation
            .unwrap();
        assert!(
            q.push(lines(0), false, Spare::IfFree)
                .unwrap()
                .reservation
                .is_none(),
            "at most `capacity` held places"
        );
        assert!(
            q.push(lines(1), false, Spare::Required).is_err(),
            "no place for the outcome: the decision is not queued either"
        );
        assert_eq!(q.queued.load(Ordering::Acquire), 1, "nothing was queued");
        assert!(
            q.push(lines(1), false, Spare::No).is_ok(),
            "held places take no room"
        );
        assert!(
            q.push(lines(1), false, Spare::No).is_err(),
            "the queue is full"
        );
        drop(second);
        assert_eq!(q.held.load(Ordering::Acquire), 1);
        q.push_reserved(lines(1).next().unwrap(), first);
        assert_eq!(q.held.load(Ordering::Acquire), 0);
        assert_eq!(
            q.counters.queued.get(),
            3,
            "the held line went in over a full queue"
        );
        assert_eq!(q.counters.dropped.get(), 2);
    }
}
