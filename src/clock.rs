//! A clock for what is timed in milliseconds against limits of seconds and never paused in
//! tests: the pool's idle connections. It reads the kernel's coarse monotonic clock
//! (`CLOCK_MONOTONIC_COARSE`, glibc's vDSO), which moves once a tick (1-4 ms) and costs ~5 ns a
//! read where the precise one costs ~22 ns in the bench VM (issue 15, docs/performance.md).
//! Latencies, timestamps and timeouts stay on `Instant` and `SystemTime`, and a connection's
//! activity on tokio's clock, which the tests pause.

/// Milliseconds on the coarse monotonic clock, from an arbitrary start (the machine's boot).
/// Never goes back; may lag the precise clock by up to a tick.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
pub fn millis() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    now.tv_sec as u64 * 1_000 + now.tv_nsec as u64 / 1_000_000
}

/// Elsewhere, the precise clock, from the first read.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn millis() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// How far [`millis`] may lag the precise clock: its resolution, rounded up (4 ms where the
/// kernel ticks at 250 Hz).
pub fn resolution_millis() -> u64 {
    static RESOLUTION: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RESOLUTION.get_or_init(|| {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let r = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
            (r.tv_sec as u64 * 1_000_000_000 + r.tv_nsec as u64).div_ceil(1_000_000)
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            1
        }
    })
}

/// Milliseconds since `earlier`, a reading of [`millis`].
#[inline]
pub fn since(earlier: u64) -> u64 {
    millis().saturating_sub(earlier)
}

/// `wait` after `start`, or in some 30 years where that is beyond the clock (a configured
/// limit of "1000000years"), as `tokio::time::timeout` does.
pub fn after(start: tokio::time::Instant, wait: std::time::Duration) -> tokio::time::Instant {
    start
        .checked_add(wait)
        .unwrap_or_else(|| start + std::time::Duration::from_secs(86_400 * 365 * 30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// It moves with the precise clock, within a tick: 50 ms measured as 40 to 70.
    #[test]
    fn coarse_millis_follow_the_precise_clock() {
        let (start, precise) = (millis(), Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        let coarse = since(start);
        let exact = precise.elapsed().as_millis() as u64;
        assert!(
            coarse + 10 >= exact && coarse <= exact + 10,
            "coarse {coarse} ms against precise {exact} ms"
        );
        assert!(millis() >= start + coarse);
    }

    #[test]
    fn a_wait_beyond_the_clock_is_thirty_years() {
        let start = tokio::time::Instant::now();
        let second = std::time::Duration::from_secs(1);
        assert_eq!(after(start, second), start + second);
        let far = after(start, std::time::Duration::MAX);
        assert_eq!(
            far - start,
            std::time::Duration::from_secs(86_400 * 365 * 30)
        );
    }
}
