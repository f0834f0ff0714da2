//! NodeName: a pod that names its node (`spec.nodeName`) fits only that node.

use crate::scheduler::framework::{CycleState, FilterPlugin, Plugin, Status};
use crate::scheduler::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(wanted) if !wanted.is_empty() && wanted != node.name() => {
                Status::unresolvable(ERR_REASON)
            }
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::Code;
    use crate::scheduler::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let n = node_info(node("n1", json!({}), json!({})), vec![]);
        let state = CycleState::default();
        assert!(NodeName
            .filter(&state, &info(pod("p", json!({}), json!({}))), &n)
            .is_success());
        assert!(NodeName
            .filter(
                &state,
                &info(pod("p", json!({}), json!({"nodeName": "n1"}))),
                &n
            )
            .is_success());
        let status = NodeName.filter(
            &state,
            &info(pod("p", json!({}), json!({"nodeName": "n2"}))),
            &n,
        );
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(status.reasons(), [ERR_REASON]);
    }
}
