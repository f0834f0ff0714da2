//! TaintToleration: a node's NoSchedule and NoExecute taints keep off pods that do not tolerate them;
//! PreferNoSchedule taints only lower the node's score, by how many of them the pod does not tolerate.

use k8s_openapi::api::core::v1::Toleration;

use super::{
    default_normalize_score, pod_tolerations, tolerations_tolerate,
    untolerated_do_not_schedule_taint,
};
use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, ScorePlugin, Status};
use crate::scheduler::node_info::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "TaintToleration";
/// The reason kubelet's admission gives for an untolerated NoExecute taint.
pub const ERR_REASON_NOT_MATCH: &str = "node(s) had taints that the pod didn't tolerate";
const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match untolerated_do_not_schedule_taint(node.taints(), pod_tolerations(&pod.pod)) {
            // Kubernetes 1.34.0 and 1.34.1 name the taint; later patch releases print
            // "node(s) had untolerated taint(s)" to keep taint values out of pod statuses.
            Some(taint) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            )),
            None => Status::success(),
        }
    }
}

/// The pod's tolerations that can tolerate a PreferNoSchedule taint.
struct PreScoreState(Vec<Toleration>);

impl ScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        let prefer_no_schedule = pod_tolerations(&pod.pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreScoreState(prefer_no_schedule));
        Status::success()
    }

    /// The number of untolerated PreferNoSchedule taints; fewer is better.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let PreScoreState(tolerations) = state.read(PRE_SCORE_KEY)?;
        let count = node
            .taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerations_tolerate(tolerations, t))
            .count();
        Ok(count as i64)
    }

    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize_score(true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    fn tainted(name: &str, taints: serde_json::Value) -> NodeInfo {
        node_info(
            node(name, json!({}), json!({"spec": {"taints": taints}})),
            vec![],
        )
    }

    #[test]
    fn filter_rejects_untolerated_no_schedule_and_no_execute() {
        let state = CycleState::default();
        let plain = info(pod("p", json!({}), json!({})));
        let n = tainted(
            "n",
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]),
        );
        let status = TaintToleration.filter(&state, &plain, &n);
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(
            status.reasons(),
            ["node(s) had untolerated taint {dedicated: gpu}"]
        );

        let tolerant = info(pod(
            "p",
            json!({}),
            json!({"tolerations": [{"key": "dedicated", "value": "gpu"}]}),
        ));
        assert!(TaintToleration.filter(&state, &tolerant, &n).is_success());
        let soft = tainted("n", json!([{"key": "k", "effect": "PreferNoSchedule"}]));
        assert!(TaintToleration.filter(&state, &plain, &soft).is_success());
    }

    #[test]
    fn score_prefers_fewer_untolerated_prefer_no_schedule_taints() {
        let nodes = [
            tainted("a", json!([])),
            tainted("b", json!([{"key": "x", "effect": "PreferNoSchedule"}])),
            tainted(
                "c",
                json!([{"key": "x", "effect": "PreferNoSchedule"}, {"key": "y", "effect": "PreferNoSchedule"}]),
            ),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let p = info(pod(
            "p",
            json!({}),
            json!({"tolerations": [{"key": "y", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        ));
        let mut state = CycleState::default();
        assert!(TaintToleration
            .pre_score(&mut state, &p, &refs, &Snapshot::default())
            .is_success());
        let mut scores: Vec<i64> = refs
            .iter()
            .map(|n| TaintToleration.score(&state, &p, n).unwrap())
            .collect();
        assert_eq!(scores, [0, 1, 1]);
        TaintToleration.normalize(&state, &refs, &mut scores);
        assert_eq!(scores, [100, 0, 0]);
    }
}
