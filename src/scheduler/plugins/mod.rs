//! The in-tree plugins of the default profile, one module each, and the matching rules several of them
//! share: taints against tolerations, a pod's required node affinity, and score normalisation.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::framework::{PluginSet, ScoringStrategy, MAX_NODE_SCORE};
use super::node_info::{labels_of, Selector};
use crate::api::selector::{Operator, Requirement};

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

/// The default profile (`getDefaultPlugins`) minus what orch does not have (volumes, DRA, images,
/// preemption): filters in upstream order, score plugins with upstream weights.
pub fn default_plugins(scoring: ScoringStrategy) -> PluginSet {
    let node_unschedulable = Arc::new(node_unschedulable::NodeUnschedulable);
    let node_name = Arc::new(node_name::NodeName);
    let taint_toleration = Arc::new(taint_toleration::TaintToleration);
    let node_affinity = Arc::new(node_affinity::NodeAffinity);
    let node_ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit::new(scoring));
    let spread = Arc::new(pod_topology_spread::PodTopologySpread);
    let inter_pod = Arc::new(inter_pod_affinity::InterPodAffinity);
    let balanced = Arc::new(balanced_allocation::BalancedAllocation);
    PluginSet {
        pre_filter: vec![
            node_affinity.clone(),
            node_ports.clone(),
            spread.clone(),
            inter_pod.clone(),
        ],
        filter: vec![
            node_unschedulable,
            node_name,
            taint_toleration.clone(),
            node_affinity.clone(),
            node_ports,
            fit.clone(),
            spread.clone(),
            inter_pod.clone(),
        ],
        score: vec![
            (taint_toleration, 3),
            (node_affinity, 2),
            (fit, 1),
            (spread, 2),
            (inter_pod, 2),
            (balanced, 1),
        ],
    }
}

/// `Toleration.ToleratesTaint`: an empty effect or key matches any, an empty operator means Equal.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

pub fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// The first NoSchedule or NoExecute taint none of the tolerations tolerates
/// (`FindMatchingUntoleratedTaint` with `DoNotScheduleTaintsFilterFunc`).
pub fn untolerated_do_not_schedule_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations_tolerate(tolerations, t))
}

/// One parsed `NodeSelectorTerm`: its label requirements and its `metadata.name` field requirements.
/// A term the API server should not have accepted (bad operator or value count) matches nothing.
#[derive(Debug, Clone)]
struct NodeSelectorTermMatcher {
    labels: Option<Selector>,
    /// (wanted name, whether it must equal rather than differ)
    fields: Option<Vec<(String, String, bool)>>,
    valid: bool,
}

impl NodeSelectorTermMatcher {
    /// None for an empty term, which selects no node and is dropped (`isEmptyNodeSelectorTerm`).
    fn new(term: &NodeSelectorTerm) -> Option<Self> {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let mut valid = true;
        let labels = (!exprs.is_empty()).then(|| {
            let reqs: Option<Vec<Requirement>> = exprs.iter().map(label_requirement).collect();
            valid &= reqs.is_some();
            Selector::Match(reqs.unwrap_or_default())
        });
        let fields = (!fields.is_empty()).then(|| {
            let reqs: Option<Vec<_>> = fields.iter().map(field_requirement).collect();
            valid &= reqs.is_some();
            reqs.unwrap_or_default()
        });
        Some(NodeSelectorTermMatcher {
            labels,
            fields,
            valid,
        })
    }

    fn matches(&self, node: &Node) -> bool {
        if !self.valid {
            return false;
        }
        if let Some(labels) = &self.labels {
            if !labels.matches(labels_of(&node.metadata.labels)) {
                return false;
            }
        }
        let name = node.metadata.name.as_deref().unwrap_or_default();
        // Field requirements are only checked against a node that has a name, as upstream.
        if let (Some(fields), false) = (&self.fields, name.is_empty()) {
            return fields.iter().all(|(key, value, equal)| {
                let actual = if key == "metadata.name" { name } else { "" };
                (actual == value) == *equal
            });
        }
        true
    }
}

/// `nodeSelectorRequirementsAsSelector` for one requirement, with `labels.NewRequirement`'s value
/// count checks.
fn label_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let values = r.values.clone().unwrap_or_default();
    let operator = match r.operator.as_str() {
        "In" if !values.is_empty() => Operator::In,
        "NotIn" if !values.is_empty() => Operator::NotIn,
        "Exists" if values.is_empty() => Operator::Exists,
        "DoesNotExist" if values.is_empty() => Operator::DoesNotExist,
        "Gt" | "Lt" if values.len() == 1 && values[0].parse::<i64>().is_ok() => {
            if r.operator == "Gt" {
                Operator::GreaterThan
            } else {
                Operator::LessThan
            }
        }
        _ => return None,
    };
    Some(Requirement {
        key: r.key.clone(),
        operator,
        values,
    })
}

/// `matchFields` allow In and NotIn with exactly one value.
fn field_requirement(r: &NodeSelectorRequirement) -> Option<(String, String, bool)> {
    let [value] = r.values.as_deref().unwrap_or_default() else {
        return None;
    };
    match r.operator.as_str() {
        "In" => Some((r.key.clone(), value.clone(), true)),
        "NotIn" => Some((r.key.clone(), value.clone(), false)),
        _ => None,
    }
}

