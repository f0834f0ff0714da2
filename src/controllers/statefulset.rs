//! The StatefulSet controller (Kubernetes 1.34's `pkg/controller/statefulset`): pods with stable
//! identities `<set>-<ordinal>` (the `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`
//! labels, hostname and the serviceName subdomain) and stable storage (a PVC `<claim>-<set>-<ordinal>`
//! per volumeClaimTemplate, created before its pod and kept, or owned by the set or pod as the
//! persistentVolumeClaimRetentionPolicy says). OrderedReady creates ordinals upwards one at a time,
//! each once its predecessors are Running and Ready, and removes them from the highest down; Parallel
//! does all at once. Templates are recorded as ControllerRevisions (the current and the update
//! revision, `controller-revision-hash` on pods); RollingUpdate replaces pods from the highest ordinal
//! down to the partition, one at a time, OnDelete only when a pod is deleted. The status is what
//! `kubectl rollout status sts/x` reads. [`plan`] decides; the controller carries the plan out.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::json;

use super::history::{self, CONTROLLER_REVISION_HASH_LABEL, HISTORY_HASH_LABEL};
use super::rollout::{controller_ref, is_pod_available, is_pod_ready};
use super::{
    claim_pods_and_revisions, controller_key, controller_of, queue_adopters, run_workers, Context,
    ControllerError, ADOPTION_RECHECK,
};
use crate::client::events::{Involved, Recorder};
use crate::client::informer::key_of;
use crate::client::{Api, Change, WorkQueue};

const WORKERS: usize = 4;
const KIND: &str = "StatefulSet";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Name collisions tried before giving up on creating a revision in one sync.
const MAX_COLLISIONS: i32 = 100;

// ---------------------------------------------------------------------------------------------
// Identity and storage

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

/// The set a pod name belongs to and its ordinal: `<parent>-<digits>`; the ordinal is -1 when the
/// digits do not fit an int32, as Kubernetes parses them.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().unwrap_or(-1)))
}

/// A pod's ordinal, -1 when its name has none.
fn ordinal(pod: &Pod) -> i32 {
    parent_and_ordinal(name_of(&pod.metadata)).map_or(-1, |(_, o)| o)
}

fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

fn in_ordinal_range(ordinal: i32, set: &StatefulSet) -> bool {
    ordinal >= start_ordinal(set) && ordinal < start_ordinal(set) + replicas(set)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

fn partition(set: &StatefulSet) -> Option<i32> {
    let rolling = set
        .spec
        .as_ref()?
        .update_strategy
        .as_ref()?
        .rolling_update
        .as_ref()?;
    Some(rolling.partition.unwrap_or(0))
}

/// (whenDeleted, whenScaled), Retain unless set.
fn retention(set: &StatefulSet) -> (&str, &str) {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    (
        policy
            .and_then(|p| p.when_deleted.as_deref())
            .unwrap_or("Retain"),
        policy
            .and_then(|p| p.when_scaled.as_deref())
            .unwrap_or("Retain"),
    )
}

fn set_template(set: &StatefulSet) -> PodTemplateSpec {
    set.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", name_of(&set.metadata))
}

pub fn claim_name(set: &StatefulSet, template: &PersistentVolumeClaim, ordinal: i32) -> String {
    format!(
        "{}-{}-{ordinal}",
        name_of(&template.metadata),
        name_of(&set.metadata)
    )
}

/// The claims of the pod with this ordinal, in template order: the templates named per pod, labelled
/// with the set's selector labels.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|template| {
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(set, template, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    finalizers: template.metadata.finalizers.clone(),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// A new pod for the ordinal from `template`, labelled with `revision`: name, identity labels, hostname
/// and subdomain, the claims' volumes in place of any template volumes of the same names.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let name = pod_name(set, ordinal);
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let templates = claim_templates(set);
    let mut volumes: Vec<Volume> = templates
        .iter()
        .map(|t| Volume {
            name: name_of(&t.metadata).to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(set, t, ordinal),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    let claimed: HashSet<&str> = templates.iter().map(|t| name_of(&t.metadata)).collect();
    volumes.extend(
        spec.volumes
            .take()
            .into_iter()
            .flatten()
            .filter(|v| !claimed.contains(v.name.as_str())),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{}-", name_of(&set.metadata))),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", KIND, &set.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// `identityMatches`: the pod's name, namespace and pod-name label fit its ordinal in this set.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let name = name_of(&pod.metadata);
    let Some((parent, ordinal)) = parent_and_ordinal(name) else {
        return false;
    };
    ordinal >= 0
        && parent == name_of(&set.metadata)
        && pod.metadata.namespace == set.metadata.namespace
        && pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_NAME_LABEL))
            .is_some_and(|l| l == name)
}

/// `storageMatches`: every claim template is mounted from the pod's own claim.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ordinal = ordinal(pod);
    if ordinal < 0 {
        return false;
    }
    let volumes: HashMap<&str, &Volume> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| (v.name.as_str(), v))
        .collect();
    claim_templates(set).iter().all(|t| {
        volumes
            .get(name_of(&t.metadata))
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .is_some_and(|c| c.claim_name == claim_name(set, t, ordinal))
    })
}

// ---------------------------------------------------------------------------------------------
// Claim ownership under the retention policy

/// An owner reference to `meta` as (apiVersion, kind): compared by name, as `matchesRef` does.
fn refers_to(r: &OwnerReference, api_version: &str, kind: &str, meta: &ObjectMeta) -> bool {
    r.api_version == api_version && r.kind == kind && r.name == name_of(meta)
}

fn uid_of(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or_default()
}

fn owner_refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
}

fn has_owner(claim: &PersistentVolumeClaim, owner: &ObjectMeta) -> bool {
    owner_refs(claim).iter().any(|r| r.uid == uid_of(owner))
}

/// A reference by name to an earlier object of the same name (another uid).
fn has_stale_owner(
    claim: &PersistentVolumeClaim,
    api_version: &str,
    kind: &str,
    owner: &ObjectMeta,
) -> bool {
    owner_refs(claim)
        .iter()
        .find(|r| refers_to(r, api_version, kind, owner))
        .is_some_and(|r| r.uid != uid_of(owner))
}

