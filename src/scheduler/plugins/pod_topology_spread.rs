//! PodTopologySpread: keeps matching pods evenly spread over topology domains (zones, hosts, ...).
//! `DoNotSchedule` constraints filter out nodes where placing the pod would make a domain exceed the
//! least loaded eligible domain by more than `maxSkew`; `ScheduleAnyway` constraints, and when a pod
//! has no constraints the cluster defaults (3 per host, 5 per zone, counting the pods of the same
//! Services and controller), score nodes by how few matching pods their domains already hold.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::{untolerated_do_not_schedule_taint, RequiredNodeAffinity};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, ScorePlugin, Status,
    MAX_NODE_SCORE,
};
use crate::scheduler::node_info::{equals, NodeInfo, PodInfo, Selector, Snapshot};

pub const NAME: &str = "PodTopologySpread";
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";
const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// A `TopologySpreadConstraint` with its selector parsed and its defaults applied.
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: Selector,
    min_domains: i64,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes the pod may run on form domains.
    honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default Ignore): only nodes whose taints the pod tolerates do.
    honor_node_taints: bool,
}

impl Constraint {
    fn includes(&self, pod: &Pod, node: &NodeInfo, required: &RequiredNodeAffinity) -> bool {
        (!self.honor_node_affinity || required.matches(&node.node))
            && (!self.honor_node_taints
                || untolerated_do_not_schedule_taint(node.taints(), super::pod_tolerations(pod))
                    .is_none())
    }
}

