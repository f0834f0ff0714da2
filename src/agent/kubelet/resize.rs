//! In-place pod resize, as kubelet's allocation manager does it (KEP-1287): the resources this node
//! allocated to each resizable container of a pod (app containers and sidecars), kept in the pod's
//! directory so that a restarted agent goes on with them; whether a changed spec (written through
//! `pods/resize`) gets them — Infeasible when the pod would outgrow the node's allocatable, Deferred
//! while the other pods hold the room — and the `PodResizePending` / `PodResizeInProgress` conditions
//! the pod reports meanwhile; then giving the running containers their allocation (through
//! `pod_cgroup`, after kubelet's checks of memory in use) and the `ResizeCompleted` event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodCondition, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{is_sidecar, Runs};
use super::{container, pod_cgroup, sandbox, Kubelet};
use crate::agent::runtime::{ContainerMeta, ContainerState, Resources};
use crate::client::events::Involved;
use crate::scheduler::node_info::{NodeInfo, PodInfo};
use crate::scheduler::plugins::node_resources_fit;

/// In the pod's directory: what was allocated to its containers.
const ALLOCATION_FILE: &str = "allocated-resources.json";

pub const PENDING: &str = "PodResizePending";
pub const IN_PROGRESS: &str = "PodResizeInProgress";
pub const INFEASIBLE: &str = "Infeasible";
pub const DEFERRED: &str = "Deferred";
/// `PodResizeInProgress`'s reason when the allocation could not be applied.
pub const ERROR: &str = "Error";

/// Container name → the requests and limits allocated to it.
pub type Allocation = BTreeMap<String, ResourceRequirements>;

/// The containers whose resources can change in place: the app containers and the sidecars.
fn resizable(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| is_sidecar(c));
    spec.map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(sidecars)
}

/// What the pod's spec asks for.
pub fn of_spec(pod: &Pod) -> Allocation {
    resizable(pod)
        .map(|c| (c.name.clone(), c.resources.clone().unwrap_or_default()))
        .collect()
}

/// Whether the pod's spec asks for what its containers were allocated (a pod's every sync asks, so
/// nothing is copied).
fn is_allocated(pod: &Pod, allocation: &Allocation) -> bool {
    let none = ResourceRequirements::default();
    let mut containers = 0;
    let same = resizable(pod).all(|c| {
        containers += 1;
        allocation.get(&c.name) == Some(c.resources.as_ref().unwrap_or(&none))
    });
    same && containers == allocation.len()
}

/// The pod as this node runs it: its resizable containers with the resources allocated to them.
pub fn allocated_pod(pod: &Pod, allocation: &Allocation) -> Pod {
    let mut pod = pod.clone();
    if let Some(spec) = pod.spec.as_mut() {
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            if let Some(allocated) = allocation.get(&c.name) {
                c.resources = Some(allocated.clone()).filter(|r| *r != Default::default());
            }
        }
    }
    pod
}

/// The allocation recorded in the pod's directory. One that cannot be read is reported and taken as
/// none: the pod then runs with what its spec asks.
pub fn load(pod_dir: &Path) -> Option<Allocation> {
    let path = pod_dir.join(ALLOCATION_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading a pod's allocation");
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .inspect_err(
            |e| tracing::warn!(path = %path.display(), error = %e, "reading a pod's allocation"),
        )
        .ok()
}

/// Writes the allocation through a rename, so that an agent that dies leaves the old one or the new
/// one. Not flushed: every pod's start writes one, and a power loss ends its containers anyway (what
/// is lost then is only the check of a resize still pending, as the pod starts again from its spec).
pub fn save(pod_dir: &Path, allocation: &Allocation) -> std::io::Result<()> {
    std::fs::create_dir_all(pod_dir)?;
    let bytes = serde_json::to_vec(allocation).expect("an allocation serializes");
    crate::shim::write_atomic(
        &pod_dir.join(ALLOCATION_FILE),
        &bytes,
        crate::shim::Durability::Unsynced,
    )
    .map_err(std::io::Error::other)
}

/// Why the node cannot give the pod what it now asks for: Infeasible when it asks more than the node
/// has to allocate at all, Deferred when the other pods' allocations (`others`, as this node runs
/// them) leave too little. kubelet's reasons and messages.
pub fn refusal(pod: &Pod, node: &Arc<Node>, others: &[Arc<Pod>]) -> Option<(&'static str, String)> {
    let mut info = NodeInfo::new(node.clone());
    // What the spec asks, whatever the status says runs or was refused before.
    let wanted = PodInfo::new(Arc::new(Pod {
        status: None,
        ..pod.clone()
    }));
    let (cpu, memory) = (wanted.requests.milli_cpu, wanted.requests.memory);
    let allocatable = &info.allocatable;
    if memory > allocatable.memory {
        return Some((
            INFEASIBLE,
            format!(
                "Node didn't have enough capacity: memory, requested: {memory}, capacity: {}",
                allocatable.memory
            ),
        ));
    }
    if cpu > allocatable.milli_cpu {
        return Some((
            INFEASIBLE,
            format!(
                "Node didn't have enough capacity: cpu, requested: {cpu}, capacity: {}",
                allocatable.milli_cpu
            ),
        ));
    }
    for other in others {
        info.add_pod(other.clone());
    }
    let shortage = node_resources_fit::shortages(&wanted, &info)
        .into_iter()
        .next()?;
    Some((DEFERRED, super::admission::insufficient_resource(&shortage)))
}

/// One of the resize conditions, as the pod reports it while it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizeCondition {
    pub reason: String,
    pub message: String,
    pub observed_generation: Option<i64>,
    pub since: jiff::Timestamp,
}

