//! The scheduler's view of the cluster: a `Snapshot` of nodes with their pods, kept current from the
//! informers — pod changes are applied in place before each decision, and node additions or removals and
//! changes to namespaces, services and workloads (which default spreading reads) rebuild it. Pods the
//! scheduler just placed are *assumed* onto their node until the informer shows them bound, so decisions
//! made before the binding lands still count them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;

use super::framework::{Framework, ScheduleError};
use super::node_info::{NodeInfo, Snapshot};
use crate::client::{Change, Informer, SharedInformers};

const MAX_PENDING_UPDATES: usize = 10_000;

/// Informers whose every change invalidates the snapshot.
pub trait Structural {
    fn on_any_change(&self, handler: Box<dyn Fn() + Send + Sync>);
}

impl<K> Structural for Informer<K>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    fn on_any_change(&self, handler: Box<dyn Fn() + Send + Sync>) {
        self.on_change(move |_| handler());
    }
}

enum PodUpdate {
    Upsert(Arc<Pod>),
    Remove(String),
}

#[derive(Default)]
struct State {
    snapshot: Snapshot,
    needs_rebuild: bool,
    pending_pods: Vec<PodUpdate>,
    pending_nodes: Vec<Arc<Node>>,
    /// Which node each pod in the snapshot sits on, by UID.
    locations: HashMap<String, String>,
    /// Pods placed by this scheduler whose binding the informer has not shown yet, by UID.
    assumed: HashMap<String, Arc<Pod>>,
}

pub struct Cache {
    informers: Arc<SharedInformers>,
    state: Mutex<State>,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Pods that hold node resources: bound and not finished.
fn occupies_node(pod: &Pod) -> bool {
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    );
    bound_node(pod).is_some() && !finished
}

impl Cache {
    pub fn new(informers: Arc<SharedInformers>) -> Self {
        Cache {
            informers,
            state: Mutex::new(State {
                needs_rebuild: true,
                ..State::default()
            }),
        }
    }

    pub fn pod_changed(&self, change: &Change<Pod>) {
        let update = match change {
            Change::Deleted(pod) => PodUpdate::Remove(uid(pod)),
            other => PodUpdate::Upsert(other.object().clone()),
        };
        let mut state = self.state.lock().expect("cache lock");
        if state.needs_rebuild {
            return;
        }
        state.pending_pods.push(update);
        // Updates are applied when a pod is scheduled; a scheduler with nothing to do would hoard them,
        // so past a bound the next decision rebuilds from the informers instead.
        if state.pending_pods.len() > MAX_PENDING_UPDATES {
            state.pending_pods.clear();
            state.needs_rebuild = true;
        }
    }

    pub fn node_changed(&self, change: &Change<Node>) {
        let mut state = self.state.lock().expect("cache lock");
        match change {
            Change::Modified { new, .. } if !state.needs_rebuild => {
                state.pending_nodes.push(new.clone());
                if state.pending_nodes.len() > MAX_PENDING_UPDATES {
                    state.pending_nodes.clear();
                    state.needs_rebuild = true;
                }
            }
            Change::Modified { .. } => {}
            _ => state.needs_rebuild = true,
        }
    }

    pub fn mark_structural_change(&self) {
        self.state.lock().expect("cache lock").needs_rebuild = true;
    }

    pub fn is_assumed(&self, pod: &Pod) -> bool {
        self.state
            .lock()
            .expect("cache lock")
            .assumed
            .contains_key(&uid(pod))
    }

    /// Picks a node for the pod and assumes the pod onto it.
    pub fn schedule(&self, framework: &Framework, pod: &Pod) -> Result<String, ScheduleError> {
        let mut state = self.state.lock().expect("cache lock");
        self.refresh(&mut state);
        let node = framework.schedule(pod, &state.snapshot)?;
        let mut placed = pod.clone();
        placed.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
        let placed = Arc::new(placed);
        if let Some(info) = state.snapshot.get_mut(&node) {
            info.add_pod(placed.clone());
        }
        let id = uid(pod);
        state.locations.insert(id.clone(), node.clone());
        state.assumed.insert(id, placed);
        Ok(node)
    }

    /// Takes back an assumed pod whose binding failed.
    pub fn forget_assumed(&self, pod: &Pod) {
        let mut state = self.state.lock().expect("cache lock");
        let id = uid(pod);
        if state.assumed.remove(&id).is_some() {
            if let Some(node) = state.locations.remove(&id) {
                if let Some(info) = state.snapshot.get_mut(&node) {
                    info.remove_pod(&id);
                }
            }
        }
    }

    fn refresh(&self, state: &mut State) {
        if state.needs_rebuild {
            self.rebuild(state);
            return;
        }
        for node in std::mem::take(&mut state.pending_nodes) {
            let name = node.metadata.name.clone().unwrap_or_default();
            match state.snapshot.get_mut(&name) {
                Some(info) => info.set_node(node),
                None => {
                    self.rebuild(state);
                    return;
                }
            }
        }
        for update in std::mem::take(&mut state.pending_pods) {
            let (id, pod) = match update {
                PodUpdate::Remove(id) => (id, None),
                PodUpdate::Upsert(pod) => (uid(&pod), Some(pod)),
            };
            if state.assumed.contains_key(&id) {
                match &pod {
                    // Still unbound in the informer: the assumption stands.
                    Some(p) if bound_node(p).is_none() => continue,
                    _ => {
                        state.assumed.remove(&id);
                    }
                }
            }
            if let Some(node) = state.locations.remove(&id) {
                if let Some(info) = state.snapshot.get_mut(&node) {
                    info.remove_pod(&id);
                }
            }
            if let Some(pod) = pod.filter(|p| occupies_node(p)) {
                let node = bound_node(&pod).unwrap_or_default().to_string();
                if let Some(info) = state.snapshot.get_mut(&node) {
                    info.add_pod(pod);
                    state.locations.insert(id, node);
                }
            }
        }
    }

    fn rebuild(&self, state: &mut State) {
        let mut nodes: Vec<Arc<Node>> = self.informers.nodes.list();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut snapshot = Snapshot::new(nodes.into_iter().map(NodeInfo::new).collect());
        let mut locations = HashMap::new();
        let pods = self.informers.pods.list();
        let informer_bound: std::collections::HashSet<String> = pods
            .iter()
            .filter(|p| bound_node(p).is_some())
            .map(|p| uid(p))
            .collect();
        state.assumed.retain(|id, _| !informer_bound.contains(id));
        let assumed = state.assumed.values().cloned();
        for pod in pods.into_iter().filter(|p| occupies_node(p)).chain(assumed) {
            let node = bound_node(&pod).unwrap_or_default().to_string();
            if let Some(info) = snapshot.get_mut(&node) {
                locations.insert(uid(&pod), node);
                info.add_pod(pod);
            }
        }
        for ns in self.informers.namespaces.list() {
            snapshot.add_namespace(&ns);
        }
        for svc in self.informers.services.list() {
            snapshot.add_service(&svc);
        }
        for rs in self.informers.replica_sets.list() {
            snapshot.add_replica_set(&rs);
        }
        for ss in self.informers.stateful_sets.list() {
            snapshot.add_stateful_set(&ss);
        }
        state.snapshot = snapshot;
        state.locations = locations;
        state.pending_pods.clear();
        state.pending_nodes.clear();
        state.needs_rebuild = false;
    }
}
