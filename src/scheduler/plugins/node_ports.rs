//! NodePorts: a pod's host ports must be free on the node, per address and protocol.

use crate::scheduler::framework::{
    CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, Status,
};
use crate::scheduler::node_info::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodePorts {
    /// The wanted ports are already in the pod's [`PodInfo`]; only pods without any are skipped.
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> Result<PreFilterResult, Status> {
        if pod.host_ports.is_empty() {
            return Ok(PreFilterResult::Skip);
        }
        Ok(PreFilterResult::AllNodes)
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if pod.host_ports.iter().any(|p| node.used_ports.conflicts(p)) {
            return Status::unschedulable(ERR_REASON);
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    fn with_port(name: &str, port: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "ports": [port]}]}),
        )
    }

    #[test]
    fn host_ports_must_be_free() {
        let n = node_info(
            node("n", json!({}), json!({})),
            vec![with_port(
                "x",
                json!({"containerPort": 80, "hostPort": 8080}),
            )],
        );
        let state = CycleState::default();
        let clash = info(with_port(
            "p",
            json!({"containerPort": 81, "hostPort": 8080, "hostIP": "10.0.0.1"}),
        ));
        let status = NodePorts.filter(&state, &clash, &n);
        assert_eq!(status.code(), Code::Unschedulable);
        assert_eq!(status.reasons(), [ERR_REASON]);
        let udp = info(with_port(
            "p",
            json!({"containerPort": 81, "hostPort": 8080, "protocol": "UDP"}),
        ));
        assert!(NodePorts.filter(&state, &udp, &n).is_success());

        let mut state = CycleState::default();
        let none = info(with_port("p", json!({"containerPort": 80})));
        assert_eq!(
            NodePorts.pre_filter(&mut state, &none, &Snapshot::default()),
            Ok(PreFilterResult::Skip)
        );
        assert_eq!(
            NodePorts.pre_filter(&mut state, &udp, &Snapshot::default()),
            Ok(PreFilterResult::AllNodes)
        );
    }
}
