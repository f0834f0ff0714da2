//! The scheduling framework: plugin traits, the per-cycle state they share, [`Status`] with its code,
//! and [`Framework::schedule`], which runs one scheduling cycle the way kube-scheduler's
//! `schedulePod` does (pre-filter, filter every node, pre-score, score, normalise, weigh, pick) and
//! turns a failure into kube-scheduler's `FailedScheduling` message ([`FitError`]).
//!
//! Differences from kube-scheduler, all deliberate: every node is filtered (kube-scheduler stops after
//! enough feasible nodes in clusters over 100 nodes); ties between the best nodes go to the first in
//! snapshot order instead of a random one, so results are reproducible; there is no preemption, so
//! the message's preemption part is the one Kubernetes prints when preemption finds nothing to evict.

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::node_info::{NodeInfo, PodInfo, Snapshot};
use super::plugins;

/// The highest score a score plugin gives a node after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;

/// What a plugin concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    /// Rejected, but preemption might help.
    Unschedulable,
    /// Rejected, and evicting pods cannot change that.
    UnschedulableAndUnresolvable,
    /// The plugin failed; the cycle is aborted.
    Error,
    /// From pre-filter or pre-score: the plugin has nothing to say about this pod, skip it.
    Skip,
}

/// A plugin's verdict with the reasons shown to users, and the plugin that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: Vec<String>,
    plugin: Option<&'static str>,
}

impl Status {
    pub fn new(code: Code, reasons: Vec<String>) -> Self {
        Status {
            code,
            reasons,
            plugin: None,
        }
    }

    pub fn success() -> Self {
        Status::new(Code::Success, Vec::new())
    }

    pub fn skip() -> Self {
        Status::new(Code::Skip, Vec::new())
    }

    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::new(Code::Unschedulable, vec![reason.into()])
    }

    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, vec![reason.into()])
    }

    pub fn error(message: impl Into<String>) -> Self {
        Status::new(Code::Error, vec![message.into()])
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// The reasons joined with ", " (`Status.Message`).
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    /// The plugin that returned this status, once the framework has recorded it.
    pub fn plugin(&self) -> Option<&'static str> {
        self.plugin
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Unschedulable or UnschedulableAndUnresolvable.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = Some(plugin);
        self
    }
}

/// Data plugins compute once per cycle (in pre-filter or pre-score) and read for every node.
#[derive(Default)]
pub struct CycleState {
    entries: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = Box::new(value),
            None => self.entries.push((key, Box::new(value))),
        }
    }

    /// The value written under `key`, or the Error status kube-scheduler returns when it is missing.
    pub fn read<T: Any>(&self, key: &'static str) -> Result<&T, Status> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.downcast_ref())
            .ok_or_else(|| Status::error(format!("reading {key:?} from cycleState: not found")))
    }
}

pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

/// What a pre-filter plugin decided about the set of nodes worth filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreFilterResult {
    AllNodes,
    /// Only these nodes can fit; the others are rejected without running filters.
    Nodes(BTreeSet<String>),
    /// The plugin's filter has nothing to check for this pod.
    Skip,
}

pub trait PreFilterPlugin: Plugin {
    /// Computes the plugin's per-cycle state. An `Err` rejects the pod on every node (when
    /// Unschedulable or UnschedulableAndUnresolvable) or aborts the cycle (Error).
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<PreFilterResult, Status>;
}

pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

pub trait ScorePlugin: Plugin {
    /// Computes per-cycle state from the feasible nodes; Skip leaves this plugin out of the cycle.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        Status::success()
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Rescales the raw scores of `nodes` (same order) to 0..=MAX_NODE_SCORE, if the plugin's raw
    /// scores are not already in that range.
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// The plugins of a profile: pre-filters and filters in the order they run, score plugins with their
/// weights.
#[derive(Clone)]
pub struct PluginSet {
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
}

/// How NodeResourcesFit scores nodes by their requested CPU and memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScoringStrategy {
    /// Prefer the emptiest nodes (spread), kube-scheduler's default.
    #[default]
    LeastAllocated,
    /// Prefer the fullest nodes (bin-pack).
    MostAllocated,
}

/// The configurable part of a scheduler profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerProfile {
    pub scoring: ScoringStrategy,
}

