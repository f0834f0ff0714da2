//! The DaemonSet controller (Kubernetes 1.34's `pkg/controller/daemon`): one pod per eligible node —
//! the template's nodeSelector and required node affinity match it, and it has no NoSchedule/NoExecute
//! taint the pod does not tolerate once the DaemonSet tolerations are added. Pods are placed Kubernetes'
//! way: each gets a required node affinity `metadata.name In [node]` and goes through the default
//! scheduler. The controller follows nodes joining, leaving and changing labels or taints; deletes failed
//! pods (with a per-node backoff) and extra ones; rolls templates out with RollingUpdate (maxUnavailable,
//! or maxSurge: new pod first) or OnDelete; records templates as ControllerRevisions, labelling pods with
//! `controller-revision-hash`; and reports the status `kubectl rollout status ds/x` reads. The decisions
//! are pure functions; the controller reads the informers and writes their results.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::expectations::Expectations;
use super::history::{self, CONTROLLER_REVISION_HASH_LABEL};
use super::node_lifecycle::{
    DISK_PRESSURE_TAINT, MEMORY_PRESSURE_TAINT, NOT_READY_TAINT, PID_PRESSURE_TAINT,
    UNREACHABLE_TAINT, UNSCHEDULABLE_TAINT,
};
use super::rollout::{
    controller_ref, is_pod_available, is_pod_ready, pod_template_hash, scaled_value,
    slow_start_batches, BURST_REPLICAS, SLOW_START_INITIAL_BATCH_SIZE,
};
use super::{
    claim_pods_and_revisions, controller_key, controller_of, queue_adopters, run_workers, Context,
    ControllerError, ADOPTION_RECHECK,
};
use crate::client::events::{Involved, Recorder};
use crate::client::informer::key_of;
use crate::client::{Api, Change, WorkQueue};
use crate::scheduler::plugins::{
    tolerations_tolerate, untolerated_do_not_schedule_taint, RequiredNodeAffinity,
};

const WORKERS: usize = 2;
const KIND: &str = "DaemonSet";
const NETWORK_UNAVAILABLE_TAINT: &str = "node.kubernetes.io/network-unavailable";
const FAILED_POD_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

// ---------------------------------------------------------------------------------------------
// Decisions

fn template_of(ds: &DaemonSet) -> PodTemplateSpec {
    ds.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn name_of(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// The update strategy type, `RollingUpdate` when unset (the API server's default).
fn strategy_type(ds: &DaemonSet) -> &str {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// The tolerations Kubernetes gives every DaemonSet pod (`AddOrUpdateDaemonPodTolerations`), so node
/// problems neither evict nor keep out a daemon: not-ready and unreachable NoExecute without
/// tolerationSeconds; disk-, memory- and pid-pressure and unschedulable NoSchedule; and for host-network
/// pods network-unavailable NoSchedule.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        (NOT_READY_TAINT, "NoExecute"),
        (UNREACHABLE_TAINT, "NoExecute"),
        (DISK_PRESSURE_TAINT, "NoSchedule"),
        (MEMORY_PRESSURE_TAINT, "NoSchedule"),
        (PID_PRESSURE_TAINT, "NoSchedule"),
        (UNSCHEDULABLE_TAINT, "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push((NETWORK_UNAVAILABLE_TAINT, "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // `AddOrUpdateTolerationInPodSpec`: one with the same key, operator, value and effect is replaced.
        let same = |t: &Toleration| {
            t.key == toleration.key
                && t.operator == toleration.operator
                && t.value.as_deref().unwrap_or_default() == ""
                && t.effect == toleration.effect
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
}

/// `NodeShouldRunDaemonPod`: whether a daemon pod should run on the node, and whether one already
/// there may keep running (it may when only NoSchedule taints keep new pods off).
pub fn node_should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let template = template_of(ds);
    let mut spec = template.spec.unwrap_or_default();
    let node_name = name_of(&node.metadata);
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    add_daemon_tolerations(&mut spec);
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: Some(spec),
        status: None,
    };
    if !RequiredNodeAffinity::of(&pod).matches(node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    if untolerated_do_not_schedule_taint(taints, &tolerations).is_some() {
        let untolerated_no_execute = taints
            .iter()
            .any(|t| t.effect == "NoExecute" && !tolerations_tolerate(&tolerations, t));
        return (false, !untolerated_no_execute);
    }
    (true, true)
}

/// The node a daemon pod is for: where it is bound, or else the node its required affinity names
/// (`GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let requirement = terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")?;
    match requirement.values.as_deref() {
        Some([name]) => Some(name),
        _ => None,
    }
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod must land on `node`. Any other required node
/// terms are replaced, which is safe because the node was chosen for matching them.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
    affinity
}

/// The pod to create on `node`: the template with the DaemonSet tolerations, the revision hash label,
/// the node pinned by affinity, and the DaemonSet as controller.
pub fn daemon_pod(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = template_of(ds);
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    let mut labels = meta.labels.unwrap_or_default();
    if !hash.is_empty() {
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", name_of(&ds.metadata))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", KIND, &ds.metadata)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn revision_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// `IsPodUpdated`: the pod carries the current revision's hash.
fn is_updated(pod: &Pod, hash: &str) -> bool {
    !hash.is_empty() && revision_hash(pod) == Some(hash)
}

/// Scheduled pods first, then oldest first, then by name (`podByCreationTimestampAndPhase`).
fn sort_by_age(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        scheduled(b)
            .cmp(&scheduled(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The DaemonSet's pods by the node they are for (`getNodesToDaemonPods`). Terminal pods already being
/// deleted are left out unless `include_deleted_terminal` (history cleanup keeps their revisions).
pub fn nodes_to_pods<'a>(
    pods: &[&'a Pod],
    include_deleted_terminal: bool,
) -> BTreeMap<String, Vec<&'a Pod>> {
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if !include_deleted_terminal
            && is_terminal(pod)
            && pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node.to_string()).or_default().push(pod);
        }
    }
    by_node
}

/// `maxSurge` and `maxUnavailable` for `desired` nodes; with neither allowed, one may be unavailable.
fn update_limits(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), ControllerError> {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref())
        .filter(|_| strategy_type(ds) == "RollingUpdate");
    let resolve = |v: Option<&IntOrString>| -> Result<i32, ControllerError> {
        Ok(match v {
            Some(v) => scaled_value(v, desired, true)?,
            None => 0,
        })
    };
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()))?;
    let mut unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()))?;
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// `AllowsSurge`: a RollingUpdate with a non-zero maxSurge.
fn allows_surge(ds: &DaemonSet) -> bool {
    update_limits(ds, 1).is_ok_and(|(surge, _)| surge != 0)
}

