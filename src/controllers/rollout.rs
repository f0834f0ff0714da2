//! The decision logic of the Deployment and ReplicaSet controllers, as pure functions over
//! k8s-openapi objects: Kubernetes 1.34's `pkg/controller/deployment/util`, the calculations in
//! `sync.go`, `rolling.go`, `recreate.go` and `progress.go`, and the ReplicaSet controller's status
//! and batching rules. Nothing here reads a clock or talks to the API: callers pass `now` and apply
//! the returned plans (a [`ScaleStep`] list, an updated object, a status) with their own client.
//!
//! Fields the API server defaults (`spec.replicas`, the strategy, `maxSurge`/`maxUnavailable`) are
//! read with Kubernetes' defaults when absent, so un-defaulted objects in tests behave like stored
//! ones. Status counters follow Go's `omitempty`: a zero count is `None`, as Kubernetes writes it.
//! `status.terminatingReplicas` stays unset: it needs the `DeploymentReplicaSetTerminatingReplicas`
//! feature gate, which is alpha and off in 1.34.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition,
    ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::Metadata;
use serde_json::Value;

/// Label (and selector key) that ties a ReplicaSet and its pods to one pod template.
pub const DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY: &str = "pod-template-hash";
/// The rollout sequence number of a ReplicaSet (and, copied, of its Deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a re-activated ReplicaSet served, comma separated.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment when the ReplicaSet was last scaled.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED_CONFIG_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DEPRECATED_ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// How long `revision-history` may grow before its oldest entries are dropped.
pub const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;

/// Deployment condition types.
pub const DEPLOYMENT_AVAILABLE: &str = "Available";
pub const DEPLOYMENT_PROGRESSING: &str = "Progressing";
pub const DEPLOYMENT_REPLICA_FAILURE: &str = "ReplicaFailure";
/// The ReplicaSet condition type the ReplicaSet controller manages.
pub const REPLICA_SET_REPLICA_FAILURE: &str = "ReplicaFailure";

/// Condition reasons, exactly as Kubernetes spells them.
pub const REPLICA_SET_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_DEPLOY_REASON: &str = "DeploymentPaused";
pub const RESUMED_DEPLOY_REASON: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
/// Event reason of every scale of a ReplicaSet by the Deployment controller.
pub const SCALING_REPLICA_SET_REASON: &str = "ScalingReplicaSet";
/// ReplicaFailure reasons set by the ReplicaSet controller.
pub const FAILED_CREATE_POD_REASON: &str = "FailedCreate";
pub const FAILED_DELETE_POD_REASON: &str = "FailedDelete";

/// The most pods one ReplicaSet sync creates or deletes (the controller's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// The first batch of `slow_start_batches` in the ReplicaSet controller.
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;

const DEFAULT_MAX_SURGE_AND_UNAVAILABLE: &str = "25%";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// `maxSurge`/`maxUnavailable` is neither an integer nor a percentage (validation rejects it).
    #[error("invalid value for IntOrString: {0}")]
    IntOrPercent(String),
    #[error("deployment type {0} isn't supported")]
    UnsupportedStrategy(String),
    #[error("invalid revision annotation {0:?}")]
    InvalidRevision(String),
}

/// One ReplicaSet resize the controller decided on, to be applied with [`scaled_replica_set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleStep {
    pub name: String,
    pub replicas: i32,
}

// ---------------------------------------------------------------------------------------------
// Field access with API defaults

fn deployment_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn template_of(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

fn conditions_of(status: &DeploymentStatus) -> &[DeploymentCondition] {
    status.conditions.as_deref().unwrap_or(&[])
}

fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// `metav1.Time` serialises whole seconds, so conditions are stamped the way they read back.
fn stamp(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Whether the Deployment uses the RollingUpdate strategy (the default).
pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn rolling_parameters(d: &Deployment) -> (IntOrString, IntOrString) {
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = || IntOrString::String(DEFAULT_MAX_SURGE_AND_UNAVAILABLE.to_string());
    (
        rolling
            .and_then(|r| r.max_surge.clone())
            .unwrap_or_else(default),
        rolling
            .and_then(|r| r.max_unavailable.clone())
            .unwrap_or_else(default),
    )
}

/// A progress deadline is set and not the "never" value `MaxInt32`.
pub fn has_progress_deadline(d: &Deployment) -> bool {
    progress_deadline_seconds(d).is_some()
}

fn progress_deadline_seconds(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|&s| s != i32::MAX)
}

/// A revision history limit is set and not the "keep everything" value `MaxInt32`.
pub fn has_revision_history_limit(d: &Deployment) -> bool {
    revision_history_limit(d).is_some()
}

fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .filter(|&l| l != i32::MAX)
}

fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn status_counts(status: Option<&DeploymentStatus>) -> StatusCounts {
    let s = status.cloned().unwrap_or_default();
    StatusCounts {
        replicas: s.replicas.unwrap_or(0),
        updated: s.updated_replicas.unwrap_or(0),
        ready: s.ready_replicas.unwrap_or(0),
        available: s.available_replicas.unwrap_or(0),
        observed_generation: s.observed_generation.unwrap_or(0),
    }
}

struct StatusCounts {
    replicas: i32,
    updated: i32,
    ready: i32,
    available: i32,
    observed_generation: i64,
}

// ---------------------------------------------------------------------------------------------
// Sorting

/// ReplicaSets oldest first, by creation time then name (`ReplicaSetsByCreationTimestamp`); a
/// missing timestamp is Go's zero time and so sorts first.
pub fn by_creation_timestamp(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ta.cmp(&tb)
        .then_with(|| name_of(&a.metadata).cmp(name_of(&b.metadata)))
}

/// Stable merge sort driven by a Go-style `Less`. Go's `sort.Sort` accepts comparators that are
/// not total orders (Kubernetes' revision and pod-ranking orders are not, at the edges), while
/// `slice::sort_by` may panic on them.
pub(crate) fn stable_sort_by_less<T: Copy>(items: &mut [T], less: &impl Fn(&T, &T) -> bool) {
    if items.len() < 2 {
        return;
    }
    let mid = items.len() / 2;
    stable_sort_by_less(&mut items[..mid], less);
    stable_sort_by_less(&mut items[mid..], less);
    let mut merged = Vec::with_capacity(items.len());
    let (mut i, mut j) = (0, mid);
    while i < mid && j < items.len() {
        if less(&items[j], &items[i]) {
            merged.push(items[j]);
            j += 1;
        } else {
            merged.push(items[i]);
            i += 1;
        }
    }
    merged.extend_from_slice(&items[i..mid]);
    merged.extend_from_slice(&items[j..]);
    items.copy_from_slice(&merged);
}

// ---------------------------------------------------------------------------------------------
// Template hashing and equality

/// The `pod-template-hash` of a template: FNV-32a over the template's canonical JSON (Kubernetes
/// hashes Go's deep print instead, which cannot be reproduced), plus the collision count as
/// Kubernetes adds it, spelled with Kubernetes' `SafeEncodeString` alphabet (`5d4f8b7c9`).
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let canonical = normalized(serde_json::to_value(template).unwrap_or(Value::Null));
    let mut hash = Fnv32a::new();
    hash.write(canonical.to_string().as_bytes());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash.write(&bytes);
    }
    safe_encode(&hash.sum().to_string())
}

struct Fnv32a(u32);

impl Fnv32a {
    fn new() -> Self {
        Fnv32a(2_166_136_261)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(16_777_619);
        }
    }

    fn sum(&self) -> u32 {
        self.0
    }
}

/// apimachinery's `rand.SafeEncodeString`: no vowels (no words) and no look-alike characters.
pub(crate) fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// Drops nulls, empty arrays and empty objects: `Semantic.DeepEqual` treats empty and nil maps
/// and slices as equal, and defaulting makes the remaining nil-vs-empty-struct cases moot.
pub(crate) fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        other => other,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Whether two pod templates are semantically equal once the `pod-template-hash` label is
/// ignored: how a Deployment recognises its ReplicaSet for the current template.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    comparable_template(a) == comparable_template(b)
}

fn comparable_template(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY);
    }
    normalized(serde_json::to_value(&t).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------------
// New and old ReplicaSets, revisions

/// The ReplicaSet whose template matches the Deployment's; the oldest one if an upgrade left
/// several.
pub fn find_new_replica_set<'a>(
    d: &Deployment,
    rs_list: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut sorted = rs_list.to_vec();
    sorted.sort_by(|a, b| by_creation_timestamp(a, b));
    sorted
        .into_iter()
        .find(|rs| equal_ignore_hash(&template_of(rs), &template))
}

/// Every ReplicaSet but the new one, oldest first: `(those with spec.replicas != 0, all)`.
pub fn find_old_replica_sets<'a>(
    d: &Deployment,
    rs_list: &[&'a ReplicaSet],
) -> (Vec<&'a ReplicaSet>, Vec<&'a ReplicaSet>) {
    let new_rs = find_new_replica_set(d, rs_list);
    let mut sorted = rs_list.to_vec();
    sorted.sort_by(|a, b| by_creation_timestamp(a, b));
    let all: Vec<&ReplicaSet> = sorted
        .into_iter()
        .filter(|rs| new_rs.is_none_or(|n| !std::ptr::eq(*rs, n)))
        .collect();
    let required = all
        .iter()
        .copied()
        .filter(|rs| rs_replicas(rs) != 0)
        .collect();
    (required, all)
}

/// The `deployment.kubernetes.io/revision` of an object; 0 when it has none.
pub fn revision_of<T: Metadata<Ty = ObjectMeta>>(obj: &T) -> Result<i64, RolloutError> {
    match annotation(obj.metadata(), REVISION_ANNOTATION) {
        None => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| RolloutError::InvalidRevision(v.to_string())),
    }
}

/// The highest revision among the ReplicaSets (unparseable ones are skipped).
pub fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter()
        .filter_map(|rs| revision_of(*rs).ok())
        .fold(0, i64::max)
}

/// The second-highest revision: the one `kubectl rollout undo` goes back to.
pub fn last_revision(rss: &[&ReplicaSet]) -> i64 {
    let (mut max, mut second) = (0, 0);
    for v in rss.iter().filter_map(|rs| revision_of(*rs).ok()) {
        if v >= max {
            second = max;
            max = v;
        } else if v > second {
            second = v;
        }
    }
    second
}

/// The revision a new (or re-activated) ReplicaSet gets: one past the old ones.
pub fn new_revision(old_rss: &[&ReplicaSet]) -> String {
    (max_revision(old_rss) + 1).to_string()
}

fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_CONFIG_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | DEPRECATED_ROLLBACK_TO_ANNOTATION
    )
}