/// A pod's `nodeSelector` and required node affinity (`nodeaffinity.RequiredNodeAffinity`).
#[derive(Debug, Clone)]
pub struct RequiredNodeAffinity {
    node_selector: Option<Selector>,
    /// ORed terms; `None` when the pod has no required node affinity at all.
    terms: Option<Vec<NodeSelectorTermMatcher>>,
}

impl RequiredNodeAffinity {
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|s| s.node_selector.as_ref())
            .filter(|s| !s.is_empty())
            .map(Selector::from_set);
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| {
                ns.node_selector_terms
                    .iter()
                    .filter_map(NodeSelectorTermMatcher::new)
                    .collect()
            });
        RequiredNodeAffinity {
            node_selector,
            terms,
        }
    }

    pub fn matches(&self, node: &Node) -> bool {
        if let Some(sel) = &self.node_selector {
            if !sel.matches(labels_of(&node.metadata.labels)) {
                return false;
            }
        }
        match &self.terms {
            Some(terms) => terms.iter().any(|t| t.matches(node)),
            None => true,
        }
    }
}

/// Preferred node affinity terms with their weights (`nodeaffinity.PreferredSchedulingTerms`).
#[derive(Debug, Clone)]
pub struct PreferredSchedulingTerms(Vec<(NodeSelectorTermMatcher, i64)>);

impl PreferredSchedulingTerms {
    /// Terms of weight zero and empty terms never count and are dropped.
    pub fn of(pod: &Pod) -> Option<Self> {
        let terms = pod
            .spec
            .as_ref()?
            .affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()?;
        Some(PreferredSchedulingTerms(
            terms
                .iter()
                .filter(|t| t.weight != 0)
                .filter_map(|t| {
                    NodeSelectorTermMatcher::new(&t.preference).map(|m| (m, i64::from(t.weight)))
                })
                .collect(),
        ))
    }

    /// The sum of the weights of the terms the node matches.
    pub fn score(&self, node: &Node) -> i64 {
        self.0
            .iter()
            .filter(|(t, _)| t.matches(node))
            .map(|(_, w)| w)
            .sum()
    }
}

/// `helper.DefaultNormalizeScore`: scales scores so the highest becomes `MAX_NODE_SCORE`, optionally
/// reversed so the lowest does.
pub fn default_normalize_score(reverse: bool, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0).max(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// Labels used by several plugins in tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::scheduler::node_info::{NodeInfo, PodInfo};
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    pub fn node(name: &str, labels: Value, extra: Value) -> Node {
        let mut v = json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    pub fn pod(name: &str, labels: Value, spec: Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
            "spec": {"containers": [{"name": "c"}]},
        });
        merge(&mut v["spec"], spec);
        serde_json::from_value(v).unwrap()
    }

    pub fn info(p: Pod) -> PodInfo {
        PodInfo::new(Arc::new(p))
    }

    pub fn node_info(n: Node, pods: Vec<Pod>) -> NodeInfo {
        let mut ni = NodeInfo::new(Arc::new(n));
        for p in pods {
            ni.add_pod(Arc::new(p));
        }
        ni
    }

    /// Merges `extra` into `base` object-wise (arrays and scalars replace).
    pub fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn toleration_matching() {
        let t = taint("k", "v", "NoSchedule");
        let tol = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(&tol(json!({"key": "k", "value": "v"})), &t));
        assert!(tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(tolerates(&tol(json!({"operator": "Exists"})), &t));
        assert!(!tolerates(&tol(json!({"key": "k", "value": "w"})), &t));
        assert!(!tolerates(
            &tol(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        let taints = [taint("a", "", "PreferNoSchedule"), t.clone()];
        assert_eq!(untolerated_do_not_schedule_taint(&taints, &[]), Some(&t));
    }

    #[test]
    fn required_node_affinity() {
        let n = node("n1", json!({"zone": "a", "cores": "8"}), json!({}));
        let p = |spec| pod("p", json!({}), spec);
        let affinity = |terms| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
        assert!(RequiredNodeAffinity::of(&p(json!({"nodeSelector": {"zone": "a"}}))).matches(&n));
        assert!(!RequiredNodeAffinity::of(&p(json!({"nodeSelector": {"zone": "b"}}))).matches(&n));
        let gt = affinity(
            json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]),
        );
        assert!(RequiredNodeAffinity::of(&p(gt)).matches(&n));
        let lt = affinity(
            json!([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
        );
        assert!(RequiredNodeAffinity::of(&p(lt)).matches(&n));
        let other = affinity(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]),
        );
        assert!(!RequiredNodeAffinity::of(&p(other)).matches(&n));
        // An empty term selects nothing; so does a term the API should have rejected.
        assert!(!RequiredNodeAffinity::of(&p(affinity(json!([{}])))).matches(&n));
        let bad = affinity(json!([{"matchExpressions": [{"key": "zone", "operator": "In"}]}]));
        assert!(!RequiredNodeAffinity::of(&p(bad)).matches(&n));
    }

    #[test]
    fn normalize() {
        let mut s = [0, 5, 10];
        default_normalize_score(false, &mut s);
        assert_eq!(s, [0, 50, 100]);
        default_normalize_score(true, &mut s);
        assert_eq!(s, [100, 50, 0]);
        let mut z = [0, 0];
        default_normalize_score(true, &mut z);
        assert_eq!(z, [100, 100]);
    }
}
