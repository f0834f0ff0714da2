//! What the scheduler knows about the cluster while it decides: one [`NodeInfo`] per node (the node, the
//! pods bound to it and their aggregated requests and host ports), the [`Snapshot`] of all of them plus
//! the namespace labels and workload selectors some plugins consult, and the parsed forms of pod fields
//! the plugins share ([`PodInfo`], [`Resource`], [`Selector`], [`AffinityTerm`]).
//!
//! Everything expensive about a pod (its requests, host ports, affinity terms) is computed once, when its
//! [`PodInfo`] is built, so a scheduling cycle never re-parses the pods already on a node. Only pods that
//! still hold resources belong in a `NodeInfo`: the caller leaves out pods in phase `Succeeded` or
//! `Failed`, as kube-scheduler's cache does. Terminating pods (with a deletion timestamp) stay, because
//! they still hold their resources until the kubelet confirms they are gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, Node, Pod, PodAffinityTerm, ReplicationController, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::pod_resources;
use crate::api::quantity::{parse_quantity, Quantity as ParsedQuantity, QuantityFormat};
use crate::api::selector::{self, Operator, Requirement};

/// CPU a container without a CPU request is assumed to use when spreading by load (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request is assumed to use when spreading by load (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

const RESOURCE_CPU: &str = "cpu";
const RESOURCE_MEMORY: &str = "memory";
const RESOURCE_EPHEMERAL_STORAGE: &str = "ephemeral-storage";
const RESOURCE_PODS: &str = "pods";

/// The labels of an object that has none.
pub static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The labels of an object's metadata, empty when it has none.
pub fn labels_of(labels: &Option<BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    labels.as_ref().unwrap_or(&NO_LABELS)
}

/// Amounts of the resources the scheduler accounts for: CPU in millicores, everything else in units
/// (bytes for memory and storage). `scalar` holds extended resources, hugepages and other
/// `vendor/name` resources; resources of any other shape are not scheduled on, as upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// A resource list (`status.allocatable`, a pod's aggregated requests) in these units.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        Self::from_millis(&millis_of(Some(list)))
    }

    fn from_millis(list: &Millis) -> Self {
        let mut r = Resource::default();
        for (name, &millis) in list {
            let units = clamp_i64(div_away_from_zero(millis, 1000));
            match name.as_str() {
                RESOURCE_CPU => r.milli_cpu += clamp_i64(millis),
                RESOURCE_MEMORY => r.memory += units,
                RESOURCE_EPHEMERAL_STORAGE => r.ephemeral_storage += units,
                RESOURCE_PODS => r.allowed_pod_number += units,
                _ if is_scalar_resource_name(name) => {
                    *r.scalar.entry(name.clone()).or_default() += units
                }
                _ => {}
            }
        }
        r
    }

    fn add(&mut self, other: &Resource) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pod_number += other.allowed_pod_number;
        for (name, v) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += v;
        }
    }

    fn sub(&mut self, other: &Resource) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pod_number -= other.allowed_pod_number;
        for (name, v) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= v;
        }
    }
}

/// Extended (`example.com/gpu`), hugepages, prefixed native (`kubernetes.io/...`) and attachable-volume
/// resources; `schedutil.IsScalarResourceName` upstream.
pub fn is_scalar_resource_name(name: &str) -> bool {
    pod_resources::is_extended_resource(name)
        || name.starts_with("hugepages-")
        || name.contains("kubernetes.io/")
        || name.starts_with("attachable-volumes-")
}

/// A resource list in milli-units, converted to units once at the end, as upstream adds `Quantity`
/// values before taking `Value()`.
type Millis = BTreeMap<String, i128>;