impl ResizeCondition {
    /// The condition with `reason` (None for a resize simply under way), keeping its transition time
    /// while the reason stays.
    pub fn next(
        old: Option<&ResizeCondition>,
        reason: Option<&str>,
        message: String,
        generation: Option<i64>,
        now: jiff::Timestamp,
    ) -> ResizeCondition {
        let reason = reason.unwrap_or_default();
        let since = old.filter(|o| o.reason == reason).map_or(now, |o| o.since);
        ResizeCondition {
            reason: reason.into(),
            message,
            observed_generation: generation,
            since,
        }
    }

    pub fn to_pod_condition(&self, kind: &str) -> PodCondition {
        PodCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(self.reason.clone()).filter(|r| !r.is_empty()),
            message: Some(self.message.clone()).filter(|m| !m.is_empty()),
            last_transition_time: Some(Time(self.since)),
            observed_generation: self.observed_generation,
            ..Default::default()
        }
    }
}

/// A pod's resize, while one is pending or under way.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResizeState {
    pub pending: Option<ResizeCondition>,
    pub in_progress: Option<ResizeCondition>,
}

/// kubelet's completion event: `Pod resize completed: {"containers":[{"name":…,"resources":…}]}`.
pub fn completed_message(pod: &Pod) -> String {
    let entry = |c: &Container| serde_json::json!({"name": c.name, "resources": c.resources.clone().unwrap_or_default()});
    let (sidecars, containers): (Vec<&Container>, Vec<&Container>) =
        resizable(pod).partition(|c| is_sidecar(c));
    let mut details = serde_json::Map::new();
    if !sidecars.is_empty() {
        details.insert(
            "initContainers".into(),
            sidecars.into_iter().map(entry).collect(),
        );
    }
    details.insert(
        "containers".into(),
        containers.into_iter().map(entry).collect(),
    );
    format!(
        "Pod resize completed: {}",
        serde_json::Value::Object(details)
    )
}

/// The allocation of `uid` in `allocations`, read from its pod directory the first time.
fn allocation_of(
    allocations: &mut HashMap<String, Allocation>,
    data_dir: &Path,
    uid: &str,
) -> Option<Allocation> {
    if let Some(allocation) = allocations.get(uid) {
        return Some(allocation.clone());
    }
    let allocation = load(&sandbox::pod_dir(data_dir, uid))?;
    allocations.insert(uid.to_string(), allocation.clone());
    Some(allocation)
}

impl Kubelet {
    /// The other pods this node runs, as it runs them: admitted, not finished, with their allocations.
    fn allocated_others(
        &self,
        uid: &str,
        allocations: &mut HashMap<String, Allocation>,
    ) -> Vec<Arc<Pod>> {
        let admitted = {
            let admissions = self.admissions.lock().expect("admissions lock");
            self.admitted_others(uid, &admissions)
        };
        admitted
            .into_iter()
            .map(|other| {
                let other_uid = other.metadata.uid.clone().unwrap_or_default();
                match allocation_of(allocations, &self.config.data_dir, &other_uid) {
                    Some(allocation) => Arc::new(allocated_pod(&other, &allocation)),
                    None => other,
                }
            })
            .collect()
    }