/// Why a cycle produced no node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScheduleError {
    /// The snapshot has no nodes at all.
    #[error("no nodes available to schedule pods")]
    NoNodesAvailable,
    /// No node fits; the message is the `FailedScheduling` event text.
    #[error(transparent)]
    Unschedulable(Box<FitError>),
    /// A plugin failed.
    #[error("running {plugin:?} {extension_point} plugin: {message}")]
    Plugin {
        plugin: &'static str,
        extension_point: &'static str,
        message: String,
    },
}

impl ScheduleError {
    /// The `reason` of the pod's PodScheduled=False condition for this error.
    pub fn condition_reason(&self) -> &'static str {
        match self {
            ScheduleError::Unschedulable(_) => "Unschedulable",
            _ => "SchedulerError",
        }
    }
}

/// No node fits the pod. `Display` is kube-scheduler's message, e.g. `0/3 nodes are available: 1
/// Insufficient cpu, 2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. no new
/// claims to deallocate, preemption: 0/3 nodes are available: 1 No preemption victims found for
/// incoming pod, 2 Preemption is not helpful for scheduling.`
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// The first failing status of each node the filters rejected.
    pub node_statuses: Vec<(String, Status)>,
    /// The status of every node not in `node_statuses`: all of them when a pre-filter rejected the
    /// pod, those a pre-filter ruled out by name otherwise.
    pub absent_status: Option<Status>,
    /// The message of a rejecting pre-filter; replaces the per-node reasons.
    pub pre_filter_msg: Option<String>,
    /// What the post-filter (preemption) step reported.
    pub post_filter_msg: Option<String>,
}

impl FitError {
    /// The plugins that rejected the pod somewhere, which tell a queue what events may help.
    pub fn unschedulable_plugins(&self) -> BTreeSet<&'static str> {
        self.node_statuses
            .iter()
            .map(|(_, s)| s)
            .chain(&self.absent_status)
            .filter_map(Status::plugin)
            .collect()
    }

    fn absent_nodes(&self) -> usize {
        self.num_all_nodes.saturating_sub(self.node_statuses.len())
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        match &self.pre_filter_msg {
            // The pre-filter's status is every node's status; listing it per node would repeat it.
            Some(msg) => write!(f, " {msg}.")?,
            None => {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for (_, status) in &self.node_statuses {
                    for reason in status.reasons() {
                        *counts.entry(reason).or_default() += 1;
                    }
                }
                let absent = self.absent_nodes();
                if absent > 0 {
                    for reason in self.absent_status.iter().flat_map(Status::reasons) {
                        *counts.entry(reason).or_default() += absent;
                    }
                }
                if !counts.is_empty() {
                    write!(f, " {}.", reasons_histogram(counts))?;
                }
            }
        }
        if let Some(msg) = &self.post_filter_msg {
            write!(f, " {msg}")?;
        }
        Ok(())
    }
}

/// `"<count> <reason>"` entries sorted as strings (so "10 x" sorts before "2 y", as in Go) and joined.
fn reasons_histogram(counts: HashMap<&str, usize>) -> String {
    let mut entries: Vec<String> = counts
        .into_iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect();
    entries.sort();
    entries.join(", ")
}

const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// What kube-scheduler's post-filter plugins (DynamicResources, then DefaultPreemption) report when
/// they cannot help a pod without resource claims: nodes that failed with Unschedulable are where
/// preemption would look for victims (orch never finds any), the rest cannot be helped at all.
fn post_filter_message(pod: &Pod, fit: &FitError) -> String {
    let preemption = if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        "not eligible due to preemptionPolicy=Never.".to_string()
    } else {
        let mut candidates = fit
            .node_statuses
            .iter()
            .filter(|(_, s)| s.code() == Code::Unschedulable)
            .count();
        if fit.absent_status.as_ref().map(Status::code) == Some(Code::Unschedulable) {
            candidates += fit.absent_nodes();
        }
        let mut counts = HashMap::new();
        if candidates > 0 {
            counts.insert(NO_VICTIMS, candidates);
        }
        if fit.num_all_nodes > candidates {
            counts.insert(NOT_HELPFUL, fit.num_all_nodes - candidates);
        }
        format!(
            "0/{} nodes are available: {}.",
            fit.num_all_nodes,
            reasons_histogram(counts)
        )
    };
    format!("no new claims to deallocate, preemption: {preemption}")
}

/// One scheduling profile's plugins, ready to run cycles.
pub struct Framework {
    plugins: PluginSet,
}