/// What one node needs (`podsShouldBeOnNode`).
#[derive(Debug, Default, PartialEq)]
pub struct NodeDecision<'a> {
    pub create: bool,
    pub delete: Vec<&'a Pod>,
    /// Failed pods to delete, subject to the failed-pod backoff.
    pub failed: Vec<&'a Pod>,
}

pub fn pods_should_be_on_node<'a>(
    ds: &DaemonSet,
    node: &Node,
    pods: Option<&[&'a Pod]>,
    hash: &str,
    now: Timestamp,
) -> NodeDecision<'a> {
    let (should_run, should_continue_running) = node_should_run(ds, node);
    let mut decision = NodeDecision::default();
    let Some(pods) = pods else {
        decision.create = should_run;
        return decision;
    };
    if !should_continue_running {
        decision.delete = pods
            .iter()
            .copied()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        return decision;
    }
    let mut running = Vec::new();
    for pod in pods
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        match phase(pod) {
            "Failed" => decision.failed.push(pod),
            // Succeeded pods are replaced on the next sync.
            "Succeeded" => decision.delete.push(pod),
            _ => running.push(pod),
        }
    }
    sort_by_age(&mut running);
    if !allows_surge(ds) {
        // Without surge one pod per node: the oldest stays.
        decision.delete.extend(running.iter().skip(1));
        return decision;
    }
    if running.is_empty() {
        decision.create = should_run;
        return decision;
    }
    // With surge a node may hold the oldest old pod (while it is ready) and the oldest new one (until it
    // is available); everything else goes.
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in running {
        let slot = if is_updated(pod, hash) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        match slot {
            None => *slot = Some(pod),
            Some(_) => decision.delete.push(pod),
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !is_pod_ready(old) || is_pod_available(new, min_ready_seconds(ds), now) {
            decision.delete.push(old);
        }
    }
    decision
}

/// The pod bound to nowhere yet whose node no longer exists: the scheduler can never place it and pod
/// GC only removes bound pods (`getUnscheduledPodsWithoutNode`).
pub fn unscheduled_pods_without_node<'a>(
    nodes: &[&Node],
    by_node: &BTreeMap<String, Vec<&'a Pod>>,
) -> Vec<&'a Pod> {
    let existing: HashSet<&str> = nodes.iter().map(|n| name_of(&n.metadata)).collect();
    by_node
        .iter()
        .filter(|(node, _)| !existing.contains(node.as_str()))
        .flat_map(|(_, pods)| pods.iter().copied())
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty)
        })
        .collect()
}

/// `findUpdatedPodsOnNode`: the node's live new and old pod, or `None` when it has several of either.
fn updated_and_old<'a>(pods: &[&'a Pod], hash: &str) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// What a RollingUpdate step does: old pods to delete and nodes to surge a new pod onto.
#[derive(Debug, Default, PartialEq)]
pub struct RollingPlan<'a> {
    pub delete: Vec<&'a Pod>,
    pub create_on: Vec<String>,
}

