//! The pod's `activeDeadlineSeconds`, as kubelet's active deadline handler enforces it: once the pod has
//! been active on the node that long (counted from its startTime), it fails with reason DeadlineExceeded
//! and its containers are stopped, each within the pod's grace period.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::status::Observed;
use super::Kubelet;
use crate::agent::AgentError;
use crate::client::events::Involved;

/// kubelet's reason and message for a pod past its deadline.
pub const REASON: &str = "DeadlineExceeded";
pub const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// How long the pod has left: None without a deadline or before it started, zero once past it.
pub fn remaining(pod: &Pod, now: jiff::Timestamp) -> Option<Duration> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    let started = pod.status.as_ref()?.start_time.as_ref()?.0;
    let deadline = started
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .ok()?;
    Some(
        now.duration_until(deadline)
            .try_into()
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether the pod is over because of its deadline: past it, and not already ended some other way (a pod
/// that succeeded before its deadline stays Succeeded).
pub fn exceeded(pod: &Pod, now: jiff::Timestamp) -> bool {
    let status = pod.status.as_ref();
    let ended_otherwise = match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => true,
        Some("Failed") => status.and_then(|s| s.reason.as_deref()) != Some(REASON),
        _ => false,
    };
    !ended_otherwise && remaining(pod, now) == Some(Duration::ZERO)
}

impl Kubelet {
    /// Fails the pod for its deadline at once, and stops its containers in the background; the sync after
    /// they stopped writes their final states.
    pub(super) async fn sync_deadline_exceeded(
        self: &Arc<Self>,
        key: &str,
        pod: &Pod,
        uid: &str,
    ) -> Result<Option<Duration>, AgentError> {
        let running = self.running_containers(uid);
        let grace = super::sync::pod_grace(pod);
        if !running.is_empty()
            && self
                .terminating
                .lock()
                .expect("lock")
                .insert(uid.to_string(), grace)
                .is_none()
        {
            self.events.normal(
                self.clock.as_ref(),
                &Involved::new("v1", "Pod", &pod.metadata),
                REASON,
                MESSAGE,
            );
            self.kill_in_background(key, uid, Some(pod.clone()), grace);
        }
        let observed = Observed {
            deadline_exceeded: true,
            ..self.observed_runs(pod, uid)
        };
        self.write_status(pod, &observed, self.clock.now()).await?;
        if running.is_empty() {
            // Finished pods keep their containers (for logs) but not their network or pause process.
            if let Err(e) = self.network.remove_sandbox(uid).await {
                tracing::warn!(pod = %key, error = %e, "releasing the network of a failed pod");
            }
            super::sandbox::end_pid_namespace(&self.config.run_dir, uid);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn pod(deadline: Option<i64>, started: Option<&str>, phase: &str, reason: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                active_deadline_seconds: deadline,
                ..Default::default()
            }),
            status: Some(PodStatus {
                start_time: started.map(|t| Time(t.parse().unwrap())),
                phase: Some(phase.into()),
                reason: reason.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_deadline_counts_from_the_pods_start_time() {
        let now: jiff::Timestamp = "2026-11-24T10:00:30Z".parse().unwrap();
        let started = Some("2026-11-24T10:00:00Z");
        assert_eq!(
            remaining(&pod(Some(45), started, "Running", None), now),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            remaining(&pod(Some(20), started, "Running", None), now),
            Some(Duration::ZERO)
        );
        assert_eq!(remaining(&pod(None, started, "Running", None), now), None);
        assert_eq!(remaining(&pod(Some(20), None, "Pending", None), now), None);
    }

    #[test]
    fn only_a_pod_not_ended_otherwise_is_over_by_its_deadline() {
        let now: jiff::Timestamp = "2026-11-24T10:00:30Z".parse().unwrap();
        let started = Some("2026-11-24T10:00:00Z");
        assert!(exceeded(&pod(Some(20), started, "Running", None), now));
        assert!(exceeded(&pod(Some(20), started, "Pending", None), now));
        assert!(exceeded(
            &pod(Some(20), started, "Failed", Some(REASON)),
            now
        ));
        assert!(!exceeded(&pod(Some(20), started, "Succeeded", None), now));
        assert!(!exceeded(
            &pod(Some(20), started, "Failed", Some("Evicted")),
            now
        ));
        assert!(!exceeded(&pod(Some(45), started, "Running", None), now));
    }
}