impl Framework {
    /// The default plugins with the profile's scoring strategy.
    pub fn new(profile: &SchedulerProfile) -> Self {
        Framework::with_plugins(plugins::default_plugins(profile.scoring))
    }

    pub fn with_plugins(plugins: PluginSet) -> Self {
        Framework { plugins }
    }

    /// Picks the node for `pod`, or explains why none fits. Pods already on the snapshot's nodes must
    /// be the non-terminal ones (see [`super::node_info`]).
    pub fn schedule(&self, pod: &Pod, snapshot: &Snapshot) -> Result<String, ScheduleError> {
        self.schedule_pod(&PodInfo::new(Arc::new(pod.clone())), snapshot)
    }

    /// [`Framework::schedule`] for a pod whose [`PodInfo`] the caller already has.
    pub fn schedule_pod(
        &self,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<String, ScheduleError> {
        if snapshot.nodes.is_empty() {
            return Err(ScheduleError::NoNodesAvailable);
        }
        let mut state = CycleState::default();
        let feasible = match self.find_feasible(&mut state, pod, snapshot)? {
            Ok(feasible) => feasible,
            Err(mut fit) => {
                fit.post_filter_msg = Some(post_filter_message(&pod.pod, &fit));
                return Err(ScheduleError::Unschedulable(Box::new(fit)));
            }
        };
        if let [only] = feasible.as_slice() {
            return Ok(only.name().to_string());
        }
        let totals = self.prioritize(&mut state, pod, &feasible, snapshot)?;
        // The first of the best wins: `>` keeps the earliest on ties.
        let mut best = 0;
        for (i, total) in totals.iter().enumerate() {
            if *total > totals[best] {
                best = i;
            }
        }
        Ok(feasible[best].name().to_string())
    }

    /// Runs pre-filters and filters; the outer error aborts the cycle, the inner one is the diagnosis
    /// (without its post-filter message) when no node fits.
    fn find_feasible<'s>(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &'s Snapshot,
    ) -> Result<Result<Vec<&'s NodeInfo>, FitError>, ScheduleError> {
        let num_all_nodes = snapshot.nodes.len();
        let mut skipped: Vec<&'static str> = Vec::new();
        let mut allowed: Option<BTreeSet<String>> = None;
        let mut plugins_with_nodes: Vec<&'static str> = Vec::new();
        for pl in &self.plugins.pre_filter {
            match pl.pre_filter(state, pod, snapshot) {
                Ok(PreFilterResult::AllNodes) => {}
                Ok(PreFilterResult::Skip) => skipped.push(pl.name()),
                Ok(PreFilterResult::Nodes(names)) => {
                    plugins_with_nodes.push(pl.name());
                    let merged = match allowed.take() {
                        None => names,
                        Some(prev) => prev.intersection(&names).cloned().collect(),
                    };
                    if merged.is_empty() {
                        let msg = match plugins_with_nodes.as_slice() {
                            [one] => format!("node(s) didn't satisfy plugin {one}"),
                            many => format!(
                                "node(s) didn't satisfy plugin(s) {} simultaneously",
                                go_list(many)
                            ),
                        };
                        return Ok(Err(pre_filter_rejection(
                            num_all_nodes,
                            Status::unresolvable(msg),
                        )));
                    }
                    allowed = Some(merged);
                }
                Err(status) if status.is_rejected() => {
                    let status = status.with_plugin(pl.name());
                    return Ok(Err(pre_filter_rejection(num_all_nodes, status)));
                }
                Err(status) => return Err(plugin_error(pl.name(), "PreFilter", &status)),
            }
        }