/// Kubernetes' `rollingUpdate`. Without surge, old pods are deleted (unavailable ones at once, available
/// ones while fewer than maxUnavailable nodes lack an available pod) and the manage loop recreates them;
/// with surge, new pods are created next to old ones (at once where the old pod is unavailable, on up to
/// maxSurge nodes otherwise) and an old pod goes once its replacement is available.
pub fn rolling_update<'a>(
    ds: &DaemonSet,
    nodes: &[&Node],
    by_node: &BTreeMap<String, Vec<&'a Pod>>,
    hash: &str,
    now: Timestamp,
) -> Result<RollingPlan<'a>, ControllerError> {
    let min_ready = min_ready_seconds(ds);
    let available = |p: &Pod| is_pod_available(p, min_ready, now);
    let mut by_node: BTreeMap<String, Vec<&Pod>> = by_node.clone();
    let mut should_run: HashMap<&str, bool> = HashMap::new();
    let mut desired = 0;
    for node in nodes {
        let name = name_of(&node.metadata);
        let (run, _) = node_should_run(ds, node);
        should_run.insert(name, run);
        if run {
            desired += 1;
            by_node.entry(name.to_string()).or_default();
        }
    }
    let runs_on = |node: &str| should_run.get(node).copied().unwrap_or(false);
    let (max_surge, max_unavailable) = update_limits(ds, desired)?;
    let mut plan = RollingPlan::default();

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = updated_and_old(pods, hash) else {
                // The manage loop prunes the extra pods first; until then the node is unavailable.
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) if !available(old) => {
                    // Replacing an unavailable pod costs nothing.
                    plan.delete.push(old);
                    unavailable += 1;
                }
                (None, Some(old)) => {
                    if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = usize::try_from(max_unavailable - unavailable).unwrap_or(0);
        plan.delete.extend(candidates.into_iter().take(room));
        return Ok(plan);
    }

    let (mut surging, mut available_nodes) = (0, 0);
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    let mut leaving = Vec::new();
    for (node, pods) in &by_node {
        let Some((new, old)) = updated_and_old(pods, hash) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(available) {
            available_nodes += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if runs_on(node) {
                    allowed.push(node.clone());
                } else {
                    plan.delete.push(old);
                }
            }
            (None, Some(old)) => {
                if !runs_on(node) {
                    leaving.push(old);
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    plan.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // With surge the owner expects full availability: pods on nodes that no longer qualify go only as
    // pods elsewhere become available.
    let deletable = usize::try_from(available_nodes - desired).unwrap_or(0);
    plan.delete.extend(leaving.into_iter().take(deletable));
    let room = usize::try_from(max_surge - surging).unwrap_or(0);
    plan.create_on = allowed;
    plan.create_on.extend(candidates.into_iter().take(room));
    Ok(plan)
}

fn non_zero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// `updateDaemonSetStatus`: counts over the nodes, looking at each node's oldest pod. The observed
/// generation moves only when the sync acted on this generation.
pub fn calculate_status(
    ds: &DaemonSet,
    nodes: &[&Node],
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
    observe_generation: bool,
) -> DaemonSetStatus {
    let min_ready = min_ready_seconds(ds);
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let (should_run, _) = node_should_run(ds, node);
        let pods = by_node
            .get(name_of(&node.metadata))
            .filter(|p| !p.is_empty());
        match (should_run, pods) {
            (true, Some(pods)) => {
                desired += 1;
                current += 1;
                let mut pods = pods.clone();
                sort_by_age(&mut pods);
                let pod = pods[0];
                if is_pod_ready(pod) {
                    ready += 1;
                    if is_pod_available(pod, min_ready, now) {
                        available += 1;
                    }
                }
                if is_updated(pod, hash) {
                    updated += 1;
                }
            }
            (true, None) => desired += 1,
            (false, Some(_)) => misscheduled += 1,
            (false, None) => {}
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        current_number_scheduled: current,
        desired_number_scheduled: desired,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: non_zero(available),
        number_unavailable: non_zero(desired - available),
        updated_number_scheduled: non_zero(updated),
        observed_generation: if observe_generation {
            ds.metadata.generation.or(old.observed_generation)
        } else {
            old.observed_generation
        },
        ..old
    }
}

/// `cleanupHistory`: old revisions beyond revisionHistoryLimit, oldest first, sparing those a pod
/// still runs.
pub fn revisions_to_clean_up<'a>(
    ds: &DaemonSet,
    old: &[&'a ControllerRevision],
    live_hashes: &HashSet<&str>,
) -> Vec<&'a ControllerRevision> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let to_kill = usize::try_from(old.len() as i64 - i64::from(limit)).unwrap_or(0);
    let mut old = old.to_vec();
    history::sort_revisions(&mut old);
    old.into_iter()
        .filter(|r| {
            let hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL));
            !hash.is_some_and(|h| live_hashes.contains(h.as_str()))
        })
        .take(to_kill)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The controller