/// Copies the Deployment's annotations (all but last-applied, the revision keys, the replica
/// annotations and rollback-to; `kubernetes.io/change-cause` travels this way for `rollout
/// history`) to its new ReplicaSet and moves the ReplicaSet's revision up to `new_revision`,
/// recording the old one in `revision-history` when a ReplicaSet is re-activated. A ReplicaSet that
/// is about to be created (`exists == false`) also gets the replica annotations. Returns whether
/// any annotation changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    new_rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
    rev_history_limit_in_chars: usize,
) -> bool {
    let mut changed = false;
    let annotations = new_rs
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || annotations.get(k).map_or("", String::as_str) == v {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }

    let old_revision = annotations.get(REVISION_ANNOTATION).cloned();
    let old_revision_int = match old_revision.as_deref().unwrap_or("").parse::<i64>() {
        Ok(v) => v,
        Err(_) if old_revision.as_deref().unwrap_or("").is_empty() => 0,
        // Kubernetes gives up on a garbled revision rather than overwrite it.
        Err(_) => return false,
    };
    let Ok(new_revision_int) = new_revision.parse::<i64>() else {
        return false;
    };
    // Only ever move a revision up: old ReplicaSets may have been deleted since it was set.
    if old_revision_int < new_revision_int {
        annotations.insert(REVISION_ANNOTATION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old_revision {
            append_revision_history(annotations, &old, rev_history_limit_in_chars);
        }
    }

    if !exists {
        let desired = deployment_replicas(d);
        changed |= set_replicas_annotations(new_rs, desired, desired + max_surge(d));
    }
    changed
}

fn append_revision_history(annotations: &mut BTreeMap<String, String>, old: &str, limit: usize) {
    let history = annotations
        .get(REVISION_HISTORY_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let entries: Vec<&str> = history.split(',').collect();
    if entries[0].is_empty() {
        annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), old.to_string());
        return;
    }
    let mut total = history.len() + old.len() + 1;
    let mut start = 0;
    while total > limit && start < entries.len() {
        total -= entries[start].len() + 1;
        start += 1;
    }
    if total <= limit {
        let mut kept = entries[start..].to_vec();
        kept.push(old);
        annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), kept.join(","));
    }
}

/// Records `desired` and `max` in the replica annotations; returns whether either changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired),
        (MAX_REPLICAS_ANNOTATION, max),
    ] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Whether [`set_replicas_annotations`] would change anything.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let Some(annotations) = rs.metadata.annotations.as_ref() else {
        return true;
    };
    annotations.get(DESIRED_REPLICAS_ANNOTATION) != Some(&desired.to_string())
        || annotations.get(MAX_REPLICAS_ANNOTATION) != Some(&max.to_string())
}

/// Sets the Deployment's own revision annotation; returns whether it changed. The controller writes
/// it with an UpdateStatus call, so the status subresource must accept annotation changes on
/// Deployments, as Kubernetes' does.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let annotations = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
        return false;
    }
    annotations.insert(REVISION_ANNOTATION.to_string(), revision.to_string());
    true
}

pub(crate) fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name_of(owner).to_string(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn controller_uid(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

fn with_label(
    labels: Option<&BTreeMap<String, String>>,
    key: &str,
    value: &str,
) -> BTreeMap<String, String> {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.insert(key.to_string(), value.to_string());
    labels
}

/// The ReplicaSet a Deployment creates for its current template: named `<deployment>-<hash>`, the
/// hash label on its labels, selector and template, owned by the Deployment, sized by
/// [`new_rs_new_replicas`] and annotated with `new_revision`.
pub fn new_replica_set(
    d: &Deployment,
    old_rss: &[&ReplicaSet],
    new_revision: &str,
) -> Result<ReplicaSet, RolloutError> {
    let spec = d.spec.clone().unwrap_or_default();
    let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&spec.template, collision_count);

    let mut template = spec.template.clone();
    let template_meta = template.metadata.get_or_insert_with(Default::default);
    let labels = with_label(
        template_meta.labels.as_ref(),
        DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY,
        &hash,
    );
    template_meta.labels = Some(labels.clone());
    let selector = LabelSelector {
        match_labels: Some(with_label(
            spec.selector.match_labels.as_ref(),
            DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY,
            &hash,
        )),
        match_expressions: spec.selector.match_expressions.clone(),
    };

    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", name_of(&d.metadata))),
            namespace: d.metadata.namespace.clone(),
            owner_references: Some(vec![controller_ref("apps/v1", "Deployment", &d.metadata)]),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    let mut all: Vec<&ReplicaSet> = old_rss.to_vec();
    let snapshot = rs.clone();
    all.push(&snapshot);
    let replicas = new_rs_new_replicas(d, &all, &snapshot)?;
    if let Some(s) = rs.spec.as_mut() {
        s.replicas = Some(replicas);
    }
    set_new_replica_set_annotations(
        d,
        &mut rs,
        new_revision,
        false,
        MAX_REV_HISTORY_LENGTH_IN_CHARS,
    );
    Ok(rs)
}

/// For an existing new ReplicaSet: the updated copy to write when its annotations or
/// `minReadySeconds` lag behind the Deployment, `None` when it is current.
pub fn sync_new_replica_set(
    d: &Deployment,
    rs: &ReplicaSet,
    new_revision: &str,
) -> Option<ReplicaSet> {
    let mut copy = rs.clone();
    let annotations_updated = set_new_replica_set_annotations(
        d,
        &mut copy,
        new_revision,
        true,
        MAX_REV_HISTORY_LENGTH_IN_CHARS,
    );
    let rs_min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    if !annotations_updated && rs_min_ready == min_ready_seconds(d) {
        return None;
    }
    let d_min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
    copy.spec
        .get_or_insert_with(Default::default)
        .min_ready_seconds = d_min_ready;
    Some(copy)
}

/// After finding a current new ReplicaSet: copies its revision to the Deployment and, when
/// progress is tracked but no Progressing condition exists yet, adds `FoundNewReplicaSet`.
/// Returns whether the Deployment needs an UpdateStatus.
pub fn note_found_new_replica_set(d: &mut Deployment, rs: &ReplicaSet, now: Timestamp) -> bool {
    let revision = annotation(&rs.metadata, REVISION_ANNOTATION)
        .unwrap_or("")
        .to_string();
    let mut needs_update = set_deployment_revision(d, &revision);
    let tracks_progress = has_progress_deadline(d);
    let status = d.status.get_or_insert_with(Default::default);
    if tracks_progress && get_deployment_condition(status, DEPLOYMENT_PROGRESSING).is_none() {
        let msg = format!("Found new replica set {:?}", name_of(&rs.metadata));
        let cond = new_deployment_condition(
            DEPLOYMENT_PROGRESSING,
            "True",
            FOUND_NEW_RS_REASON,
            &msg,
            now,
        );
        set_deployment_condition(status, cond);
        needs_update = true;
    }
    needs_update
}

/// After creating the new ReplicaSet (or finding it already created by an earlier sync,
/// `already_existed`): sets the Deployment's revision and, for a real creation with progress
/// tracking, the `NewReplicaSetCreated` condition. Returns whether an UpdateStatus is needed.
pub fn note_created_replica_set(
    d: &mut Deployment,
    rs_name: &str,
    new_revision: &str,
    already_existed: bool,
    now: Timestamp,
) -> bool {
    let mut needs_update = set_deployment_revision(d, new_revision);
    if !already_existed && has_progress_deadline(d) {
        let msg = format!("Created new replica set {rs_name:?}");
        let cond = new_deployment_condition(
            DEPLOYMENT_PROGRESSING,
            "True",
            NEW_REPLICA_SET_REASON,
            &msg,
            now,
        );
        set_deployment_condition(d.status.get_or_insert_with(Default::default), cond);
        needs_update = true;
    }
    needs_update
}

/// Creating the new ReplicaSet failed: returns the Warning event message (reason
/// [`FAILED_RS_CREATE_REASON`]) and, when progress is tracked, records it as a failed Progressing
/// condition, which the caller then writes with UpdateStatus.
pub fn note_replica_set_create_failure(
    d: &mut Deployment,
    rs_name: &str,
    error: &str,
    now: Timestamp,
) -> String {
    let msg = format!("Failed to create new replica set {rs_name:?}: {error}");
    if has_progress_deadline(d) {
        let cond = new_deployment_condition(
            DEPLOYMENT_PROGRESSING,
            "False",
            FAILED_RS_CREATE_REASON,
            &msg,
            now,
        );
        set_deployment_condition(d.status.get_or_insert_with(Default::default), cond);
    }
    msg
}

/// A create of `<deployment>-<hash>` answered AlreadyExists with `existing`: it is this
/// Deployment's new ReplicaSet only if the Deployment controls it and the templates match;
/// otherwise the hash collided and the caller bumps `status.collisionCount` and requeues.
pub fn is_hash_collision(d: &Deployment, existing: &ReplicaSet) -> bool {
    let owned = controller_uid(&existing.metadata)
        .is_some_and(|uid| Some(uid) == d.metadata.uid.as_deref());
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    !(owned && equal_ignore_hash(&template, &template_of(existing)))
}

// ---------------------------------------------------------------------------------------------
// Rolling-update arithmetic

/// An int-or-percent resolved against `total`: percentages round up or down as asked, the way
/// `intstr.GetScaledValueFromIntOrPercent` does.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, RolloutError> {
    let s = match value {
        IntOrString::Int(i) => return Ok(*i),
        IntOrString::String(s) => s,
    };
    let Some(digits) = s.strip_suffix('%') else {
        return Err(RolloutError::IntOrPercent(
            "invalid type: string is not a percentage".into(),
        ));
    };
    let percent: i64 = digits.parse().map_err(|e: std::num::ParseIntError| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        RolloutError::IntOrPercent(format!(
            "invalid value {s:?}: strconv.Atoi: parsing {digits:?}: {why}"
        ))
    })?;
    let product = percent.saturating_mul(i64::from(total));
    let scaled = if round_up {
        -(-product).div_euclid(100)
    } else {
        product.div_euclid(100)
    };
    Ok(scaled.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
}

/// `maxSurge` and `maxUnavailable` as pod counts for `desired` replicas: surge rounds up,
/// unavailable rounds down, and when both come out zero unavailable becomes 1 (validation forbids
/// both being zero, but rounding down can get there).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), RolloutError> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// How many pods a rolling update may run above `spec.replicas` (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    let (surge, unavailable) = rolling_parameters(d);
    resolve_fenceposts(Some(&surge), Some(&unavailable), deployment_replicas(d))
        .map_or(0, |(s, _)| s)
}

/// How many pods a rolling update may take below `spec.replicas`, at most `spec.replicas`
/// (0 for Recreate).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = deployment_replicas(d);
    if !is_rolling_update(d) || replicas == 0 {
        return 0;
    }
    let (surge, unavailable) = rolling_parameters(d);
    let unavailable =
        resolve_fenceposts(Some(&surge), Some(&unavailable), replicas).map_or(0, |(_, u)| u);
    unavailable.min(replicas)
}

/// Sum of `spec.replicas`.
pub fn replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_replicas(rs)).sum()
}

/// Sum of `status.replicas`.
pub fn actual_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_status_replicas(rs)).sum()
}

/// Sum of `status.readyReplicas`.
pub fn ready_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_ready(rs)).sum()
}

/// Sum of `status.availableReplicas`.
pub fn available_replica_count(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|rs| rs_available(rs)).sum()
}

/// The ReplicaSets with `spec.replicas > 0`.
pub fn filter_active_replica_sets<'a>(rss: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    rss.iter()
        .copied()
        .filter(|rs| rs_replicas(rs) > 0)
        .collect()
}

/// The size the new ReplicaSet may grow to now: up to `replicas + maxSurge` pods in total for a
/// rolling update, straight to `replicas` for Recreate.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all_rss: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, RolloutError> {
    let replicas = deployment_replicas(d);
    match strategy_type(d) {
        "RollingUpdate" => {
            let (surge, _) = rolling_parameters(d);
            let surge = scaled_value(&surge, replicas, true)?;
            let current = replica_count(all_rss);
            let max_total = replicas + surge;
            let new_replicas = rs_replicas(new_rs);
            if current >= max_total {
                return Ok(new_replicas);
            }
            let scale_up = (max_total - current).min(replicas - new_replicas);
            Ok(new_replicas + scale_up)
        }
        "Recreate" => Ok(replicas),
        other => Err(RolloutError::UnsupportedStrategy(other.to_string())),
    }
}