        plugins_with_nodes.sort_unstable();
        let absent_status = allowed.as_ref().map(|_| {
            Status::unresolvable(format!(
                "node(s) didn't satisfy plugin(s) {}",
                go_list(&plugins_with_nodes)
            ))
        });
        let mut feasible = Vec::new();
        let mut node_statuses = Vec::new();
        let candidates = snapshot.nodes.iter().filter(|n| {
            allowed
                .as_ref()
                .is_none_or(|names| names.contains(n.name()))
        });
        'nodes: for node in candidates {
            for pl in &self.plugins.filter {
                if skipped.contains(&pl.name()) {
                    continue;
                }
                let status = pl.filter(state, pod, node);
                if status.is_success() {
                    continue;
                }
                if !status.is_rejected() {
                    return Err(plugin_error(pl.name(), "Filter", &status));
                }
                node_statuses.push((node.name().to_string(), status.with_plugin(pl.name())));
                continue 'nodes;
            }
            feasible.push(node);
        }
        if feasible.is_empty() {
            return Ok(Err(FitError {
                num_all_nodes,
                node_statuses,
                absent_status,
                pre_filter_msg: None,
                post_filter_msg: None,
            }));
        }
        Ok(Ok(feasible))
    }

    /// The weighted sum of the normalised scores of every score plugin, per feasible node.
    fn prioritize(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Result<Vec<i64>, ScheduleError> {
        let mut totals = vec![0i64; feasible.len()];
        let mut scores = Vec::with_capacity(feasible.len());
        for (pl, weight) in &self.plugins.score {
            let status = pl.pre_score(state, pod, feasible, snapshot);
            match status.code() {
                Code::Skip => continue,
                Code::Success => {}
                _ => return Err(plugin_error(pl.name(), "PreScore", &status)),
            }
            scores.clear();
            for node in feasible {
                scores.push(
                    pl.score(state, pod, node)
                        .map_err(|s| plugin_error(pl.name(), "Score", &s))?,
                );
            }
            pl.normalize(state, feasible, &mut scores);
            for (total, score) in totals.iter_mut().zip(&scores) {
                *total += score * weight;
            }
        }
        Ok(totals)
    }
}

fn pre_filter_rejection(num_all_nodes: usize, status: Status) -> FitError {
    FitError {
        num_all_nodes,
        node_statuses: Vec::new(),
        pre_filter_msg: Some(status.message()),
        absent_status: Some(status),
        post_filter_msg: None,
    }
}

fn plugin_error(
    plugin: &'static str,
    extension_point: &'static str,
    status: &Status,
) -> ScheduleError {
    ScheduleError::Plugin {
        plugin,
        extension_point,
        message: status.message(),
    }
}

