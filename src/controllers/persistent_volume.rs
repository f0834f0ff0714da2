//! PersistentVolume binding and the local-path provisioner (k3s's default storage):
//! - a claim of the `local-path` class (the default StorageClass) is provisioned once a pod using it is
//!   bound to a node (WaitForFirstConsumer): a PersistentVolume with a `DirectoryOrCreate` hostPath under
//!   `<data-dir>/storage` and node affinity to that node, bound to the claim;
//! - a claim of another class (or none) binds to the smallest Available volume of its class that is large
//!   enough and offers its access modes;
//! - a bound volume whose claim is gone is Released, and deleted when its reclaim policy is Delete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::{json, Value};

use super::{run_workers, Context, ControllerError};
use crate::api::meta::{LOCAL_PATH_PROVISIONER, PROVISIONED_BY};
use crate::api::quantity::Quantity;
use crate::client::events::{Involved, Recorder};
use crate::client::informer::{key_of, split_key};
use crate::client::{Api, Change, WorkQueue};

pub const LOCAL_PATH_CLASS: &str = "local-path";
const CLAIM_PREFIX: &str = "claim:";
const VOLUME_PREFIX: &str = "volume:";

struct Controller {
    ctx: Context,
    recorder: Recorder,
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    {
        let queue = queue.clone();
        ctx.informers
            .persistent_volume_claims
            .on_change(move |change| {
                let pvc = change.object();
                queue.add(&format!("{CLAIM_PREFIX}{}", key_of(&pvc.metadata)));
                if let Change::Deleted(_) = change {
                    if let Some(volume) = pvc.spec.as_ref().and_then(|s| s.volume_name.as_ref()) {
                        queue.add(&format!("{VOLUME_PREFIX}{volume}"));
                    }
                }
            });
    }
    {
        let queue = queue.clone();
        ctx.informers.persistent_volumes.on_change(move |change| {
            let pv = change.object();
            queue.add(&format!("{VOLUME_PREFIX}{}", key_of(&pv.metadata)));
            if let Some(claim) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                queue.add(&format!(
                    "{CLAIM_PREFIX}{}/{}",
                    claim.namespace.as_deref().unwrap_or_default(),
                    claim.name.as_deref().unwrap_or_default()
                ));
            }
        });
    }
    {
        // A pod landing on a node is what a WaitForFirstConsumer claim waits for.
        let queue = queue.clone();
        ctx.informers.pods.on_change(move |change| {
            let Change::Modified { old, new } = change else {
                return;
            };
            let bound_now = |p: &k8s_openapi::api::core::v1::Pod| {
                p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
            };
            if bound_now(old) || !bound_now(new) {
                return;
            }
            let ns = new.metadata.namespace.as_deref().unwrap_or_default();
            for volume in new.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                if let Some(claim) = &volume.persistent_volume_claim {
                    queue.add(&format!("{CLAIM_PREFIX}{ns}/{}", claim.claim_name));
                }
            }
        });
    }
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "persistentvolume-controller"),
    });
    run_workers(
        "persistentvolume",
        queue,
        1,
        ctx.shutdown.clone(),
        move |key| {
            let controller = controller.clone();
            async move {
                if let Some(claim) = key.strip_prefix(CLAIM_PREFIX) {
                    controller.sync_claim(claim).await
                } else if let Some(volume) = key.strip_prefix(VOLUME_PREFIX) {
                    controller.sync_volume(volume).await
                } else {
                    Ok(None)
                }
            }
        },
    )
}

fn requested_storage(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    let requests = pvc.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?;
    Quantity::try_from(&Value::String(requests.get("storage")?.0.clone())).ok()
}

fn capacity(pv: &PersistentVolume) -> Option<Quantity> {
    let q = pv.spec.as_ref()?.capacity.as_ref()?.get("storage")?;
    Quantity::try_from(&Value::String(q.0.clone())).ok()
}

fn access_modes_offered(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let offered = pv
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default();
    pvc.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_ref())
        .into_iter()
        .flatten()
        .all(|m| offered.contains(m))
}

impl Controller {
    async fn sync_claim(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(pvc) = self.ctx.informers.persistent_volume_claims.get(key) else {
            return Ok(None);
        };
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Bound") || pvc.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let (namespace, name) = split_key(key);
        let class = pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        // A claim already named by a volume (pre-bound, or provisioned by a previous sync) just binds.
        let uid = pvc.metadata.uid.as_deref().unwrap_or_default();
        let claimed = self
            .ctx
            .informers
            .persistent_volumes
            .list()
            .into_iter()
            .find(|pv| {
                pv.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .is_some_and(|c| c.uid.as_deref() == Some(uid))
            });
        if let Some(pv) = claimed {
            return self.bind(&pvc, &pv).await.map(|_| None);
        }
        let provisioner = self
            .ctx
            .informers
            .storage_classes
            .get(&class)
            .map(|sc| sc.provisioner.clone());
        if provisioner.as_deref() == Some(LOCAL_PATH_PROVISIONER) {
            return self.provision(&pvc, namespace, name, &class).await;
        }
        let Some(wanted) = requested_storage(&pvc) else {
            return Ok(None);
        };
        let mut candidates: Vec<(Quantity, Arc<PersistentVolume>)> = self
            .ctx
            .informers
            .persistent_volumes
            .list()
            .into_iter()
            .filter(|pv| {
                let spec = pv.spec.as_ref();
                spec.and_then(|s| s.claim_ref.as_ref()).is_none()
                    && spec
                        .and_then(|s| s.storage_class_name.clone())
                        .unwrap_or_default()
                        == class
                    && pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Released")
                    && access_modes_offered(pv, &pvc)
            })
            .filter_map(|pv| capacity(&pv).filter(|c| *c >= wanted).map(|c| (c, pv)))
            .collect();
        candidates.sort_by_key(|c| c.0);
        match candidates.first() {
            Some((_, pv)) => {
                let pv = self.claim_volume(pv, &pvc).await?;
                self.bind(&pvc, &pv).await.map(|_| None)
            }
            None => Ok(None),
        }
    }

