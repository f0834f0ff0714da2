//! The Deployment controller: one ReplicaSet per pod template (named by its pod-template-hash), scaled as
//! the strategy says — RollingUpdate within maxSurge/maxUnavailable, or Recreate — with revision and
//! change-cause annotations for `kubectl rollout history`, revisionHistoryLimit cleanup, pause/resume,
//! proportional scaling mid-rollout, and the Available/Progressing conditions (incl. the progress
//! deadline). The decisions are in `rollout.rs`; this file reads the informers and writes the results.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::rollout::{
    self, calculate_status, check_paused_conditions, deployment_complete,
    filter_active_replica_sets, find_new_replica_set, find_old_replica_sets, is_hash_collision,
    is_scaling_event, new_replica_set, new_revision, note_created_replica_set,
    note_found_new_replica_set, note_replica_set_create_failure, old_pods_running,
    progress_requeue, reconcile_new_replica_set, reconcile_old_replica_sets,
    replica_sets_to_clean_up, scale_down_old_replica_sets_for_recreate, scale_plan,
    scaled_replica_set, scaling_event_message, sync_new_replica_set, sync_rollout_status,
    ProgressRequeue, ScaleStep, REVISION_ANNOTATION,
};
use super::{
    controller_of, has_controller, run_workers, selector_matches, Claim, Context, ControllerError,
    ADOPTION_RECHECK,
};
use crate::client::events::{Involved, Recorder};
use crate::client::informer::{key_of, split_key};
use crate::client::{Api, Change, WorkQueue};

const WORKERS: usize = 4;
struct Controller {
    ctx: Context,
    recorder: Recorder,
    queue: WorkQueue,
}

impl From<rollout::RolloutError> for ControllerError {
    fn from(e: rollout::RolloutError) -> Self {
        ControllerError::Invalid(e.to_string())
    }
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "deployment-controller"),
        queue: queue.clone(),
    });
    {
        let queue = queue.clone();
        ctx.informers.deployments.on_change(move |change| {
            queue.add(&key_of(&change.object().metadata));
        });
    }
    {
        let queue = queue.clone();
        let deployments = ctx.informers.deployments.clone();
        ctx.informers.replica_sets.on_change(move |change| {
            let rs = change.object();
            let ns = rs.metadata.namespace.as_deref().unwrap_or_default();
            if let Some(owner) = controller_of(&rs.metadata, "Deployment") {
                queue.add(&format!("{ns}/{}", owner.name));
            } else if !has_controller(&rs.metadata) && !matches!(change, Change::Deleted(_)) {
                // An orphan: the Deployments that select it may adopt it.
                for d in deployments.list_in(ns) {
                    if selector_matches(
                        d.spec.as_ref().map(|s| &s.selector),
                        rs.metadata.labels.as_ref(),
                    ) {
                        queue.add(&key_of(&d.metadata));
                    }
                }
            }
        });
    }
    {
        // Recreate waits for the old pods to be gone.
        let queue = queue.clone();
        let informers = ctx.informers.clone();
        ctx.informers.pods.on_change(move |change| {
            let Change::Deleted(pod) = change else {
                return;
            };
            let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
            let Some(rs_ref) = controller_of(&pod.metadata, "ReplicaSet") else {
                return;
            };
            if let Some(rs) = informers.replica_sets.get_in(ns, &rs_ref.name) {
                if let Some(owner) = controller_of(&rs.metadata, "Deployment") {
                    queue.add(&format!("{ns}/{}", owner.name));
                }
            }
        });
    }
    run_workers(
        "deployment",
        queue,
        WORKERS,
        ctx.shutdown.clone(),
        move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
}

