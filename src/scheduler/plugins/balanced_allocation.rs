//! NodeResourcesBalancedAllocation: favours nodes whose CPU and memory would be requested in similar
//! proportions after placing the pod, so neither runs out while the other idles.

use crate::scheduler::framework::{CycleState, Plugin, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::scheduler::node_info::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl ScorePlugin for BalancedAllocation {
    /// Best-effort pods are skipped: they would all land on the same most balanced node.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            return Status::skip();
        }
        Status::success()
    }

    /// `(1 - std) * 100` of the requested fractions (actual requests, not defaults) of CPU and memory.
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let resources = [
            (
                node.requested.milli_cpu + pod.requests.milli_cpu,
                node.allocatable.milli_cpu,
            ),
            (
                node.requested.memory + pod.requests.memory,
                node.allocatable.memory,
            ),
        ];
        let fractions: Vec<f64> = resources
            .iter()
            .filter(|(_, allocatable)| *allocatable != 0)
            .map(|&(requested, allocatable)| (requested as f64 / allocatable as f64).min(1.0))
            .collect();
        // With two resources the standard deviation is half their difference.
        let std = match fractions.as_slice() {
            [a, b] => ((a - b) / 2.0).abs(),
            _ => 0.0,
        };
        Ok(((1.0 - std) * MAX_NODE_SCORE as f64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn balanced_nodes_score_higher() {
        let requesting = |name: &str, cpu: &str, mem: &str| {
            pod(
                name,
                json!({}),
                json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}),
            )
        };
        // 4 CPUs, 8Gi: "cpu-heavy" has 3 CPUs and 1Gi requested, "even" 2 CPUs and 4Gi.
        let heavy = node_info(
            node("cpu-heavy", json!({}), json!({})),
            vec![requesting("x", "3", "1Gi")],
        );
        let even = node_info(
            node("even", json!({}), json!({})),
            vec![requesting("y", "2", "4Gi")],
        );
        let p = info(requesting("p", "1", "2Gi"));
        let mut state = CycleState::default();
        assert!(BalancedAllocation
            .pre_score(&mut state, &p, &[&heavy, &even], &Snapshot::default())
            .is_success());
        // cpu-heavy: 4/4 vs 3/8 → std 0.3125; even: 3/4 vs 6/8 → 0.
        assert_eq!(BalancedAllocation.score(&state, &p, &heavy), Ok(68));
        assert_eq!(BalancedAllocation.score(&state, &p, &even), Ok(100));

        let best_effort = info(pod("b", json!({}), json!({})));
        assert_eq!(
            BalancedAllocation
                .pre_score(&mut state, &best_effort, &[&even], &Snapshot::default())
                .code(),
            Code::Skip
        );
    }
}
