//! NodeResourcesFit: the node must have room for the pod's requests (CPU, memory, ephemeral storage,
//! extended resources) and one more pod; nodes are scored by how much CPU and memory would be requested
//! on them afterwards, favouring the emptiest (LeastAllocated) or the fullest (MostAllocated).

use crate::scheduler::framework::{
    Code, CycleState, FilterPlugin, Plugin, ScorePlugin, ScoringStrategy, Status, MAX_NODE_SCORE,
};
use crate::scheduler::node_info::{pod_requests_for_scoring, NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

pub struct NodeResourcesFit {
    scoring: ScoringStrategy,
}

impl NodeResourcesFit {
    pub fn new(scoring: ScoringStrategy) -> Self {
        NodeResourcesFit { scoring }
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// One resource the node lacks for a pod (`InsufficientResource`): CPU in millicores, the rest in units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub resource: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

impl Shortage {
    /// The scheduler's reason: `Too many pods`, or `Insufficient <resource>`.
    pub fn reason(&self) -> String {
        if self.resource == "pods" {
            "Too many pods".to_string()
        } else {
            format!("Insufficient {}", self.resource)
        }
    }
}

/// What the node lacks for the pod, in kube-scheduler's order (`fitsRequest`).
pub fn shortages(pod: &PodInfo, node: &NodeInfo) -> Vec<Shortage> {
    let mut shortages = Vec::new();
    let mut check = |resource: &str, requested: i64, used: i64, capacity: i64| {
        if requested > 0 && requested > capacity - used {
            shortages.push(Shortage {
                resource: resource.to_string(),
                requested,
                used,
                capacity,
            });
        }
    };
    let pods = node.pods.len() as i64;
    check("pods", 1, pods, node.allocatable.allowed_pod_number);
    let want = &pod.requests;
    let (alloc, used) = (&node.allocatable, &node.requested);
    check("cpu", want.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check("memory", want.memory, used.memory, alloc.memory);
    check(
        "ephemeral-storage",
        want.ephemeral_storage,
        used.ephemeral_storage,
        alloc.ephemeral_storage,
    );
    for (name, &quantity) in &want.scalar {
        let capacity = alloc.scalar.get(name).copied().unwrap_or(0);
        check(
            name,
            quantity,
            used.scalar.get(name).copied().unwrap_or(0),
            capacity,
        );
    }
    shortages
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let reasons: Vec<String> = shortages(pod, node).iter().map(Shortage::reason).collect();
        if reasons.is_empty() {
            return Status::success();
        }
        // Every shortage is reported, each counted separately in the event message.
        Status::new(Code::Unschedulable, reasons)
    }
}

/// The incoming pod's CPU (millicores) and memory with unset container requests at the defaults.
struct PreScoreState(i64, i64);

impl ScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        let (cpu, memory) = pod_requests_for_scoring(&pod.pod);
        state.write(PRE_SCORE_KEY, PreScoreState(cpu, memory));
        Status::success()
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let &PreScoreState(cpu, memory) = state.read(PRE_SCORE_KEY)?;
        let resources = [
            (
                node.non_zero_requested.milli_cpu + cpu,
                node.allocatable.milli_cpu,
            ),
            (
                node.non_zero_requested.memory + memory,
                node.allocatable.memory,
            ),
        ];
        let per_resource: fn(i64, i64) -> i64 = match self.scoring {
            ScoringStrategy::LeastAllocated => least_requested_score,
            ScoringStrategy::MostAllocated => most_requested_score,
        };
        // CPU and memory weigh 1 each; resources the node has none of are left out.
        let (mut sum, mut weights) = (0, 0);
        for (requested, allocatable) in resources {
            if allocatable == 0 {
                continue;
            }
            sum += per_resource(requested, allocatable);
            weights += 1;
        }
        Ok(if weights == 0 { 0 } else { sum / weights })
    }
}

/// The unrequested share of the node, 0..=100.
fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// The requested share of the node, 0..=100; defaults for unset requests can overshoot, hence the cap.
fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    fn requesting(name: &str, requests: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "resources": {"requests": requests}}]}),
        )
    }

    #[test]
    fn filter_reports_every_shortage() {
        let small = node(
            "n",
            json!({}),
            json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "1", "ephemeral-storage": "1Gi", "example.com/gpu": "1"}}}),
        );
        let n = node_info(small, vec![requesting("x", json!({"cpu": "500m"}))]);
        let p = info(requesting(
            "p",
            json!({"cpu": "600m", "memory": "2Gi", "ephemeral-storage": "2Gi", "example.com/gpu": "2", "example.com/fpga": "1"}),
        ));
        let status = NodeResourcesFit::new(ScoringStrategy::LeastAllocated).filter(
            &CycleState::default(),
            &p,
            &n,
        );
        assert_eq!(status.code(), Code::Unschedulable);
        assert_eq!(
            status.reasons(),
            [
                "Too many pods",
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient ephemeral-storage",
                "Insufficient example.com/fpga",
                "Insufficient example.com/gpu"
            ]
        );
        let fits = info(requesting("p", json!({"cpu": "500m"})));
        let roomy = node_info(node("m", json!({}), json!({})), vec![]);
        assert!(NodeResourcesFit::new(ScoringStrategy::LeastAllocated)
            .filter(&CycleState::default(), &fits, &roomy)
            .is_success());
    }

    fn scores(strategy: ScoringStrategy) -> Vec<i64> {
        let nodes = [
            node_info(node("empty", json!({}), json!({})), vec![]),
            node_info(
                node("half", json!({}), json!({})),
                vec![requesting("x", json!({"cpu": "2", "memory": "4Gi"}))],
            ),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let p = info(requesting("p", json!({"cpu": "1", "memory": "1Gi"})));
        let plugin = NodeResourcesFit::new(strategy);
        let mut state = CycleState::default();
        assert!(plugin
            .pre_score(&mut state, &p, &refs, &Snapshot::default())
            .is_success());
        refs.iter()
            .map(|n| plugin.score(&state, &p, n).unwrap())
            .collect()
    }

    #[test]
    fn least_and_most_allocated() {
        // empty: cpu 1/4, memory 1/8 requested; half: cpu 3/4, memory 5/8.
        assert_eq!(
            scores(ScoringStrategy::LeastAllocated),
            [(75 + 87) / 2, (25 + 37) / 2]
        );
        assert_eq!(
            scores(ScoringStrategy::MostAllocated),
            [(25 + 12) / 2, (75 + 62) / 2]
        );
    }

    #[test]
    fn unset_requests_score_at_the_defaults() {
        let n = node_info(
            node(
                "n",
                json!({}),
                json!({"status": {"allocatable": {"cpu": "1", "memory": "1Gi"}}}),
            ),
            vec![],
        );
        let p = info(pod("p", json!({}), json!({})));
        let plugin = NodeResourcesFit::new(ScoringStrategy::LeastAllocated);
        let mut state = CycleState::default();
        plugin.pre_score(&mut state, &p, &[&n], &Snapshot::default());
        // cpu: 100m of 1000m → 90; memory: 200Mi of 1024Mi → 80.
        assert_eq!(plugin.score(&state, &p, &n), Ok(85));
    }
}