    /// The pod as this node runs it: with the spec's resources when it is first admitted, and with a
    /// resize's once the node has room for it. Until then the resize is pending, saying why, and the
    /// pod runs with what it had. Decided under the allocations' lock, so that resizes decided at once
    /// are counted in turn.
    pub(super) fn allocate(&self, pod: &Arc<Pod>, uid: &str, now: jiff::Timestamp) -> Arc<Pod> {
        let mut allocations = self.allocations.lock().expect("allocations lock");
        let current = allocation_of(&mut allocations, &self.config.data_dir, uid);
        let refused = match &current {
            None => None,
            Some(current) if is_allocated(pod, current) => None,
            Some(current) => {
                let Some(node) = self.node.get(&self.config.node_name) else {
                    return Arc::new(allocated_pod(pod, current));
                };
                let others = self.allocated_others(uid, &mut allocations);
                Some(refusal(pod, &node, &others))
            }
        };
        let mut resizes = self.resizes.lock().expect("resizes lock");
        match (current, refused) {
            (Some(current), Some(Some((reason, message)))) => {
                let state = resizes.entry(uid.to_string()).or_default();
                state.pending = Some(ResizeCondition::next(
                    state.pending.as_ref(),
                    Some(reason),
                    message,
                    pod.metadata.generation,
                    now,
                ));
                Arc::new(allocated_pod(pod, &current))
            }
            (Some(_), Some(None)) => {
                let state = resizes.entry(uid.to_string()).or_default();
                state.pending = None;
                state.in_progress = Some(ResizeCondition::next(
                    None,
                    None,
                    String::new(),
                    pod.metadata.generation,
                    now,
                ));
                self.record_allocation(uid, of_spec(pod), &mut allocations);
                drop((resizes, allocations));
                // A pod that shrank leaves room for others.
                self.retry_deferred_resizes(uid);
                pod.clone()
            }
            (Some(_), None) => {
                if let Some(state) = resizes.get_mut(uid) {
                    state.pending = None;
                }
                pod.clone()
            }
            (None, _) => {
                self.record_allocation(uid, of_spec(pod), &mut allocations);
                pod.clone()
            }
        }
    }

    /// The pod's resize, pending or under way, as its status reports it.
    pub(super) fn resize_state(&self, uid: &str) -> ResizeState {
        self.resizes
            .lock()
            .expect("resizes lock")
            .get(uid)
            .cloned()
            .unwrap_or_default()
    }

    fn record_allocation(
        &self,
        uid: &str,
        allocation: Allocation,
        allocations: &mut HashMap<String, Allocation>,
    ) {
        if let Err(e) = save(&sandbox::pod_dir(&self.config.data_dir, uid), &allocation) {
            tracing::warn!(pod = %uid, error = %e, "recording the resources allocated to a pod");
        }
        allocations.insert(uid.to_string(), allocation);
    }

    /// Writes the pod's allocation into the cgroups of the pod and of its running containers whose
    /// limits differ, before the sync starts any container (which then starts under the pod's new
    /// limits). A container whose run was made for another spec (`hashes`) is being restarted, not
    /// changed, and until it is, the pod's limits are only raised. The resize is complete once every
    /// running container has its allocation; one that cannot be written (memory below what is used)
    /// stays in progress with reason Error, tried again at the next sync.
    pub(super) fn actuate_resize(
        &self,
        pod: &Pod,
        uid: &str,
        runs: &HashMap<String, Runs>,
        metas: &HashMap<String, ContainerMeta>,
        hashes: &HashMap<String, String>,
    ) {
        let in_progress = self
            .resizes
            .lock()
            .expect("resizes lock")
            .get(uid)
            .is_some_and(|s| s.in_progress.is_some());
        let mut changes: Vec<(String, Resources)> = Vec::new();
        let mut restarting = false;
        for c in resizable(pod) {
            let running = runs
                .get(&c.name)
                .and_then(|r| r.latest.as_ref())
                .filter(|run| matches!(run.state, ContainerState::Running(_)));
            let (Some(run), Some(meta)) = (running, metas.get(&c.name)) else {
                continue;
            };
            if hashes.get(&c.name).is_some_and(|h| *h != run.spec_hash) {
                restarting = true;
                continue;
            }
            let wanted = container::resources(c);
            match &meta.resources {
                Some(has) if *has == wanted => {}
                // Recorded by an agent that did not say: it was made with what it was allocated.
                None if !in_progress => self.record_limits(&run.id, &wanted),
                _ => changes.push((run.id.clone(), wanted)),
            }
        }
        if changes.is_empty() && !in_progress {
            return;
        }
        let root = Path::new(pod_cgroup::ROOT);
        let result = self.write_resize(root, pod, uid, metas, &changes, !restarting);
        let mut resizes = self.resizes.lock().expect("resizes lock");
        let state = resizes.entry(uid.to_string()).or_default();
        match result {
            Err(message) if state.in_progress.is_some() => {
                state.in_progress = Some(ResizeCondition::next(
                    state.in_progress.as_ref(),
                    Some(ERROR),
                    message,
                    state
                        .in_progress
                        .as_ref()
                        .and_then(|c| c.observed_generation),
                    self.clock.now(),
                ));
            }
            Err(message) => {
                tracing::warn!(pod = %uid, error = %message, "giving containers their limits");
            }
            Ok(()) if restarting => {}
            Ok(()) => {
                if state.in_progress.take().is_some() {
                    self.events.normal(
                        self.clock.as_ref(),
                        &Involved::new("v1", "Pod", &pod.metadata),
                        "ResizeCompleted",
                        &completed_message(pod),
                    );
                }
            }
        }
    }