fn name_of(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or_default()
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The Deployment's ReplicaSets after this sync's writes: the new one (if any) and the old ones.
struct Family {
    new: Option<ReplicaSet>,
    old: Vec<ReplicaSet>,
}

impl Family {
    fn all(&self) -> Vec<&ReplicaSet> {
        self.old.iter().chain(self.new.as_ref()).collect()
    }

    fn old(&self) -> Vec<&ReplicaSet> {
        self.old.iter().collect()
    }

    fn replace(&mut self, updated: ReplicaSet) {
        let name = name_of(&updated).to_string();
        if let Some(new) = self.new.as_mut().filter(|rs| name_of(rs) == name) {
            *new = updated;
        } else if let Some(old) = self.old.iter_mut().find(|rs| name_of(rs) == name) {
            *old = updated;
        }
    }
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(d) = self.ctx.informers.deployments.get(key) else {
            return Ok(None);
        };
        let d = (*d).clone();
        let (namespace, _) = split_key(key);
        let uid = d.metadata.uid.as_deref().unwrap_or_default();
        let everything = d
            .spec
            .as_ref()
            .map(|s| &s.selector)
            .is_none_or(|s| s.match_labels.is_none() && s.match_expressions.is_none());
        if everything {
            self.recorder.warning(
                self.ctx.clock.as_ref(),
                &Involved::new("apps/v1", "Deployment", &d.metadata),
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            return Ok(None);
        }
        let replica_sets = self.ctx.informers.replica_sets.list_in(namespace);
        let metas: Vec<_> = replica_sets.iter().map(|rs| &rs.metadata).collect();
        let owner = rollout::controller_ref("apps/v1", "Deployment", &d.metadata);
        let collection = format!("/apis/apps/v1/namespaces/{namespace}/replicasets");
        let changed = Claim {
            client: &self.ctx.client,
            owner: &owner,
            owner_deleting: d.metadata.deletion_timestamp.is_some(),
            selector: d.spec.as_ref().map(|s| &s.selector),
        }
        .over(&collection, &metas, |_| true, &[])
        .await?;
        if changed > 0 {
            // Roll out with the adopted ReplicaSets once the informer shows them owned.
            return Ok(Some(ADOPTION_RECHECK));
        }
        let owned: Vec<ReplicaSet> = self
            .ctx
            .informers
            .replica_sets
            .list_in(namespace)
            .into_iter()
            .filter(|rs| controller_of(&rs.metadata, "Deployment").is_some_and(|o| o.uid == uid))
            .map(|rs| (*rs).clone())
            .collect();
        if d.metadata.deletion_timestamp.is_some() {
            let family = self.family(&d, &owned, false).await?;
            self.write_status(
                &d,
                calculate_status(&family.all(), family.new.as_ref(), &d, self.ctx.clock.now()),
            )
            .await?;
            return Ok(None);
        }
        if let Some(status) = check_paused_conditions(&d, self.ctx.clock.now()) {
            self.write_status(&d, status).await?;
            return Ok(None);
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let owned_refs: Vec<&ReplicaSet> = owned.iter().collect();
        if paused || is_scaling_event(&d, &owned_refs) {
            return self.scale_only(&d, &owned, paused).await;
        }
        let recreate = d
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            == Some("Recreate");
        if recreate {
            self.rollout_recreate(&d, &owned).await
        } else {
            self.rollout_rolling(&d, &owned).await
        }
    }

    /// Finds (and with `create`, makes) the new ReplicaSet, keeps its annotations in step and the
    /// Deployment's revision with it.
    async fn family(
        &self,
        d: &Deployment,
        owned: &[ReplicaSet],
        create: bool,
    ) -> Result<Family, ControllerError> {
        let refs: Vec<&ReplicaSet> = owned.iter().collect();
        let (_, all_old) = find_old_replica_sets(d, &refs);
        let revision = new_revision(&all_old);
        let old: Vec<ReplicaSet> = all_old.iter().map(|rs| (*rs).clone()).collect();
        let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
        let rs_api = Api::<ReplicaSet>::namespaced(self.ctx.client.clone(), namespace);
        let now = self.ctx.clock.now();
        let mut noted = d.clone();
        let new = match find_new_replica_set(d, &refs) {
            Some(existing) => {
                let current = match sync_new_replica_set(d, existing, &revision) {
                    Some(updated) => rs_api.replace(name_of(existing), &updated).await?,
                    None => existing.clone(),
                };
                note_found_new_replica_set(&mut noted, &current, now);
                Some(current)
            }
            None if create => {
                let wanted = new_replica_set(d, &all_old, &revision)?;
                let name = name_of(&wanted).to_string();
                match rs_api.create(&wanted).await {
                    Ok(created) => {
                        if replicas_of(&created) > 0 {
                            self.recorder.normal(
                                self.ctx.clock.as_ref(),
                                &Involved::new("apps/v1", "Deployment", &d.metadata),
                                "ScalingReplicaSet",
                                &scaling_event_message(&name, 0, replicas_of(&created)),
                            );
                        }
                        note_created_replica_set(&mut noted, &name, &revision, false, now);
                        Some(created)
                    }
                    Err(e) if e.is_conflict() => {
                        let existing = rs_api.get(&name).await?;
                        if is_hash_collision(d, &existing) {
                            let mut status = d.status.clone().unwrap_or_default();
                            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                            self.write_status(d, status).await?;
                            return Err(ControllerError::Invalid(format!(
                                "hash collision for ReplicaSet {name}; retrying with a new collision count"
                            )));
                        }
                        note_created_replica_set(&mut noted, &name, &revision, true, now);
                        Some(existing)
                    }
                    Err(e) => {
                        let message =
                            note_replica_set_create_failure(&mut noted, &name, &e.to_string(), now);
                        self.recorder.warning(
                            self.ctx.clock.as_ref(),
                            &Involved::new("apps/v1", "Deployment", &d.metadata),
                            rollout::FAILED_RS_CREATE_REASON,
                            &message,
                        );
                        if let Some(status) = noted.status.clone() {
                            self.write_status(d, status).await?;
                        }
                        return Err(e.into());
                    }
                }
            }
            None => None,
        };
        if noted.status != d.status {
            if let Some(status) = noted.status.clone() {
                self.write_status(d, status).await?;
            }
        }
        let revision_of = |d: &Deployment| {
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .cloned()
        };
        if let Some(revision) = revision_of(&noted).filter(|r| Some(r) != revision_of(d).as_ref()) {
            Api::<Deployment>::namespaced(self.ctx.client.clone(), namespace)
                .merge_patch(
                    d.metadata.name.as_deref().unwrap_or_default(),
                    &json!({"metadata": {"annotations": {REVISION_ANNOTATION: revision}}}),
                )
                .await?;
        }
        Ok(Family { new, old })
    }

    async fn apply_steps(
        &self,
        d: &Deployment,
        family: &mut Family,
        steps: Vec<ScaleStep>,
    ) -> Result<bool, ControllerError> {
        let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
        let rs_api = Api::<ReplicaSet>::namespaced(self.ctx.client.clone(), namespace);
        let mut scaled = false;
        for step in steps {
            let Some(rs) = family
                .all()
                .into_iter()
                .find(|rs| name_of(rs) == step.name)
                .cloned()
            else {
                continue;
            };
            let Some(updated) = scaled_replica_set(d, &rs, step.replicas) else {
                continue;
            };
            let written = rs_api.replace(&step.name, &updated).await?;
            let (before, after) = (replicas_of(&rs), replicas_of(&written));
            if before != after {
                scaled = true;
                self.recorder.normal(
                    self.ctx.clock.as_ref(),
                    &Involved::new("apps/v1", "Deployment", &d.metadata),
                    "ScalingReplicaSet",
                    &scaling_event_message(&step.name, before, after),
                );
            }
            family.replace(written);
        }
        Ok(scaled)
    }

    async fn scale_only(
        &self,
        d: &Deployment,
        owned: &[ReplicaSet],
        paused: bool,
    ) -> Result<Option<Duration>, ControllerError> {
        let mut family = self.family(d, owned, false).await?;
        let steps = scale_plan(d, family.new.as_ref(), &family.old());
        self.apply_steps(d, &mut family, steps).await?;
        if paused {
            self.clean_up(d, &family).await?;
        }
        let status = calculate_status(&family.all(), family.new.as_ref(), d, self.ctx.clock.now());
        self.write_status(d, status).await?;
        Ok(None)
    }

    async fn rollout_rolling(
        &self,
        d: &Deployment,
        owned: &[ReplicaSet],
    ) -> Result<Option<Duration>, ControllerError> {
        let mut family = self.family(d, owned, true).await?;
        let Some(new) = family.new.clone() else {
            return Ok(None);
        };
        if let Some(target) = reconcile_new_replica_set(d, &family.all(), &new)? {
            let steps = vec![ScaleStep {
                name: name_of(&new).to_string(),
                replicas: target,
            }];
            if self.apply_steps(d, &mut family, steps).await? {
                return self.finish(d, &family).await;
            }
        }
        let old = family.old();
        let active_old = filter_active_replica_sets(&old);
        let current_new = family.new.clone().unwrap_or(new);
        let steps = reconcile_old_replica_sets(d, &family.all(), &active_old, &current_new);
        if self.apply_steps(d, &mut family, steps).await? {
            return self.finish(d, &family).await;
        }
        self.clean_up_if_complete(d, &family).await?;
        self.finish(d, &family).await
    }

    async fn rollout_recreate(
        &self,
        d: &Deployment,
        owned: &[ReplicaSet],
    ) -> Result<Option<Duration>, ControllerError> {
        let mut family = self.family(d, owned, false).await?;
        let old = family.old();
        let steps = scale_down_old_replica_sets_for_recreate(&filter_active_replica_sets(&old));
        if self.apply_steps(d, &mut family, steps).await? {
            return self.finish(d, &family).await;
        }
        let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
        let pods: Vec<Arc<Pod>> = self.ctx.informers.pods.list_in(namespace);
        let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
        if old_pods_running(family.new.as_ref(), &family.old(), &pod_refs) {
            return self.finish(d, &family).await;
        }
        if family.new.is_none() {
            family = self.family(d, owned, true).await?;
        }
        if let Some(new) = family.new.clone() {
            if let Some(target) = reconcile_new_replica_set(d, &family.all(), &new)? {
                let steps = vec![ScaleStep {
                    name: name_of(&new).to_string(),
                    replicas: target,
                }];
                if self.apply_steps(d, &mut family, steps).await? {
                    return self.finish(d, &family).await;
                }
            }
        }
        self.clean_up_if_complete(d, &family).await?;
        self.finish(d, &family).await
    }

    async fn clean_up_if_complete(
        &self,
        d: &Deployment,
        family: &Family,
    ) -> Result<(), ControllerError> {
        let status = calculate_status(&family.all(), family.new.as_ref(), d, self.ctx.clock.now());
        if deployment_complete(d, &status) {
            self.clean_up(d, family).await?;
        }
        Ok(())
    }

    /// Deletes old ReplicaSets beyond revisionHistoryLimit.
    async fn clean_up(&self, d: &Deployment, family: &Family) -> Result<(), ControllerError> {
        let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
        let rs_api = Api::<ReplicaSet>::namespaced(self.ctx.client.clone(), namespace);
        for rs in replica_sets_to_clean_up(d, &family.old()) {
            rs_api
                .delete(
                    name_of(rs),
                    &json!({"preconditions": {"uid": rs.metadata.uid}}),
                )
                .await?;
        }
        Ok(())
    }

    /// Writes the rollout status; when nothing changed, comes back in time to notice a missed deadline.
    async fn finish(
        &self,
        d: &Deployment,
        family: &Family,
    ) -> Result<Option<Duration>, ControllerError> {
        let now = self.ctx.clock.now();
        let status = sync_rollout_status(d, &family.all(), family.new.as_ref(), now);
        if d.status.as_ref() != Some(&status) {
            self.write_status(d, status).await?;
            return Ok(None);
        }
        Ok(match progress_requeue(d, &status, now) {
            ProgressRequeue::Never => None,
            ProgressRequeue::Now => Some(Duration::from_millis(100)),
            ProgressRequeue::After(after) => Duration::try_from(after).ok(),
        })
    }

    async fn write_status(
        &self,
        d: &Deployment,
        status: DeploymentStatus,
    ) -> Result<(), ControllerError> {
        if d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = d.clone();
        updated.status = Some(status);
        let namespace = d.metadata.namespace.as_deref().unwrap_or_default();
        match Api::<Deployment>::namespaced(self.ctx.client.clone(), namespace)
            .replace_status(d.metadata.name.as_deref().unwrap_or_default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            // A newer Deployment is on its way through the informer and triggers another sync.
            Err(e) if e.is_conflict() => {
                self.queue.add(&key_of(&d.metadata));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