/// Another controller manages the claim (only a concern when the policy wants owners).
fn has_unexpected_controller(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if retention(set) == ("Retain", "Retain") {
        return false;
    }
    owner_refs(claim).iter().any(|r| {
        if refers_to(r, "apps/v1", KIND, &set.metadata) {
            return r.uid != uid_of(&set.metadata);
        }
        if refers_to(r, "v1", "Pod", &pod.metadata) {
            return r.uid != uid_of(&pod.metadata);
        }
        r.controller == Some(true)
    })
}

/// `isClaimOwnerUpToDate`: the claim's owners are what the policy asks for — none (Retain/Retain), the
/// set while the pod is in range (whenDeleted Delete), the pod once scaled away (whenScaled Delete).
/// Claims in a state the controller did not make (stale or foreign controllers) are left alone.
pub fn claim_owner_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    if has_stale_owner(claim, "apps/v1", KIND, &set.metadata)
        || has_stale_owner(claim, "v1", "Pod", &pod.metadata)
    {
        return true;
    }
    let (has_set, has_pod) = (
        has_owner(claim, &set.metadata),
        has_owner(claim, &pod.metadata),
    );
    if has_unexpected_controller(claim, set, pod) {
        return !(has_set || has_pod);
    }
    let non_controller = owner_refs(claim).iter().any(|r| {
        (r.uid == uid_of(&set.metadata) || r.uid == uid_of(&pod.metadata))
            && r.controller != Some(true)
    });
    if non_controller {
        return false;
    }
    let scaled_down = !in_ordinal_range(ordinal(pod), set);
    match retention(set) {
        (_, "Delete") => {
            let (want_set, want_pod) = match retention(set).0 {
                "Delete" => (!scaled_down, scaled_down),
                _ => (false, scaled_down),
            };
            has_set == want_set && has_pod == want_pod
        }
        ("Delete", _) => has_set && !has_pod,
        _ => !has_set && !has_pod,
    }
}

/// `updateClaimOwnerRefForSetAndPod`: the claim's owner references with the set's and pod's replaced by
/// what the policy asks for.
pub fn claim_owners_for_policy(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> Vec<OwnerReference> {
    let unexpected = has_unexpected_controller(claim, set, pod);
    let mut refs: Vec<OwnerReference> = owner_refs(claim)
        .iter()
        .filter(|r| {
            !refers_to(r, "apps/v1", KIND, &set.metadata)
                && !refers_to(r, "v1", "Pod", &pod.metadata)
        })
        .cloned()
        .collect();
    if unexpected {
        return refs;
    }
    let scaled_down = !in_ordinal_range(ordinal(pod), set);
    let (owner_set, owner_pod) = match retention(set) {
        ("Delete", "Delete") => (!scaled_down, scaled_down),
        (_, "Delete") => (false, scaled_down),
        ("Delete", _) => (true, false),
        _ => (false, false),
    };
    if owner_set {
        refs.push(controller_ref("apps/v1", KIND, &set.metadata));
    }
    if owner_pod {
        refs.push(controller_ref("v1", "Pod", &pod.metadata));
    }
    refs
}

/// `ClaimsMatchRetentionPolicy`: every existing claim of the pod has the owners the policy asks for.
fn claims_match_retention(
    set: &StatefulSet,
    pod: &Pod,
    claims: &HashMap<String, &PersistentVolumeClaim>,
) -> bool {
    claims_for(set, ordinal(pod)).iter().all(|c| {
        claims
            .get(name_of(&c.metadata))
            .is_none_or(|existing| claim_owner_up_to_date(existing, set, pod))
    })
}

/// `PodClaimIsStale`: with whenScaled Delete, a claim still owned by an earlier pod of this name is
/// about to be garbage collected and must not be reused.
fn claim_is_stale(
    set: &StatefulSet,
    pod: &Pod,
    claims: &HashMap<String, &PersistentVolumeClaim>,
) -> bool {
    if retention(set).1 == "Retain" {
        return false;
    }
    claims_for(set, ordinal(pod)).iter().any(|c| {
        claims
            .get(name_of(&c.metadata))
            .is_some_and(|existing| has_stale_owner(existing, "v1", "Pod", &pod.metadata))
    })
}

// ---------------------------------------------------------------------------------------------
// Pod states

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// A pod object the API server holds (the plan's placeholders for missing pods have no phase).
fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
        .map(String::as_str)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The plan

/// A revision as the plan needs it: its name and the template it restores.
pub struct RevisionRef<'a> {
    pub name: &'a str,
    pub template: &'a PodTemplateSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Delete a failed (or completed) pod so it is made again.
    Recreate { pod: Pod, failed: bool },
    /// Create the pod, its missing claims first.
    Create(Pod),
    /// Create the missing claims of a pending pod.
    CreateClaims(Pod),
    /// Restore the pod's identity labels and missing claims, and its claims' owners.
    Repair(Pod),
    /// Give the claims of a pod scaled away the owners the retention policy asks for.
    UpdateClaimOwners(Pod),
    /// Delete for scale down.
    ScaleDown(Pod),
    /// Delete to be recreated at the update revision.
    Update(Pod),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub status: StatefulSetStatus,
    pub actions: Vec<Action>,
}

fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// The status counts over the set's pods (`updateStatus`); the placeholders of pods not created yet
/// do not count.
fn count(status: &mut StatefulSetStatus, pods: &[&Pod], min_ready: i32, now: Timestamp) {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    let current_name = status.current_revision.clone().unwrap_or_default();
    let update_name = status.update_revision.clone().unwrap_or_default();
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            current += i32::from(revision_of(pod) == current_name);
            updated += i32::from(revision_of(pod) == update_name);
        }
    }
    status.replicas = replicas;
    status.ready_replicas = non_zero(ready);
    status.available_replicas = Some(available);
    status.current_replicas = non_zero(current);
    status.updated_replicas = non_zero(updated);
}

