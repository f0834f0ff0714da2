//! Controller expectations, as Kubernetes' ControllerExpectations: after a controller asks for N pod
//! creations or the deletion of certain pods, it waits to see them in its informer before it counts pods
//! again, so a stale cache never makes it create or delete twice. Expectations expire after five minutes
//! in case an event was lost.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::controller_key;
use crate::client::informer::key_of;
use crate::client::Change;

const TTL: Duration = Duration::from_secs(300);

struct Expectation {
    creations: i64,
    deletions: HashSet<String>,
    set_at: Instant,
}

#[derive(Default)]
pub struct Expectations {
    by_owner: Mutex<HashMap<String, Expectation>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// True when the owner has no outstanding creations or deletions (or they expired).
    pub fn satisfied(&self, owner: &str) -> bool {
        match self.by_owner.lock().expect("expectations lock").get(owner) {
            None => true,
            Some(e) => (e.creations <= 0 && e.deletions.is_empty()) || e.set_at.elapsed() > TTL,
        }
    }

    pub fn expect_creations(&self, owner: &str, count: usize) {
        self.by_owner.lock().expect("expectations lock").insert(
            owner.to_string(),
            Expectation {
                creations: count as i64,
                deletions: HashSet::new(),
                set_at: Instant::now(),
            },
        );
    }

    /// Expects the deletion of these pods (cache keys).
    pub fn expect_deletions(&self, owner: &str, pods: impl IntoIterator<Item = String>) {
        self.by_owner.lock().expect("expectations lock").insert(
            owner.to_string(),
            Expectation {
                creations: 0,
                deletions: pods.into_iter().collect(),
                set_at: Instant::now(),
            },
        );
    }

    /// Expects creations and deletions from one sync at once (a DaemonSet creates on some nodes while it
    /// deletes on others).
    pub fn expect(&self, owner: &str, creations: usize, pods: impl IntoIterator<Item = String>) {
        self.by_owner.lock().expect("expectations lock").insert(
            owner.to_string(),
            Expectation {
                creations: creations as i64,
                deletions: pods.into_iter().collect(),
                set_at: Instant::now(),
            },
        );
    }

    pub fn creation_observed(&self, owner: &str) {
        if let Some(e) = self
            .by_owner
            .lock()
            .expect("expectations lock")
            .get_mut(owner)
        {
            e.creations -= 1;
        }
    }

    /// A pod seen going away (deletion timestamp set or deleted): counted once per pod.
    pub fn deletion_observed(&self, owner: &str, pod: &str) {
        if let Some(e) = self
            .by_owner
            .lock()
            .expect("expectations lock")
            .get_mut(owner)
        {
            e.deletions.remove(pod);
        }
    }

    /// Counts a pod change against the expectations of its `kind` controller. Returns the controllers to
    /// sync: the pod's controller, and the previous one when the pod changed hands.
    pub fn observe_pod(&self, change: &Change<Pod>, kind: &str) -> Vec<String> {
        let pod = change.object();
        let Some(owner) = controller_key(&pod.metadata, kind) else {
            return Vec::new();
        };
        let pod_key = key_of(&pod.metadata);
        match change {
            Change::Added(_) => self.creation_observed(&owner),
            Change::Modified { new, .. } if new.metadata.deletion_timestamp.is_some() => {
                self.deletion_observed(&owner, &pod_key)
            }
            Change::Deleted(_) => self.deletion_observed(&owner, &pod_key),
            Change::Modified { .. } => {}
        }
        let mut keys = Vec::new();
        if let Change::Modified { old, .. } = change {
            keys.extend(controller_key(&old.metadata, kind).filter(|k| *k != owner));
        }
        keys.push(owner);
        keys
    }

    pub fn forget(&self, owner: &str) {
        self.by_owner
            .lock()
            .expect("expectations lock")
            .remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_expected_change_was_seen() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"), "the same pod counts once");
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
    }
}
