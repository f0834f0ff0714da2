//! NodeAffinity: the pod's `nodeSelector` and required node affinity decide which nodes it may run on;
//! its preferred node affinity terms score nodes by the summed weight of the terms they match. A
//! required term that pins `metadata.name` narrows the nodes worth filtering already in pre-filter.

use std::collections::BTreeSet;

use super::{default_normalize_score, PreferredSchedulingTerms, RequiredNodeAffinity};
use crate::scheduler::framework::{
    CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, ScorePlugin, Status,
};
use crate::scheduler::node_info::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";
const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> Result<PreFilterResult, Status> {
        let spec = pod.pod.spec.as_ref();
        let required = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        if required.is_none() && spec.and_then(|s| s.node_selector.as_ref()).is_none() {
            return Ok(PreFilterResult::Skip);
        }
        state.write(PRE_FILTER_KEY, RequiredNodeAffinity::of(&pod.pod));

        let Some(required) = required.filter(|r| !r.node_selector_terms.is_empty()) else {
            return Ok(PreFilterResult::AllNodes);
        };
        // Terms are ORed: only when every term names nodes is the union of those names a bound.
        let mut names = BTreeSet::new();
        for term in &required.node_selector_terms {
            let mut term_names: Option<BTreeSet<String>> = None;
            for r in term.match_fields.iter().flatten() {
                if r.key == "metadata.name" && r.operator == "In" {
                    let these: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                    term_names = Some(match term_names {
                        None => these,
                        Some(prev) => prev.intersection(&these).cloned().collect(),
                    });
                }
            }
            match term_names {
                None => return Ok(PreFilterResult::AllNodes),
                Some(t) => names.extend(t),
            }
        }
        if names.is_empty() {
            return Err(Status::unresolvable(ERR_REASON_CONFLICT));
        }
        Ok(PreFilterResult::Nodes(names))
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        match state.read::<RequiredNodeAffinity>(PRE_FILTER_KEY) {
            Ok(required) if required.matches(&node.node) => Status::success(),
            Ok(_) => Status::unresolvable(ERR_REASON_POD),
            Err(status) => status,
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        match PreferredSchedulingTerms::of(&pod.pod) {
            Some(terms) => {
                state.write(PRE_SCORE_KEY, terms);
                Status::success()
            }
            None => Status::skip(),
        }
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        Ok(state
            .read::<PreferredSchedulingTerms>(PRE_SCORE_KEY)?
            .score(&node.node))
    }

    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize_score(false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    fn required(terms: serde_json::Value) -> serde_json::Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}})
    }

    #[test]
    fn pre_filter_skips_pods_without_constraints_and_collects_node_names() {
        let mut state = CycleState::default();
        let snap = Snapshot::default();
        let plain = info(pod("p", json!({}), json!({})));
        assert_eq!(
            NodeAffinity.pre_filter(&mut state, &plain, &snap),
            Ok(PreFilterResult::Skip)
        );

        let named = info(pod(
            "p",
            json!({}),
            required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}])),
        ));
        assert_eq!(
            NodeAffinity.pre_filter(&mut state, &named, &snap),
            Ok(PreFilterResult::Nodes(
                ["a", "b", "c"].map(String::from).into()
            ))
        );
        let mixed = info(pod(
            "p",
            json!({}),
            required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}])),
        ));
        assert_eq!(
            NodeAffinity.pre_filter(&mut state, &mixed, &snap),
            Ok(PreFilterResult::AllNodes)
        );
        let conflict = info(pod(
            "p",
            json!({}),
            required(json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["a"]},
            {"key": "metadata.name", "operator": "In", "values": ["b"]}]}])),
        ));
        let err = NodeAffinity
            .pre_filter(&mut state, &conflict, &snap)
            .unwrap_err();
        assert_eq!(
            (err.code(), err.message().as_str()),
            (Code::UnschedulableAndUnresolvable, ERR_REASON_CONFLICT)
        );
    }

    #[test]
    fn filter_matches_selector_and_required_terms() {
        let snap = Snapshot::default();
        let zone_a = node_info(node("a", json!({"zone": "a"}), json!({})), vec![]);
        let zone_b = node_info(node("b", json!({"zone": "b"}), json!({})), vec![]);
        let p = info(pod("p", json!({}), json!({"nodeSelector": {"zone": "a"}})));
        let mut state = CycleState::default();
        NodeAffinity.pre_filter(&mut state, &p, &snap).unwrap();
        assert!(NodeAffinity.filter(&state, &p, &zone_a).is_success());
        let status = NodeAffinity.filter(&state, &p, &zone_b);
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons(), [ERR_REASON_POD]);

        let p = info(pod(
            "p",
            json!({}),
            required(
                json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]),
            ),
        ));
        let mut state = CycleState::default();
        NodeAffinity.pre_filter(&mut state, &p, &snap).unwrap();
        assert!(!NodeAffinity.filter(&state, &p, &zone_a).is_success());
        assert!(NodeAffinity.filter(&state, &p, &zone_b).is_success());
    }

    #[test]
    fn score_sums_matching_preferred_weights() {
        let nodes = [
            node_info(
                node("a", json!({"zone": "a", "disk": "ssd"}), json!({})),
                vec![],
            ),
            node_info(node("b", json!({"zone": "a"}), json!({})), vec![]),
            node_info(node("c", json!({}), json!({})), vec![]),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let p = info(pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 3, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 1, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}}),
        ));
        let mut state = CycleState::default();
        assert!(NodeAffinity
            .pre_score(&mut state, &p, &refs, &Snapshot::default())
            .is_success());
        let mut scores: Vec<i64> = refs
            .iter()
            .map(|n| NodeAffinity.score(&state, &p, n).unwrap())
            .collect();
        assert_eq!(scores, [4, 3, 0]);
        NodeAffinity.normalize(&state, &refs, &mut scores);
        assert_eq!(scores, [100, 75, 0]);
        let plain = info(pod("p", json!({}), json!({})));
        assert_eq!(
            NodeAffinity
                .pre_score(&mut state, &plain, &refs, &Snapshot::default())
                .code(),
            Code::Skip
        );
    }
}
