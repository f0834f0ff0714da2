//! The scheduling queue: pods waiting for a decision (deduplicated, one attempt at a time), pods that fit
//! nowhere and wait for the cluster to change, and a per-pod backoff of 1 s doubling to 10 s between
//! attempts, as kube-scheduler's active, unschedulable and backoff queues do. Like kube-scheduler's
//! moveRequestCycle, an attempt that fails after the cluster changed during it is retried rather than
//! parked: it may have judged the pod against the cluster as it was before the change.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::WorkQueue;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even when no event suggests they might fit.
const FLUSH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Waiting {
    unschedulable: HashSet<String>,
    attempts: HashMap<String, u32>,
    /// Pods popped so far: the scheduling cycle of the latest attempt.
    cycle: u64,
    /// The cycle during which the cluster last changed in a way that may let parked pods fit.
    move_request_cycle: u64,
}

#[derive(Default)]
pub struct SchedulingQueue {
    active: WorkQueue,
    waiting: Mutex<Waiting>,
}

fn backoff(attempts: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(8))
        .min(MAX_BACKOFF)
}

impl SchedulingQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&self, key: &str) {
        self.active.add(key);
    }

    /// A pending pod changed; one parked as unschedulable only comes back if its spec or labels changed.
    pub fn update(&self, key: &str, spec_or_labels_changed: bool) {
        let mut waiting = self.waiting.lock().expect("queue lock");
        if waiting.unschedulable.contains(key) && !spec_or_labels_changed {
            return;
        }
        waiting.unschedulable.remove(key);
        drop(waiting);
        self.active.add(key);
    }

    pub fn forget(&self, key: &str) {
        let mut waiting = self.waiting.lock().expect("queue lock");
        waiting.unschedulable.remove(key);
        waiting.attempts.remove(key);
    }

    pub fn scheduled(&self, key: &str) {
        self.forget(key);
    }

    /// Parks a pod that fit nowhere in the attempt of `cycle` until the cluster changes; retries it after
    /// its backoff when the cluster changed during that attempt.
    pub fn unschedulable(&self, key: &str, cycle: u64) {
        let mut waiting = self.waiting.lock().expect("queue lock");
        let attempts = waiting.attempts.entry(key.to_string()).or_insert(0);
        *attempts += 1;
        let attempts = *attempts;
        if waiting.move_request_cycle >= cycle {
            drop(waiting);
            self.active.add_after(key, backoff(attempts));
        } else {
            waiting.unschedulable.insert(key.to_string());
        }
    }

    /// Retries a pod after its backoff (e.g. its binding failed).
    pub fn backoff(&self, key: &str) {
        let attempts = {
            let mut waiting = self.waiting.lock().expect("queue lock");
            let n = waiting.attempts.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        self.active.add_after(key, backoff(attempts));
    }

    /// Something changed that may let parked pods fit: retry them, each after its backoff.
    pub fn move_all_to_active(&self) {
        let mut waiting = self.waiting.lock().expect("queue lock");
        waiting.move_request_cycle = waiting.cycle;
        let parked: Vec<String> = waiting.unschedulable.drain().collect();
        for key in parked {
            let attempts = waiting.attempts.get(&key).copied().unwrap_or(0);
            self.active.add_after(&key, backoff(attempts));
        }
    }

    pub fn flush_periodically(
        self: &std::sync::Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let queue = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(FLUSH_INTERVAL) => queue.move_all_to_active(),
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        })
    }

    /// The next pod to attempt, with the attempt's scheduling cycle.
    pub async fn pop(&self) -> Option<(String, u64)> {
        let key = self.active.get().await?;
        let mut waiting = self.waiting.lock().expect("queue lock");
        waiting.cycle += 1;
        Some((key, waiting.cycle))
    }

    pub fn done(&self, key: &str) {
        self.active.done(key);
    }

    pub fn shut_down(&self) {
        self.active.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(9), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn parked_pods_wait_for_a_real_change() {
        let q = SchedulingQueue::new();
        q.add("ns/p");
        let (key, cycle) = q.pop().await.unwrap();
        q.done(&key);
        q.unschedulable(&key, cycle);
        q.update("ns/p", false);
        assert!(
            q.active.is_empty(),
            "our own status write does not retry it"
        );
        q.update("ns/p", true);
        assert_eq!(q.pop().await.map(|(key, _)| key).as_deref(), Some("ns/p"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_failed_attempt_retries_the_pod() {
        let q = SchedulingQueue::new();
        q.add("ns/p");
        let (key, cycle) = q.pop().await.unwrap();
        // A node joins while the attempt still judges the pod against the nodes it knew.
        q.move_all_to_active();
        q.done(&key);
        q.unschedulable(&key, cycle);
        let retried = tokio::time::timeout(Duration::from_secs(5), q.pop()).await;
        assert_eq!(
            retried.unwrap().map(|(key, _)| key).as_deref(),
            Some("ns/p")
        );

        // An attempt that began after the change saw it: that pod waits for the next one.
        let (key, cycle) = (String::from("ns/p"), cycle + 1);
        q.done(&key);
        q.unschedulable(&key, cycle);
        let parked = tokio::time::timeout(Duration::from_secs(60), q.pop()).await;
        assert!(parked.is_err(), "no retry before the cluster changes again");
        q.move_all_to_active();
        let retried = tokio::time::timeout(Duration::from_secs(5), q.pop()).await;
        assert_eq!(
            retried.unwrap().map(|(key, _)| key).as_deref(),
            Some("ns/p")
        );
    }
}