/// Kubernetes' `updateStatefulSet`: what one sync does to the pods and the status it reports. In
/// OrderedReady mode it stops at the first pod it creates, deletes or waits for; in Parallel mode it
/// does everything it can. Actions are listed in the order to carry them out; the first failure ends
/// the sync.
pub fn plan(
    set: &StatefulSet,
    current: RevisionRef,
    update: RevisionRef,
    collision_count: i32,
    pods: &[&Pod],
    claims: &HashMap<String, &PersistentVolumeClaim>,
    now: Timestamp,
) -> Plan {
    let status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(current.name.to_string()).filter(|n| !n.is_empty()),
        update_revision: Some(update.name.to_string()).filter(|n| !n.is_empty()),
        collision_count: Some(collision_count),
        ..Default::default()
    };
    let min_ready = min_ready_seconds(set);
    let start = start_ordinal(set);
    let count_replicas = usize::try_from(replicas(set)).unwrap_or(0);
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    // `newVersionedStatefulSetPod`: ordinals under the partition stay at the current revision.
    let new_versioned = |ordinal: i32| {
        let stays = match set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.rolling_update.as_ref())
        {
            Some(_) => ordinal < start + partition(set).unwrap_or(0),
            None => !is_on_delete(set) && ordinal < start + current_replicas,
        };
        if stays {
            new_pod(set, current.template, ordinal, current.name)
        } else {
            new_pod(set, update.template, ordinal, update.name)
        }
    };

    let mut slots: Vec<Option<Pod>> = vec![None; count_replicas];
    let mut condemned: Vec<Pod> = Vec::new();
    for pod in pods {
        let ord = ordinal(pod);
        if in_ordinal_range(ord, set) {
            slots[(ord - start) as usize] = Some((*pod).clone());
        } else if ord >= 0 {
            condemned.push((*pod).clone());
        }
    }
    let mut replicas_pods: Vec<Pod> = slots
        .into_iter()
        .enumerate()
        .map(|(i, p)| p.unwrap_or_else(|| new_versioned(start + i as i32)))
        .collect();
    condemned.sort_by_key(|p| Reverse(ordinal(p)));
    let first_unhealthy: Option<String> = replicas_pods
        .iter()
        .chain(condemned.iter().rev())
        .find(|p| !is_healthy(p))
        .map(|p| name_of(&p.metadata).to_string());

    let finish = |mut status: StatefulSetStatus,
                  replicas: &[Pod],
                  condemned: &[Pod],
                  actions: Vec<Action>| {
        let all: Vec<&Pod> = replicas.iter().chain(condemned).collect();
        count(&mut status, &all, min_ready, now);
        Plan { status, actions }
    };
    let mut actions = Vec::new();
    if set.metadata.deletion_timestamp.is_some() {
        return finish(status, &replicas_pods, &condemned, actions);
    }
    let monotonic = !is_parallel(set);

    for i in 0..replicas_pods.len() {
        // `processReplica`
        let pod = &replicas_pods[i];
        if matches!(phase(pod), "Failed" | "Succeeded") {
            actions.push(Action::Recreate {
                pod: pod.clone(),
                failed: phase(pod) == "Failed",
            });
            replicas_pods[i] = new_versioned(start + i as i32);
        }
        let pod = &replicas_pods[i];
        if !is_created(pod) {
            if claim_is_stale(set, pod, claims) {
                if monotonic {
                    return finish(status, &replicas_pods, &condemned, actions);
                }
                continue;
            }
            actions.push(Action::Create(pod.clone()));
            if monotonic {
                return finish(status, &replicas_pods, &condemned, actions);
            }
            continue;
        }
        let missing_claim = claims_for(set, ordinal(pod))
            .iter()
            .any(|c| !claims.contains_key(name_of(&c.metadata)));
        if phase(pod) == "Pending" && missing_claim {
            actions.push(Action::CreateClaims(pod.clone()));
        }
        if monotonic
            && (is_terminating(pod)
                || !is_running_and_ready(pod)
                || !is_pod_available(pod, min_ready, now))
        {
            return finish(status, &replicas_pods, &condemned, actions);
        }
        if !(identity_matches(set, pod)
            && storage_matches(set, pod)
            && claims_match_retention(set, pod, claims))
        {
            actions.push(Action::Repair(pod.clone()));
        }
    }

    for pod in &condemned {
        if !claims_match_retention(set, pod, claims) {
            actions.push(Action::UpdateClaimOwners(pod.clone()));
        }
    }

    // All replicas are Running, Ready and Available (in OrderedReady mode): scale down from the highest
    // ordinal, waiting for each to terminate. Scaling comes before updating.
    for pod in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return finish(status, &replicas_pods, &condemned, actions);
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(name_of(&pod.metadata));
        if monotonic
            && !first
            && (!is_running_and_ready(pod) || !is_pod_available(pod, min_ready, now))
        {
            return finish(status, &replicas_pods, &condemned, actions);
        }
        actions.push(Action::ScaleDown(pod.clone()));
        if monotonic {
            return finish(status, &replicas_pods, &condemned, actions);
        }
    }

    if is_on_delete(set) {
        return finish(status, &replicas_pods, &condemned, actions);
    }
    // Update from the highest ordinal down to the partition, one pod at a time.
    let update_min = usize::try_from(partition(set).unwrap_or(0)).unwrap_or(0);
    for target in (update_min..replicas_pods.len()).rev() {
        let pod = &replicas_pods[target];
        if revision_of(pod) != update.name && !is_terminating(pod) {
            actions.push(Action::Update(pod.clone()));
            let mut plan = finish(status, &replicas_pods, &condemned, actions);
            plan.status.current_replicas = non_zero(plan.status.current_replicas.unwrap_or(0) - 1);
            return plan;
        }
        if !is_healthy(pod) {
            break;
        }
    }
    finish(status, &replicas_pods, &condemned, actions)
}