fn millis_of(list: Option<&BTreeMap<String, Quantity>>) -> Millis {
    let mut out = Millis::new();
    for (name, q) in list.into_iter().flatten() {
        // Invalid quantities cannot pass API validation; count them as zero rather than fail.
        if let Ok(q) = parse_quantity(&q.0) {
            out.insert(name.clone(), q.to_millis());
        }
    }
    out
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

fn div_away_from_zero(value: i128, divisor: i128) -> i128 {
    let q = value / divisor;
    if value % divisor == 0 {
        q
    } else {
        q + value.signum()
    }
}

/// A pod's effective requests (`resourcehelper.PodRequests`), a resize under way counted at its larger
/// side; `defaults` fills in a request a container does not state at all (`NonMissingContainerRequests`).
fn pod_requests(pod: &Pod, defaults: &[(&str, ParsedQuantity)]) -> Millis {
    let options = pod_resources::Options {
        use_status_resources: true,
        non_missing_requests: defaults,
        ..Default::default()
    };
    pod_resources::pod_requests(pod, &options)
        .into_iter()
        .map(|(name, q)| (name, q.to_millis()))
        .collect()
}

fn default_cpu_request() -> ParsedQuantity {
    ParsedQuantity::from_nano_units(
        i128::from(DEFAULT_MILLI_CPU_REQUEST) * 1_000_000,
        QuantityFormat::DecimalSi,
    )
}

fn default_memory_request() -> ParsedQuantity {
    ParsedQuantity::from_units(i128::from(DEFAULT_MEMORY_REQUEST), QuantityFormat::BinarySi)
}

/// The requests NodeResourcesFit scores an incoming pod with under LeastAllocated/MostAllocated: every
/// container that states no CPU or memory request is counted at 100m / 200 MiB.
pub fn pod_requests_for_scoring(pod: &Pod) -> (i64, i64) {
    let r = pod_requests(
        pod,
        &[
            (RESOURCE_CPU, default_cpu_request()),
            (RESOURCE_MEMORY, default_memory_request()),
        ],
    );
    let res = Resource::from_millis(&r);
    (res.milli_cpu, res.memory)
}

/// A parsed label selector over `map[string]string` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Kubernetes' `labels.Nothing()`: what a null (or unparsable) `metav1.LabelSelector` becomes.
    Nothing,
    /// A conjunction of requirements; none selects everything.
    Match(Vec<Requirement>),
}

impl Selector {
    pub fn everything() -> Self {
        Selector::Match(Vec::new())
    }

    /// `metav1.LabelSelectorAsSelector`. Selectors the API server would reject select nothing.
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Self {
        let Some(sel) = sel else {
            return Selector::Nothing;
        };
        let parsed = serde_json::to_value(sel)
            .ok()
            .and_then(|json| selector::LabelSelector::from_json(&json).ok());
        match parsed {
            Some(s) => Selector::Match(s.requirements),
            None => Selector::Nothing,
        }
    }

    /// `labels.SelectorFromSet`: every label must be present with that value.
    pub fn from_set(set: &BTreeMap<String, String>) -> Self {
        Selector::Match(set.iter().map(|(k, v)| equals(k, v)).collect())
    }

    /// Go's `Selector.Empty()`: selects everything.
    pub fn is_everything(&self) -> bool {
        matches!(self, Selector::Match(r) if r.is_empty())
    }

    /// Adds requirements; `Nothing` stays nothing, as upstream.
    pub fn add(&mut self, more: impl IntoIterator<Item = Requirement>) {
        if let Selector::Match(reqs) = self {
            reqs.extend(more);
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::Nothing => false,
            Selector::Match(reqs) => reqs.iter().all(|r| requirement_matches(r, labels)),
        }
    }
}

/// A `key = value` requirement.
pub fn equals(key: &str, value: &str) -> Requirement {
    Requirement {
        key: key.to_string(),
        operator: Operator::Equals,
        values: vec![value.to_string()],
    }
}

/// `labels.Requirement.Matches` over a label map.
pub fn requirement_matches(r: &Requirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&r.key).map(String::as_str);
    let has = |v: &str| r.values.iter().any(|x| x == v);
    match r.operator {
        Operator::In | Operator::Equals => value.is_some_and(has),
        Operator::NotIn | Operator::NotEquals => !value.is_some_and(has),
        Operator::Exists => value.is_some(),
        Operator::DoesNotExist => value.is_none(),
        Operator::GreaterThan | Operator::LessThan => {
            let (Some(actual), [bound]) = (value, r.values.as_slice()) else {
                return false;
            };
            let (Ok(actual), Ok(bound)) = (actual.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if r.operator == Operator::GreaterThan {
                actual > bound
            } else {
                actual < bound
            }
        }
    }
}

