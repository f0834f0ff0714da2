//! The ReplicaSet controller: keeps `spec.replicas` active pods per ReplicaSet — creating them from the
//! template in slow-start batches, deleting the ones Kubernetes' ranking picks first — guarded by
//! expectations, and reports replicas, fullyLabeled, ready and available counts in the status.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::expectations::Expectations;
use super::rollout::{
    calculate_replica_set_status, controller_ref, filter_active_pods, is_pod_active,
    pod_from_template, replicas_diff, slow_start_batches, ReplicaDiff,
    SLOW_START_INITIAL_BATCH_SIZE,
};
use super::{
    controller_of, pod_ranking, queue_adopters, run_workers, selector_matches, Claim, Context,
    ControllerError, ADOPTION_RECHECK,
};
use crate::client::events::{Involved, Recorder};
use crate::client::informer::{key_of, split_key};
use crate::client::{Api, Change, WorkQueue};

const WORKERS: usize = 4;
struct Controller {
    ctx: Context,
    expectations: Expectations,
    recorder: Recorder,
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        expectations: Expectations::new(),
        recorder: Recorder::new(ctx.client.clone(), "replicaset-controller"),
    });
    {
        let queue = queue.clone();
        let controller = controller.clone();
        ctx.informers.replica_sets.on_change(move |change| {
            let key = key_of(&change.object().metadata);
            if let Change::Deleted(_) = change {
                controller.expectations.forget(&key);
            }
            queue.add(&key);
        });
    }
    {
        let queue = queue.clone();
        let controller = controller.clone();
        let replica_sets = ctx.informers.replica_sets.clone();
        ctx.informers.pods.on_change(move |change| {
            if queue_adopters(
                change,
                &replica_sets,
                |rs| rs.spec.as_ref().map(|s| &s.selector),
                &queue,
            ) {
                return;
            }
            for key in controller.expectations.observe_pod(change, "ReplicaSet") {
                queue.add(&key);
            }
        });
    }
    run_workers(
        "replicaset",
        queue,
        WORKERS,
        ctx.shutdown.clone(),
        move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(rs) = self.ctx.informers.replica_sets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let (namespace, _) = split_key(key);
        let uid = rs.metadata.uid.as_deref().unwrap_or_default();
        let pods = self.ctx.informers.pods.list_in(namespace);
        let selector = rs.spec.as_ref().map(|s| &s.selector);
        let active: Vec<_> = pods
            .iter()
            .filter(|p| is_pod_active(p))
            .map(|p| &p.metadata)
            .collect();
        let owner = controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
        let collection = format!("/api/v1/namespaces/{namespace}/pods");
        let changed = Claim {
            client: &self.ctx.client,
            owner: &owner,
            owner_deleting: rs.metadata.deletion_timestamp.is_some(),
            selector,
        }
        .over(&collection, &active, |_| true, &[])
        .await?;
        if changed > 0 {
            // Count the adopted pods once the informer shows them owned, not create more now.
            return Ok(Some(ADOPTION_RECHECK));
        }
        let owned: Vec<&Pod> = pods
            .iter()
            .map(Arc::as_ref)
            .filter(|p| controller_of(&p.metadata, "ReplicaSet").is_some_and(|o| o.uid == uid))
            .collect();
        let active = filter_active_pods(&owned);
        let mut manage_error = None;
        if self.expectations.satisfied(key) && rs.metadata.deletion_timestamp.is_none() {
            if let Err(e) = self.manage_replicas(key, &rs, &active, &pods).await {
                manage_error = Some(e.to_string());
            }
        }
        let now = self.ctx.clock.now();
        let status = calculate_replica_set_status(&rs, &active, manage_error.as_deref(), now);
        if rs.status.as_ref() != Some(&status) {
            let mut updated = (*rs).clone();
            updated.status = Some(status.clone());
            Api::<ReplicaSet>::namespaced(self.ctx.client.clone(), namespace)
                .replace_status(rs.metadata.name.as_deref().unwrap_or_default(), &updated)
                .await?;
        }
        if let Some(e) = manage_error {
            return Err(ControllerError::Invalid(e));
        }
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let waiting_for_availability =
            status.ready_replicas.unwrap_or(0) != status.available_replicas.unwrap_or(0);
        Ok((min_ready > 0 && waiting_for_availability)
            .then(|| Duration::from_secs(min_ready as u64)))
    }

    async fn manage_replicas(
        &self,
        key: &str,
        rs: &ReplicaSet,
        active: &[&Pod],
        namespace_pods: &[Arc<Pod>],
    ) -> Result<(), ControllerError> {
        let (namespace, _) = split_key(key);
        let pods_api = Api::<Pod>::namespaced(self.ctx.client.clone(), namespace);
        let about = Involved::new("apps/v1", "ReplicaSet", &rs.metadata);
        match replicas_diff(rs, active.len()) {
            ReplicaDiff::None => Ok(()),
            ReplicaDiff::Create(count) => {
                self.expectations.expect_creations(key, count);
                let template = pod_from_template(rs);
                let mut remaining = count;
                for batch in slow_start_batches(count, SLOW_START_INITIAL_BATCH_SIZE) {
                    let results = join_all((0..batch).map(|_| pods_api.create(&template))).await;
                    remaining -= batch;
                    let mut first_error = None;
                    for result in results {
                        match result {
                            Ok(pod) => {
                                let created = pod.metadata.name.unwrap_or_default();
                                self.recorder.normal(
                                    self.ctx.clock.as_ref(),
                                    &about,
                                    "SuccessfulCreate",
                                    &format!("Created pod: {created}"),
                                );
                            }
                            Err(e) => {
                                // The pod will never show up: stop waiting for it.
                                self.expectations.creation_observed(key);
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    if let Some(e) = first_error {
                        for _ in 0..remaining {
                            self.expectations.creation_observed(key);
                        }
                        self.recorder.warning(
                            self.ctx.clock.as_ref(),
                            &about,
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        );
                        return Err(e.into());
                    }
                }
                Ok(())
            }
            ReplicaDiff::Delete(count) => {
                let related: Vec<&Pod> = namespace_pods
                    .iter()
                    .map(Arc::as_ref)
                    .filter(|p| {
                        selector_matches(
                            rs.spec.as_ref().map(|s| &s.selector),
                            p.metadata.labels.as_ref(),
                        )
                    })
                    .collect();
                let victims =
                    pod_ranking::pods_to_delete(active, &related, count, self.ctx.clock.now());
                self.expectations
                    .expect_deletions(key, victims.iter().map(|p| key_of(&p.metadata)));
                let results = join_all(victims.iter().map(|p| {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let uid = p.metadata.uid.clone();
                    let pods_api = pods_api.clone();
                    async move {
                        let result = pods_api
                            .delete(&name, &json!({"preconditions": {"uid": uid}}))
                            .await;
                        (name, result)
                    }
                }))
                .await;
                let mut first_error = None;
                for (pod, result) in results {
                    match result {
                        Ok(()) => self.recorder.normal(
                            self.ctx.clock.as_ref(),
                            &about,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {pod}"),
                        ),
                        Err(e) => {
                            self.expectations
                                .deletion_observed(key, &format!("{namespace}/{pod}"));
                            first_error.get_or_insert(e);
                        }
                    }
                }
                match first_error {
                    Some(e) => Err(e.into()),
                    None => Ok(()),
                }
            }
        }
    }
}