/// The new ReplicaSet is fully scaled for the current `spec.replicas` and all of it available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    let Some(desired) = int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) else {
        return false;
    };
    let replicas = deployment_replicas(d);
    rs_replicas(rs) == replicas && desired == replicas && rs_available(rs) == replicas
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?
        .parse::<i64>()
        .ok()
        .map(|v| v as i32)
}

/// The only active ReplicaSet, or the newest one when none is active; `None` when several are
/// active (they must be scaled proportionally).
pub fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old_rss: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old_rss.is_empty() {
        return None;
    }
    let mut newest_first = old_rss.to_vec();
    newest_first.sort_by(|a, b| by_creation_timestamp(b, a));
    let mut all = newest_first.clone();
    all.extend(new_rs);
    let active = filter_active_replica_sets(&all);
    match active.len() {
        0 => new_rs.or_else(|| newest_first.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// Whether `spec.replicas` changed since the active ReplicaSets were last scaled (their
/// desired-replicas annotation disagrees): such a sync only scales, it does not roll.
pub fn is_scaling_event(d: &Deployment, all_rss: &[&ReplicaSet]) -> bool {
    let replicas = deployment_replicas(d);
    filter_active_replica_sets(all_rss)
        .iter()
        .filter_map(|rs| int_annotation(rs, DESIRED_REPLICAS_ANNOTATION))
        .any(|desired| desired != replicas)
}

/// The Deployment controller's `scale()`: resizes the ReplicaSets after `spec.replicas` changed.
/// A lone active (or the latest) ReplicaSet takes the full count; a saturated new ReplicaSet
/// scales the old ones to zero; otherwise, during a rolling update, the difference to
/// `replicas + maxSurge` is shared proportionally to the ReplicaSets' sizes (the largest, newest
/// first when growing, the largest, oldest first when shrinking), the rounding leftover going to
/// the first. Steps are in application order and may repeat a ReplicaSet's current size, in which
/// case only its annotations may need writing.
pub fn scale_plan(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old_rss: &[&ReplicaSet],
) -> Vec<ScaleStep> {
    let replicas = deployment_replicas(d);
    if let Some(rs) = find_active_or_latest(new_rs, old_rss) {
        if rs_replicas(rs) == replicas {
            return Vec::new();
        }
        return vec![step(rs, replicas)];
    }
    if is_saturated(d, new_rs) {
        return filter_active_replica_sets(old_rss)
            .into_iter()
            .map(|rs| step(rs, 0))
            .collect();
    }
    if !is_rolling_update(d) {
        return Vec::new();
    }

    let mut all: Vec<&ReplicaSet> = old_rss.to_vec();
    all.extend(new_rs);
    let mut active = filter_active_replica_sets(&all);
    let allowed = if replicas > 0 {
        replicas + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - replica_count(&active);
    match to_add.cmp(&0) {
        // Larger first; among equals, newer first when growing and older first when shrinking.
        Ordering::Greater => active.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| by_creation_timestamp(b, a))
        }),
        Ordering::Less => active.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| by_creation_timestamp(a, b))
        }),
        Ordering::Equal => {}
    }

    let mut added = 0;
    let mut sizes: Vec<i32> = active
        .iter()
        .map(|rs| {
            if to_add == 0 {
                return rs_replicas(rs);
            }
            let proportion = get_replica_set_proportion(Some(rs), d, to_add, added);
            added += proportion;
            rs_replicas(rs) + proportion
        })
        .collect();
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
    }
    active
        .iter()
        .zip(sizes)
        .map(|(rs, size)| step(rs, size))
        .collect()
}

fn step(rs: &ReplicaSet, replicas: i32) -> ScaleStep {
    ScaleStep {
        name: name_of(&rs.metadata).to_string(),
        replicas,
    }
}

/// How many of `to_add` (negative when scaling down) replicas this ReplicaSet takes, given that
/// `added` were already handed out; never more than what is left.
pub fn get_replica_set_proportion(
    rs: Option<&ReplicaSet>,
    d: &Deployment,
    to_add: i32,
    added: i32,
) -> i32 {
    let Some(rs) = rs else {
        return 0;
    };
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = get_replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The replicas this ReplicaSet gains (or loses) when the Deployment's `replicas + maxSurge` moves
/// from the value in its max-replicas annotation to the current one; scaling to zero takes it all.
pub fn get_replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let replicas = deployment_replicas(d);
    let current = rs_replicas(rs);
    if replicas == 0 {
        return -current;
    }
    let max_now = replicas + max_surge(d);
    let mut max_before = int_annotation(rs, MAX_REPLICAS_ANNOTATION).unwrap_or(0);
    if max_before == 0 {
        // Tampered or missing annotation: the Deployment's current size is the best estimate,
        // and the min/max in get_replica_set_proportion keep the result within bounds.
        max_before = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if max_before == 0 {
            return 0;
        }
    }
    let new_size = (i64::from(current) * i64::from(max_now)) as f64 / f64::from(max_before);
    new_size.round() as i32 - current
}

/// The ReplicaSet update that puts it at `new_scale` with replica annotations for the current
/// Deployment (Kubernetes' `scaleReplicaSet`), or `None` when nothing would change. When the size
/// changes the caller also records a Normal [`SCALING_REPLICA_SET_REASON`] event with
/// [`scaling_event_message`].
pub fn scaled_replica_set(d: &Deployment, rs: &ReplicaSet, new_scale: i32) -> Option<ReplicaSet> {
    let desired = deployment_replicas(d);
    let max = desired + max_surge(d);
    if rs_replicas(rs) == new_scale && !replicas_annotations_need_update(rs, desired, max) {
        return None;
    }
    let mut copy = rs.clone();
    copy.spec.get_or_insert_with(Default::default).replicas = Some(new_scale);
    set_replicas_annotations(&mut copy, desired, max);
    Some(copy)
}

/// `Scaled up replica set web-5d4f8b7c9 from 1 to 3`.
pub fn scaling_event_message(rs_name: &str, old: i32, new: i32) -> String {
    let direction = if old < new { "up" } else { "down" };
    format!("Scaled {direction} replica set {rs_name} from {old} to {new}")
}

/// The rolling update's scale-up step: the new ReplicaSet's next size, or `None` when it stays.
pub fn reconcile_new_replica_set(
    d: &Deployment,
    all_rss: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<Option<i32>, RolloutError> {
    let replicas = deployment_replicas(d);
    let current = rs_replicas(new_rs);
    let target = match current.cmp(&replicas) {
        Ordering::Equal => return Ok(None),
        Ordering::Greater => replicas,
        Ordering::Less => new_rs_new_replicas(d, all_rss, new_rs)?,
    };
    Ok((target != current).then_some(target))
}

/// A ReplicaSet with the size an earlier step of the same plan gave it.
#[derive(Clone, Copy)]
struct Sized<'a> {
    rs: &'a ReplicaSet,
    replicas: i32,
}

impl<'a> Sized<'a> {
    fn of(rs: &'a ReplicaSet) -> Self {
        Sized {
            rs,
            replicas: rs_replicas(rs),
        }
    }
}

/// The rolling update's scale-down step (`reconcileOldReplicaSets`): first removes unhealthy
/// (unavailable) replicas of the old ReplicaSets, oldest first, as far as availability allows,
/// then scales old ReplicaSets down further while more than `replicas - maxUnavailable` pods stay
/// available. `old_rss` are the active old ReplicaSets, `all_rss` all of them plus the new one.
pub fn reconcile_old_replica_sets(
    d: &Deployment,
    all_rss: &[&ReplicaSet],
    old_rss: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Vec<ScaleStep> {
    if replica_count(old_rss) == 0 {
        return Vec::new();
    }
    let min_available = deployment_replicas(d) - max_unavailable(d);
    let new_rs_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
    // Besides maxUnavailable and any surge, count the new ReplicaSet's unavailable pods, so that
    // scaling down old ones never makes availability worse than it already is.
    let max_scaled_down = replica_count(all_rss) - min_available - new_rs_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut olds: Vec<Sized> = old_rss.iter().map(|rs| Sized::of(rs)).collect();
    let (mut steps, completed) = cleanup_unhealthy(&mut olds, max_scaled_down);
    if !completed {
        return steps;
    }
    let mut all = olds.clone();
    all.push(Sized::of(new_rs));
    steps.extend(scale_down_for_rolling_update(d, &all, &mut olds));
    steps
}

/// Scales old ReplicaSets down by their unavailable replicas, oldest first, removing at most
/// `max_cleanup_count` pods; the ReplicaSet controller deletes not-ready pods first, so this does
/// not reduce availability.
pub fn cleanup_unhealthy_replicas(
    old_rss: &[&ReplicaSet],
    max_cleanup_count: i32,
) -> Vec<ScaleStep> {
    let mut olds: Vec<Sized> = old_rss.iter().map(|rs| Sized::of(rs)).collect();
    cleanup_unhealthy(&mut olds, max_cleanup_count).0
}

/// The steps, and false when Kubernetes would have stopped with an error: a ReplicaSet reporting
/// more available pods than it has replicas (mid scale-down) would have to grow.
fn cleanup_unhealthy(olds: &mut [Sized], max_cleanup_count: i32) -> (Vec<ScaleStep>, bool) {
    olds.sort_by(|a, b| by_creation_timestamp(a.rs, b.rs));
    let mut total = 0;
    let mut steps = Vec::new();
    for old in olds.iter_mut() {
        if total >= max_cleanup_count {
            break;
        }
        let available = rs_available(old.rs);
        if old.replicas == 0 || old.replicas == available {
            continue;
        }
        let count = (max_cleanup_count - total).min(old.replicas - available);
        if count < 0 {
            return (steps, false);
        }
        old.replicas -= count;
        total += count;
        steps.push(step(old.rs, old.replicas));
    }
    (steps, true)
}

/// Scales old ReplicaSets down, oldest first, by as many pods as are available beyond
/// `replicas - maxUnavailable` across `all_rss`.
pub fn scale_down_old_replica_sets_for_rolling_update(
    d: &Deployment,
    all_rss: &[&ReplicaSet],
    old_rss: &[&ReplicaSet],
) -> Vec<ScaleStep> {
    let all: Vec<Sized> = all_rss.iter().map(|rs| Sized::of(rs)).collect();
    let mut olds: Vec<Sized> = old_rss.iter().map(|rs| Sized::of(rs)).collect();
    scale_down_for_rolling_update(d, &all, &mut olds)
}

fn scale_down_for_rolling_update(
    d: &Deployment,
    all: &[Sized],
    olds: &mut [Sized],
) -> Vec<ScaleStep> {
    let min_available = deployment_replicas(d) - max_unavailable(d);
    let available: i32 = all.iter().map(|s| rs_available(s.rs)).sum();
    if available <= min_available {
        return Vec::new();
    }
    olds.sort_by(|a, b| by_creation_timestamp(a.rs, b.rs));
    let to_scale_down = available - min_available;
    let mut total = 0;
    let mut steps = Vec::new();
    for old in olds.iter_mut() {
        if total >= to_scale_down {
            break;
        }
        if old.replicas == 0 {
            continue;
        }
        let count = old.replicas.min(to_scale_down - total);
        old.replicas -= count;
        total += count;
        steps.push(step(old.rs, old.replicas));
    }
    steps
}

/// Recreate's first step: every active old ReplicaSet to zero.
pub fn scale_down_old_replica_sets_for_recreate(old_rss: &[&ReplicaSet]) -> Vec<ScaleStep> {
    old_rss
        .iter()
        .filter(|rs| rs_replicas(rs) != 0)
        .map(|rs| step(rs, 0))
        .collect()
}

/// Recreate waits while an old ReplicaSet reports pods or a pod controlled by one is not in a
/// terminal phase (`Unknown` counts as running). `pods` are the Deployment's pods.
pub fn old_pods_running(
    new_rs: Option<&ReplicaSet>,
    old_rss: &[&ReplicaSet],
    pods: &[&Pod],
) -> bool {
    if actual_replica_count(old_rss) > 0 {
        return true;
    }
    let old_uids: Vec<&str> = old_rss
        .iter()
        .filter(|rs| new_rs.is_none_or(|n| n.metadata.uid != rs.metadata.uid))
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|pod| {
        let owned_by_old = controller_uid(&pod.metadata).is_some_and(|uid| old_uids.contains(&uid));
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        owned_by_old && !matches!(phase, "Failed" | "Succeeded")
    })
}