/// Kubernetes' failed-pods backoff (1s doubling to 15 minutes per DaemonSet and node): a DaemonSet
/// whose pod keeps failing on a node must not delete and recreate it in a hot loop.
#[derive(Default)]
struct FailedPodBackoff {
    entries: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl FailedPodBackoff {
    /// Records an attempt and allows it, or says how long to wait.
    fn attempt(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.entries.lock().expect("backoff lock");
        let next = match entries.get(key) {
            Some(&(last, delay)) if now.duration_since(last) < delay => {
                return Err(delay - now.duration_since(last));
            }
            Some(&(last, delay)) if now.duration_since(last) <= 2 * FAILED_POD_BACKOFF_MAX => {
                (delay * 2).min(FAILED_POD_BACKOFF_MAX)
            }
            _ => FAILED_POD_BACKOFF_INITIAL,
        };
        entries.insert(key.to_string(), (now, next));
        Ok(())
    }

    fn forget_set(&self, ds_key: &str) {
        let prefix = format!("{ds_key}/");
        self.entries
            .lock()
            .expect("backoff lock")
            .retain(|k, _| !k.starts_with(&prefix));
    }
}

struct Controller {
    ctx: Context,
    expectations: Expectations,
    recorder: Recorder,
    queue: WorkQueue,
    backoff: FailedPodBackoff,
}

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        expectations: Expectations::new(),
        recorder: Recorder::new(ctx.client.clone(), "daemonset-controller"),
        queue: queue.clone(),
        backoff: FailedPodBackoff::default(),
    });
    {
        let queue = queue.clone();
        let controller = controller.clone();
        ctx.informers.daemon_sets.on_change(move |change| {
            let key = key_of(&change.object().metadata);
            if let Change::Deleted(_) = change {
                controller.expectations.forget(&key);
                controller.backoff.forget_set(&key);
            }
            queue.add(&key);
        });
    }
    {
        let queue = queue.clone();
        let controller = controller.clone();
        let daemon_sets = ctx.informers.daemon_sets.clone();
        ctx.informers.pods.on_change(move |change| {
            if queue_adopters(
                change,
                &daemon_sets,
                |d| d.spec.as_ref().map(|s| &s.selector),
                &queue,
            ) {
                return;
            }
            for key in controller.expectations.observe_pod(change, KIND) {
                queue.add(&key);
            }
        });
    }
    {
        // Nodes joining, leaving or changing labels or taints change where daemons run.
        let queue = queue.clone();
        let informers = ctx.informers.clone();
        ctx.informers.nodes.on_change(move |change| {
            if let Change::Modified { old, new } = change {
                if old.metadata.labels == new.metadata.labels && old.spec == new.spec {
                    return;
                }
            }
            for key in informers.daemon_sets.keys() {
                queue.add(&key);
            }
        });
    }
    {
        let queue = queue.clone();
        ctx.informers.controller_revisions.on_change(move |change| {
            if let Some(owner) = controller_key(&change.object().metadata, KIND) {
                queue.add(&owner);
            }
        });
    }
    run_workers(
        "daemonset",
        queue,
        WORKERS,
        ctx.shutdown.clone(),
        move |key| {
            let controller = controller.clone();
            async move { controller.sync(&key).await }
        },
    )
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Controller {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, ControllerError> {
        let Some(ds) = self.ctx.informers.daemon_sets.get(key) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let selects_all = ds
            .spec
            .as_ref()
            .map(|s| &s.selector)
            .is_none_or(|s| s.match_labels.is_none() && s.match_expressions.is_none());
        if selects_all {
            self.recorder.warning(
                self.ctx.clock.as_ref(),
                &Involved::new("apps/v1", KIND, &ds.metadata),
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(None);
        }
        let selector = ds.spec.as_ref().map(|s| &s.selector);
        let claimed =
            claim_pods_and_revisions(&self.ctx, KIND, &ds.metadata, selector, |_| true).await?;
        if claimed > 0 {
            return Ok(Some(ADOPTION_RECHECK));
        }
        // Its pods and revisions may be going away with it: no status can be trusted.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let nodes = self.ctx.informers.nodes.list();
        let nodes: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
        let (current, old) = self.construct_history(&ds).await?;
        let hash = current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        if !self.expectations.satisfied(key) {
            // Not acting on this generation: the observed generation stays.
            return self.update_status(&ds, &nodes, &hash, false).await;
        }
        let result = self.update(key, &ds, &nodes, &hash, &old).await;
        let status = self.update_status(&ds, &nodes, &hash, true).await;
        let requeue = result?;
        Ok(earliest(requeue, status?))
    }

    fn owned_pods(&self, ds: &DaemonSet) -> Vec<Arc<Pod>> {
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        self.ctx
            .informers
            .pods
            .list_in(ds.metadata.namespace.as_deref().unwrap_or_default())
            .into_iter()
            .filter(|p| controller_of(&p.metadata, KIND).is_some_and(|o| o.uid == uid))
            .collect()
    }

    /// The manage loop, then a rolling-update step once its changes were observed, then history
    /// cleanup. Returns when to look again for pods held back by the failed-pod backoff.
    async fn update(
        &self,
        key: &str,
        ds: &DaemonSet,
        nodes: &[&Node],
        hash: &str,
        old: &[ControllerRevision],
    ) -> Result<Option<Duration>, ControllerError> {
        let now = self.ctx.clock.now();
        let owned = self.owned_pods(ds);
        let pods: Vec<&Pod> = owned.iter().map(Arc::as_ref).collect();
        let by_node = nodes_to_pods(&pods, false);
        let mut create_on = Vec::new();
        let mut delete = Vec::new();
        let mut requeue = None;
        for node in nodes {
            let node_name = name_of(&node.metadata);
            let decision = pods_should_be_on_node(
                ds,
                node,
                by_node.get(node_name).map(Vec::as_slice),
                hash,
                now,
            );
            if decision.create {
                create_on.push(node_name.to_string());
            }
            delete.extend(decision.delete);
            for pod in decision.failed {
                match self
                    .backoff
                    .attempt(&format!("{key}/{node_name}"), Instant::now())
                {
                    Ok(()) => {
                        self.recorder
                            .warning(
                                self.ctx.clock.as_ref(),
                                &Involved::new("apps/v1", KIND, &ds.metadata),
                                "FailedDaemonPod",
                                &format!(
                                    "Found failed daemon pod {key_pod} on node {node_name}, will try to kill it",
                                    key_pod = key_of(&pod.metadata)
                                ),
                            );
                        delete.push(pod);
                    }
                    Err(wait) => requeue = earliest(requeue, Some(wait)),
                }
            }
        }
        delete.extend(unscheduled_pods_without_node(nodes, &by_node));
        self.sync_nodes(key, ds, &delete, &create_on, hash).await?;

        if self.expectations.satisfied(key) && strategy_type(ds) == "RollingUpdate" {
            // Read the pods again: what the manage loop just deleted may already show as terminating,
            // and must not be picked a second time.
            let owned = self.owned_pods(ds);
            let pods: Vec<&Pod> = owned.iter().map(Arc::as_ref).collect();
            let by_node = nodes_to_pods(&pods, false);
            let plan = rolling_update(ds, nodes, &by_node, hash, now)?;
            self.sync_nodes(key, ds, &plan.delete, &plan.create_on, hash)
                .await?;
        }
        self.clean_up_history(ds, old).await?;
        Ok(requeue)
    }

    /// Deletes pods and creates pods on nodes (`syncNodes`), each side capped at the burst size, creates
    /// in slow-start batches, all under expectations.
    async fn sync_nodes(
        &self,
        key: &str,
        ds: &DaemonSet,
        delete: &[&Pod],
        create_on: &[String],
        hash: &str,
    ) -> Result<(), ControllerError> {
        let create_on = &create_on[..create_on.len().min(BURST_REPLICAS)];
        let delete = &delete[..delete.len().min(BURST_REPLICAS)];
        if create_on.is_empty() && delete.is_empty() {
            return Ok(());
        }
        self.expectations.expect(
            key,
            create_on.len(),
            delete.iter().map(|p| key_of(&p.metadata)),
        );
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let pods_api = Api::<Pod>::namespaced(self.ctx.client.clone(), namespace);
        let clock = self.ctx.clock.as_ref();
        let mut first_error: Option<ControllerError> = None;
        let mut next = 0;
        for batch in slow_start_batches(create_on.len(), SLOW_START_INITIAL_BATCH_SIZE) {
            let targets = &create_on[next..next + batch];
            next += batch;
            let pods: Vec<Pod> = targets
                .iter()
                .map(|node| daemon_pod(ds, hash, node))
                .collect();
            let results = join_all(pods.iter().map(|pod| pods_api.create(pod))).await;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(pod) => {
                        let name = pod.metadata.name.unwrap_or_default();
                        self.recorder.normal(
                            clock,
                            &Involved::new("apps/v1", KIND, &ds.metadata),
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        );
                    }
                    Err(e) => {
                        // The pod will never show up: stop waiting for it.
                        self.expectations.creation_observed(key);
                        self.recorder.warning(
                            clock,
                            &Involved::new("apps/v1", KIND, &ds.metadata),
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                        );
                        failed = true;
                        first_error.get_or_insert(e.into());
                    }
                }
            }
            if failed {
                // The rest are not attempted; the next sync retries them.
                for _ in next..create_on.len() {
                    self.expectations.creation_observed(key);
                }
                break;
            }
        }
        let results = join_all(delete.iter().map(|pod| {
            let name = name_of(&pod.metadata).to_string();
            let options = json!({"preconditions": {"uid": pod.metadata.uid}});
            let pods_api = pods_api.clone();
            async move {
                let result = pods_api.delete(&name, &options).await;
                (name, result)
            }
        }))
        .await;
        for (name, result) in results {
            match result {
                Ok(()) => self.recorder.normal(
                    clock,
                    &Involved::new("apps/v1", KIND, &ds.metadata),
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                ),
                Err(e) => {
                    self.expectations
                        .deletion_observed(key, &format!("{namespace}/{name}"));
                    self.recorder.warning(
                        clock,
                        &Involved::new("apps/v1", KIND, &ds.metadata),
                        "FailedDelete",
                        &format!("Error deleting: {e}"),
                    );
                    first_error.get_or_insert(e.into());
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `constructHistory`: the revision of the current template (created, or renumbered to come after
    /// every other) and the old ones. Revisions duplicating the current one are merged into the newest.
    async fn construct_history(
        &self,
        ds: &DaemonSet,
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), ControllerError> {
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<ControllerRevision>::namespaced(self.ctx.client.clone(), namespace);
        let all = self.ctx.informers.controller_revisions.list_in(namespace);
        let controlled = history::controlled_by(
            all.iter().map(Arc::as_ref),
            KIND,
            ds.metadata.uid.as_deref().unwrap_or_default(),
        );
        let data = history::template_patch(&template_of(ds));
        let (mut current, mut old) = (Vec::new(), Vec::new());
        for revision in controlled {
            let has_hash = revision
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(CONTROLLER_REVISION_HASH_LABEL));
            // Revisions from before the label existed get their name as hash, which cannot collide.
            let revision = if has_hash {
                revision.clone()
            } else {
                let name = name_of(&revision.metadata);
                api.merge_patch(
                    name,
                    &json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH_LABEL: name}}}),
                )
                .await?
            };
            if history::data_equals(&revision, &data) {
                current.push(revision);
            } else {
                old.push(revision);
            }
        }
        let next = history::max_revision(&old) + 1;
        let current = if current.is_empty() {
            self.snapshot(ds, data, next).await?
        } else {
            let keep = self.dedup(ds, current).await?;
            if keep.revision < next {
                api.merge_patch(
                    name_of(&keep.metadata),
                    &json!({"metadata": {"resourceVersion": keep.metadata.resource_version},
                            "revision": next}),
                )
                .await?
            } else {
                keep
            }
        };
        Ok((current, old))
    }

    /// Records the current template as revision `number`, named `<ds>-<template hash>`. A name taken by
    /// another template bumps the collision count, which changes the hash on the next try.
    async fn snapshot(
        &self,
        ds: &DaemonSet,
        data: serde_json::Value,
        number: i64,
    ) -> Result<ControllerRevision, ControllerError> {
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<ControllerRevision>::namespaced(self.ctx.client.clone(), namespace);
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let template = template_of(ds);
        let hash = pod_template_hash(&template, collision_count);
        let name = format!("{}-{hash}", name_of(&ds.metadata));
        let mut labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash);
        let revision = history::new_revision(
            &ds.metadata,
            KIND,
            labels,
            name.clone(),
            data.clone(),
            number,
        );
        match api.create(&revision).await {
            Ok(created) => Ok(created),
            Err(e) if e.is_conflict() => {
                let existing = api.get(&name).await?;
                let ours = controller_of(&existing.metadata, KIND)
                    .is_some_and(|o| Some(&o.uid) == ds.metadata.uid.as_ref());
                if ours && history::data_equals(&existing, &data) {
                    return Ok(existing);
                }
                let sets = Api::<DaemonSet>::namespaced(self.ctx.client.clone(), namespace);
                let mut fresh = sets.get(name_of(&ds.metadata)).await?;
                let fresh_count = fresh.status.as_ref().and_then(|s| s.collision_count);
                if fresh_count != collision_count {
                    return Err(ControllerError::Invalid(format!(
                        "found a stale collision count ({collision_count:?}, expected {fresh_count:?}) of DaemonSet {:?} while processing; will retry until it is updated",
                        name_of(&ds.metadata)
                    )));
                }
                let status = fresh.status.get_or_insert_with(Default::default);
                status.collision_count = Some(fresh_count.unwrap_or(0) + 1);
                sets.replace_status(name_of(&ds.metadata), &fresh).await?;
                Err(ControllerError::Invalid(format!(
                    "hash collision for ControllerRevision {name}; bumped the collision count"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps the newest of several revisions holding the current template: pods are relabelled to its
    /// hash, then the others are deleted.
    async fn dedup(
        &self,
        ds: &DaemonSet,
        mut current: Vec<ControllerRevision>,
    ) -> Result<ControllerRevision, ControllerError> {
        let mut keep_index = 0;
        for (i, revision) in current.iter().enumerate() {
            if revision.revision >= current[keep_index].revision {
                keep_index = i;
            }
        }
        let keep = current.swap_remove(keep_index);
        if current.is_empty() {
            return Ok(keep);
        }
        let keep_hash = keep
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let pods_api = Api::<Pod>::namespaced(self.ctx.client.clone(), namespace);
        for pod in self.owned_pods(ds) {
            if revision_hash(&pod) != Some(keep_hash.as_str()) {
                pods_api
                    .merge_patch(
                        name_of(&pod.metadata),
                        &json!({"metadata": {"labels": {CONTROLLER_REVISION_HASH_LABEL: keep_hash}}}),
                    )
                    .await?;
            }
        }
        let api = Api::<ControllerRevision>::namespaced(self.ctx.client.clone(), namespace);
        for duplicate in &current {
            api.delete(name_of(&duplicate.metadata), &json!({})).await?;
        }
        Ok(keep)
    }

    async fn clean_up_history(
        &self,
        ds: &DaemonSet,
        old: &[ControllerRevision],
    ) -> Result<(), ControllerError> {
        let owned = self.owned_pods(ds);
        let live: HashSet<&str> = owned.iter().filter_map(|p| revision_hash(p)).collect();
        let old: Vec<&ControllerRevision> = old.iter().collect();
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        let api = Api::<ControllerRevision>::namespaced(self.ctx.client.clone(), namespace);
        for revision in revisions_to_clean_up(ds, &old, &live) {
            api.delete(
                name_of(&revision.metadata),
                &json!({"preconditions": {"uid": revision.metadata.uid}}),
            )
            .await?;
        }
        Ok(())
    }

    /// Writes the status if it changed; returns when to look again for pods that become available
    /// only after minReadySeconds.
    async fn update_status(
        &self,
        ds: &DaemonSet,
        nodes: &[&Node],
        hash: &str,
        observe_generation: bool,
    ) -> Result<Option<Duration>, ControllerError> {
        let owned = self.owned_pods(ds);
        let pods: Vec<&Pod> = owned.iter().map(Arc::as_ref).collect();
        let by_node = nodes_to_pods(&pods, false);
        let status = calculate_status(
            ds,
            nodes,
            &by_node,
            hash,
            self.ctx.clock.now(),
            observe_generation,
        );
        let min_ready = min_ready_seconds(ds);
        let requeue = (min_ready > 0
            && status.number_ready != status.number_available.unwrap_or(0))
        .then(|| Duration::from_secs(min_ready as u64));
        if ds.status.as_ref() == Some(&status) {
            return Ok(requeue);
        }
        let mut updated = ds.clone();
        updated.status = Some(status);
        let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
        match Api::<DaemonSet>::namespaced(self.ctx.client.clone(), namespace)
            .replace_status(name_of(&ds.metadata), &updated)
            .await
        {
            Ok(_) => Ok(requeue),
            // A newer DaemonSet is on its way through the informer and triggers another sync.
            Err(e) if e.is_conflict() => {
                self.queue.add(&key_of(&ds.metadata));
                Ok(requeue)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const HASH: &str = "new";

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    fn ds(extra: Value) -> DaemonSet {
        let mut v = json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 2},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": "agent:1"}]},
                },
            },
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
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

    fn node(name: &str, extra: Value) -> Node {
        let mut v = json!({"metadata": {"name": name, "labels": {}}, "spec": {}});
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    /// A daemon pod for `node`; `state` is "ready", "unready", "failed", or "deleting".
    fn pod(name: &str, node: &str, hash: &str, state: &str, age_minutes: i64) -> Pod {
        let created = now() - jiff::SignedDuration::from_mins(age_minutes);
        let ready = if state == "ready" { "True" } else { "False" };
        let phase = match state {
            "failed" => "Failed",
            "pending" => "Pending",
            _ => "Running",
        };
        let mut v = json!({
            "metadata": {
                "name": name, "namespace": "kube-system", "uid": name,
                "creationTimestamp": created.to_string(),
                "labels": {"app": "agent", CONTROLLER_REVISION_HASH_LABEL: hash},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                     "uid": "ds-uid", "controller": true}],
            },
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": ready, "lastTransitionTime": created.to_string()}]},
        });
        if state == "deleting" {
            v["metadata"]["deletionTimestamp"] = now().to_string().into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| name_of(&p.metadata).to_string())
            .collect()
    }

    #[test]
    fn daemon_tolerations_are_added_once_and_replace_equal_ones() {
        let mut spec = PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some(NOT_READY_TAINT.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(30),
                value: None,
            }]),
            ..Default::default()
        };
        add_daemon_tolerations(&mut spec);
        add_daemon_tolerations(&mut spec);
        let tolerations = spec.tolerations.unwrap();
        let keys: Vec<_> = tolerations
            .iter()
            .map(|t| (t.key.as_deref().unwrap(), t.effect.as_deref().unwrap()))
            .collect();
        assert_eq!(
            keys,
            [
                (NOT_READY_TAINT, "NoExecute"),
                (UNREACHABLE_TAINT, "NoExecute"),
                (DISK_PRESSURE_TAINT, "NoSchedule"),
                (MEMORY_PRESSURE_TAINT, "NoSchedule"),
                (PID_PRESSURE_TAINT, "NoSchedule"),
                (UNSCHEDULABLE_TAINT, "NoSchedule"),
            ]
        );
        assert!(
            tolerations.iter().all(|t| t.toleration_seconds.is_none()),
            "daemons tolerate node problems forever"
        );
        let mut host = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        add_daemon_tolerations(&mut host);
        assert_eq!(
            host.tolerations.unwrap()[6].key.as_deref(),
            Some(NETWORK_UNAVAILABLE_TAINT)
        );
    }

    #[test]
    fn eligibility_follows_selector_affinity_and_taints() {
        let plain = ds(json!({}));
        assert_eq!(node_should_run(&plain, &node("n", json!({}))), (true, true));

        let picky = ds(json!({"spec": {"template": {"spec": {"nodeSelector": {"role": "edge"}}}}}));
        assert_eq!(
            node_should_run(&picky, &node("n", json!({}))),
            (false, false)
        );
        let edge = node("n", json!({"metadata": {"labels": {"role": "edge"}}}));
        assert_eq!(node_should_run(&picky, &edge), (true, true));

        let no_schedule = node(
            "n",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            node_should_run(&plain, &no_schedule),
            (false, true),
            "a running daemon stays on a node that only refuses new pods"
        );
        let no_execute = node(
            "n",
            json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}}),
        );
        assert_eq!(node_should_run(&plain, &no_execute), (false, false));
        let tolerant = ds(json!({"spec": {"template": {"spec": {"tolerations": [
            {"key": "dedicated", "operator": "Exists"}]}}}}));
        assert_eq!(node_should_run(&tolerant, &no_execute), (true, true));

        // Node problems do not keep daemons off.
        let cordoned = node(
            "n",
            json!({"spec": {"unschedulable": true, "taints": [
            {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"},
            {"key": NOT_READY_TAINT, "effect": "NoExecute"}]}}),
        );
        assert_eq!(node_should_run(&plain, &cordoned), (true, true));

        let pinned = ds(json!({"spec": {"template": {"spec": {"nodeName": "other"}}}}));
        assert_eq!(
            node_should_run(&pinned, &node("n", json!({}))),
            (false, false)
        );
    }

    #[test]
    fn daemon_pods_are_pinned_by_affinity_and_labelled_with_the_revision() {
        let d = ds(
            json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]}}}}}}),
        );
        let p = daemon_pod(&d, "abc", "node-1");
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL],
            "abc"
        );
        let owner = controller_of(&p.metadata, KIND).unwrap();
        assert_eq!(
            (owner.uid.as_str(), owner.block_owner_deletion),
            ("ds-uid", Some(true))
        );
        let affinity = serde_json::to_value(p.spec.as_ref().unwrap().affinity.as_ref()).unwrap();
        assert_eq!(
            affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]})
        );
        assert!(
            affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array(),
            "preferences are kept"
        );
        assert_eq!(target_node(&p), Some("node-1"));
        assert_eq!(p.spec.unwrap().tolerations.unwrap().len(), 6);
    }

    #[test]
    fn manage_creates_where_missing_and_prunes_extra_failed_and_misplaced_pods() {
        let d = ds(json!({}));
        let n = node("n", json!({}));
        let create = pods_should_be_on_node(&d, &n, None, HASH, now());
        assert!(create.create);

        let old = pod("old", "n", HASH, "ready", 10);
        let young = pod("young", "n", HASH, "ready", 1);
        let gone = pod("gone", "n", HASH, "deleting", 20);
        let extra = pods_should_be_on_node(&d, &n, Some(&[&young, &old, &gone]), HASH, now());
        assert!(!extra.create);
        assert_eq!(names(&extra.delete), ["young"], "the oldest pod stays");

        let failed = pod("failed", "n", HASH, "failed", 5);
        let decision = pods_should_be_on_node(&d, &n, Some(&[&failed]), HASH, now());
        assert_eq!(names(&decision.failed), ["failed"]);
        assert!(decision.delete.is_empty() && !decision.create);

        let evicting = node(
            "n",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoExecute"}]}}),
        );
        let decision = pods_should_be_on_node(&d, &evicting, Some(&[&old, &gone]), HASH, now());
        assert_eq!(names(&decision.delete), ["old"]);
    }

    #[test]
    fn surge_keeps_the_old_pod_until_the_new_one_is_available() {
        let d = ds(json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}));
        let n = node("n", json!({}));
        let old = pod("old", "n", "old", "ready", 10);
        let new_unready = pod("new", "n", HASH, "unready", 1);
        let both = pods_should_be_on_node(&d, &n, Some(&[&old, &new_unready]), HASH, now());
        assert!(both.delete.is_empty());
        let new_ready = pod("new", "n", HASH, "ready", 1);
        let done = pods_should_be_on_node(&d, &n, Some(&[&old, &new_ready]), HASH, now());
        assert_eq!(names(&done.delete), ["old"]);
    }

    fn by_node<'a>(pods: &[&'a Pod]) -> BTreeMap<String, Vec<&'a Pod>> {
        nodes_to_pods(pods, false)
    }

    #[test]
    fn rolling_update_deletes_within_max_unavailable() {
        let d = ds(json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 2}}}}));
        let nodes: Vec<Node> = (0..5).map(|i| node(&format!("n{i}"), json!({}))).collect();
        let refs: Vec<&Node> = nodes.iter().collect();
        let pods = [
            pod("a", "n0", "old", "ready", 5),
            pod("b", "n1", "old", "ready", 5),
            pod("c", "n2", "old", "unready", 5),
            pod("d", "n3", HASH, "ready", 5),
            pod("e", "n4", "old", "ready", 5),
        ];
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let plan = rolling_update(&d, &refs, &by_node(&pod_refs), HASH, now()).unwrap();
        // The unavailable old pod goes for free and uses one slot; one more fits.
        assert_eq!(names(&plan.delete), ["c", "a"]);
        assert!(plan.create_on.is_empty());

        // A node still missing its pod counts as unavailable.
        let pod_refs: Vec<&Pod> = pods
            .iter()
            .filter(|p| name_of(&p.metadata) != "d")
            .collect();
        let plan = rolling_update(&d, &refs, &by_node(&pod_refs), HASH, now()).unwrap();
        assert_eq!(names(&plan.delete), ["c"]);
    }

    #[test]
    fn rolling_update_with_surge_creates_before_deleting() {
        let d = ds(json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}}));
        let nodes: Vec<Node> = (0..3).map(|i| node(&format!("n{i}"), json!({}))).collect();
        let refs: Vec<&Node> = nodes.iter().collect();
        let pods = [
            pod("a", "n0", "old", "ready", 5),
            pod("b", "n1", "old", "unready", 5),
            pod("c", "n2", "old", "ready", 5),
        ];
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let plan = rolling_update(&d, &refs, &by_node(&pod_refs), HASH, now()).unwrap();
        assert!(plan.delete.is_empty());
        assert_eq!(
            plan.create_on,
            ["n1", "n0"],
            "unavailable first, then one surge"
        );

        let surged = [
            pod("a", "n0", "old", "ready", 5),
            pod("a2", "n0", HASH, "ready", 1),
            pod("c", "n2", "old", "ready", 5),
            pod("c2", "n2", HASH, "unready", 1),
        ];
        let pod_refs: Vec<&Pod> = surged.iter().collect();
        let plan = rolling_update(&d, &refs, &by_node(&pod_refs), HASH, now()).unwrap();
        assert_eq!(names(&plan.delete), ["a"]);
        assert!(
            plan.create_on.is_empty(),
            "the surge budget is in use on n2"
        );
    }

    #[test]
    fn status_counts_desired_scheduled_misscheduled_ready_and_updated() {
        let d = ds(json!({"spec": {"template": {"spec": {"nodeSelector": {"daemon": "yes"}}}}}));
        let wanted = json!({"metadata": {"labels": {"daemon": "yes"}}});
        let nodes = [
            node("n0", wanted.clone()),
            node("n1", wanted.clone()),
            node("n2", wanted),
            node("n3", json!({})),
        ];
        let refs: Vec<&Node> = nodes.iter().collect();
        let pods = [
            pod("a", "n0", HASH, "ready", 5),
            pod("b", "n1", "old", "unready", 5),
            pod("c", "n3", HASH, "ready", 5),
        ];
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let status = calculate_status(&d, &refs, &by_node(&pod_refs), HASH, now(), true);
        assert_eq!(
            (
                status.desired_number_scheduled,
                status.current_number_scheduled,
                status.number_misscheduled,
                status.number_ready,
                status.number_available,
                status.number_unavailable,
                status.updated_number_scheduled,
                status.observed_generation,
            ),
            (3, 2, 1, 1, Some(1), Some(2), Some(1), Some(2))
        );
        let unobserved = calculate_status(&d, &refs, &by_node(&pod_refs), HASH, now(), false);
        assert_eq!(unobserved.observed_generation, None);
    }

    #[test]
    fn unscheduled_pods_for_vanished_nodes_are_deleted() {
        let mut pending = daemon_pod(&ds(json!({})), HASH, "gone");
        pending.metadata.name = Some("p".into());
        let nodes = [node("n0", json!({}))];
        let refs: Vec<&Node> = nodes.iter().collect();
        let pods = [&pending];
        assert_eq!(
            names(&unscheduled_pods_without_node(&refs, &by_node(&pods))),
            ["p"]
        );
    }

    #[test]
    fn history_cleanup_spares_revisions_pods_still_run() {
        let d = ds(json!({"spec": {"revisionHistoryLimit": 1}}));
        let revision = |name: &str, n: i64| ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    [(CONTROLLER_REVISION_HASH_LABEL.to_string(), name.to_string())].into(),
                ),
                ..Default::default()
            },
            data: None,
            revision: n,
        };
        let (r1, r2, r3) = (revision("h1", 1), revision("h2", 2), revision("h3", 3));
        let live: HashSet<&str> = ["h1"].into();
        let gone = revisions_to_clean_up(&d, &[&r3, &r1, &r2], &live);
        let gone: Vec<_> = gone.iter().map(|r| r.revision).collect();
        assert_eq!(gone, [2, 3]);
    }

    #[test]
    fn failed_pod_backoff_doubles() {
        let b = FailedPodBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.attempt("ns/ds/n", t0), Ok(()));
        assert!(b
            .attempt("ns/ds/n", t0 + Duration::from_millis(500))
            .is_err());
        assert_eq!(b.attempt("ns/ds/n", t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(
            b.attempt("ns/ds/n", t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(1)),
            "the second wait is two seconds"
        );
        b.forget_set("ns/ds");
        assert_eq!(b.attempt("ns/ds/n", t0 + Duration::from_secs(2)), Ok(()));
    }
}