/// A pod (anti-)affinity term with its selectors parsed (`framework.AffinityTerm`).
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    /// Namespaces named by the term, or the owning pod's own namespace when it names none and has no
    /// namespace selector.
    pub namespaces: BTreeSet<String>,
    pub namespace_selector: Selector,
    pub selector: Selector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(owner_namespace: &str, term: &PodAffinityTerm) -> Self {
        let listed = term.namespaces.as_deref().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([owner_namespace.to_string()])
        } else {
            listed.iter().cloned().collect()
        };
        AffinityTerm {
            namespaces,
            namespace_selector: Selector::from_label_selector(term.namespace_selector.as_ref()),
            selector: Selector::from_label_selector(term.label_selector.as_ref()),
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod`, living in a namespace labelled `namespace_labels`, is selected by the term.
    pub fn matches(&self, pod: &Pod, namespace_labels: &BTreeMap<String, String>) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        (self.namespaces.contains(ns) || self.namespace_selector.matches(namespace_labels))
            && self.selector.matches(labels_of(&pod.metadata.labels))
    }
}

/// A preferred (anti-)affinity term and its weight.
#[derive(Debug, Clone)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

/// A host port a pod binds on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

const BIND_ALL_HOST_IP: &str = "0.0.0.0";

impl HostPort {
    /// Empty IP means all addresses and empty protocol means TCP (`HostPortInfo.sanitize`).
    fn new(ip: Option<&str>, protocol: Option<&str>, port: i32) -> Self {
        let ip = ip.filter(|s| !s.is_empty()).unwrap_or(BIND_ALL_HOST_IP);
        let protocol = protocol.filter(|s| !s.is_empty()).unwrap_or("TCP");
        HostPort {
            ip: ip.to_string(),
            protocol: protocol.to_string(),
            port,
        }
    }
}

/// The host ports in use on a node (`HostPortInfo`), one entry per pod that uses it.
#[derive(Debug, Clone, Default)]
pub struct HostPortInfo {
    ports: Vec<HostPort>,
}

impl HostPortInfo {
    /// Whether binding `want` would clash: `0.0.0.0` clashes with the same protocol and port on any
    /// address, a specific address with itself and with `0.0.0.0`.
    pub fn conflicts(&self, want: &HostPort) -> bool {
        self.ports.iter().any(|used| {
            used.port == want.port
                && used.protocol == want.protocol
                && (want.ip == BIND_ALL_HOST_IP
                    || used.ip == BIND_ALL_HOST_IP
                    || used.ip == want.ip)
        })
    }

    fn add(&mut self, port: &HostPort) {
        self.ports.push(port.clone());
    }

    fn remove(&mut self, port: &HostPort) {
        if let Some(i) = self.ports.iter().position(|p| p == port) {
            self.ports.swap_remove(i);
        }
    }
}

/// A pod with everything the plugins derive from it computed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// Effective requests (`PodRequests`), what NodeResourcesFit filters on.
    pub requests: Resource,
    /// CPU and memory as counted for spreading by load: 100m / 200 MiB for each container without a
    /// request when the pod as a whole requests none of it (`NodeInfo.calculateResource`).
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    /// Host ports of app containers and sidecars (`GetHostPorts`).
    pub host_ports: Vec<HostPort>,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    /// The pod sets `podAffinity` or `podAntiAffinity` at all (`podWithAffinity`).
    pub has_pod_affinity: bool,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let requests_millis = pod_requests(&pod, &[]);
        let requests = Resource::from_millis(&requests_millis);
        let (non_zero_milli_cpu, non_zero_memory) = non_zero_requests(&pod, &requests);

        let spec = pod.spec.as_ref();
        let mut host_ports = Vec::new();
        if let Some(spec) = spec {
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            for c in sidecars.chain(&spec.containers) {
                for p in c.ports.iter().flatten() {
                    if let Some(port) = p.host_port.filter(|&p| p > 0) {
                        host_ports.push(HostPort::new(
                            p.host_ip.as_deref(),
                            p.protocol.as_deref(),
                            port,
                        ));
                    }
                }
            }
        }

        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti_affinity = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(ns, t))
                .collect()
        };
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|t| WeightedAffinityTerm {
                        term: AffinityTerm::new(ns, &t.pod_affinity_term),
                        weight: t.weight,
                    })
                    .collect::<Vec<_>>()
            };
        PodInfo {
            required_affinity_terms: required(pod_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity_terms: required(pod_anti_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity_terms: preferred(pod_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity_terms: preferred(pod_anti_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            has_pod_affinity: pod_affinity.is_some() || pod_anti_affinity.is_some(),
            requests,
            non_zero_milli_cpu,
            non_zero_memory,
            host_ports,
            pod,
        }
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        labels_of(&self.pod.metadata.labels)
    }

    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or_default()
    }
}

/// Defaults apply only to a resource the pod requests none of, and then only to the containers that
/// state no request for it; pod-level requests switch defaulting off.
fn non_zero_requests(pod: &Pod, requests: &Resource) -> (i64, i64) {
    if pod_resources::pod_level_requests_set(pod) {
        return (requests.milli_cpu, requests.memory);
    }
    let mut defaults = Vec::new();
    if requests.milli_cpu == 0 {
        defaults.push((RESOURCE_CPU, default_cpu_request()));
    }
    if requests.memory == 0 {
        defaults.push((RESOURCE_MEMORY, default_memory_request()));
    }
    if defaults.is_empty() {
        return (requests.milli_cpu, requests.memory);
    }
    let r = Resource::from_millis(&pod_requests(pod, &defaults));
    (r.milli_cpu, r.memory)
}

/// A node and the pods bound to it, with their requests and host ports summed up.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<Arc<PodInfo>>,
    /// The subset of `pods` that set pod affinity or anti-affinity.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// The subset of `pods` with required anti-affinity terms.
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
    pub allocatable: Resource,
    pub requested: Resource,
    /// Requested CPU and memory with unset requests counted at the defaults (only `milli_cpu` and
    /// `memory` are kept).
    pub non_zero_requested: Resource,
    pub used_ports: HostPortInfo,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let allocatable = allocatable_of(&node);
        NodeInfo {
            node,
            pods: Vec::new(),
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
            allocatable,
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            used_ports: HostPortInfo::default(),
        }
    }

    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        labels_of(&self.node.metadata.labels)
    }

    pub fn taints(&self) -> &[k8s_openapi::api::core::v1::Taint] {
        self.node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    /// Replaces the node object (labels, taints or allocatable changed), keeping its pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = allocatable_of(&node);
        self.node = node;
    }

    pub fn add_pod(&mut self, pod: Arc<Pod>) {
        self.add_pod_info(Arc::new(PodInfo::new(pod)));
    }

    pub fn add_pod_info(&mut self, info: Arc<PodInfo>) {
        self.requested.add(&info.requests);
        self.non_zero_requested.milli_cpu += info.non_zero_milli_cpu;
        self.non_zero_requested.memory += info.non_zero_memory;
        for port in &info.host_ports {
            self.used_ports.add(port);
        }
        if info.has_pod_affinity {
            self.pods_with_affinity.push(info.clone());
        }
        if !info.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity.push(info.clone());
        }
        self.pods.push(info);
    }

    /// Removes the pod with this UID; false if it is not on the node.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid() == uid) else {
            return false;
        };
        let info = self.pods.remove(i);
        self.pods_with_affinity.retain(|p| p.uid() != uid);
        self.pods_with_required_anti_affinity
            .retain(|p| p.uid() != uid);
        self.requested.sub(&info.requests);
        self.non_zero_requested.milli_cpu -= info.non_zero_milli_cpu;
        self.non_zero_requested.memory -= info.non_zero_memory;
        for port in &info.host_ports {
            self.used_ports.remove(port);
        }
        true
    }
}

fn allocatable_of(node: &Node) -> Resource {
    let list = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    list.map(Resource::from_list).unwrap_or_default()
}

/// The owner kinds whose selectors make up the default spreading selector.
#[derive(Debug, Clone)]
enum WorkloadSelector {
    /// A ReplicationController's `spec.selector` map, merged into the label set.
    LabelSet(BTreeMap<String, String>),
    /// A ReplicaSet's or StatefulSet's selector, whose requirements are added.
    Requirements(Selector),
}

/// A consistent view of the cluster for one scheduling cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// In the order ties are broken in. Change pods in place as you like, but add, remove or rename
    /// nodes by building a new snapshot: the name index is built once.
    pub nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// Non-nil Service selectors by namespace.
    service_selectors: HashMap<String, Vec<BTreeMap<String, String>>>,
    /// Controller selectors by (kind, namespace, name).
    controllers: HashMap<(&'static str, String, String), WorkloadSelector>,
}

impl Snapshot {
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name().to_string(), i))
            .collect();
        Snapshot {
            nodes,
            index,
            ..Snapshot::default()
        }
    }

    pub fn get(&self, node_name: &str) -> Option<&NodeInfo> {
        self.index.get(node_name).map(|&i| &self.nodes[i])
    }

    /// For adding or removing pods between cycles, e.g. the pod just assumed onto the node.
    pub fn get_mut(&mut self, node_name: &str) -> Option<&mut NodeInfo> {
        self.index.get(node_name).map(|&i| &mut self.nodes[i])
    }

    /// Records a namespace's labels, which pod affinity `namespaceSelector`s match against.
    pub fn add_namespace(&mut self, ns: &Namespace) {
        let name = ns.metadata.name.clone().unwrap_or_default();
        self.namespace_labels
            .insert(name, labels_of(&ns.metadata.labels).clone());
    }

    /// A namespace's labels; a namespace the snapshot does not know has none.
    pub fn namespace_labels(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.namespace_labels.get(namespace).unwrap_or(&NO_LABELS)
    }

    /// The names of the known namespaces whose labels `selector` matches.
    pub fn namespaces_matching<'a>(
        &'a self,
        selector: &'a Selector,
    ) -> impl Iterator<Item = &'a str> {
        self.namespace_labels
            .iter()
            .filter(|(_, labels)| selector.matches(labels))
            .map(|(name, _)| name.as_str())
    }

    /// Services, ReplicationControllers, ReplicaSets and StatefulSets feed the selector the default
    /// topology spreading constraints count pods with.
    pub fn add_service(&mut self, svc: &Service) {
        if let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
            let ns = svc.metadata.namespace.clone().unwrap_or_default();
            self.service_selectors
                .entry(ns)
                .or_default()
                .push(sel.clone());
        }
    }

    pub fn add_replication_controller(&mut self, rc: &ReplicationController) {
        let sel = rc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        self.add_controller(
            "ReplicationController",
            &rc.metadata,
            WorkloadSelector::LabelSet(sel),
        );
    }

    pub fn add_replica_set(&mut self, rs: &ReplicaSet) {
        let sel = Selector::from_label_selector(rs.spec.as_ref().map(|s| &s.selector));
        self.add_controller(
            "ReplicaSet",
            &rs.metadata,
            WorkloadSelector::Requirements(sel),
        );
    }

    pub fn add_stateful_set(&mut self, ss: &StatefulSet) {
        let sel = Selector::from_label_selector(ss.spec.as_ref().map(|s| &s.selector));
        self.add_controller(
            "StatefulSet",
            &ss.metadata,
            WorkloadSelector::Requirements(sel),
        );
    }

    fn add_controller(
        &mut self,
        kind: &'static str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        selector: WorkloadSelector,
    ) {
        let key = (
            kind,
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        self.controllers.insert(key, selector);
    }

    /// The selector of the Services and the controller that own `pod` (`helper.DefaultSelector`):
    /// the merged label sets of the Services selecting it and of its ReplicationController, plus the
    /// requirements of its ReplicaSet or StatefulSet. Empty when nothing owns or fronts the pod.
    pub fn default_spread_selector(&self, pod: &Pod) -> Selector {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pod_labels = labels_of(&pod.metadata.labels);
        let mut set = BTreeMap::new();
        for sel in self.service_selectors.get(ns).into_iter().flatten() {
            if sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
                set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        let Some(owner) = owner else {
            return Selector::from_set(&set);
        };
        let kind = match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("v1", "ReplicationController") => "ReplicationController",
            ("apps/v1", "ReplicaSet") => "ReplicaSet",
            ("apps/v1", "StatefulSet") => "StatefulSet",
            _ => return Selector::from_set(&set),
        };
        match self
            .controllers
            .get(&(kind, ns.to_string(), owner.name.clone()))
        {
            Some(WorkloadSelector::LabelSet(rc)) => {
                set.extend(rc.iter().map(|(k, v)| (k.clone(), v.clone())));
                Selector::from_set(&set)
            }
            Some(WorkloadSelector::Requirements(Selector::Match(reqs))) => {
                let mut sel = Selector::from_set(&set);
                sel.add(reqs.iter().cloned());
                sel
            }
            Some(WorkloadSelector::Requirements(Selector::Nothing)) | None => {
                Selector::from_set(&set)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"}, "spec": spec}))
                .unwrap(),
        )
    }

    fn container(requests: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "resources": {"requests": requests}})
    }

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let p = PodInfo::new(pod(json!({
            "initContainers": [container(json!({"cpu": "2", "memory": "3G"})), container(json!({"cpu": "2", "memory": "1G"}))],
            "containers": [container(json!({"cpu": "2", "memory": "1G"})), container(json!({"cpu": "1", "memory": "1G"}))],
        })));
        assert_eq!(p.requests.milli_cpu, 3000);
        assert_eq!(p.requests.memory, 3_000_000_000);
    }

    #[test]
    fn a_pod_being_resized_counts_at_the_larger_side_unless_its_resize_is_infeasible() {
        let resized = |condition: serde_json::Value| {
            let mut p = (*pod(json!({"containers": [container(json!({"cpu": "1"}))]}))).clone();
            p.status = Some(
                serde_json::from_value(json!({
                    "conditions": condition,
                    "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                        "restartCount": 0, "allocatedResources": {"cpu": "300m"},
                        "resources": {"requests": {"cpu": "200m"}}}]}))
                .unwrap(),
            );
            PodInfo::new(Arc::new(p)).requests.milli_cpu
        };
        assert_eq!(
            resized(json!([])),
            1000,
            "a growth under way counts as done"
        );
        let infeasible =
            json!([{"type": "PodResizePending", "status": "True", "reason": "Infeasible"}]);
        assert_eq!(
            resized(infeasible),
            300,
            "an infeasible growth does not count"
        );
        let deferred =
            json!([{"type": "PodResizePending", "status": "True", "reason": "Deferred"}]);
        assert_eq!(resized(deferred), 1000);
        let mut shrinking =
            (*pod(json!({"containers": [container(json!({"cpu": "100m"}))]}))).clone();
        shrinking.status = Some(
            serde_json::from_value(json!({"containerStatuses": [{"name": "c", "image": "i",
                "imageID": "", "ready": true, "restartCount": 0,
                "allocatedResources": {"cpu": "100m"}, "resources": {"requests": {"cpu": "500m"}}}]}))
            .unwrap(),
        );
        assert_eq!(
            PodInfo::new(Arc::new(shrinking)).requests.milli_cpu,
            500,
            "a cut counts once the container runs with it"
        );
        // Sides are taken per pod, not per container: one container growing while another shrinks
        // counts as the larger of the two pod totals, 2.1 cores, not 2 + 500m.
        let status = |name: &str, cpu: &str| {
            json!({"name": name, "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "allocatedResources": {"cpu": cpu}, "resources": {"requests": {"cpu": cpu}}})
        };
        let mut both = (*pod(json!({"containers": [
            {"name": "a", "image": "i", "resources": {"requests": {"cpu": "2"}}},
            {"name": "b", "image": "i", "resources": {"requests": {"cpu": "100m"}}},
        ]})))
        .clone();
        both.status = Some(
            serde_json::from_value(json!({
                "conditions": [{"type": "PodResizePending", "status": "True", "reason": "Deferred"}],
                "containerStatuses": [status("a", "1"), status("b", "500m")]}))
            .unwrap(),
        );
        assert_eq!(PodInfo::new(Arc::new(both)).requests.milli_cpu, 2100);
    }

    #[test]
    fn sidecars_count_like_app_containers_and_before_later_init_containers() {
        let mut sidecar = container(json!({"cpu": "500m"}));
        sidecar["restartPolicy"] = json!("Always");
        let p = PodInfo::new(pod(json!({
            "initContainers": [sidecar, container(json!({"cpu": "1"}))],
            "containers": [container(json!({"cpu": "200m"}))],
        })));
        // Running: 200m + 500m; during the second init container: 500m + 1.
        assert_eq!(p.requests.milli_cpu, 1500);
    }

    #[test]
    fn overhead_pod_level_and_extended_resources() {
        let p = PodInfo::new(pod(json!({
            "overhead": {"cpu": "100m", "memory": "10Mi"},
            "resources": {"requests": {"memory": "1Gi"}},
            "containers": [container(json!({"cpu": "1", "memory": "100Mi", "example.com/gpu": "2", "foo": "1"}))],
        })));
        assert_eq!(p.requests.milli_cpu, 1100);
        assert_eq!(p.requests.memory, (1024 + 10) * 1024 * 1024);
        assert_eq!(
            p.requests.scalar,
            BTreeMap::from([("example.com/gpu".to_string(), 2)])
        );
        // Pod-level requests switch the non-zero defaults off.
        assert_eq!(p.non_zero_milli_cpu, 1100);
    }

    #[test]
    fn non_zero_defaults_apply_only_to_resources_the_pod_requests_none_of() {
        let p = PodInfo::new(pod(
            json!({"containers": [container(json!({})), container(json!({}))]}),
        ));
        assert_eq!(
            (p.non_zero_milli_cpu, p.non_zero_memory),
            (200, 2 * DEFAULT_MEMORY_REQUEST)
        );
        let p = PodInfo::new(pod(
            json!({"containers": [container(json!({"cpu": "300m"})), container(json!({}))]}),
        ));
        assert_eq!(
            (p.non_zero_milli_cpu, p.non_zero_memory),
            (300, 2 * DEFAULT_MEMORY_REQUEST)
        );
        assert_eq!(
            pod_requests_for_scoring(&p.pod),
            (400, 2 * DEFAULT_MEMORY_REQUEST)
        );
    }

    #[test]
    fn node_info_accounts_pods_and_ports() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "hugepages-2Mi": "0"}},
        }))
        .unwrap();
        let mut ni = NodeInfo::new(Arc::new(node));
        assert_eq!(ni.allocatable.milli_cpu, 4000);
        assert_eq!(ni.allocatable.allowed_pod_number, 110);
        let p = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}],
            "resources": {"requests": {"cpu": "1"}}}]}),
        );
        ni.add_pod(p);
        assert_eq!(ni.requested.milli_cpu, 1000);
        assert_eq!(ni.non_zero_requested.memory, DEFAULT_MEMORY_REQUEST);
        let want = HostPort::new(Some("10.0.0.1"), None, 8080);
        assert!(ni.used_ports.conflicts(&want));
        assert!(!ni
            .used_ports
            .conflicts(&HostPort::new(None, Some("UDP"), 8080)));
        assert!(ni.remove_pod("u1"));
        assert!(!ni.remove_pod("u1"));
        assert_eq!(
            ni.requested,
            Resource {
                scalar: BTreeMap::new(),
                ..Resource::default()
            }
        );
        assert!(!ni.used_ports.conflicts(&want));
    }

    #[test]
    fn host_port_conflicts_by_address() {
        let mut used = HostPortInfo::default();
        used.add(&HostPort::new(Some("127.0.0.1"), None, 80));
        assert!(used.conflicts(&HostPort::new(None, None, 80)));
        assert!(used.conflicts(&HostPort::new(Some("127.0.0.1"), Some("TCP"), 80)));
        assert!(!used.conflicts(&HostPort::new(Some("127.0.0.2"), None, 80)));
    }

    #[test]
    fn selectors() {
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("n".to_string(), "5".to_string()),
        ]);
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}],
        }))
        .unwrap();
        assert!(Selector::from_label_selector(Some(&sel)).matches(&labels));
        assert!(!Selector::from_label_selector(None).matches(&labels));
        assert!(Selector::from_label_selector(Some(&LabelSelector::default())).is_everything());
        let gt = Requirement {
            key: "n".into(),
            operator: Operator::GreaterThan,
            values: vec!["4".into()],
        };
        assert!(requirement_matches(&gt, &labels));
        let bad: LabelSelector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .unwrap();
        assert_eq!(Selector::from_label_selector(Some(&bad)), Selector::Nothing);
    }

    #[test]
    fn default_spread_selector_merges_services_and_owner() {
        let mut snap = Snapshot::new(Vec::new());
        let svc: Service =
            serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "default"},
            "spec": {"selector": {"app": "web"}}}))
            .unwrap();
        snap.add_service(&svc);
        let rs: ReplicaSet =
            serde_json::from_value(json!({"metadata": {"name": "rs", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"hash": "abc"}}}}))
            .unwrap();
        snap.add_replica_set(&rs);
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default",
            "labels": {"app": "web", "hash": "abc"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "x", "controller": true}]}}))
            .unwrap();
        let sel = snap.default_spread_selector(&p);
        assert_eq!(
            sel,
            Selector::Match(vec![equals("app", "web"), equals("hash", "abc")])
        );
        let lone: Pod =
            serde_json::from_value(json!({"metadata": {"name": "q", "namespace": "other"}}))
                .unwrap();
        assert!(snap.default_spread_selector(&lone).is_everything());
    }
}