// ---------------------------------------------------------------------------------------------
// Conditions and status

/// A condition with both timestamps at `now`.
pub fn new_deployment_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_update_time: Some(stamp(now)),
        last_transition_time: Some(stamp(now)),
    }
}

pub fn get_deployment_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    conditions_of(status).iter().find(|c| c.type_ == type_)
}

/// Adds or replaces the condition of its type. A condition with the same status and reason is
/// left alone entirely; with the same status but another reason, the old transition time stays.
/// The replaced condition moves to the end, as in Kubernetes.
pub fn set_deployment_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_deployment_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_deployment_condition(status, &condition.type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

pub fn remove_deployment_condition(status: &mut DeploymentStatus, type_: &str) {
    let kept: Vec<DeploymentCondition> = conditions_of(status)
        .iter()
        .filter(|c| c.type_ != type_)
        .cloned()
        .collect();
    status.conditions = (!kept.is_empty()).then_some(kept);
}

/// A ReplicaSet's ReplicaFailure promoted to the Deployment.
pub fn replica_set_to_deployment_condition(c: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: c.last_transition_time.clone(),
        last_update_time: c.last_transition_time.clone(),
    }
}

/// The Deployment's status from its ReplicaSets (`calculateStatus`): counts, observed generation,
/// the collision count and conditions carried over, and the Available condition.
pub fn calculate_status(
    all_rss: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replica_count(all_rss);
    let unavailable = (replica_count(all_rss) - available).max(0);
    let current = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation.filter(|&g| g != 0),
        replicas: non_zero(actual_replica_count(all_rss)),
        updated_replicas: non_zero(new_rs.map_or(0, rs_status_replicas)),
        ready_replicas: non_zero(ready_replica_count(all_rss)),
        available_replicas: non_zero(available),
        unavailable_replicas: non_zero(unavailable),
        terminating_replicas: None,
        collision_count: current.collision_count,
        conditions: current.conditions.filter(|c| !c.is_empty()),
    };
    let condition = if available >= deployment_replicas(d) - max_unavailable(d) {
        new_deployment_condition(
            DEPLOYMENT_AVAILABLE,
            "True",
            MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.",
            now,
        )
    } else {
        new_deployment_condition(
            DEPLOYMENT_AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_deployment_condition(&mut status, condition);
    status
}

/// All replicas updated, running and available, and the latest spec observed.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = deployment_replicas(d);
    let s = status_counts(Some(status));
    s.updated == replicas
        && s.replicas == replicas
        && s.available == replicas
        && s.observed_generation >= d.metadata.generation.unwrap_or(0)
}

/// Whether `new_status` shows progress over the Deployment's current status: more updated, ready
/// or available replicas, or fewer old ones.
pub fn deployment_progressing(d: &Deployment, new_status: &DeploymentStatus) -> bool {
    let old = status_counts(d.status.as_ref());
    let new = status_counts(Some(new_status));
    new.updated > old.updated
        || new.replicas - new.updated < old.replicas - old.updated
        || new.ready > old.ready
        || new.available > old.available
}

/// Whether the Progressing condition in `status` is older than `progressDeadlineSeconds` (an
/// already timed-out condition stays timed out; a completed rollout never times out).
pub fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline_seconds(d) else {
        return false;
    };
    let Some(condition) = get_deployment_condition(status, DEPLOYMENT_PROGRESSING) else {
        return false;
    };
    match condition.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => return false,
        Some(TIMED_OUT_REASON) => return true,
        _ => {}
    }
    // A missing timestamp is Go's zero time, long past any deadline.
    condition.last_update_time.as_ref().is_none_or(|from| {
        from.0
            .saturating_add(SignedDuration::from_secs(i64::from(deadline)))
            .is_ok_and(|end| end < now)
    })
}

/// The status a rolling or recreate sync writes (`syncRolloutStatus`): [`calculate_status`] plus
/// the Progressing condition (complete, progressing, or timed out) and ReplicaFailure promoted
/// from the ReplicaSets, the new one's first. Compare with the current status to skip no-op
/// writes, and use [`progress_requeue`] when nothing changed.
pub fn sync_rollout_status(
    d: &Deployment,
    all_rss: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(all_rss, new_rs, d, now);
    if !has_progress_deadline(d) {
        remove_deployment_condition(&mut status, DEPLOYMENT_PROGRESSING);
    }

    let current_status = d.status.clone().unwrap_or_default();
    let current = get_deployment_condition(&current_status, DEPLOYMENT_PROGRESSING);
    let s = status_counts(Some(&status));
    // A finished rollout being resynced: nothing to estimate.
    let is_complete = s.replicas == s.updated
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
    if has_progress_deadline(d) && !is_complete {
        let subject = |what: &str| match new_rs {
            Some(rs) => format!("ReplicaSet {:?} {what}", name_of(&rs.metadata)),
            None => format!("Deployment {:?} {what}", name_of(&d.metadata)),
        };
        if deployment_complete(d, &status) {
            let msg = subject("has successfully progressed.");
            let cond = new_deployment_condition(
                DEPLOYMENT_PROGRESSING,
                "True",
                NEW_RS_AVAILABLE_REASON,
                &msg,
                now,
            );
            set_deployment_condition(&mut status, cond);
        } else if deployment_progressing(d, &status) {
            let msg = subject("is progressing.");
            let mut cond = new_deployment_condition(
                DEPLOYMENT_PROGRESSING,
                "True",
                REPLICA_SET_UPDATED_REASON,
                &msg,
                now,
            );
            // Progress refreshes lastUpdateTime even under the same reason, which
            // set_deployment_condition would not do; the transition time survives a True status.
            if let Some(current) = current {
                if current.status == "True" {
                    cond.last_transition_time = current.last_transition_time.clone();
                }
                remove_deployment_condition(&mut status, DEPLOYMENT_PROGRESSING);
            }
            set_deployment_condition(&mut status, cond);
        } else if deployment_timed_out(d, &status, now) {
            let msg = subject("has timed out progressing.");
            let cond = new_deployment_condition(
                DEPLOYMENT_PROGRESSING,
                "False",
                TIMED_OUT_REASON,
                &msg,
                now,
            );
            set_deployment_condition(&mut status, cond);
        }
    }

    match replica_failure(all_rss, new_rs) {
        Some(cond) => set_deployment_condition(&mut status, cond),
        None => remove_deployment_condition(&mut status, DEPLOYMENT_REPLICA_FAILURE),
    }
    status
}

fn replica_failure(
    all_rss: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == REPLICA_SET_REPLICA_FAILURE))
            .map(replica_set_to_deployment_condition)
    };
    new_rs
        .and_then(failure)
        .or_else(|| all_rss.iter().find_map(|rs| failure(rs)))
}

/// When to look at a Deployment again to notice a missed progress deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressRequeue {
    /// No deadline, no Progressing condition, or the rollout is complete or already timed out.
    Never,
    /// The deadline is (nearly) due: requeue now, rate limited.
    Now,
    /// Requeue after this long (one second of slack included, as Kubernetes adds).
    After(SignedDuration),
}

/// Kubernetes' `requeueStuckDeployment`, for a sync whose status did not change.
pub fn progress_requeue(
    d: &Deployment,
    new_status: &DeploymentStatus,
    now: Timestamp,
) -> ProgressRequeue {
    let current_status = d.status.clone().unwrap_or_default();
    let (Some(deadline), Some(current)) = (
        progress_deadline_seconds(d),
        get_deployment_condition(&current_status, DEPLOYMENT_PROGRESSING),
    ) else {
        return ProgressRequeue::Never;
    };
    if deployment_complete(d, new_status) || current.reason.as_deref() == Some(TIMED_OUT_REASON) {
        return ProgressRequeue::Never;
    }
    let from = current
        .last_update_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::MIN);
    let after = from.duration_since(now) + SignedDuration::from_secs(i64::from(deadline));
    if after < SignedDuration::from_secs(1) {
        return ProgressRequeue::Now;
    }
    ProgressRequeue::After(after + SignedDuration::from_secs(1))
}

/// Keeps a paused Deployment from being reported as stuck: adds `DeploymentPaused` (Unknown) when
/// it is paused and `DeploymentResumed` when it is resumed, unless it already timed out. Returns
/// the status to write, `None` when nothing changes.
pub fn check_paused_conditions(d: &Deployment, now: Timestamp) -> Option<DeploymentStatus> {
    if !has_progress_deadline(d) {
        return None;
    }
    let mut status = d.status.clone().unwrap_or_default();
    let reason =
        get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).and_then(|c| c.reason.clone());
    if reason.as_deref() == Some(TIMED_OUT_REASON) {
        return None;
    }
    let paused_condition = reason.as_deref() == Some(PAUSED_DEPLOY_REASON);
    let condition = match (is_paused(d), paused_condition) {
        (true, false) => new_deployment_condition(
            DEPLOYMENT_PROGRESSING,
            "Unknown",
            PAUSED_DEPLOY_REASON,
            "Deployment is paused",
            now,
        ),
        (false, true) => new_deployment_condition(
            DEPLOYMENT_PROGRESSING,
            "Unknown",
            RESUMED_DEPLOY_REASON,
            "Deployment is resumed",
            now,
        ),
        _ => return None,
    };
    set_deployment_condition(&mut status, condition);
    Some(status)
}

// ---------------------------------------------------------------------------------------------
// History

/// The old ReplicaSets to delete beyond `revisionHistoryLimit`, lowest revision first; only those
/// fully scaled down (spec and status), observed at their latest generation, and not already being
/// deleted.
pub fn replica_sets_to_clean_up<'a>(
    d: &Deployment,
    old_rss: &[&'a ReplicaSet],
) -> Vec<&'a ReplicaSet> {
    let Some(limit) = revision_history_limit(d) else {
        return Vec::new();
    };
    let mut cleanable: Vec<&ReplicaSet> = old_rss
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = cleanable.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    stable_sort_by_less(&mut cleanable, &|a: &&ReplicaSet, b: &&ReplicaSet| match (
        revision_of(*a),
        revision_of(*b),
    ) {
        (Ok(ra), Ok(rb)) if ra != rb => ra < rb,
        _ => by_creation_timestamp(a, b) == Ordering::Less,
    });
    cleanable
        .into_iter()
        .take(diff as usize)
        .filter(|rs| {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            rs_status_replicas(rs) == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ReplicaSet controller

/// The pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Ready for longer than `min_ready_seconds` (strictly), or simply ready when that is 0.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_pod_ready(pod) {
        return false;
    }
    if min_ready_seconds == 0 {
        return true;
    }
    ready_condition(pod)
        .and_then(|c| c.last_transition_time.as_ref())
        .and_then(|t| {
            t.0.checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
                .ok()
        })
        .is_some_and(|ready_until| ready_until < now)
}

/// Not terminal (Succeeded/Failed) and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

pub fn filter_active_pods<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    pods.iter().copied().filter(|p| is_pod_active(p)).collect()
}