    fn record_limits(&self, id: &str, limits: &Resources) {
        let recorded = self
            .runtime
            .update_meta(id, |meta| meta.resources = Some(limits.clone()));
        if let Err(e) = recorded {
            tracing::warn!(container = %id, error = %e, "recording a container's limits");
        }
    }

    /// kubelet's checks before it cuts memory (no container and not the pod below what it uses), then
    /// the writes.
    fn write_resize(
        &self,
        root: &Path,
        pod: &Pod,
        uid: &str,
        metas: &HashMap<String, ContainerMeta>,
        changes: &[(String, Resources)],
        lower_pod: bool,
    ) -> Result<(), String> {
        for (id, wanted) in changes {
            let usage = pod_cgroup::memory_usage(root, &pod_cgroup::container_path(uid, id));
            if let (Some(limit), Some(usage)) = (wanted.memory_limit, usage) {
                if limit < usage {
                    let name = metas
                        .values()
                        .find(|m| m.id == *id)
                        .map_or(id.as_str(), |m| m.container.as_str());
                    return Err(format!(
                        "attempting to set container {name:?} memory limit ({limit}) below current usage ({usage})"
                    ));
                }
            }
        }
        let pod_limits = container::pod_resources(pod);
        let pod_usage = pod_cgroup::memory_usage(root, &pod_cgroup::path(uid));
        if let (Some(limit), Some(usage)) = (pod_limits.memory_limit, pod_usage) {
            if limit < usage {
                return Err(format!(
                    "attempting to set pod memory limit ({limit}) below current usage ({usage})"
                ));
            }
        }
        let limits: Vec<(&str, &Resources)> =
            changes.iter().map(|(id, r)| (id.as_str(), r)).collect();
        pod_cgroup::resize(root, uid, &pod_limits, &limits, lower_pod)
            .map_err(|e| e.to_string())?;
        for (id, wanted) in changes {
            self.record_limits(id, wanted);
        }
        Ok(())
    }

    /// Forgets a released pod's allocation (its directory, which holds it, goes too), and looks again
    /// at the resizes deferred for want of the room it held.
    pub(super) fn forget_allocation(&self, uid: &str) {
        self.allocations
            .lock()
            .expect("allocations lock")
            .remove(uid);
        self.resizes.lock().expect("resizes lock").remove(uid);
        self.retry_deferred_resizes(uid);
    }