/// The pod's own constraints with this `whenUnsatisfiable`; `matchLabelKeys` add the pod's values of
/// those labels to the selector.
fn pod_constraints(pod: &PodInfo, action: &str) -> Vec<Constraint> {
    let spec = pod.pod.spec.as_ref();
    let labels = pod.labels();
    spec.and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == action)
        .map(|c| {
            let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
            let keys = c.match_label_keys.iter().flatten();
            selector.add(keys.filter_map(|k| labels.get(k).map(|v| equals(k, v))));
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn has_constraints(pod: &PodInfo) -> bool {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .is_some_and(|c| !c.is_empty())
}

/// The cluster-level default constraints (`defaultingType: System`), which only score, counting the
/// pods selected by the Services and controller of the pod; none when nothing selects the pod.
fn system_default_constraints(pod: &PodInfo, snapshot: &Snapshot) -> Vec<Constraint> {
    let selector = snapshot.default_spread_selector(&pod.pod);
    if selector.is_everything() {
        return Vec::new();
    }
    [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
        .into_iter()
        .map(|(key, max_skew)| Constraint {
            max_skew,
            topology_key: key.to_string(),
            selector: selector.clone(),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

fn has_all_topology_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    let labels = node.labels();
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// Pods on the node in `namespace` that the selector matches, leaving out terminating ones; an empty
/// selector counts nothing.
fn count_matching(pods: &[Arc<PodInfo>], selector: &Selector, namespace: &str) -> i64 {
    if selector.is_everything() {
        return 0;
    }
    pods.iter()
        .filter(|p| p.pod.metadata.deletion_timestamp.is_none() && p.namespace() == namespace)
        .filter(|p| selector.matches(p.labels()))
        .count() as i64
}

struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per topology value, over the eligible domains.
    counts: Vec<HashMap<String, i64>>,
}

impl PreFilterState {
    /// The global minimum the skew is measured against; zero while fewer than `minDomains` domains
    /// exist, so pods keep spreading into new ones.
    fn min_match(&self, i: usize) -> i64 {
        let counts = &self.counts[i];
        if (counts.len() as i64) < self.constraints[i].min_domains {
            return 0;
        }
        counts.values().copied().min().unwrap_or(0)
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<PreFilterResult, Status> {
        // The system defaults only ever score, so without own hard constraints there is nothing to do.
        let constraints = pod_constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return Ok(PreFilterResult::Skip);
        }
        let required = RequiredNodeAffinity::of(&pod.pod);
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in &snapshot.nodes {
            if !has_all_topology_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(&pod.pod, node, &required) {
                    continue;
                }
                let value = node.labels()[&c.topology_key].clone();
                *counts[i].entry(value).or_insert(0) +=
                    count_matching(&node.pods, &c.selector, pod.namespace());
            }
        }
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                constraints,
                counts,
            },
        );
        Ok(PreFilterResult::AllNodes)
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let s = match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => s,
            Err(status) => return status,
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.selector.matches(pod.labels()));
            let matching = s.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - s.min_match(i) > c.max_skew {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Feasible nodes lacking a topology key of the pod's own constraints; they score 0.
    ignored: HashSet<String>,
    /// Per constraint (except per-host ones, counted in `score`): matching pods per topology value of
    /// the feasible nodes.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: ln(domains + 2), so skews in topologies with few domains weigh less.
    weights: Vec<f64>,
}

impl ScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        let own = has_constraints(pod);
        let constraints = if own {
            pod_constraints(pod, "ScheduleAnyway")
        } else {
            system_default_constraints(pod, snapshot)
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        // Nodes without a zone label still spread by host under the system defaults.
        let require_all_keys = own;
        let mut ignored = HashSet::new();
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in nodes {
            if require_all_keys && !has_all_topology_keys(node, &constraints) {
                ignored.insert(node.name().to_string());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != LABEL_HOSTNAME {
                    let value = node
                        .labels()
                        .get(&c.topology_key)
                        .cloned()
                        .unwrap_or_default();
                    counts[i].entry(value).or_insert(0);
                }
            }
        }
        let weights = constraints
            .iter()
            .zip(&counts)
            .map(|(c, domains)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    domains.len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();

        let required = RequiredNodeAffinity::of(&pod.pod);
        for node in &snapshot.nodes {
            if require_all_keys && !has_all_topology_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(&pod.pod, node, &required) {
                    continue;
                }
                let value = node
                    .labels()
                    .get(&c.topology_key)
                    .map(String::as_str)
                    .unwrap_or_default();
                // Only domains of feasible nodes are tracked.
                if let Some(count) = counts[i].get_mut(value) {
                    *count += count_matching(&node.pods, &c.selector, pod.namespace());
                }
            }
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints,
                ignored,
                counts,
                weights,
            },
        );
        Status::success()
    }

    /// The weighted number of matching pods in the node's domains; fewer is better.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let s = state.read::<PreScoreState>(PRE_SCORE_KEY)?;
        if s.ignored.contains(node.name()) {
            return Ok(0);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(&node.pods, &c.selector, pod.namespace())
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            // maxSkew - 1 dampens differences the constraint tolerates anyway.
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    /// Inverts the scores onto 0..=100: the node with the fewest matching pods gets 100.
    fn normalize(&self, state: &CycleState, nodes: &[&NodeInfo], scores: &mut [i64]) {
        let Ok(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return;
        };
        let counted = || {
            nodes
                .iter()
                .zip(scores.iter())
                .filter(|(n, _)| !s.ignored.contains(n.name()))
        };
        let min = counted().map(|(_, &v)| v).min().unwrap_or(i64::MAX);
        let max = counted().map(|(_, &v)| v).max().unwrap_or(0).max(0);
        for (node, score) in nodes.iter().zip(scores.iter_mut()) {
            *score = if s.ignored.contains(node.name()) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    fn zoned(name: &str, zone: &str, pods: Vec<Pod>) -> NodeInfo {
        node_info(
            node(
                name,
                json!({"zone": zone, "kubernetes.io/hostname": name}),
                json!({}),
            ),
            pods,
        )
    }

    fn web(name: &str) -> Pod {
        pod(name, json!({"app": "web"}), json!({}))
    }

    fn spread(when: &str, extra: serde_json::Value) -> Pod {
        let mut c = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}});
        merge(&mut c, extra);
        pod(
            "new",
            json!({"app": "web"}),
            json!({"topologySpreadConstraints": [c]}),
        )
    }

    fn filter_all(p: &PodInfo, snap: &Snapshot) -> Vec<Status> {
        let mut state = CycleState::default();
        assert_eq!(
            PodTopologySpread.pre_filter(&mut state, p, snap),
            Ok(PreFilterResult::AllNodes)
        );
        snap.nodes
            .iter()
            .map(|n| PodTopologySpread.filter(&state, p, n))
            .collect()
    }

    #[test]
    fn hard_constraint_limits_skew() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![web("w1"), web("w2")]),
            zoned("b1", "b", vec![web("w3")]),
            node_info(node("nozone", json!({}), json!({})), vec![]),
        ]);
        let statuses = filter_all(&info(spread("DoNotSchedule", json!({}))), &snap);
        assert_eq!(statuses[0].code(), Code::Unschedulable);
        assert_eq!(statuses[0].reasons(), [ERR_REASON_CONSTRAINTS_NOT_MATCH]);
        assert!(statuses[1].is_success());
        assert_eq!(statuses[2].code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(statuses[2].reasons(), [ERR_REASON_NODE_LABEL_NOT_MATCH]);

        let mut state = CycleState::default();
        let soft_only = info(spread("ScheduleAnyway", json!({})));
        assert_eq!(
            PodTopologySpread.pre_filter(&mut state, &soft_only, &snap),
            Ok(PreFilterResult::Skip)
        );
    }

    #[test]
    fn min_domains_treats_the_global_minimum_as_zero() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![web("w1")]),
            zoned("b1", "b", vec![web("w2")]),
        ]);
        let statuses = filter_all(
            &info(spread("DoNotSchedule", json!({"minDomains": 3}))),
            &snap,
        );
        assert!(statuses.iter().all(|s| s.code() == Code::Unschedulable));
        let statuses = filter_all(&info(spread("DoNotSchedule", json!({}))), &snap);
        assert!(statuses.iter().all(Status::is_success));
    }

    #[test]
    fn node_affinity_policy_decides_which_domains_count() {
        // Zone c is outside the pod's node selector: honoured (the default), its empty domain does not
        // pull the minimum down; ignored, it does.
        let main = |name: &str, zone: &str, pods| {
            node_info(
                node(name, json!({"zone": zone, "pool": "main"}), json!({})),
                pods,
            )
        };
        let snap = Snapshot::new(vec![
            main("a1", "a", vec![web("w1")]),
            main("b1", "b", vec![web("w2")]),
            node_info(
                node("c1", json!({"zone": "c", "pool": "other"}), json!({})),
                vec![],
            ),
        ]);
        let with_selector = |mut p: Pod| {
            p.spec.as_mut().unwrap().node_selector = Some(labels(&[("pool", "main")]));
            info(p)
        };
        let statuses = filter_all(&with_selector(spread("DoNotSchedule", json!({}))), &snap);
        assert!(statuses[0].is_success());
        let statuses = filter_all(
            &with_selector(spread(
                "DoNotSchedule",
                json!({"nodeAffinityPolicy": "Ignore"}),
            )),
            &snap,
        );
        assert_eq!(statuses[0].code(), Code::Unschedulable);
    }

    #[test]
    fn node_taints_policy_honor_leaves_out_tainted_domains() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![web("w1")]),
            node_info(
                node(
                    "c1",
                    json!({"zone": "c"}),
                    json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
                ),
                vec![],
            ),
        ]);
        let statuses = filter_all(&info(spread("DoNotSchedule", json!({}))), &snap);
        assert_eq!(statuses[0].code(), Code::Unschedulable);
        let statuses = filter_all(
            &info(spread(
                "DoNotSchedule",
                json!({"nodeTaintsPolicy": "Honor"}),
            )),
            &snap,
        );
        assert!(statuses[0].is_success());
    }

    #[test]
    fn match_label_keys_narrow_the_selector() {
        let old = |name: &str| pod(name, json!({"app": "web", "rev": "1"}), json!({}));
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![old("o1"), old("o2")]),
            zoned("b1", "b", vec![]),
        ]);
        let mut p = spread("DoNotSchedule", json!({"matchLabelKeys": ["rev"]}));
        p.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("rev".into(), "2".into());
        let statuses = filter_all(&info(p), &snap);
        assert!(statuses.iter().all(Status::is_success));
    }

    fn scores(p: &PodInfo, snap: &Snapshot) -> Option<Vec<i64>> {
        let refs: Vec<&NodeInfo> = snap.nodes.iter().collect();
        let mut state = CycleState::default();
        if PodTopologySpread
            .pre_score(&mut state, p, &refs, snap)
            .code()
            == Code::Skip
        {
            return None;
        }
        let mut s: Vec<i64> = refs
            .iter()
            .map(|n| PodTopologySpread.score(&state, p, n).unwrap())
            .collect();
        PodTopologySpread.normalize(&state, &refs, &mut s);
        Some(s)
    }

    #[test]
    fn soft_constraint_scores_emptier_domains_higher() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![web("w1"), web("w2")]),
            zoned("b1", "b", vec![web("w3")]),
            zoned("c1", "c", vec![]),
            node_info(node("nozone", json!({}), json!({})), vec![]),
        ]);
        // ln(3 + 2) per pod: raw 3, 2, 0 → normalised 100 * (3 + 0 - raw) / 3; nozone is ignored.
        assert_eq!(
            scores(&info(spread("ScheduleAnyway", json!({}))), &snap),
            Some(vec![0, 33, 100, 0])
        );
        assert_eq!(scores(&info(web("plain")), &snap), None);
    }

    #[test]
    fn system_defaults_spread_pods_of_the_same_service() {
        let mut snap = Snapshot::new(vec![
            node_info(
                node("h1", json!({"kubernetes.io/hostname": "h1"}), json!({})),
                vec![web("w1"), web("w2")],
            ),
            node_info(
                node("h2", json!({"kubernetes.io/hostname": "h2"}), json!({})),
                vec![],
            ),
        ]);
        let svc =
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}}}))
            .unwrap();
        snap.add_service(&svc);
        // Host: 2 pods * ln(2 + 2) + (3 - 1) = 4.77 → 5 against 0 + 2; the zone constraint scores
        // nothing on nodes without a zone. Normalised: 100 * (5 + 2 - raw) / 5.
        assert_eq!(scores(&info(web("new")), &snap), Some(vec![40, 100]));
    }
}
