//! NodeUnschedulable: keeps pods off cordoned nodes (`spec.unschedulable`) unless they tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint that cordoning implies.

use k8s_openapi::api::core::v1::Taint;

use super::{pod_tolerations, tolerations_tolerate};
use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let cordoned = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !cordoned {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_string(),
            effect: "NoSchedule".to_string(),
            value: None,
            time_added: None,
        };
        if tolerations_tolerate(pod_tolerations(&pod.pod), &taint) {
            return Status::success();
        }
        Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn cordoned_nodes_reject_pods_that_do_not_tolerate_it() {
        let cordoned = node_info(
            node("n", json!({}), json!({"spec": {"unschedulable": true}})),
            vec![],
        );
        let plain = info(pod("p", json!({}), json!({})));
        let status = NodeUnschedulable.filter(&CycleState::default(), &plain, &cordoned);
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons(), ["node(s) were unschedulable"]);

        let tolerant = info(pod(
            "p",
            json!({}),
            json!({"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
        ));
        assert!(NodeUnschedulable
            .filter(&CycleState::default(), &tolerant, &cordoned)
            .is_success());
        let open = node_info(node("n", json!({}), json!({})), vec![]);
        assert!(NodeUnschedulable
            .filter(&CycleState::default(), &plain, &open)
            .is_success());
    }
}
