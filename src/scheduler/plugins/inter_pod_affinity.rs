//! InterPodAffinity: required pod affinity (the pod must land in a topology domain that already runs
//! pods its terms select), required anti-affinity (it must not land next to them), and the existing
//! pods' anti-affinity (they must not get it as a neighbour); preferred terms of both sides, and the
//! existing pods' required affinity at weight 1, score the domains.

use std::collections::{BTreeMap, HashMap};

use crate::scheduler::framework::{
    CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, ScorePlugin, Status,
    MAX_NODE_SCORE,
};
use crate::scheduler::node_info::{
    AffinityTerm, NodeInfo, PodInfo, Selector, Snapshot, WeightedAffinityTerm, NO_LABELS,
};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";
/// `hardPodAffinityWeight`: how much an existing pod's required affinity to the incoming pod counts.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Counts per topology key and value (nested so lookups need no allocation).
#[derive(Debug, Default)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Adds `delta` to the domain of `node` for `key`, if the node has that label.
    fn add(&mut self, node: &NodeInfo, key: &str, delta: i64) {
        if let Some(value) = node.labels().get(key) {
            *self
                .0
                .entry(key.to_string())
                .or_default()
                .entry(value.clone())
                .or_default() += delta;
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The incoming pod's term with its namespace selector resolved to namespace names, so matching it
/// against existing pods needs no namespace lookups (`mergeAffinityTermNamespacesIfNotEmpty`).
fn resolve(term: &AffinityTerm, snapshot: &Snapshot) -> AffinityTerm {
    if term.namespace_selector.is_everything() {
        return term.clone();
    }
    let mut resolved = term.clone();
    resolved.namespaces.extend(
        snapshot
            .namespaces_matching(&term.namespace_selector)
            .map(String::from),
    );
    resolved.namespace_selector = Selector::Nothing;
    resolved
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(&pod.pod, &NO_LABELS))
}

struct PreFilterState {
    affinity_terms: Vec<AffinityTerm>,
    anti_affinity_terms: Vec<AffinityTerm>,
    /// Domains holding existing pods whose required anti-affinity selects the incoming pod.
    existing_anti_affinity: TopologyCounts,
    /// Domains holding pods that match all the incoming pod's affinity terms.
    affinity: TopologyCounts,
    /// Domains holding pods that match one of the incoming pod's anti-affinity terms.
    anti_affinity: TopologyCounts,
    /// The incoming pod matches its own affinity terms.
    matches_own_affinity: bool,
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> Result<PreFilterResult, Status> {
        let ns_labels = snapshot.namespace_labels(pod.namespace());
        let mut existing_anti_affinity = TopologyCounts::default();
        for node in &snapshot.nodes {
            for existing in &node.pods_with_required_anti_affinity {
                for t in &existing.required_anti_affinity_terms {
                    if t.matches(&pod.pod, ns_labels) {
                        existing_anti_affinity.add(node, &t.topology_key, 1);
                    }
                }
            }
        }
        if existing_anti_affinity.is_empty()
            && pod.required_affinity_terms.is_empty()
            && pod.required_anti_affinity_terms.is_empty()
        {
            return Ok(PreFilterResult::Skip);
        }

        let affinity_terms: Vec<AffinityTerm> = pod
            .required_affinity_terms
            .iter()
            .map(|t| resolve(t, snapshot))
            .collect();
        let anti_affinity_terms: Vec<AffinityTerm> = pod
            .required_anti_affinity_terms
            .iter()
            .map(|t| resolve(t, snapshot))
            .collect();
        let mut affinity = TopologyCounts::default();
        let mut anti_affinity = TopologyCounts::default();
        if !affinity_terms.is_empty() || !anti_affinity_terms.is_empty() {
            for node in &snapshot.nodes {
                for existing in &node.pods {
                    if matches_all(&affinity_terms, existing) {
                        for t in &affinity_terms {
                            affinity.add(node, &t.topology_key, 1);
                        }
                    }
                    for t in &anti_affinity_terms {
                        if t.matches(&existing.pod, &NO_LABELS) {
                            anti_affinity.add(node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
        let matches_own_affinity = matches_all(&affinity_terms, pod);
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                affinity_terms,
                anti_affinity_terms,
                existing_anti_affinity,
                affinity,
                anti_affinity,
                matches_own_affinity,
            },
        );
        Ok(PreFilterResult::AllNodes)
    }
}

impl PreFilterState {
    /// Every affinity term's domain on this node must hold a matching pod. The first pod of a group
    /// with affinity to itself is let through when no pod anywhere matches yet.
    fn satisfies_affinity(&self, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for t in &self.affinity_terms {
            let Some(value) = node.labels().get(&t.topology_key) else {
                return false;
            };
            if self.affinity.get(&t.topology_key, value) <= 0 {
                pods_exist = false;
            }
        }
        pods_exist || (self.affinity.is_empty() && self.matches_own_affinity)
    }

    fn satisfies_anti_affinity(&self, node: &NodeInfo) -> bool {
        self.anti_affinity_terms.iter().all(|t| {
            node.labels()
                .get(&t.topology_key)
                .is_none_or(|value| self.anti_affinity.get(&t.topology_key, value) <= 0)
        })
    }

    fn satisfies_existing_anti_affinity(&self, node: &NodeInfo) -> bool {
        self.existing_anti_affinity.is_empty()
            || node
                .labels()
                .iter()
                .all(|(k, v)| self.existing_anti_affinity.get(k, v) <= 0)
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let s = match state.read::<PreFilterState>(PRE_FILTER_KEY) {
            Ok(s) => s,
            Err(status) => return status,
        };
        if !s.satisfies_affinity(node) {
            return Status::unresolvable(ERR_REASON_AFFINITY);
        }
        if !s.satisfies_anti_affinity(node) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY);
        }
        if !s.satisfies_existing_anti_affinity(node) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

/// Summed term weights per topology domain.
struct PreScoreState(TopologyCounts);

fn add_weighted(
    scores: &mut TopologyCounts,
    terms: &[WeightedAffinityTerm],
    pod: &PodInfo,
    ns_labels: &BTreeMap<String, String>,
    node: &NodeInfo,
    sign: i64,
) {
    for wt in terms {
        if wt.term.matches(&pod.pod, ns_labels) {
            scores.add(node, &wt.term.topology_key, sign * i64::from(wt.weight));
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        let resolve_all = |terms: &[WeightedAffinityTerm]| -> Vec<WeightedAffinityTerm> {
            terms
                .iter()
                .map(|wt| WeightedAffinityTerm {
                    term: resolve(&wt.term, snapshot),
                    weight: wt.weight,
                })
                .collect()
        };
        let preferred = resolve_all(&pod.preferred_affinity_terms);
        let preferred_anti = resolve_all(&pod.preferred_anti_affinity_terms);
        let has_preferences = !preferred.is_empty() || !preferred_anti.is_empty();
        let ns_labels = snapshot.namespace_labels(pod.namespace());

        let mut scores = TopologyCounts::default();
        for node in &snapshot.nodes {
            if node.labels().is_empty() {
                continue;
            }
            // Without own preferences only pods with affinity terms can contribute.
            let existing_pods = if has_preferences {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for existing in existing_pods {
                add_weighted(&mut scores, &preferred, existing, &NO_LABELS, node, 1);
                add_weighted(&mut scores, &preferred_anti, existing, &NO_LABELS, node, -1);
                for t in &existing.required_affinity_terms {
                    if t.matches(&pod.pod, ns_labels) {
                        scores.add(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                add_weighted(
                    &mut scores,
                    &existing.preferred_affinity_terms,
                    pod,
                    ns_labels,
                    node,
                    1,
                );
                add_weighted(
                    &mut scores,
                    &existing.preferred_anti_affinity_terms,
                    pod,
                    ns_labels,
                    node,
                    -1,
                );
            }
        }
        if scores.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PreScoreState(scores));
        Status::success()
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let PreScoreState(scores) = state.read(PRE_SCORE_KEY)?;
        let labels = node.labels();
        Ok(scores
            .0
            .iter()
            .filter_map(|(key, values)| labels.get(key).and_then(|v| values.get(v)))
            .sum())
    }

    /// Maps the lowest score to 0 and the highest to 100.
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    use serde_json::{json, Value};

    fn zoned(name: &str, zone: &str, pods: Vec<Pod>) -> NodeInfo {
        node_info(node(name, json!({"zone": zone}), json!({})), pods)
    }

    fn term(app: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "zone"})
    }

    fn with_affinity(name: &str, app: &str, kind: &str, required: Value) -> Pod {
        pod(
            name,
            json!({"app": app}),
            json!({"affinity": {kind: {"requiredDuringSchedulingIgnoredDuringExecution": required}}}),
        )
    }

    fn filter_all(p: &Pod, snap: &Snapshot) -> Option<Vec<Status>> {
        let p = info(p.clone());
        let mut state = CycleState::default();
        if InterPodAffinity.pre_filter(&mut state, &p, snap).unwrap() == PreFilterResult::Skip {
            return None;
        }
        Some(
            snap.nodes
                .iter()
                .map(|n| InterPodAffinity.filter(&state, &p, n))
                .collect(),
        )
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![pod("db", json!({"app": "db"}), json!({}))]),
            zoned("a2", "a", vec![]),
            zoned("b1", "b", vec![]),
            node_info(node("none", json!({}), json!({})), vec![]),
        ]);
        let statuses = filter_all(
            &with_affinity("web", "web", "podAffinity", json!([term("db")])),
            &snap,
        )
        .unwrap();
        assert!(statuses[0].is_success() && statuses[1].is_success());
        assert_eq!(statuses[2].code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(statuses[2].reasons(), [ERR_REASON_AFFINITY]);
        assert_eq!(statuses[3].reasons(), [ERR_REASON_AFFINITY]);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_may_go_anywhere_with_the_key() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![]),
            node_info(node("none", json!({}), json!({})), vec![]),
        ]);
        let statuses = filter_all(
            &with_affinity("web", "web", "podAffinity", json!([term("web")])),
            &snap,
        )
        .unwrap();
        assert!(statuses[0].is_success());
        assert!(!statuses[1].is_success());
    }

    #[test]
    fn required_anti_affinity_avoids_domains_with_matching_pods() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![pod("w1", json!({"app": "web"}), json!({}))]),
            zoned("a2", "a", vec![]),
            zoned("b1", "b", vec![]),
        ]);
        let statuses = filter_all(
            &with_affinity("w2", "web", "podAntiAffinity", json!([term("web")])),
            &snap,
        )
        .unwrap();
        assert_eq!(statuses[1].code(), Code::Unschedulable);
        assert_eq!(statuses[1].reasons(), [ERR_REASON_ANTI_AFFINITY]);
        assert!(statuses[2].is_success());
    }

    #[test]
    fn existing_pods_anti_affinity_is_honoured() {
        let snap = Snapshot::new(vec![
            zoned(
                "a1",
                "a",
                vec![with_affinity(
                    "w1",
                    "web",
                    "podAntiAffinity",
                    json!([term("web")]),
                )],
            ),
            zoned("b1", "b", vec![]),
        ]);
        let statuses = filter_all(&pod("w2", json!({"app": "web"}), json!({})), &snap).unwrap();
        assert_eq!(statuses[0].code(), Code::Unschedulable);
        assert_eq!(statuses[0].reasons(), [ERR_REASON_EXISTING_ANTI_AFFINITY]);
        assert!(statuses[1].is_success());
        assert!(filter_all(&pod("db", json!({"app": "db"}), json!({})), &snap).is_none());
    }

    #[test]
    fn namespace_selectors_resolve_through_the_snapshot() {
        let other = pod("db", json!({"app": "db"}), json!({}));
        let mut other = other;
        other.metadata.namespace = Some("data".into());
        let mut snap = Snapshot::new(vec![
            zoned("a1", "a", vec![other]),
            zoned("b1", "b", vec![]),
        ]);
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "data", "labels": {"team": "x"}}}))
                .unwrap();
        snap.add_namespace(&ns);
        let mut t = term("db");
        t["namespaceSelector"] = json!({"matchLabels": {"team": "x"}});
        let statuses = filter_all(
            &with_affinity("web", "web", "podAffinity", json!([t])),
            &snap,
        )
        .unwrap();
        assert!(statuses[0].is_success());
        assert!(!statuses[1].is_success());
        // Without the selector the term looks in the pod's own namespace only.
        let statuses = filter_all(
            &with_affinity("web", "web", "podAffinity", json!([term("db")])),
            &snap,
        )
        .unwrap();
        assert!(!statuses[0].is_success());
    }

    #[test]
    fn preferred_terms_score_domains() {
        let snap = Snapshot::new(vec![
            zoned("a1", "a", vec![pod("db", json!({"app": "db"}), json!({}))]),
            zoned(
                "b1",
                "b",
                vec![pod("cache", json!({"app": "cache"}), json!({}))],
            ),
            zoned("c1", "c", vec![]),
        ]);
        let p = info(pod(
            "web",
            json!({"app": "web"}),
            json!({"affinity": {
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("db")}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term("cache")}]},
            }}),
        ));
        let refs: Vec<&NodeInfo> = snap.nodes.iter().collect();
        let mut state = CycleState::default();
        assert!(InterPodAffinity
            .pre_score(&mut state, &p, &refs, &snap)
            .is_success());
        let mut scores: Vec<i64> = refs
            .iter()
            .map(|n| InterPodAffinity.score(&state, &p, n).unwrap())
            .collect();
        assert_eq!(scores, [10, -5, 0]);
        InterPodAffinity.normalize(&state, &refs, &mut scores);
        assert_eq!(scores, [100, 0, 33]);

        // Existing pods' required affinity to the incoming pod counts with weight 1.
        let snap = Snapshot::new(vec![
            zoned(
                "a1",
                "a",
                vec![with_affinity(
                    "client",
                    "client",
                    "podAffinity",
                    json!([term("web")]),
                )],
            ),
            zoned("b1", "b", vec![]),
        ]);
        let plain = info(pod("web", json!({"app": "web"}), json!({})));
        let refs: Vec<&NodeInfo> = snap.nodes.iter().collect();
        let mut state = CycleState::default();
        assert!(InterPodAffinity
            .pre_score(&mut state, &plain, &refs, &snap)
            .is_success());
        assert_eq!(InterPodAffinity.score(&state, &plain, refs[0]), Ok(1));
        let lonely = Snapshot::new(vec![zoned("a1", "a", vec![])]);
        assert_eq!(
            InterPodAffinity
                .pre_score(&mut state, &plain, &[&lonely.nodes[0]], &lonely)
                .code(),
            Code::Skip
        );
    }
}