/// `completeRollingUpdate`: once every replica is updated and ready, the update revision becomes the
/// current one.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let want = replicas(set);
    if !is_on_delete(set)
        && status.updated_replicas.unwrap_or(0) == want
        && status.ready_replicas.unwrap_or(0) == want
        && status.replicas == want
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// `inconsistentStatus`: whether the status must be written.
pub fn status_changed(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let old = set.status.clone().unwrap_or_default();
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || status.current_replicas.unwrap_or(0) != old.current_replicas.unwrap_or(0)
        || status.ready_replicas.unwrap_or(0) != old.ready_replicas.unwrap_or(0)
        || status.updated_replicas.unwrap_or(0) != old.updated_replicas.unwrap_or(0)
        || status.current_revision != old.current_revision
        || status.available_replicas.unwrap_or(0) != old.available_replicas.unwrap_or(0)
        || status.update_revision != old.update_revision
        || status.collision_count.unwrap_or(0) != old.collision_count.unwrap_or(0)
}

/// `truncateHistory`: the oldest revisions beyond revisionHistoryLimit that neither the current nor
/// the update revision nor any pod uses. `revisions` are sorted oldest first.
pub fn revisions_to_truncate<'a>(
    set: &StatefulSet,
    revisions: &[&'a ControllerRevision],
    pods: &[&Pod],
    current: &str,
    update: &str,
) -> Vec<&'a ControllerRevision> {
    let mut live: HashSet<&str> = pods.iter().map(|p| revision_of(p)).collect();
    live.insert(current);
    live.insert(update);
    let old: Vec<&ControllerRevision> = revisions
        .iter()
        .copied()
        .filter(|r| !live.contains(name_of(&r.metadata)))
        .collect();
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let excess = usize::try_from(old.len() as i64 - i64::from(limit)).unwrap_or(0);
    old.into_iter().take(excess).collect()
}

/// A revision of the set's template numbered `number`: named `<set>-<hash of its data and the
/// collision count>`, with the hash label.
pub fn new_set_revision(
    set: &StatefulSet,
    number: i64,
    collision_count: i32,
) -> ControllerRevision {
    let template = set_template(set);
    let data = history::template_patch(&template);
    let hash = history::hash_data(&data, Some(collision_count));
    let mut labels: BTreeMap<String, String> =
        template.metadata.and_then(|m| m.labels).unwrap_or_default();
    labels.insert(HISTORY_HASH_LABEL.into(), hash.clone());
    let name = history::revision_name(name_of(&set.metadata), &hash);
    history::new_revision(&set.metadata, KIND, labels, name, data, number)
}

// ---------------------------------------------------------------------------------------------
// The controller

struct Controller {
    ctx: Context,
    recorder: Recorder,
    queue: WorkQueue,
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "statefulset-controller"),
        queue: queue.clone(),
    });
    {
        let queue = queue.clone();
        ctx.informers.stateful_sets.on_change(move |change| {
            queue.add(&key_of(&change.object().metadata));
        });
    }
    {
        let queue = queue.clone();
        let stateful_sets = ctx.informers.stateful_sets.clone();
        ctx.informers.pods.on_change(move |change| {
            queue_adopters(
                change,
                &stateful_sets,
                |s| s.spec.as_ref().map(|s| &s.selector),
                &queue,
            );
            if let Change::Modified { old, new } = change {
                if let Some(previous) = controller_key(&old.metadata, KIND)
                    .filter(|k| Some(k) != controller_key(&new.metadata, KIND).as_ref())
                {
                    queue.add(&previous);
                }
            }
            if let Some(owner) = controller_key(&change.object().metadata, KIND) {
                queue.add(&owner);
            }
        });
    }
    run_workers(
        "statefulset",
        queue,
        WORKERS,
        ctx.shutdown.clone(),
        move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
}