/// What one ReplicaSet sync does about its pod count, capped at [`BURST_REPLICAS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaDiff {
    Create(usize),
    Delete(usize),
    None,
}

/// Compares `spec.replicas` with the number of active pods the ReplicaSet owns.
pub fn replicas_diff(rs: &ReplicaSet, active_pods: usize) -> ReplicaDiff {
    let desired = usize::try_from(rs_replicas(rs)).unwrap_or(0);
    match active_pods.cmp(&desired) {
        Ordering::Less => ReplicaDiff::Create((desired - active_pods).min(BURST_REPLICAS)),
        Ordering::Greater => ReplicaDiff::Delete((active_pods - desired).min(BURST_REPLICAS)),
        Ordering::Equal => ReplicaDiff::None,
    }
}

/// Batch sizes for creating `count` pods: `initial`, then doubling (1, 2, 4, … with the rest
/// last), so a failing create stops after one small batch. The caller stops at the first batch
/// with an error and skips the remaining pods.
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = remaining.min(initial);
    while size > 0 {
        batches.push(size);
        remaining -= size;
        size = (2 * size).min(remaining);
    }
    batches
}

/// A pod for the ReplicaSet: its template's labels, annotations, finalizers and spec, generated
/// name `<rs>-`, and the ReplicaSet as controller.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = template_of(rs);
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", name_of(&rs.metadata))),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "ReplicaSet", &rs.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// The ReplicaSet's status from the active pods it owns (`calculateStatus` plus the observed
/// generation): replicas, fully labeled (all template labels present), ready and available
/// counts, and the ReplicaFailure condition, set from `manage_replicas_error` (the last
/// create/delete error) if absent and removed once syncing succeeds.
pub fn calculate_replica_set_status(
    rs: &ReplicaSet,
    filtered_pods: &[&Pod],
    manage_replicas_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = template_of(rs)
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for pod in filtered_pods {
        let labels = pod.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            fully_labeled += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }

    let has_failure = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == REPLICA_SET_REPLICA_FAILURE);
    match manage_replicas_error {
        Some(error) if !has_failure => {
            let reason = match (filtered_pods.len() as i64).cmp(&i64::from(rs_replicas(rs))) {
                Ordering::Less => FAILED_CREATE_POD_REASON,
                Ordering::Greater => FAILED_DELETE_POD_REASON,
                Ordering::Equal => "",
            };
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(ReplicaSetCondition {
                    type_: REPLICA_SET_REPLICA_FAILURE.to_string(),
                    status: "True".to_string(),
                    reason: Some(reason.to_string()),
                    message: Some(error.to_string()),
                    last_transition_time: Some(stamp(now)),
                });
        }
        None if has_failure => {
            let kept: Vec<ReplicaSetCondition> = status
                .conditions
                .take()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.type_ != REPLICA_SET_REPLICA_FAILURE)
                .collect();
            status.conditions = (!kept.is_empty()).then_some(kept);
        }
        _ => {}
    }

    status.replicas = filtered_pods.len() as i32;
    status.fully_labeled_replicas = non_zero(fully_labeled);
    status.ready_replicas = non_zero(ready);
    status.available_replicas = non_zero(available);
    status.terminating_replicas = None;
    status.observed_generation = rs.metadata.generation.filter(|&g| g != 0);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn deployment(replicas: i32, max_surge: Value, max_unavailable: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}},
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}
            }
        }))
        .unwrap()
    }

    /// A ReplicaSet annotated as last scaled by a Deployment of `prior_desired` replicas with
    /// `prior_surge`, as the Kubernetes scale tests set them up.
    fn rs(
        name: &str,
        replicas: i32,
        created: &str,
        prior_desired: i32,
        prior_surge: i32,
    ) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "default", "uid": format!("{name}-uid"), "creationTimestamp": created,
                "annotations": {
                    DESIRED_REPLICAS_ANNOTATION: prior_desired.to_string(),
                    MAX_REPLICAS_ANNOTATION: (prior_desired + prior_surge).to_string()
                }
            },
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas}
        }))
        .unwrap()
    }

    fn with_available(mut rs: ReplicaSet, available: i32) -> ReplicaSet {
        rs.status.as_mut().unwrap().available_replicas = Some(available);
        rs
    }

    fn sizes(steps: &[ScaleStep]) -> Vec<(&str, i32)> {
        steps
            .iter()
            .map(|s| (s.name.as_str(), s.replicas))
            .collect()
    }

    const OLDER: &str = "2024-01-01T00:00:00Z";
    const OLD: &str = "2024-01-02T00:00:00Z";
    const NEW: &str = "2024-01-03T00:00:00Z";

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.to_string());
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("50%")), Some(&pct("50%")), 5),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 1),
            Ok((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&IntOrString::Int(0)), 3),
            Ok((2, 0))
        );
        // Both zero after rounding: one pod may be unavailable.
        assert_eq!(
            resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&pct("10%")), 5),
            Ok((0, 1))
        );
        assert_eq!(resolve_fenceposts(None, None, 5), Ok((0, 1)));
        assert_eq!(
            resolve_fenceposts(Some(&pct("abc")), None, 5)
                .unwrap_err()
                .to_string(),
            "invalid value for IntOrString: invalid type: string is not a percentage"
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("x%")), None, 5).unwrap_err().to_string(),
            "invalid value for IntOrString: invalid value \"x%\": strconv.Atoi: parsing \"x\": invalid syntax"
        );
    }

    #[test]
    fn max_surge_and_unavailable_follow_strategy_and_defaults() {
        let d = deployment(10, json!("25%"), json!("25%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
        let d = deployment(3, json!(0), json!(5));
        assert_eq!(max_unavailable(&d), 3, "capped at spec.replicas");
        let d = deployment(0, json!(1), json!(1));
        assert_eq!(max_unavailable(&d), 0);
        let mut d = deployment(10, json!(1), json!(1));
        d.spec.as_mut().unwrap().strategy = None;
        assert_eq!(
            (max_surge(&d), max_unavailable(&d)),
            (3, 2),
            "API defaults: RollingUpdate 25%/25%"
        );
        d.spec.as_mut().unwrap().strategy =
            Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }

    #[test]
    fn template_hash_looks_like_kubernetes_and_tracks_collisions() {
        let d = deployment(1, json!(1), json!(0));
        let template = &d.spec.as_ref().unwrap().template;
        let hash = pod_template_hash(template, None);
        assert!((1..=10).contains(&hash.len()));
        assert!(
            hash.chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{hash}"
        );
        assert_eq!(hash, pod_template_hash(&template.clone(), None));
        assert_ne!(hash, pod_template_hash(template, Some(1)));
        assert_ne!(
            pod_template_hash(template, Some(1)),
            pod_template_hash(template, Some(2))
        );
        let mut changed = template.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert_ne!(hash, pod_template_hash(&changed, None));
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn templates_compare_ignoring_hash_label_and_empty_collections() {
        let d = deployment(1, json!(1), json!(0));
        let template = d.spec.unwrap().template;
        let mut labelled = template.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(DEFAULT_DEPLOYMENT_UNIQUE_LABEL_KEY.into(), "abc".into());
        labelled.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
        labelled.spec.as_mut().unwrap().volumes = Some(vec![]);
        assert!(equal_ignore_hash(&template, &labelled));
        let mut restarted = template.clone();
        restarted.metadata.as_mut().unwrap().annotations = Some(
            [(
                "kubectl.kubernetes.io/restartedAt".to_string(),
                "now".to_string(),
            )]
            .into(),
        );
        assert!(!equal_ignore_hash(&template, &restarted));
    }

    fn rs_with_template(name: &str, created: &str, revision: &str, image: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "uid": format!("{name}-uid"), "creationTimestamp": created,
                         "annotations": {REVISION_ANNOTATION: revision}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}
        }))
        .unwrap()
    }

    #[test]
    fn new_and_old_replica_sets_and_revisions() {
        let d = deployment(1, json!(1), json!(0));
        let a = rs_with_template("a", OLDER, "1", "nginx:0");
        let b = rs_with_template("b", OLD, "2", "nginx:1");
        let c = rs_with_template("c", NEW, "3", "nginx:1");
        let mut scaled = rs_with_template("z", NEW, "x", "nginx:9");
        scaled.spec.as_mut().unwrap().replicas = Some(2);
        let list = [&c, &scaled, &b, &a];
        assert_eq!(
            find_new_replica_set(&d, &list)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("b"),
            "oldest match wins"
        );
        let (required, all) = find_old_replica_sets(&d, &list);
        let names = |v: &[&ReplicaSet]| {
            v.iter()
                .map(|r| r.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&all), ["a", "c", "z"]);
        assert_eq!(names(&required), ["z"]);
        assert_eq!(max_revision(&list), 3);
        assert_eq!(last_revision(&list), 2);
        assert_eq!(new_revision(&[&a, &scaled]), "2");
        assert_eq!(revision_of(&a), Ok(1));
        assert_eq!(
            revision_of(&scaled),
            Err(RolloutError::InvalidRevision("x".into()))
        );
        assert_eq!(revision_of(&d), Ok(0));
    }

    #[test]
    fn new_replica_set_annotations_copy_and_track_history() {
        let mut d = deployment(4, json!(1), json!(0));
        d.metadata.annotations = Some(
            [
                ("kubernetes.io/change-cause", "kubectl set image"),
                (LAST_APPLIED_CONFIG_ANNOTATION, "{}"),
                (REVISION_ANNOTATION, "7"),
                ("team", "a"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let mut fresh = ReplicaSet::default();
        assert!(set_new_replica_set_annotations(
            &d,
            &mut fresh,
            "3",
            false,
            MAX_REV_HISTORY_LENGTH_IN_CHARS
        ));
        let ann = fresh.metadata.annotations.clone().unwrap();
        assert_eq!(
            ann.get("kubernetes.io/change-cause").map(String::as_str),
            Some("kubectl set image")
        );
        assert_eq!(ann.get("team").map(String::as_str), Some("a"));
        assert!(!ann.contains_key(LAST_APPLIED_CONFIG_ANNOTATION));
        assert_eq!(ann.get(REVISION_ANNOTATION).map(String::as_str), Some("3"));
        assert_eq!(
            ann.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str),
            Some("4")
        );
        assert_eq!(
            ann.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
            Some("5")
        );
        assert!(!set_new_replica_set_annotations(
            &d,
            &mut fresh,
            "3",
            true,
            MAX_REV_HISTORY_LENGTH_IN_CHARS
        ));
        assert!(
            !set_new_replica_set_annotations(
                &d,
                &mut fresh,
                "2",
                true,
                MAX_REV_HISTORY_LENGTH_IN_CHARS
            ),
            "never moves down"
        );

        // Re-activation by a rollback: the old revision joins the history.
        assert!(set_new_replica_set_annotations(
            &d,
            &mut fresh,
            "5",
            true,
            MAX_REV_HISTORY_LENGTH_IN_CHARS
        ));
        assert!(set_new_replica_set_annotations(
            &d,
            &mut fresh,
            "8",
            true,
            MAX_REV_HISTORY_LENGTH_IN_CHARS
        ));
        let ann = fresh.metadata.annotations.clone().unwrap();
        assert_eq!(
            ann.get(REVISION_HISTORY_ANNOTATION).map(String::as_str),
            Some("3,5")
        );
        assert_eq!(ann.get(REVISION_ANNOTATION).map(String::as_str), Some("8"));
        // The history drops its oldest entries beyond the length limit.
        assert!(set_new_replica_set_annotations(
            &d, &mut fresh, "12", true, 4
        ));
        assert_eq!(
            fresh
                .metadata
                .annotations
                .unwrap()
                .get(REVISION_HISTORY_ANNOTATION)
                .map(String::as_str),
            Some("5,8")
        );
    }

    #[test]
    fn replicas_annotations() {
        let mut r = ReplicaSet::default();
        assert!(replicas_annotations_need_update(&r, 3, 4));
        assert!(set_replicas_annotations(&mut r, 3, 4));
        assert!(!replicas_annotations_need_update(&r, 3, 4));
        assert!(!set_replicas_annotations(&mut r, 3, 4));
        assert!(replicas_annotations_need_update(&r, 3, 5));
    }

    #[test]
    fn builds_the_new_replica_set() {
        let d = deployment(10, json!("25%"), json!("25%"));
        let old = rs("web-old", 10, OLD, 10, 3);
        let created = new_replica_set(&d, &[&old], "2").unwrap();
        let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
        assert_eq!(created.metadata.name, Some(format!("web-{hash}")));
        let spec = created.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3), "10 + surge 3 - 10 running");
        assert_eq!(
            spec.selector
                .match_labels
                .as_ref()
                .unwrap()
                .get("pod-template-hash"),
            Some(&hash)
        );
        let template_labels = spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(template_labels.get("pod-template-hash"), Some(&hash));
        assert_eq!(created.metadata.labels.as_ref(), Some(template_labels));
        let owner = &created.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Deployment", "d-uid", Some(true))
        );
        let ann = created.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.get(REVISION_ANNOTATION).map(String::as_str), Some("2"));
        assert_eq!(
            ann.get(MAX_REPLICAS_ANNOTATION).map(String::as_str),
            Some("13")
        );
        assert!(!is_hash_collision(&d, &created));
        let mut foreign = created.clone();
        foreign.metadata.owner_references = None;
        assert!(is_hash_collision(&d, &foreign));
    }

    #[test]
    fn syncing_and_noting_the_new_replica_set() {
        let mut d = deployment(2, json!(1), json!(0));
        d.spec.as_mut().unwrap().min_ready_seconds = Some(5);
        let in_sync = new_replica_set(&d, &[], "1").unwrap();
        let mut lagging = in_sync.clone();
        lagging.spec.as_mut().unwrap().min_ready_seconds = None;
        let updated = sync_new_replica_set(&d, &lagging, "1");
        assert_eq!(updated.unwrap().spec.unwrap().min_ready_seconds, Some(5));
        assert!(sync_new_replica_set(&d, &in_sync, "1").is_none());
        assert!(sync_new_replica_set(&d, &in_sync, "2").is_some());

        let now = ts("2024-05-01T10:00:00.5Z");
        assert!(note_found_new_replica_set(&mut d, &in_sync, now));
        let cond = get_deployment_condition(d.status.as_ref().unwrap(), DEPLOYMENT_PROGRESSING)
            .unwrap()
            .clone();
        assert_eq!(cond.reason.as_deref(), Some(FOUND_NEW_RS_REASON));
        assert_eq!(
            cond.message,
            Some(format!(
                "Found new replica set {:?}",
                in_sync.metadata.name.clone().unwrap()
            ))
        );
        assert_eq!(
            cond.last_update_time,
            Some(Time(ts("2024-05-01T10:00:00Z")))
        );
        assert!(!note_found_new_replica_set(&mut d, &in_sync, now));

        let mut fresh = deployment(2, json!(1), json!(0));
        assert!(note_created_replica_set(
            &mut fresh, "web-abc", "1", false, now
        ));
        let cond = get_deployment_condition(fresh.status.as_ref().unwrap(), DEPLOYMENT_PROGRESSING)
            .unwrap();
        assert_eq!(
            cond.message.as_deref(),
            Some("Created new replica set \"web-abc\"")
        );
        assert_eq!(
            fresh
                .metadata
                .annotations
                .as_ref()
                .unwrap()
                .get(REVISION_ANNOTATION)
                .map(String::as_str),
            Some("1")
        );
        let msg = note_replica_set_create_failure(&mut fresh, "web-abc", "quota exceeded", now);
        assert_eq!(
            msg,
            "Failed to create new replica set \"web-abc\": quota exceeded"
        );
        let cond = get_deployment_condition(fresh.status.as_ref().unwrap(), DEPLOYMENT_PROGRESSING)
            .unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_deref()),
            ("False", Some(FAILED_RS_CREATE_REASON))
        );
    }

    #[test]
    fn new_rs_grows_within_surge() {
        let d = deployment(10, json!(3), json!(0));
        let old = rs("old", 10, OLD, 10, 3);
        let new = rs("new", 0, NEW, 10, 3);
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), Ok(3));
        let new = rs("new", 3, NEW, 10, 3);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new], &new),
            Ok(3),
            "at the surge limit"
        );
        let old = rs("old", 2, OLD, 10, 3);
        let new = rs("new", 9, NEW, 10, 3);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new], &new),
            Ok(10),
            "never above spec.replicas"
        );
        assert_eq!(
            reconcile_new_replica_set(&d, &[&old, &new], &new),
            Ok(Some(10))
        );
        let big = rs("new", 12, NEW, 10, 3);
        assert_eq!(reconcile_new_replica_set(&d, &[&big], &big), Ok(Some(10)));
        let done = rs("new", 10, NEW, 10, 3);
        assert_eq!(reconcile_new_replica_set(&d, &[&done], &done), Ok(None));
        let mut recreate = d.clone();
        recreate.spec.as_mut().unwrap().strategy =
            Some(serde_json::from_value(json!({"type": "Recreate"})).unwrap());
        assert_eq!(new_rs_new_replicas(&recreate, &[&old, &new], &new), Ok(10));
    }

    /// Cases from Kubernetes' `TestScale` (sync_test.go), where the helper Deployment has maxSurge
    /// and maxUnavailable 0 unless given.
    #[test]
    fn proportional_scaling() {
        struct Case {
            name: &'static str,
            replicas: i32,
            surge: i32,
            prior_replicas: i32,
            prior_surge: i32,
            new: Option<(&'static str, i32)>,
            old: Vec<(&'static str, i32, &'static str)>,
            expected: Vec<(&'static str, i32)>,
        }
        let cases = vec![
            Case {
                name: "normal scaling event: 10 -> 12",
                replicas: 12,
                surge: 0,
                prior_replicas: 10,
                prior_surge: 0,
                new: Some(("v1", 10)),
                old: vec![],
                expected: vec![("v1", 12)],
            },
            Case {
                name: "5 -> 10",
                replicas: 10,
                surge: 0,
                prior_replicas: 5,
                prior_surge: 0,
                new: Some(("v2", 2)),
                old: vec![("v1", 3, OLD)],
                expected: vec![("v1", 6), ("v2", 4)],
            },
            Case {
                name: "5 -> 3",
                replicas: 3,
                surge: 0,
                prior_replicas: 5,
                prior_surge: 0,
                new: Some(("v2", 2)),
                old: vec![("v1", 3, OLD)],
                expected: vec![("v1", 2), ("v2", 1)],
            },
            Case {
                name: "9 -> 4",
                replicas: 4,
                surge: 0,
                prior_replicas: 9,
                prior_surge: 0,
                new: Some(("v2", 8)),
                old: vec![("v1", 1, OLD)],
                expected: vec![("v2", 4), ("v1", 0)],
            },
            Case {
                name: "7 -> 10",
                replicas: 10,
                surge: 0,
                prior_replicas: 7,
                prior_surge: 0,
                new: Some(("v3", 2)),
                old: vec![("v2", 3, OLD), ("v1", 2, OLDER)],
                expected: vec![("v2", 4), ("v3", 3), ("v1", 3)],
            },
            Case {
                name: "13 -> 8",
                replicas: 8,
                surge: 0,
                prior_replicas: 13,
                prior_surge: 0,
                new: Some(("v3", 2)),
                old: vec![("v2", 8, OLD), ("v1", 3, OLDER)],
                expected: vec![("v2", 5), ("v1", 2), ("v3", 1)],
            },
            Case {
                name: "leftover goes to the newest of the largest: 3 -> 4",
                replicas: 4,
                surge: 0,
                prior_replicas: 3,
                prior_surge: 0,
                new: Some(("v3", 1)),
                old: vec![("v2", 1, OLD), ("v1", 1, OLDER)],
                expected: vec![("v3", 2), ("v2", 1), ("v1", 1)],
            },
            Case {
                name: "leftover comes from the oldest of the largest: 3 -> 2",
                replicas: 2,
                surge: 0,
                prior_replicas: 3,
                prior_surge: 0,
                new: Some(("v3", 1)),
                old: vec![("v2", 1, OLD), ("v1", 1, OLDER)],
                expected: vec![("v1", 0), ("v2", 1), ("v3", 1)],
            },
            Case {
                name: "no new rs: 4 -> 5",
                replicas: 5,
                surge: 0,
                prior_replicas: 4,
                prior_surge: 0,
                new: None,
                old: vec![("v2", 2, OLD), ("v1", 2, OLDER)],
                expected: vec![("v2", 3), ("v1", 2)],
            },
            Case {
                name: "6 -> 0",
                replicas: 0,
                surge: 0,
                prior_replicas: 6,
                prior_surge: 0,
                new: Some(("v3", 3)),
                old: vec![("v2", 2, OLD), ("v1", 1, OLDER)],
                expected: vec![("v3", 0), ("v2", 0), ("v1", 0)],
            },
            Case {
                name: "0 -> 6 scales only the newest",
                replicas: 6,
                surge: 0,
                prior_replicas: 6,
                prior_surge: 0,
                new: Some(("v3", 0)),
                old: vec![("v2", 0, OLD), ("v1", 0, OLDER)],
                expected: vec![("v3", 6)],
            },
            Case {
                name: "deployment with surge pods",
                replicas: 20,
                surge: 2,
                prior_replicas: 10,
                prior_surge: 2,
                new: Some(("v2", 6)),
                old: vec![("v1", 6, OLD)],
                expected: vec![("v2", 11), ("v1", 11)],
            },
            Case {
                name: "change both surge and size",
                replicas: 50,
                surge: 6,
                prior_replicas: 10,
                prior_surge: 3,
                new: Some(("v2", 5)),
                old: vec![("v1", 8, OLD)],
                expected: vec![("v1", 34), ("v2", 22)],
            },
        ];
        for case in cases {
            let d = deployment(case.replicas, json!(case.surge), json!(0));
            let new = case
                .new
                .map(|(n, r)| rs(n, r, NEW, case.prior_replicas, case.prior_surge));
            let old: Vec<ReplicaSet> = case
                .old
                .iter()
                .map(|(n, r, t)| rs(n, *r, t, case.prior_replicas, case.prior_surge))
                .collect();
            let old_refs: Vec<&ReplicaSet> = old.iter().collect();
            let plan = scale_plan(&d, new.as_ref(), &old_refs);
            assert_eq!(sizes(&plan), case.expected, "{}", case.name);
        }
    }

    #[test]
    fn scaling_special_cases() {
        // A saturated new ReplicaSet takes old ones to zero.
        let d = deployment(3, json!(1), json!(0));
        let new = rs("v2", 3, NEW, 3, 1);
        let old = rs("v1", 2, OLD, 3, 1);
        assert_eq!(sizes(&scale_plan(&d, Some(&new), &[&old])), [("v1", 0)]);
        // A saturated-looking but unavailable new ReplicaSet leaves old pods alone.
        let d = deployment(2, json!(1), json!(1));
        let new = with_available(rs("v2", 2, NEW, 2, 1), 0);
        let old = rs("v1", 1, OLD, 2, 1);
        assert_eq!(
            sizes(&scale_plan(&d, Some(&new), &[&old])),
            [("v1", 1), ("v2", 2)]
        );
        // A missing max-replicas annotation falls back to status.replicas.
        let mut d = deployment(10, json!(0), json!(1));
        d.status = Some(DeploymentStatus {
            replicas: Some(5),
            ..Default::default()
        });
        let mut v2 = rs("v2", 2, NEW, 5, 0);
        v2.metadata.annotations = None;
        let v1 = rs("v1", 3, OLD, 5, 0);
        assert_eq!(get_replica_set_fraction(&v2, &d), 2);
        assert_eq!(
            sizes(&scale_plan(&d, Some(&v2), &[&v1])),
            [("v1", 6), ("v2", 4)]
        );
        assert!(is_scaling_event(&d, &[&v1, &v2]));
        let same = deployment(5, json!(0), json!(1));
        assert!(!is_scaling_event(&same, &[&v1, &v2]));
    }

    #[test]
    fn applying_a_scale_step() {
        let d = deployment(4, json!(1), json!(0));
        let current = rs("v1", 4, OLD, 4, 1);
        assert!(scaled_replica_set(&d, &current, 4).is_none());
        let stale = rs("v1", 4, OLD, 3, 1);
        let refreshed = scaled_replica_set(&d, &stale, 4).unwrap();
        assert_eq!(
            refreshed
                .metadata
                .annotations
                .unwrap()
                .get(DESIRED_REPLICAS_ANNOTATION)
                .map(String::as_str),
            Some("4")
        );
        let grown = scaled_replica_set(&d, &current, 6).unwrap();
        assert_eq!(grown.spec.unwrap().replicas, Some(6));
        assert_eq!(
            scaling_event_message("web-1", 1, 3),
            "Scaled up replica set web-1 from 1 to 3"
        );
        assert_eq!(
            scaling_event_message("web-1", 3, 0),
            "Scaled down replica set web-1 from 3 to 0"
        );
    }

    /// Cases from Kubernetes' `TestDeploymentController_reconcileOldReplicaSets` (maxSurge 0).
    #[test]
    fn rolling_scale_down_of_old_replica_sets() {
        let cases = [
            // (maxUnavailable, old replicas, new replicas, old available, new available, expected old)
            (0, 10, 0, 10, 0, Some(9)),
            (2, 10, 0, 10, 0, Some(8)),
            (2, 10, 0, 8, 0, Some(8)),
            (2, 10, 0, 9, 0, Some(8)),
            (2, 8, 2, 8, 0, None),
            (2, 8, 2, 8, 2, Some(6)),
        ];
        for (unavailable, old_n, new_n, old_ready, new_ready, expected) in cases {
            let d = deployment(10, json!(0), json!(unavailable));
            let old = with_available(rs("old", old_n, OLD, 10, 0), old_ready);
            let new = with_available(rs("new", new_n, NEW, 10, 0), new_ready);
            let steps = reconcile_old_replica_sets(&d, &[&old, &new], &[&old], &new);
            assert_eq!(
                steps.last().map(|s| s.replicas),
                expected,
                "{unavailable} {old_n} {new_n} {old_ready}"
            );
        }

        // Unhealthy replicas go first, oldest ReplicaSet first, then available ones.
        let d = deployment(10, json!(0), json!(2));
        let older = with_available(rs("older", 5, OLDER, 10, 0), 3);
        let old = with_available(rs("old", 5, OLD, 10, 0), 5);
        let new = with_available(rs("new", 0, NEW, 10, 0), 0);
        assert_eq!(
            cleanup_unhealthy_replicas(&[&old, &older], 10),
            [ScaleStep {
                name: "older".into(),
                replicas: 3
            }]
        );
        let steps = reconcile_old_replica_sets(&d, &[&older, &old, &new], &[&older, &old], &new);
        assert_eq!(
            sizes(&steps),
            [("older", 3)],
            "8 available = minAvailable after dropping 2 unhealthy"
        );
        assert!(scale_down_old_replica_sets_for_rolling_update(
            &d,
            &[&older, &old, &new],
            &[&old, &older]
        )
        .is_empty());
        let older = rs("older", 5, OLDER, 10, 0);
        let new = rs("new", 2, NEW, 10, 0);
        assert_eq!(
            sizes(&scale_down_old_replica_sets_for_rolling_update(
                &d,
                &[&older, &old, &new],
                &[&old, &older]
            )),
            [("older", 1)],
            "12 available, 4 above minAvailable, oldest first"
        );
        // A ReplicaSet with more available pods than replicas aborts the cleanup, as in Kubernetes.
        let shrinking = with_available(rs("older", 2, OLDER, 10, 0), 5);
        assert!(
            reconcile_old_replica_sets(&d, &[&shrinking, &new], &[&shrinking], &new).is_empty()
        );
    }

    #[test]
    fn recreate_helpers() {
        let old = rs("old", 2, OLD, 2, 0);
        let zero = rs("zero", 0, OLDER, 2, 0);
        assert_eq!(
            sizes(&scale_down_old_replica_sets_for_recreate(&[&old, &zero])),
            [("old", 0)]
        );
        assert!(old_pods_running(None, &[&old], &[]));
        let mut drained = rs("old", 0, OLD, 2, 0);
        drained.status.as_mut().unwrap().replicas = 0;
        let pod = |phase: &str, owner: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": format!("{owner}-uid"), "controller": true}]},
                "status": {"phase": phase}}))
            .unwrap()
        };
        let new = rs("new", 0, NEW, 2, 0);
        assert!(!old_pods_running(
            Some(&new),
            &[&drained],
            &[&pod("Succeeded", "old"), &pod("Running", "new")]
        ));
        assert!(old_pods_running(
            Some(&new),
            &[&drained],
            &[&pod("Unknown", "old")]
        ));
        assert!(old_pods_running(
            Some(&new),
            &[&drained],
            &[&pod("Pending", "old")]
        ));
    }

    fn rs_status(name: &str, replicas: i32, available: i32) -> ReplicaSet {
        let mut r = rs(name, replicas, NEW, replicas, 0);
        r.status.as_mut().unwrap().available_replicas = Some(available);
        r
    }

    #[test]
    fn calculates_deployment_status() {
        let now = ts("2024-05-01T10:00:00Z");
        let mut d = deployment(3, json!(1), json!(0));
        d.metadata.generation = Some(4);
        d.status = Some(DeploymentStatus {
            collision_count: Some(2),
            ..Default::default()
        });
        let new = rs_status("new", 2, 1);
        let old = rs_status("old", 2, 2);
        let status = calculate_status(&[&old, &new], Some(&new), &d, now);
        assert_eq!(status.replicas, Some(4));
        assert_eq!(status.updated_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(4));
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.unavailable_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.collision_count, Some(2));
        assert_eq!(status.terminating_replicas, None);
        let available = get_deployment_condition(&status, DEPLOYMENT_AVAILABLE).unwrap();
        assert_eq!(
            available.reason.as_deref(),
            Some(MINIMUM_REPLICAS_AVAILABLE)
        );
        assert_eq!(
            available.message.as_deref(),
            Some("Deployment has minimum availability.")
        );

        let starved = calculate_status(&[&rs_status("new", 3, 1)], None, &d, now);
        let available = get_deployment_condition(&starved, DEPLOYMENT_AVAILABLE).unwrap();
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("False", Some(MINIMUM_REPLICAS_UNAVAILABLE))
        );
        assert_eq!(
            available.message.as_deref(),
            Some("Deployment does not have minimum availability.")
        );
        assert_eq!(
            starved.updated_replicas, None,
            "zero counts are omitted, as Go's omitempty does"
        );
    }

    #[test]
    fn set_condition_keeps_transition_time() {
        let t0 = ts("2024-05-01T10:00:00Z");
        let t1 = ts("2024-05-01T11:00:00Z");
        let mut status = DeploymentStatus::default();
        set_deployment_condition(
            &mut status,
            new_deployment_condition(DEPLOYMENT_PROGRESSING, "True", "A", "a", t0),
        );
        set_deployment_condition(
            &mut status,
            new_deployment_condition(DEPLOYMENT_AVAILABLE, "True", "X", "x", t0),
        );
        set_deployment_condition(
            &mut status,
            new_deployment_condition(DEPLOYMENT_PROGRESSING, "True", "A", "new message", t1),
        );
        let c = get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).unwrap();
        assert_eq!(
            c.message.as_deref(),
            Some("a"),
            "same status and reason: untouched"
        );
        set_deployment_condition(
            &mut status,
            new_deployment_condition(DEPLOYMENT_PROGRESSING, "True", "B", "b", t1),
        );
        let c = get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).unwrap();
        assert_eq!(
            (c.last_transition_time.clone(), c.last_update_time.clone()),
            (Some(Time(t0)), Some(Time(t1)))
        );
        assert_eq!(
            status.conditions.as_ref().unwrap().last().unwrap().type_,
            DEPLOYMENT_PROGRESSING
        );
        set_deployment_condition(
            &mut status,
            new_deployment_condition(DEPLOYMENT_PROGRESSING, "False", "C", "c", t1),
        );
        assert_eq!(
            get_deployment_condition(&status, DEPLOYMENT_PROGRESSING)
                .unwrap()
                .last_transition_time,
            Some(Time(t1))
        );
        remove_deployment_condition(&mut status, DEPLOYMENT_PROGRESSING);
        remove_deployment_condition(&mut status, DEPLOYMENT_AVAILABLE);
        assert_eq!(status.conditions, None);
    }

    fn progressing(d: &mut Deployment, reason: &str, updated: &str) {
        let status = d.status.get_or_insert_with(Default::default);
        let mut cond =
            new_deployment_condition(DEPLOYMENT_PROGRESSING, "True", reason, "m", ts(updated));
        cond.last_transition_time = Some(Time(ts("2024-05-01T09:00:00Z")));
        status.conditions = Some(vec![cond]);
    }

    #[test]
    fn complete_progressing_and_timed_out() {
        let now = ts("2024-05-01T10:00:00Z");
        let mut d = deployment(2, json!(1), json!(0));
        let status = |replicas, updated, available, observed| DeploymentStatus {
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            observed_generation: Some(observed),
            ..Default::default()
        };
        assert!(deployment_complete(&d, &status(2, 2, 2, 1)));
        assert!(!deployment_complete(&d, &status(3, 2, 2, 1)));
        assert!(!deployment_complete(&d, &status(2, 2, 2, 0)));

        d.status = Some(status(3, 1, 2, 1));
        assert!(
            deployment_progressing(&d, &status(3, 2, 2, 1)),
            "more updated"
        );
        assert!(deployment_progressing(&d, &status(2, 1, 2, 1)), "fewer old");
        assert!(!deployment_progressing(&d, &status(3, 1, 2, 1)));

        progressing(&mut d, REPLICA_SET_UPDATED_REASON, "2024-05-01T09:50:01Z");
        let s = d.status.clone().unwrap();
        assert!(!deployment_timed_out(&d, &s, now), "599s since progress");
        progressing(&mut d, REPLICA_SET_UPDATED_REASON, "2024-05-01T09:49:59Z");
        let s = d.status.clone().unwrap();
        assert!(deployment_timed_out(&d, &s, now));
        progressing(&mut d, NEW_RS_AVAILABLE_REASON, "2024-01-01T00:00:00Z");
        assert!(!deployment_timed_out(&d, &d.status.clone().unwrap(), now));
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(i32::MAX);
        progressing(&mut d, REPLICA_SET_UPDATED_REASON, "2024-01-01T00:00:00Z");
        assert!(!deployment_timed_out(&d, &d.status.clone().unwrap(), now));
    }

    #[test]
    fn rollout_status_conditions() {
        let now = ts("2024-05-01T10:00:00Z");
        let mut d = deployment(2, json!(1), json!(0));
        let new = rs_status("web-new", 2, 2);
        let old = rs_status("web-old", 0, 0);

        // Complete.
        progressing(&mut d, REPLICA_SET_UPDATED_REASON, "2024-05-01T09:59:00Z");
        let status = sync_rollout_status(&d, &[&old, &new], Some(&new), now);
        let cond = get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).unwrap();
        assert_eq!(cond.reason.as_deref(), Some(NEW_RS_AVAILABLE_REASON));
        assert_eq!(
            cond.message.as_deref(),
            Some("ReplicaSet \"web-new\" has successfully progressed.")
        );

        // Progress refreshes lastUpdateTime but keeps the transition time.
        let half = rs_status("web-new", 1, 1);
        let old = rs_status("web-old", 2, 2);
        d.status.as_mut().unwrap().updated_replicas = Some(0);
        let status = sync_rollout_status(&d, &[&old, &half], Some(&half), now);
        let cond = get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).unwrap();
        assert_eq!(
            cond.message.as_deref(),
            Some("ReplicaSet \"web-new\" is progressing.")
        );
        assert_eq!(cond.last_update_time, Some(Time(now)));
        assert_eq!(
            cond.last_transition_time,
            Some(Time(ts("2024-05-01T09:00:00Z")))
        );

        // No progress past the deadline: timed out.
        progressing(&mut d, REPLICA_SET_UPDATED_REASON, "2024-05-01T09:40:00Z");
        d.status.as_mut().unwrap().replicas = Some(3);
        d.status.as_mut().unwrap().updated_replicas = Some(1);
        d.status.as_mut().unwrap().available_replicas = Some(3);
        d.status.as_mut().unwrap().ready_replicas = Some(3);
        let status = sync_rollout_status(&d, &[&old, &half], Some(&half), now);
        let cond = get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).unwrap();
        assert_eq!(
            (cond.status.as_str(), cond.reason.as_deref()),
            ("False", Some(TIMED_OUT_REASON))
        );
        assert_eq!(
            cond.message.as_deref(),
            Some("ReplicaSet \"web-new\" has timed out progressing.")
        );
        assert_eq!(progress_requeue(&d, &status, now), ProgressRequeue::Now);

        // ReplicaFailure is promoted from the new ReplicaSet first.
        let mut failing = half.clone();
        failing.status.as_mut().unwrap().conditions = Some(vec![ReplicaSetCondition {
            type_: REPLICA_SET_REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(FAILED_CREATE_POD_REASON.into()),
            message: Some("quota".into()),
            last_transition_time: Some(Time(now)),
        }]);
        let status = sync_rollout_status(&d, &[&old, &failing], Some(&failing), now);
        let cond = get_deployment_condition(&status, DEPLOYMENT_REPLICA_FAILURE).unwrap();
        assert_eq!(cond.message.as_deref(), Some("quota"));

        // Without a deadline there is no Progressing condition.
        d.spec.as_mut().unwrap().progress_deadline_seconds = None;
        let status = sync_rollout_status(&d, &[&old, &half], Some(&half), now);
        assert!(get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).is_none());
        assert!(get_deployment_condition(&status, DEPLOYMENT_REPLICA_FAILURE).is_none());
    }

    #[test]
    fn requeue_for_progress_checks() {
        let now = ts("2024-05-01T10:03:00Z");
        let mut d = deployment(2, json!(1), json!(0));
        let pending = DeploymentStatus {
            replicas: Some(2),
            ..Default::default()
        };
        assert_eq!(
            progress_requeue(&d, &pending, now),
            ProgressRequeue::Never,
            "no Progressing condition yet"
        );
        progressing(&mut d, REPLICA_SET_UPDATED_REASON, "2024-05-01T10:00:00Z");
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(600);
        assert_eq!(
            progress_requeue(&d, &pending, now),
            ProgressRequeue::After(SignedDuration::from_secs(7 * 60 + 1))
        );
        let complete = DeploymentStatus {
            replicas: Some(2),
            updated_replicas: Some(2),
            available_replicas: Some(2),
            observed_generation: Some(1),
            ..Default::default()
        };
        assert_eq!(progress_requeue(&d, &complete, now), ProgressRequeue::Never);
    }

    #[test]
    fn paused_conditions() {
        let now = ts("2024-05-01T10:00:00Z");
        let mut d = deployment(2, json!(1), json!(0));
        assert!(check_paused_conditions(&d, now).is_none());
        d.spec.as_mut().unwrap().paused = Some(true);
        let status = check_paused_conditions(&d, now).unwrap();
        let cond = get_deployment_condition(&status, DEPLOYMENT_PROGRESSING).unwrap();
        assert_eq!(
            (
                cond.status.as_str(),
                cond.reason.as_deref(),
                cond.message.as_deref()
            ),
            (
                "Unknown",
                Some(PAUSED_DEPLOY_REASON),
                Some("Deployment is paused")
            )
        );
        d.status = Some(status);
        assert!(check_paused_conditions(&d, now).is_none());
        d.spec.as_mut().unwrap().paused = None;
        let status = check_paused_conditions(&d, now).unwrap();
        assert_eq!(
            get_deployment_condition(&status, DEPLOYMENT_PROGRESSING)
                .unwrap()
                .message
                .as_deref(),
            Some("Deployment is resumed")
        );
        progressing(&mut d, TIMED_OUT_REASON, "2024-05-01T09:00:00Z");
        d.spec.as_mut().unwrap().paused = Some(true);
        assert!(
            check_paused_conditions(&d, now).is_none(),
            "a timeout is not overwritten"
        );
    }

    #[test]
    fn history_cleanup_by_revision() {
        let mut d = deployment(2, json!(1), json!(0));
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let mk = |name: &str, revision: &str, created: &str, replicas: i32| {
            let mut r = rs_with_template(name, created, revision, "nginx:0");
            r.spec.as_mut().unwrap().replicas = Some(replicas);
            r.status = Some(ReplicaSetStatus {
                replicas,
                ..Default::default()
            });
            r
        };
        let r3 = mk("r3", "3", OLDER, 0);
        let r1 = mk("r1", "1", NEW, 0);
        let r2 = mk("r2", "2", OLD, 1);
        let r4 = mk("r4", "4", OLD, 0);
        let names = |v: Vec<&ReplicaSet>| {
            v.into_iter()
                .map(|r| r.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        // Three to delete by revision: r1, r2 (still scaled: kept), r3.
        assert_eq!(
            names(replica_sets_to_clean_up(&d, &[&r4, &r3, &r2, &r1])),
            ["r1", "r3"]
        );
        let mut deleting = mk("r0", "0", OLDER, 0);
        deleting.metadata.deletion_timestamp = Some(Time(ts(OLDER)));
        assert_eq!(
            names(replica_sets_to_clean_up(&d, &[&r4, &deleting])),
            Vec::<String>::new()
        );
        d.spec.as_mut().unwrap().revision_history_limit = None;
        assert!(replica_sets_to_clean_up(&d, &[&r4, &r3, &r2, &r1]).is_empty());
        // Unparseable revisions fall back to creation order without upsetting the sort.
        d.spec.as_mut().unwrap().revision_history_limit = Some(0);
        let bad = mk("bad", "x", OLD, 0);
        assert_eq!(
            replica_sets_to_clean_up(&d, &[&r4, &bad, &r3, &r1]).len(),
            4
        );
    }

    fn pod(ready_since: Option<&str>, phase: &str) -> Pod {
        let conditions = match ready_since {
            Some(t) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]),
            None => json!([{"type": "Ready", "status": "False"}]),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"app": "web", "tier": "x"}},
            "status": {"phase": phase, "conditions": conditions}
        }))
        .unwrap()
    }

    #[test]
    fn pod_readiness_and_availability() {
        let now = ts("2024-05-01T10:00:10Z");
        let ready = pod(Some("2024-05-01T10:00:00Z"), "Running");
        assert!(is_pod_ready(&ready));
        assert!(is_pod_available(&ready, 0, now));
        assert!(is_pod_available(&ready, 9, now));
        assert!(
            !is_pod_available(&ready, 10, now),
            "strictly longer than minReadySeconds"
        );
        assert!(!is_pod_available(&pod(None, "Running"), 0, now));
        let done = pod(None, "Succeeded");
        let mut deleting = pod(None, "Running");
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(filter_active_pods(&[&ready, &done, &deleting]).len(), 1);
    }

    #[test]
    fn slow_start_doubles() {
        assert_eq!(slow_start_batches(10, 1), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(1, 1), [1]);
        assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
        assert_eq!(slow_start_batches(7, 1), [1, 2, 4]);
        assert_eq!(slow_start_batches(20, 4), [4, 8, 8]);
    }

    #[test]
    fn replica_diff_is_capped_at_the_burst() {
        let r = rs("v1", 3, OLD, 3, 0);
        assert_eq!(replicas_diff(&r, 1), ReplicaDiff::Create(2));
        assert_eq!(replicas_diff(&r, 5), ReplicaDiff::Delete(2));
        assert_eq!(replicas_diff(&r, 3), ReplicaDiff::None);
        assert_eq!(
            replicas_diff(&rs("big", 1000, OLD, 0, 0), 0),
            ReplicaDiff::Create(BURST_REPLICAS)
        );
    }

    #[test]
    fn pods_from_the_template() {
        let d = deployment(1, json!(1), json!(0));
        let r = new_replica_set(&d, &[], "1").unwrap();
        let p = pod_from_template(&r);
        assert_eq!(
            p.metadata.generate_name,
            Some(format!("{}-", r.metadata.name.clone().unwrap()))
        );
        assert_eq!(
            p.metadata.labels,
            r.spec
                .as_ref()
                .unwrap()
                .template
                .as_ref()
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .labels
        );
        let owner = &p.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("ReplicaSet", Some(true), Some(true))
        );
        assert_eq!(
            p.spec.unwrap().containers[0].image.as_deref(),
            Some("nginx:1")
        );
    }

    #[test]
    fn replica_set_status_counts_and_failure() {
        let now = ts("2024-05-01T10:00:10Z");
        let mut r: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "v1", "generation": 3},
            "spec": {"replicas": 4, "minReadySeconds": 5, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "x"}}}}
        }))
        .unwrap();
        let available = pod(Some("2024-05-01T10:00:00Z"), "Running");
        let fresh = pod(Some("2024-05-01T10:00:08Z"), "Running");
        let mut partial = pod(None, "Pending");
        partial.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        let status = calculate_replica_set_status(
            &r,
            &[&available, &fresh, &partial],
            Some("pods \"x\" is forbidden"),
            now,
        );
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(3));
        let cond = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (cond.reason.as_deref(), cond.message.as_deref()),
            (
                Some(FAILED_CREATE_POD_REASON),
                Some("pods \"x\" is forbidden")
            )
        );
        r.status = Some(status);
        let healed = calculate_replica_set_status(&r, &[&available], None, now);
        assert_eq!(healed.conditions, None);
        assert_eq!(healed.fully_labeled_replicas, Some(1));
    }

    #[test]
    fn go_style_sort_tolerates_inconsistent_comparators() {
        let mut v: Vec<u32> = (0..200).rev().collect();
        stable_sort_by_less(&mut v, &|a: &u32, b: &u32| a < b);
        assert!(v.windows(2).all(|w| w[0] <= w[1]));
        let mut v: Vec<u32> = (0..200).collect();
        stable_sort_by_less(&mut v, &|a: &u32, b: &u32| (a * 7 + b * 3) % 5 < 2);
        assert_eq!(v.len(), 200);
    }
}