/// Go's `%v` of a string slice: `[A B]`.
fn go_list(items: &[&str]) -> String {
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    fn framework() -> Framework {
        Framework::new(&SchedulerProfile::default())
    }

    fn cpu_pod(name: &str, cpu: &str) -> k8s_openapi::api::core::v1::Pod {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}),
        )
    }

    fn control_plane(name: &str) -> k8s_openapi::api::core::v1::Node {
        node(
            name,
            json!({}),
            json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
        )
    }

    #[test]
    fn fit_error_message_counts_sorts_and_adds_preemption() {
        let snap = Snapshot::new(vec![
            node_info(
                node("worker", json!({}), json!({})),
                vec![cpu_pod("big", "3500m")],
            ),
            node_info(control_plane("cp1"), vec![]),
            node_info(control_plane("cp2"), vec![]),
        ]);
        let err = framework().schedule(&cpu_pod("p", "1"), &snap).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. no new claims to deallocate, preemption: 0/3 nodes are \
             available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        assert_eq!(err.condition_reason(), "Unschedulable");
        let ScheduleError::Unschedulable(fit) = err else {
            panic!()
        };
        assert_eq!(
            fit.unschedulable_plugins(),
            BTreeSet::from(["NodeResourcesFit", "TaintToleration"])
        );
    }

    #[test]
    fn fit_error_with_only_unresolvable_nodes_and_preemption_never() {
        let snap = Snapshot::new(vec![node_info(control_plane("cp"), vec![])]);
        let err = framework().schedule(&cpu_pod("p", "1"), &snap).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. \
             no new claims to deallocate, preemption: 0/1 nodes are available: 1 Preemption is not helpful for \
             scheduling."
        );
        let mut never = cpu_pod("p", "1");
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        assert!(framework()
            .schedule(&never, &snap)
            .unwrap_err()
            .to_string()
            .ends_with(". no new claims to deallocate, preemption: not eligible due to preemptionPolicy=Never."));
    }

    #[test]
    fn reasons_of_one_node_all_count_and_sort_as_strings() {
        let full = |name: &str| {
            let n = node(
                name,
                json!({}),
                json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "1"}}}),
            );
            node_info(n, vec![cpu_pod(&format!("{name}-x"), "100m")])
        };
        let nodes: Vec<NodeInfo> = (0..10)
            .map(|i| full(&format!("n{i}")))
            .chain([node_info(control_plane("cp"), vec![])])
            .collect();
        let snap = Snapshot::new(nodes);
        let p = pod(
            "p",
            json!({}),
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}]}),
        );
        let err = framework().schedule(&p, &snap).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/11 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
             10 Insufficient cpu, 10 Insufficient memory, 10 Too many pods. no new claims to deallocate, preemption: \
             0/11 nodes are available: 1 Preemption is not helpful for scheduling, 10 No preemption victims found \
             for incoming pod."
        );
    }

    #[test]
    fn node_names_from_pre_filter_restrict_filtering() {
        let snap = Snapshot::new(vec![
            node_info(node("a", json!({}), json!({})), vec![cpu_pod("x", "4")]),
            node_info(node("b", json!({}), json!({})), vec![]),
            node_info(node("c", json!({}), json!({})), vec![]),
        ]);
        let p = pod(
            "p",
            json!({}),
            json!({
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}},
            }),
        );
        assert_eq!(
            framework().schedule(&p, &snap).unwrap_err().to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. \
             no new claims to deallocate, preemption: 0/3 nodes are available: 1 No preemption victims found for \
             incoming pod, 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn pre_filter_rejection_replaces_node_reasons() {
        let snap = Snapshot::new(vec![node_info(node("a", json!({}), json!({})), vec![])]);
        let term = |name: &str| {
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]},
            {"key": "metadata.name", "operator": "In", "values": ["zzz"]}]})
        };
        let p = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [term("a")]}}}}),
        );
        assert_eq!(
            framework().schedule(&p, &snap).unwrap_err().to_string(),
            "0/1 nodes are available: pod affinity terms conflict. no new claims to deallocate, preemption: 0/1 \
             nodes are available: 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn no_nodes() {
        let err = framework()
            .schedule(&cpu_pod("p", "1"), &Snapshot::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "no nodes available to schedule pods");
        assert_eq!(err.condition_reason(), "SchedulerError");
    }

    #[test]
    fn schedule_picks_by_score() {
        let snap = Snapshot::new(vec![
            node_info(
                node("busy", json!({}), json!({})),
                vec![cpu_pod("x", "3"), cpu_pod("y", "100m")],
            ),
            node_info(node("idle", json!({}), json!({})), vec![]),
            node_info(node("half", json!({}), json!({})), vec![cpu_pod("z", "2")]),
        ]);
        let p = cpu_pod("p", "500m");
        assert_eq!(framework().schedule(&p, &snap).unwrap(), "idle");
        let packing = Framework::new(&SchedulerProfile {
            scoring: ScoringStrategy::MostAllocated,
        });
        assert_eq!(packing.schedule(&p, &snap).unwrap(), "busy");

        // The totals behind the choice: Fit (w1) + BalancedAllocation (w1), the other plugins give
        // every node the same score.
        let fw = framework();
        let info = PodInfo::new(Arc::new(p));
        let mut state = CycleState::default();
        let feasible = fw.find_feasible(&mut state, &info, &snap).unwrap().unwrap();
        let totals = fw.prioritize(&mut state, &info, &feasible, &snap).unwrap();
        assert!(totals[1] > totals[2] && totals[2] > totals[0], "{totals:?}");
    }

    #[test]
    fn ties_go_to_the_first_node() {
        let snap = Snapshot::new(vec![
            node_info(node("b", json!({}), json!({})), vec![]),
            node_info(node("a", json!({}), json!({})), vec![]),
        ]);
        assert_eq!(
            framework().schedule(&cpu_pod("p", "1"), &snap).unwrap(),
            "b"
        );
    }

    #[test]
    fn preferences_outweigh_load() {
        let snap = Snapshot::new(vec![
            node_info(node("idle", json!({}), json!({})), vec![]),
            node_info(
                node("ssd", json!({"disk": "ssd"}), json!({})),
                vec![cpu_pod("x", "2")],
            ),
        ]);
        let p = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
        );
        assert_eq!(framework().schedule(&p, &snap).unwrap(), "ssd");
    }

    #[test]
    fn cycle_state_reads_back_what_was_written() {
        let mut state = CycleState::default();
        state.write("k", 1u32);
        state.write("k", 2u32);
        assert_eq!(state.read::<u32>("k"), Ok(&2));
        assert_eq!(
            state.read::<u32>("missing").unwrap_err().message(),
            "reading \"missing\" from cycleState: not found"
        );
    }
}
