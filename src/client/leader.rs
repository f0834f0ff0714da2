//! Leader election through a coordination.k8s.io Lease, as client-go's leaderelection does: a candidate
//! takes the Lease when it is free or expired, renews it every `renew_interval`, and stops leading when it
//! cannot renew for a lease duration. Only the leader runs the scheduler and controllers.

use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use super::Client;
use crate::api::meta::format_micro_time;
use crate::util::Clock;

pub struct LeaderElection {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

impl LeaderElection {
    fn path(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases/{}",
            self.namespace, self.name
        )
    }

    /// One attempt to take or renew the Lease; true when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&self, clock: &dyn Clock) -> bool {
        let now = clock.now();
        let seconds = self.lease_duration.as_secs() as i64;
        let current = match self.client.get(&self.path()).await {
            Ok(lease) => lease,
            Err(e) if e.is_not_found() => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": seconds,
                             "acquireTime": format_micro_time(now), "renewTime": format_micro_time(now),
                             "leaseTransitions": 0},
                });
                let collection = format!(
                    "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
                    self.namespace
                );
                return self.client.create(&collection, &lease).await.is_ok();
            }
            Err(_) => return false,
        };
        let spec = &current["spec"];
        let holder = spec["holderIdentity"].as_str().unwrap_or("");
        let renewed = spec["renewTime"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        let duration = spec["leaseDurationSeconds"].as_i64().unwrap_or(seconds);
        let expired = renewed.is_none_or(|t| now.duration_since(t).as_secs() >= duration);
        if holder != self.identity && !holder.is_empty() && !expired {
            return false;
        }
        let mut next = current.clone();
        next["spec"]["holderIdentity"] = self.identity.clone().into();
        next["spec"]["leaseDurationSeconds"] = seconds.into();
        next["spec"]["renewTime"] = format_micro_time(now).into();
        if holder != self.identity {
            next["spec"]["acquireTime"] = format_micro_time(now).into();
            let transitions = spec["leaseTransitions"].as_i64().unwrap_or(0);
            next["spec"]["leaseTransitions"] = (transitions + 1).into();
        }
        // The update carries the resourceVersion read above, so two candidates cannot both win.
        self.client.update(&self.path(), &next).await.is_ok()
    }

    /// Waits until this candidate leads, then keeps renewing; `leading` turns false (for good) when a
    /// renewal has failed for a whole lease duration or `shutdown` fires.
    pub async fn run(
        self,
        clock: std::sync::Arc<dyn Clock>,
        leading: watch::Sender<bool>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if self.try_acquire_or_renew(clock.as_ref()).await {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew_interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
        leading.send_replace(true);
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.renew_interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if self.try_acquire_or_renew(clock.as_ref()).await {
                last_renewal = tokio::time::Instant::now();
            } else if last_renewal.elapsed() >= self.lease_duration {
                tracing::error!(lease = %self.name, "lost leadership");
                leading.send_replace(false);
                return;
            }
        }
    }
}