/// Title-cased verb for event reasons (`SuccessfulCreate`, `FailedDelete`).
fn title(verb: &str) -> String {
    let mut chars = verb.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(set) = self.ctx.informers.stateful_sets.get(key) else {
            return Ok(None);
        };
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let uid = uid_of(&set.metadata);
        let namespace_pods = self.ctx.informers.pods.list_in(namespace);
        let set_name = name_of(&set.metadata);
        let claimed = claim_pods_and_revisions(
            &self.ctx,
            KIND,
            &set.metadata,
            set.spec.as_ref().map(|s| &s.selector),
            |pod| parent_and_ordinal(name_of(pod)).is_some_and(|(parent, _)| parent == set_name),
        )
        .await?;
        if claimed > 0 {
            return Ok(Some(ADOPTION_RECHECK));
        }
        let pods: Vec<&Pod> = namespace_pods
            .iter()
            .map(Arc::as_ref)
            .filter(|p| controller_of(&p.metadata, KIND).is_some_and(|o| o.uid == uid))
            .filter(|p| {
                parent_and_ordinal(name_of(&p.metadata))
                    .is_some_and(|(parent, _)| parent == name_of(&set.metadata))
            })
            .collect();
        let all_revisions = self.ctx.informers.controller_revisions.list_in(namespace);
        let mut revisions =
            history::controlled_by(all_revisions.iter().map(Arc::as_ref), KIND, uid);
        history::sort_revisions(&mut revisions);

        let (current, update, collision_count) = self.revisions(&set, &revisions).await?;
        let template = |r: &ControllerRevision| {
            history::template_of(r).ok_or_else(|| {
                ControllerError::Invalid(format!(
                    "ControllerRevision {} holds no pod template",
                    name_of(&r.metadata)
                ))
            })
        };
        let (current_template, update_template) = (template(&current)?, template(&update)?);
        let namespace_claims = self
            .ctx
            .informers
            .persistent_volume_claims
            .list_in(namespace);
        let claims: HashMap<String, &PersistentVolumeClaim> = namespace_claims
            .iter()
            .map(|c| (name_of(&c.metadata).to_string(), c.as_ref()))
            .collect();
        let mut plan = plan(
            &set,
            RevisionRef {
                name: name_of(&current.metadata),
                template: &current_template,
            },
            RevisionRef {
                name: name_of(&update.metadata),
                template: &update_template,
            },
            collision_count,
            &pods,
            &claims,
            self.ctx.clock.now(),
        );
        let mut result = Ok(());
        for action in std::mem::take(&mut plan.actions) {
            result = self.carry_out(&set, action).await;
            if result.is_err() {
                break;
            }
        }
        // The status is written even when an action failed, as far as the sync got.
        complete_rolling_update(&set, &mut plan.status);
        if status_changed(&set, &plan.status) {
            self.write_status(&set, plan.status.clone()).await?;
        }
        result?;
        let mut known = revisions.clone();
        for extra in [&current, &update] {
            if !known.iter().any(|r| r.metadata.name == extra.metadata.name) {
                known.push(extra);
            }
        }
        history::sort_revisions(&mut known);
        let revisions_api =
            Api::<ControllerRevision>::namespaced(self.ctx.client.clone(), namespace);
        for revision in revisions_to_truncate(
            &set,
            &known,
            &pods,
            name_of(&current.metadata),
            name_of(&update.metadata),
        ) {
            revisions_api
                .delete(
                    name_of(&revision.metadata),
                    &json!({"preconditions": {"uid": revision.metadata.uid}}),
                )
                .await?;
        }
        let min_ready = min_ready_seconds(&set);
        Ok(
            (min_ready > 0 && plan.status.available_replicas.unwrap_or(0) != replicas(&set))
                .then(|| Duration::from_secs(min_ready as u64)),
        )
    }

    /// `getStatefulSetRevisions`: the current revision (the status', else the update one), the update
    /// revision of the set's template — the newest revision if it holds it, an older one renumbered
    /// (a rollback), or a new one — and the collision count that named it.
    async fn revisions(
        &self,
        set: &StatefulSet,
        revisions: &[&ControllerRevision],
    ) -> Result<(ControllerRevision, ControllerRevision, i32), ControllerError> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<ControllerRevision>::namespaced(self.ctx.client.clone(), namespace);
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let next = revisions.last().map_or(1, |r| r.revision + 1);
        let data = history::template_patch(&set_template(set));
        let equal = revisions
            .iter()
            .rev()
            .find(|r| history::data_equals(r, &data));
        let update = match (equal, revisions.last()) {
            (Some(equal), Some(latest)) if equal.metadata.name == latest.metadata.name => {
                (*latest).clone()
            }
            (Some(equal), _) => {
                api.merge_patch(
                    name_of(&equal.metadata),
                    &json!({"metadata": {"resourceVersion": equal.metadata.resource_version},
                            "revision": next}),
                )
                .await?
            }
            (None, _) => loop {
                let revision = new_set_revision(set, next, collision_count);
                match api.create(&revision).await {
                    Ok(created) => break created,
                    Err(e) if e.is_conflict() => {
                        let existing = api.get(name_of(&revision.metadata)).await?;
                        if history::equal_revisions(&existing, &revision) {
                            break existing;
                        }
                        collision_count += 1;
                        if collision_count > MAX_COLLISIONS {
                            return Err(e.into());
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            },
        };
        let wanted_current = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.as_deref() == wanted_current && wanted_current.is_some())
            .map_or_else(|| update.clone(), |r| (*r).clone());
        Ok((current, update, collision_count))
    }

    async fn carry_out(&self, set: &StatefulSet, action: Action) -> Result<(), ControllerError> {
        match action {
            Action::Recreate { pod, failed } => {
                let message = |what: &str| {
                    format!(
                        "StatefulSet {}/{} is recreating {what} Pod {}",
                        set.metadata.namespace.as_deref().unwrap_or_default(),
                        name_of(&set.metadata),
                        name_of(&pod.metadata)
                    )
                };
                let (clock, about) = (
                    self.ctx.clock.as_ref(),
                    Involved::new("apps/v1", KIND, &set.metadata),
                );
                if failed {
                    let message = message("failed");
                    self.recorder
                        .warning(clock, &about, "RecreatingFailedPod", &message);
                } else {
                    let message = message("terminated");
                    self.recorder
                        .normal(clock, &about, "RecreatingTerminatedPod", &message);
                }
                self.delete_pod(set, &pod).await
            }
            Action::Create(pod) => self.create_pod(set, pod).await,
            Action::CreateClaims(pod) => self.create_claims(set, &pod).await,
            Action::Repair(pod) => self.repair(set, &pod).await,
            Action::UpdateClaimOwners(pod) => self.update_claim_owners(set, &pod).await,
            Action::ScaleDown(pod) | Action::Update(pod) => self.delete_pod(set, &pod).await,
        }
    }

    fn pod_event(&self, set: &StatefulSet, verb: &str, pod: &Pod, error: Option<&str>) {
        let (set_name, pod_name) = (name_of(&set.metadata), name_of(&pod.metadata));
        let clock = self.ctx.clock.as_ref();
        match error {
            None => {
                let message = format!("{verb} Pod {pod_name} in StatefulSet {set_name} successful");
                let reason = format!("Successful{}", title(verb));
                self.recorder.normal(
                    clock,
                    &Involved::new("apps/v1", KIND, &set.metadata),
                    &reason,
                    &message,
                )
            }
            Some(e) => {
                let message =
                    format!("{verb} Pod {pod_name} in StatefulSet {set_name} failed error: {e}");
                let reason = format!("Failed{}", title(verb));
                self.recorder.warning(
                    clock,
                    &Involved::new("apps/v1", KIND, &set.metadata),
                    &reason,
                    &message,
                )
            }
        }
    }

    /// `CreateStatefulPod`: the claims, then the pod, then the claims' owners (which may name the pod).
    async fn create_pod(&self, set: &StatefulSet, pod: Pod) -> Result<(), ControllerError> {
        if let Err(e) = self.create_claims(set, &pod).await {
            self.pod_event(set, "create", &pod, Some(&e.to_string()));
            return Err(e);
        }
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        match Api::<Pod>::namespaced(self.ctx.client.clone(), namespace)
            .create(&pod)
            .await
        {
            Ok(created) => {
                self.pod_event(set, "create", &created, None);
                self.update_claim_owners(set, &created).await
            }
            // The informer has not shown it yet; the next sync sees it.
            Err(e) if e.is_conflict() => Err(e.into()),
            Err(e) => {
                self.pod_event(set, "create", &pod, Some(&e.to_string()));
                Err(e.into())
            }
        }
    }

    /// Creates the pod's claims that do not exist yet.
    async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), ControllerError> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), namespace);
        let (set_name, pod_name) = (name_of(&set.metadata), name_of(&pod.metadata));
        let clock = self.ctx.clock.as_ref();
        let mut first_error = None;
        for claim in claims_for(set, ordinal(pod)) {
            let name = name_of(&claim.metadata).to_string();
            if let Some(existing) = self
                .ctx
                .informers
                .persistent_volume_claims
                .get_in(namespace, &name)
            {
                if existing.metadata.deletion_timestamp.is_some() {
                    first_error.get_or_insert(ControllerError::Invalid(format!(
                        "pvc {name} is being deleted"
                    )));
                }
                continue;
            }
            match api.create(&claim).await {
                Ok(_) => {
                    let message = format!(
                        "create Claim {name} Pod {pod_name} in StatefulSet {set_name} success"
                    );
                    self.recorder.normal(
                        clock,
                        &Involved::new("apps/v1", KIND, &set.metadata),
                        "SuccessfulCreate",
                        &message,
                    );
                }
                // Created meanwhile: it exists, which is all the pod needs.
                Err(e) if e.is_conflict() => {}
                Err(e) => {
                    let message = format!(
                        "create Claim {name} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                    );
                    self.recorder.warning(
                        clock,
                        &Involved::new("apps/v1", KIND, &set.metadata),
                        "FailedCreate",
                        &message,
                    );
                    first_error.get_or_insert(ControllerError::Invalid(format!(
                        "failed to create PVC {name}: {e}"
                    )));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `UpdateStatefulPod`: restores the identity labels and creates missing claims (a pod's volumes
    /// cannot change once it exists), then fixes the claims' owners.
    async fn repair(&self, set: &StatefulSet, pod: &Pod) -> Result<(), ControllerError> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        if !identity_matches(set, pod) {
            let labels = json!({POD_NAME_LABEL: name_of(&pod.metadata),
                                POD_INDEX_LABEL: ordinal(pod).to_string()});
            let result = Api::<Pod>::namespaced(self.ctx.client.clone(), namespace)
                .merge_patch(
                    name_of(&pod.metadata),
                    &json!({"metadata": {"labels": labels}}),
                )
                .await;
            let error = result.as_ref().err().map(ToString::to_string);
            self.pod_event(set, "update", pod, error.as_deref());
            result?;
        }
        if !storage_matches(set, pod) {
            self.create_claims(set, pod).await?;
        }
        self.update_claim_owners(set, pod).await
    }

    /// `UpdatePodClaimForRetentionPolicy`.
    async fn update_claim_owners(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<(), ControllerError> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<PersistentVolumeClaim>::namespaced(self.ctx.client.clone(), namespace);
        for wanted in claims_for(set, ordinal(pod)) {
            let name = name_of(&wanted.metadata);
            let Some(claim) = self
                .ctx
                .informers
                .persistent_volume_claims
                .get_in(namespace, name)
            else {
                // Not in the cache yet: a later sync sees it.
                continue;
            };
            if has_unexpected_controller(&claim, set, pod) {
                let message = format!(
                    "PersistentVolumeClaim {name} has a conflicting OwnerReference that acts as a manging controller, the retention policy is ignored for this claim"
                );
                self.recorder.warning(
                    self.ctx.clock.as_ref(),
                    &Involved::new("apps/v1", KIND, &set.metadata),
                    "ConflictingController",
                    &message,
                );
            }
            if claim_owner_up_to_date(&claim, set, pod) {
                continue;
            }
            let mut updated = (*claim).clone();
            let owners = claim_owners_for_policy(&claim, set, pod);
            updated.metadata.owner_references = (!owners.is_empty()).then_some(owners);
            api.replace(name, &updated).await.map_err(|e| {
                ControllerError::Invalid(format!(
                    "could not update claim {name} for delete policy ownerRefs: {e}"
                ))
            })?;
        }
        Ok(())
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), ControllerError> {
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        let result = Api::<Pod>::namespaced(self.ctx.client.clone(), namespace)
            .delete(
                name_of(&pod.metadata),
                &json!({"preconditions": {"uid": pod.metadata.uid}}),
            )
            .await;
        let error = result.as_ref().err().map(ToString::to_string);
        self.pod_event(set, "delete", pod, error.as_deref());
        result.map_err(Into::into)
    }

    async fn write_status(
        &self,
        set: &StatefulSet,
        status: StatefulSetStatus,
    ) -> Result<(), ControllerError> {
        let mut updated = set.clone();
        updated.status = Some(status);
        let namespace = set.metadata.namespace.as_deref().unwrap_or_default();
        match Api::<StatefulSet>::namespaced(self.ctx.client.clone(), namespace)
            .replace_status(name_of(&set.metadata), &updated)
            .await
        {
            Ok(_) => Ok(()),
            // A newer StatefulSet is on its way through the informer and triggers another sync.
            Err(e) if e.is_conflict() => {
                self.queue.add(&key_of(&set.metadata));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    fn set(extra: Value) -> StatefulSet {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 3},
            "spec": {
                "replicas": 3,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }],
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            },
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn template(image: &str) -> PodTemplateSpec {
        let mut t = set(json!({})).spec.unwrap().template;
        t.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        t
    }

    /// A created pod of the set; `state` is "ready", "unready", "failed" or "deleting".
    fn pod(s: &StatefulSet, ordinal: i32, revision: &str, state: &str) -> Pod {
        let mut p = new_pod(s, &template("nginx:1"), ordinal, revision);
        p.metadata.uid = Some(format!("uid-{ordinal}"));
        let ready = if state == "ready" { "True" } else { "False" };
        let phase = if state == "failed" {
            "Failed"
        } else {
            "Running"
        };
        p.status = Some(
            serde_json::from_value(json!({"phase": phase, "conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
            .unwrap(),
        );
        if state == "deleting" {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        }
        p
    }

    fn run(s: &StatefulSet, pods: &[Pod]) -> Plan {
        run_with(s, pods, &HashMap::new())
    }

    fn run_with(
        s: &StatefulSet,
        pods: &[Pod],
        claims: &HashMap<String, &PersistentVolumeClaim>,
    ) -> Plan {
        let refs: Vec<&Pod> = pods.iter().collect();
        let (current, update) = (template("nginx:1"), template("nginx:2"));
        plan(
            s,
            RevisionRef {
                name: "web-cur",
                template: &current,
            },
            RevisionRef {
                name: "web-upd",
                template: &update,
            },
            0,
            &refs,
            claims,
            now(),
        )
    }

    /// Each action as `verb name`.
    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| {
                let (verb, pod) = match a {
                    Action::Recreate { pod, .. } => ("recreate", pod),
                    Action::Create(p) => ("create", p),
                    Action::CreateClaims(p) => ("claims", p),
                    Action::Repair(p) => ("repair", p),
                    Action::UpdateClaimOwners(p) => ("owners", p),
                    Action::ScaleDown(p) => ("scale-down", p),
                    Action::Update(p) => ("update", p),
                };
                format!("{verb} {}", name_of(&pod.metadata))
            })
            .collect()
    }

    #[test]
    fn names_parse_into_parent_and_ordinal() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-x1"), None);
        assert_eq!(parent_and_ordinal("web-99999999999"), Some(("web", -1)));
    }

    #[test]
    fn pods_get_identity_storage_and_revision() {
        let s = set(json!({}));
        let p = new_pod(&s, &template("nginx:2"), 1, "web-abc");
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(labels[POD_NAME_LABEL], "web-1");
        assert_eq!(labels[POD_INDEX_LABEL], "1");
        assert_eq!(labels[CONTROLLER_REVISION_HASH_LABEL], "web-abc");
        assert_eq!(labels["app"], "web");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        assert_eq!(spec.containers[0].image.as_deref(), Some("nginx:2"));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(volumes[0].name, "data");
        assert_eq!(
            volumes[0]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "data-web-1"
        );
        assert!(identity_matches(&s, &p) && storage_matches(&s, &p));
        assert_eq!(controller_of(&p.metadata, KIND).unwrap().uid, "set-uid");

        let claims = claims_for(&s, 1);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data-web-1"));
        assert_eq!(claims[0].metadata.labels.as_ref().unwrap()["app"], "web");
        assert!(
            claims[0].metadata.owner_references.is_none(),
            "Retain/Retain claims have no owner"
        );
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_in_order() {
        let s = set(json!({}));
        let plan = run(&s, &[]);
        assert_eq!(summary(&plan), ["create web-0"]);
        assert_eq!(plan.status.replicas, 0);
        assert_eq!(plan.status.update_revision.as_deref(), Some("web-upd"));

        let unready = [pod(&s, 0, "web-upd", "unready")];
        assert!(
            run(&s, &unready).actions.is_empty(),
            "waits for web-0 to be ready"
        );

        let ready = [pod(&s, 0, "web-upd", "ready")];
        let plan = run(&s, &ready);
        assert_eq!(summary(&plan), ["create web-1"]);
        assert_eq!(
            (
                plan.status.replicas,
                plan.status.ready_replicas,
                plan.status.available_replicas
            ),
            (1, Some(1), Some(1))
        );
    }

    #[test]
    fn parallel_creates_everything_at_once() {
        let s = set(json!({"spec": {"podManagementPolicy": "Parallel"}}));
        assert_eq!(
            summary(&run(&s, &[])),
            ["create web-0", "create web-1", "create web-2"]
        );
        let s = set(json!({"spec": {"podManagementPolicy": "Parallel", "replicas": 0}}));
        let pods = [
            pod(&s, 0, "web-upd", "ready"),
            pod(&s, 1, "web-upd", "unready"),
        ];
        assert_eq!(
            summary(&run(&s, &pods)),
            ["scale-down web-1", "scale-down web-0"]
        );
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let s = set(json!({"spec": {"replicas": 1}}));
        let pods = [
            pod(&s, 0, "web-upd", "ready"),
            pod(&s, 1, "web-upd", "ready"),
            pod(&s, 2, "web-upd", "ready"),
        ];
        assert_eq!(summary(&run(&s, &pods)), ["scale-down web-2"]);
        let terminating = [
            pod(&s, 0, "web-upd", "ready"),
            pod(&s, 1, "web-upd", "ready"),
            pod(&s, 2, "web-upd", "deleting"),
        ];
        assert!(
            run(&s, &terminating).actions.is_empty(),
            "web-1 waits until web-2 is gone"
        );
        let plan = run(&s, &pods[..2]);
        assert_eq!(summary(&plan), ["scale-down web-1"]);
        assert_eq!(
            plan.status.replicas, 2,
            "the pod being deleted still counts"
        );
    }

    #[test]
    fn an_unhealthy_replica_blocks_scale_down_but_the_first_unhealthy_condemned_pod_goes() {
        let s = set(json!({"spec": {"replicas": 1}}));
        let blocked = [
            pod(&s, 0, "web-upd", "unready"),
            pod(&s, 1, "web-upd", "ready"),
        ];
        assert!(run(&s, &blocked).actions.is_empty());
        let broken = [
            pod(&s, 0, "web-upd", "ready"),
            pod(&s, 1, "web-upd", "unready"),
        ];
        assert_eq!(summary(&run(&s, &broken)), ["scale-down web-1"]);
    }

    #[test]
    fn failed_pods_are_recreated() {
        let s = set(json!({}));
        let pods = [pod(&s, 0, "web-upd", "failed")];
        let plan = run(&s, &pods);
        assert_eq!(summary(&plan), ["recreate web-0", "create web-0"]);
        assert!(matches!(
            plan.actions[0],
            Action::Recreate { failed: true, .. }
        ));
    }

    #[test]
    fn rolling_update_replaces_from_the_top_down_to_the_partition() {
        let s = set(json!({}));
        let old = [
            pod(&s, 0, "web-cur", "ready"),
            pod(&s, 1, "web-cur", "ready"),
            pod(&s, 2, "web-cur", "ready"),
        ];
        let plan = run(&s, &old);
        assert_eq!(summary(&plan), ["update web-2"]);
        assert_eq!(plan.status.current_replicas, Some(2));
        assert_eq!(plan.status.updated_replicas, None);

        // web-2 recreated at the update revision, not ready yet: wait.
        let mid = [
            pod(&s, 0, "web-cur", "ready"),
            pod(&s, 1, "web-cur", "ready"),
            pod(&s, 2, "web-upd", "unready"),
        ];
        assert!(run(&s, &mid).actions.is_empty());
        let missing = &old[..2];
        let plan = run(&s, missing);
        assert_eq!(summary(&plan), ["create web-2"]);
        let Action::Create(created) = &plan.actions[0] else {
            unreachable!()
        };
        assert_eq!(revision_of(created), "web-upd");
        assert_eq!(
            created.spec.as_ref().unwrap().containers[0]
                .image
                .as_deref(),
            Some("nginx:2")
        );

        let partitioned =
            set(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}}));
        let done_above = [
            pod(&s, 0, "web-cur", "ready"),
            pod(&s, 1, "web-cur", "ready"),
            pod(&s, 2, "web-upd", "ready"),
        ];
        assert!(run(&partitioned, &done_above).actions.is_empty());
        let plan = run(&partitioned, &old[..1]);
        let Action::Create(created) = &plan.actions[0] else {
            unreachable!()
        };
        assert_eq!(
            revision_of(created),
            "web-cur",
            "ordinals below the partition stay at the current revision"
        );

        let on_delete =
            set(json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}}));
        assert!(run(&on_delete, &old).actions.is_empty());
    }

    #[test]
    fn a_rolling_update_completes_when_every_replica_is_updated_and_ready() {
        let s = set(json!({}));
        let done = [
            pod(&s, 0, "web-upd", "ready"),
            pod(&s, 1, "web-upd", "ready"),
            pod(&s, 2, "web-upd", "ready"),
        ];
        let mut status = run(&s, &done).status;
        assert_eq!(status.current_revision.as_deref(), Some("web-cur"));
        complete_rolling_update(&s, &mut status);
        assert_eq!(status.current_revision.as_deref(), Some("web-upd"));
        assert_eq!(status.current_replicas, Some(3));
        assert!(status_changed(&s, &status));
        let mut observed = s.clone();
        observed.status = Some(status.clone());
        assert!(!status_changed(&observed, &status));
    }

    #[test]
    fn a_lost_identity_label_is_repaired() {
        let s = set(json!({"spec": {"replicas": 1}}));
        let mut p = pod(&s, 0, "web-upd", "ready");
        p.metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
        assert_eq!(summary(&run(&s, &[p])), ["repair web-0"]);
    }

    fn claim(name: &str, owners: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
            "ownerReferences": owners}}))
        .unwrap()
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let retain = set(json!({}));
        let delete_both = set(
            json!({"spec": {"replicas": 1, "persistentVolumeClaimRetentionPolicy":
            {"whenDeleted": "Delete", "whenScaled": "Delete"}}}),
        );
        let in_range = pod(&delete_both, 0, "r", "ready");
        let scaled_away = pod(&delete_both, 1, "r", "ready");
        let bare = claim("data-web-0", json!(null));
        assert!(claim_owner_up_to_date(&bare, &retain, &in_range));
        assert!(!claim_owner_up_to_date(&bare, &delete_both, &in_range));

        let owners = claim_owners_for_policy(&bare, &delete_both, &in_range);
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].controller),
            (KIND, Some(true))
        );
        let owned = claim("data-web-0", serde_json::to_value(&owners).unwrap());
        assert!(claim_owner_up_to_date(&owned, &delete_both, &in_range));

        // Scaled away: the pod owns the claim instead, so it goes with the pod.
        let owners = claim_owners_for_policy(&owned, &delete_both, &scaled_away);
        let kinds: Vec<_> = owners.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["Pod"]);
        assert_eq!(owners[0].uid, "uid-1");

        let when_deleted = set(json!({"spec": {"persistentVolumeClaimRetentionPolicy":
            {"whenDeleted": "Delete", "whenScaled": "Retain"}}}));
        let kinds: Vec<_> = claim_owners_for_policy(&bare, &when_deleted, &scaled_away)
            .iter()
            .map(|o| o.kind.clone())
            .collect();
        assert_eq!(kinds, [KIND]);

        // A claim still owned by an earlier pod of the same name is stale: the pod is not recreated
        // until the garbage collector removes it.
        let stale = claim(
            "data-web-0",
            json!([{"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "old", "controller": true}]),
        );
        let claims: HashMap<String, &PersistentVolumeClaim> =
            [("data-web-0".to_string(), &stale)].into();
        assert!(run_with(&delete_both, &[], &claims).actions.is_empty());
        assert_eq!(summary(&run_with(&retain, &[], &claims)), ["create web-0"]);
    }

    #[test]
    fn history_keeps_live_revisions_and_the_limit() {
        let s = set(json!({"spec": {"revisionHistoryLimit": 1}}));
        let revision = |name: &str, n: i64| ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: None,
            revision: n,
        };
        let all: Vec<ControllerRevision> = (1..=5).map(|n| revision(&format!("r{n}"), n)).collect();
        let refs: Vec<&ControllerRevision> = all.iter().collect();
        let pods = [pod(&s, 0, "r2", "ready")];
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let gone: Vec<_> = revisions_to_truncate(&s, &refs, &pod_refs, "r4", "r5")
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(
            gone,
            [1],
            "r3 is kept as history, r2 runs, r4 and r5 are live"
        );
    }

    #[test]
    fn revisions_are_named_by_their_data_and_collision_count() {
        let s = set(json!({"metadata": {"annotations": {"kubernetes.io/change-cause": "v1"}}}));
        let r = new_set_revision(&s, 1, 0);
        let name = r.metadata.name.clone().unwrap();
        let hash = r.metadata.labels.as_ref().unwrap()[HISTORY_HASH_LABEL].clone();
        assert_eq!(name, format!("web-{hash}"));
        assert_eq!(r.revision, 1);
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(
            r.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"],
            "v1"
        );
        assert_eq!(history::template_of(&r), Some(set_template(&s)));
        assert_ne!(new_set_revision(&s, 1, 1).metadata.name, r.metadata.name);
        assert_eq!(new_set_revision(&s, 2, 0).metadata.name, r.metadata.name);
    }
}
