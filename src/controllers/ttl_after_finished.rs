//! The TTL-after-finished controller (Kubernetes' `pkg/controller/ttlafterfinished`): deletes a
//! finished Job `spec.ttlSecondsAfterFinished` seconds after its Complete or Failed condition
//! turned True, with Foreground propagation so its pods go first, as Kubernetes does.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use super::cron_schedule::is_job_finished;
use super::{run_workers, Context, ControllerError};
use crate::client::informer::{key_of, split_key};
use crate::client::{Api, Change, WorkQueue};

const WORKERS: usize = 2;

/// How long until the Job may be deleted (zero or negative: now); `None` when it has no TTL, is
/// not finished, or is being deleted already.
fn time_left(job: &Job, now: Timestamp) -> Option<SignedDuration> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let outcome = is_job_finished(job)?;
    let finished_at = job
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == outcome && c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    Some(finished_at.duration_since(now) + SignedDuration::from_secs(i64::from(ttl)))
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    {
        let queue = queue.clone();
        ctx.informers.jobs.on_change(move |change| {
            if let Change::Added(job) | Change::Modified { new: job, .. } = change {
                let wanted = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
                if wanted.is_some() && is_job_finished(job).is_some() {
                    queue.add(&key_of(&job.metadata));
                }
            }
        });
    }
    let ctx = Arc::new(ctx.clone());
    run_workers(
        "ttl-after-finished",
        queue,
        WORKERS,
        ctx.shutdown.clone(),
        move |key| {
            let ctx = ctx.clone();
            async move { sync(&ctx, &key).await }
        },
    )
}

async fn sync(ctx: &Context, key: &str) -> Result<Option<Duration>, ControllerError> {
    let Some(job) = ctx.informers.jobs.get(key) else {
        return Ok(None);
    };
    match time_left(&job, ctx.clock.now()) {
        None => return Ok(None),
        Some(left) if left.is_positive() => return Ok(Duration::try_from(left).ok()),
        Some(_) => {}
    }
    // The cached Job may be stale: its TTL may have changed since. Decide on a fresh read.
    let (namespace, name) = split_key(key);
    let api = Api::<Job>::namespaced(ctx.client.clone(), namespace);
    let Some(fresh) = api.get_opt(name).await? else {
        return Ok(None);
    };
    match time_left(&fresh, ctx.clock.now()) {
        None => Ok(None),
        Some(left) if left.is_positive() => Ok(Duration::try_from(left).ok()),
        Some(_) => {
            let options = json!({"propagationPolicy": "Foreground",
                                 "preconditions": {"uid": fresh.metadata.uid}});
            api.delete(name, &options).await?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, finished_at: Option<&str>) -> Job {
        let mut j = json!({"metadata": {"name": "j", "namespace": "default"}, "spec": {
            "template": {"spec": {"containers": []}}}});
        if let Some(ttl) = ttl {
            j["spec"]["ttlSecondsAfterFinished"] = json!(ttl);
        }
        if let Some(at) = finished_at {
            j["status"] = json!({"conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": at}]});
        }
        serde_json::from_value(j).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn ttl_counts_from_the_finished_condition() {
        let now = at("2025-01-01T00:01:00Z");
        let done = job(Some(30), Some("2025-01-01T00:00:50Z"));
        assert_eq!(time_left(&done, now), Some(SignedDuration::from_secs(20)));
        let expired = job(Some(0), Some("2025-01-01T00:00:50Z"));
        assert_eq!(
            time_left(&expired, now),
            Some(SignedDuration::from_secs(-10))
        );
    }

    #[test]
    fn only_finished_jobs_with_a_ttl_are_deleted() {
        let now = at("2025-01-01T00:01:00Z");
        assert_eq!(
            time_left(&job(None, Some("2025-01-01T00:00:50Z")), now),
            None
        );
        assert_eq!(time_left(&job(Some(5), None), now), None);
        let mut deleting = job(Some(5), Some("2025-01-01T00:00:50Z"));
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        assert_eq!(time_left(&deleting, now), None);
    }
}
