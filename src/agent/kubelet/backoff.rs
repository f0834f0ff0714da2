//! Crash-loop back-off per pod container, as kubelet keeps it: the first restart of a container is
//! immediate, then each restart waits twice as long as the one before (10 s, 20 s, … up to 5 min), counted
//! from when the container last finished. A container that ran for 10 minutes before exiting starts over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A run at least this long resets the back-off.
pub const RESET_AFTER_RUNNING: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
}

/// The answer for one exited container that its restart policy would restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Restart now.
    Restart,
    /// Still backing off: `remaining` until the restart, out of `delay`.
    Wait {
        remaining: Duration,
        delay: Duration,
    },
}

#[derive(Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    /// Decides for the container `key` (pod uid + container name) that finished `since_finish` ago after
    /// running for `ran_for`. Deciding to restart advances the back-off, as kubelet's `backOff.Next`.
    pub fn decide(&self, key: &str, since_finish: Duration, ran_for: Duration) -> Decision {
        let mut entries = self.entries.lock().expect("backoff lock");
        if ran_for >= RESET_AFTER_RUNNING {
            entries.remove(key);
        }
        match entries.get_mut(key) {
            None => {
                entries.insert(key.to_string(), Entry { delay: INITIAL });
                Decision::Restart
            }
            Some(entry) if since_finish < entry.delay => Decision::Wait {
                remaining: entry.delay - since_finish,
                delay: entry.delay,
            },
            Some(entry) => {
                entry.delay = (entry.delay * 2).min(MAX);
                Decision::Restart
            }
        }
    }

    /// Forgets every container of a pod that is gone.
    pub fn forget_pod(&self, pod_uid: &str) {
        forget_pod(&self.entries, pod_uid);
    }
}

/// Retries of an operation that fails (a volume's set-up), as kubelet's operation executor spaces them: the
/// first retry after 500 ms, each next one after twice as long, up to 2 min 2 s; a success forgets it.
#[derive(Default)]
pub struct RetryBackoff {
    entries: Mutex<HashMap<String, (std::time::Instant, Duration)>>,
}

const RETRY_INITIAL: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(122);

impl RetryBackoff {
    /// How long until `key` may be tried again, when it failed too recently.
    pub fn remaining(&self, key: &str, now: std::time::Instant) -> Option<Duration> {
        let entries = self.entries.lock().expect("backoff lock");
        let (at, delay) = entries.get(key)?;
        (*at + *delay)
            .checked_duration_since(now)
            .filter(|r| !r.is_zero())
    }

    /// Records a failure of `key` at `now`; returns how long until its retry.
    pub fn failed(&self, key: &str, now: std::time::Instant) -> Duration {
        let mut entries = self.entries.lock().expect("backoff lock");
        let delay = entries
            .get(key)
            .map_or(RETRY_INITIAL, |(_, d)| (*d * 2).min(RETRY_MAX));
        entries.insert(key.to_string(), (now, delay));
        delay
    }

    pub fn succeeded(&self, key: &str) {
        self.entries.lock().expect("backoff lock").remove(key);
    }

    /// Forgets every operation of a pod that is gone.
    pub fn forget_pod(&self, pod_uid: &str) {
        forget_pod(&self.entries, pod_uid);
    }
}

/// Drops the entries of a pod: their keys start with its uid (see [`key`]).
fn forget_pod<V>(entries: &Mutex<HashMap<String, V>>, pod_uid: &str) {
    let prefix = format!("{pod_uid}/");
    entries
        .lock()
        .expect("backoff lock")
        .retain(|k, _| !k.starts_with(&prefix));
}

pub fn key(pod_uid: &str, container: &str) -> String {
    format!("{pod_uid}/{container}")
}

/// A container's crash-loop back-off is per version of its spec, as kubelet keys it: a fixed spec starts
/// at once instead of waiting out the broken one's delay.
pub fn crash_key(pod_uid: &str, container: &str, spec_hash: &str) -> String {
    key(pod_uid, &format!("{container}@{spec_hash}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT_RUN: Duration = Duration::from_secs(1);

    #[test]
    fn first_restart_is_immediate_then_the_delay_doubles_to_the_cap() {
        let b = Backoff::default();
        let k = key("uid", "c");
        assert_eq!(b.decide(&k, Duration::ZERO, SHORT_RUN), Decision::Restart);
        assert_eq!(
            b.decide(&k, Duration::from_secs(3), SHORT_RUN),
            Decision::Wait {
                remaining: Duration::from_secs(7),
                delay: INITIAL
            }
        );
        let mut delays = vec![];
        for _ in 0..8 {
            // Once the wait is over the restart happens and the next wait doubles.
            assert_eq!(b.decide(&k, MAX, SHORT_RUN), Decision::Restart);
            match b.decide(&k, Duration::ZERO, SHORT_RUN) {
                Decision::Wait { delay, .. } => delays.push(delay.as_secs()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300, 300, 300]);
    }

    #[test]
    fn a_long_run_resets_and_pods_are_independent() {
        let b = Backoff::default();
        let k = key("uid", "c");
        b.decide(&k, Duration::ZERO, SHORT_RUN);
        assert!(matches!(
            b.decide(&k, Duration::ZERO, SHORT_RUN),
            Decision::Wait { .. }
        ));
        assert_eq!(
            b.decide(&k, Duration::ZERO, RESET_AFTER_RUNNING),
            Decision::Restart
        );
        assert_eq!(
            b.decide(&key("other", "c"), Duration::ZERO, SHORT_RUN),
            Decision::Restart
        );
        b.forget_pod("uid");
        assert_eq!(b.decide(&k, Duration::ZERO, SHORT_RUN), Decision::Restart);
    }

    #[test]
    fn failed_operations_are_retried_after_doubling_delays_until_one_succeeds() {
        let b = RetryBackoff::default();
        let start = std::time::Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(b.remaining("u/v", start), None);
        assert_eq!(b.failed("u/v", start), Duration::from_millis(500));
        assert_eq!(
            b.remaining("u/v", at(200)),
            Some(Duration::from_millis(300))
        );
        assert_eq!(b.remaining("u/v", at(500)), None);
        assert_eq!(b.failed("u/v", at(500)), Duration::from_secs(1));
        for _ in 0..10 {
            b.failed("u/v", at(500));
        }
        assert_eq!(b.failed("u/v", at(500)), Duration::from_secs(122));
        b.succeeded("u/v");
        assert_eq!(b.failed("u/v", at(600)), Duration::from_millis(500));
        b.forget_pod("u");
        assert_eq!(b.remaining("u/v", at(600)), None);
    }
}