    async fn provision(
        &self,
        pvc: &PersistentVolumeClaim,
        namespace: &str,
        name: &str,
        class: &str,
    ) -> Result<Option<Duration>, ControllerError> {
        let node = self
            .ctx
            .informers
            .pods
            .list_in(namespace)
            .into_iter()
            .find_map(|pod| {
                let spec = pod.spec.as_ref()?;
                let uses = spec.volumes.iter().flatten().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == name)
                });
                uses.then(|| spec.node_name.clone()).flatten()
            });
        let Some(node) = node else {
            return Ok(None);
        };
        let uid = pvc.metadata.uid.clone().unwrap_or_default();
        let pv_name = format!("pvc-{uid}");
        let reclaim = self
            .ctx
            .informers
            .storage_classes
            .get(class)
            .and_then(|sc| sc.reclaim_policy.clone())
            .unwrap_or_else(|| "Delete".into());
        let path = self
            .ctx
            .config
            .storage_dir
            .join(format!("{pv_name}_{namespace}_{name}"));
        let spec = pvc.spec.clone().unwrap_or_default();
        let storage = requested_storage(pvc)
            .map(|q| q.to_string())
            .unwrap_or_else(|| "0".into());
        let pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": spec.access_modes.unwrap_or_default(),
                "persistentVolumeReclaimPolicy": reclaim,
                "storageClassName": class,
                "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
                "hostPath": {"path": path.to_string_lossy(), "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": namespace,
                             "name": name, "uid": uid},
            },
        });
        let created: PersistentVolume = match self
            .ctx
            .client
            .create("/api/v1/persistentvolumes", &pv)
            .await
        {
            Ok(v) => {
                serde_json::from_value(v).map_err(|e| ControllerError::Invalid(e.to_string()))?
            }
            Err(e) if e.is_conflict() => {
                Api::<PersistentVolume>::all(self.ctx.client.clone())
                    .get(&pv_name)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        self.recorder.normal(
            self.ctx.clock.as_ref(),
            &Involved::new("v1", "PersistentVolumeClaim", &pvc.metadata),
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {pv_name}"),
        );
        self.bind(pvc, &created).await.map(|_| None)
    }

    async fn claim_volume(
        &self,
        pv: &PersistentVolume,
        pvc: &PersistentVolumeClaim,
    ) -> Result<PersistentVolume, ControllerError> {
        let claim = json!({"spec": {"claimRef": {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "namespace": pvc.metadata.namespace, "name": pvc.metadata.name, "uid": pvc.metadata.uid,
        }}, "metadata": {"resourceVersion": pv.metadata.resource_version}});
        Ok(Api::<PersistentVolume>::all(self.ctx.client.clone())
            .merge_patch(pv.metadata.name.as_deref().unwrap_or_default(), &claim)
            .await?)
    }

    async fn bind(
        &self,
        pvc: &PersistentVolumeClaim,
        pv: &PersistentVolume,
    ) -> Result<(), ControllerError> {
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let namespace = pvc.metadata.namespace.clone().unwrap_or_default();
        let claim_name = pvc.metadata.name.clone().unwrap_or_default();
        let pvs = Api::<PersistentVolume>::all(self.ctx.client.clone());
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            pvs.merge_patch_status(&pv_name, &json!({"status": {"phase": "Bound"}}))
                .await?;
        }
        let claims = Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), &namespace);
        if pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()) != Some(pv_name.as_str()) {
            claims
                .merge_patch(
                    &claim_name,
                    &json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
                            "spec": {"volumeName": pv_name}}),
                )
                .await?;
        }
        let capacity: BTreeMap<String, String> = pv
            .spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default();
        let modes = pv
            .spec
            .as_ref()
            .and_then(|s| s.access_modes.clone())
            .unwrap_or_default();
        claims
            .merge_patch_status(
                &claim_name,
                &json!({"status": {"phase": "Bound", "capacity": capacity, "accessModes": modes}}),
            )
            .await?;
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(pv) = self.ctx.informers.persistent_volumes.get(name) else {
            return Ok(None);
        };
        let pvs = Api::<PersistentVolume>::all(self.ctx.client.clone());
        let phase = pv.status.as_ref().and_then(|s| s.phase.clone());
        let Some(claim) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            if phase.as_deref() != Some("Available") {
                pvs.merge_patch_status(name, &json!({"status": {"phase": "Available"}}))
                    .await?;
            }
            return Ok(None);
        };
        let claim_key = format!(
            "{}/{}",
            claim.namespace.as_deref().unwrap_or_default(),
            claim.name.as_deref().unwrap_or_default()
        );
        let claim_exists = self
            .ctx
            .informers
            .persistent_volume_claims
            .get(&claim_key)
            .is_some_and(|c| c.metadata.uid == claim.uid || claim.uid.is_none());
        if claim_exists || !self.ctx.informers.persistent_volume_claims.has_synced() {
            return Ok(None);
        }
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        if policy == "Delete" {
            pvs.delete(name, &json!({})).await?;
        } else if phase.as_deref() != Some("Released") {
            pvs.merge_patch_status(name, &json!({"status": {"phase": "Released"}}))
                .await?;
        }
        Ok(None)
    }
}