    /// Syncs again the pods (but `freed_by`) whose resize waits for room, as kubelet retries them when
    /// a pod leaves, finishes or shrinks.
    pub(super) fn retry_deferred_resizes(&self, freed_by: &str) {
        let deferred: HashSet<String> = self
            .resizes
            .lock()
            .expect("resizes lock")
            .iter()
            .filter(|(uid, s)| {
                *uid != freed_by && s.pending.as_ref().is_some_and(|p| p.reason == DEFERRED)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        if deferred.is_empty() {
            return;
        }
        let keys: Vec<String> = self
            .known
            .lock()
            .expect("known lock")
            .iter()
            .filter(|(_, pod)| {
                pod.metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| deferred.contains(u))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.queue.add(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn node(cpu: &str, memory: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}))
            .unwrap(),
        )
    }

    fn asking(cpu: &str, memory: &str) -> Pod {
        pod(
            json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
            "status": {"conditions": [{"type": "PodResizePending", "status": "True", "reason": "Infeasible"}],
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                    "restartCount": 0, "allocatedResources": {"cpu": "10m"},
                    "resources": {"requests": {"cpu": "10m"}}}]}}),
        )
    }

    #[test]
    fn the_allocation_covers_app_containers_and_sidecars_and_replaces_their_resources() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init"}, {"name": "side", "restartPolicy": "Always",
                "resources": {"limits": {"cpu": "1"}}}],
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}}));
        let allocation = of_spec(&p);
        assert_eq!(
            allocation.keys().collect::<Vec<_>>(),
            ["c", "side"],
            "a plain init container is not resizable"
        );
        assert!(is_allocated(&p, &allocation));
        let mut changed = allocation.clone();
        changed.insert(
            "c".into(),
            serde_json::from_value(json!({"requests": {"cpu": "300m"}})).unwrap(),
        );
        assert!(!is_allocated(&p, &changed));
        let mut fewer = allocation.clone();
        fewer.remove("side");
        assert!(!is_allocated(&p, &fewer));
        let allocated = allocated_pod(&p, &changed);
        assert!(is_allocated(&allocated, &changed));
        let spec = allocated.spec.unwrap();
        assert_eq!(
            serde_json::to_value(&spec.containers[0].resources).unwrap(),
            json!({"requests": {"cpu": "300m"}})
        );
        assert_eq!(
            serde_json::to_value(&spec.init_containers.unwrap()[1].resources).unwrap(),
            json!({"limits": {"cpu": "1"}})
        );
    }

    #[test]
    fn an_allocation_survives_in_the_pod_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), None);
        let allocation = of_spec(&asking("100m", "10Mi"));
        save(&dir.path().join("pod"), &allocation).unwrap();
        assert_eq!(load(&dir.path().join("pod")), Some(allocation));
    }

    #[test]
    fn a_resize_beyond_the_node_is_infeasible_and_one_the_other_pods_leave_no_room_for_is_deferred()
    {
        let n = node("2", "1Gi");
        // Judged by what its spec asks, though its status says it runs with less (and was refused).
        let (reason, message) = refusal(&asking("3", "10Mi"), &n, &[]).unwrap();
        assert_eq!(reason, INFEASIBLE);
        assert_eq!(
            message,
            "Node didn't have enough capacity: cpu, requested: 3000, capacity: 2000"
        );
        let (reason, message) = refusal(&asking("3", "2Gi"), &n, &[]).unwrap();
        assert_eq!(reason, INFEASIBLE, "memory is looked at first");
        assert!(
            message.starts_with("Node didn't have enough capacity: memory, requested: 2147483648")
        );
        let other = Arc::new(Pod {
            status: None,
            ..asking("1500m", "10Mi")
        });
        let (reason, message) =
            refusal(&asking("1", "10Mi"), &n, std::slice::from_ref(&other)).unwrap();
        assert_eq!(reason, DEFERRED);
        assert_eq!(
            message,
            "Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000"
        );
        assert_eq!(refusal(&asking("500m", "10Mi"), &n, &[other]), None);
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_reason_stays() {
        let t0 = jiff::Timestamp::from_second(1_000).unwrap();
        let t1 = jiff::Timestamp::from_second(2_000).unwrap();
        let first = ResizeCondition::next(None, Some(DEFERRED), "a".into(), Some(2), t0);
        let same = ResizeCondition::next(Some(&first), Some(DEFERRED), "b".into(), Some(3), t1);
        assert_eq!((same.since, same.observed_generation), (t0, Some(3)));
        let other = ResizeCondition::next(Some(&same), Some(INFEASIBLE), "c".into(), Some(3), t1);
        assert_eq!(other.since, t1);
        let condition = serde_json::to_value(other.to_pod_condition(PENDING)).unwrap();
        assert_eq!(condition["type"], "PodResizePending");
        assert_eq!(condition["status"], "True");
        assert_eq!(condition["reason"], "Infeasible");
        assert_eq!(condition["observedGeneration"], 3);
        let started = ResizeCondition::next(None, None, String::new(), Some(4), t1);
        let condition = serde_json::to_value(started.to_pod_condition(IN_PROGRESS)).unwrap();
        assert!(condition.get("reason").is_none() && condition.get("message").is_none());
    }

    #[test]
    fn the_completion_event_lists_the_allocated_resources() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c0", "resources": {"limits": {"cpu": "100m"}, "requests": {"cpu": "100m"}}}]}}));
        assert_eq!(
            completed_message(&p),
            r#"Pod resize completed: {"containers":[{"name":"c0","resources":{"limits":{"cpu":"100m"},"requests":{"cpu":"100m"}}}]}"#
        );
    }
}
