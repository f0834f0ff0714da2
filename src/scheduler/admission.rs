//! The scheduler's checks a kubelet repeats when a pod reaches its node (kube-scheduler's
//! `AdmissionCheck`, which kubelet's predicate admit handler calls): room for the pod's requests and one
//! more pod, the node affinity and selector, the node name, free host ports, and then, as kubelet adds,
//! no untolerated NoExecute taint. A pod bound without the scheduler (`spec.nodeName` set by its author)
//! meets these checks only here.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use super::node_info::{NodeInfo, PodInfo};
use super::plugins::node_resources_fit::{self, Shortage};
use super::plugins::{
    node_affinity, node_name, node_ports, pod_tolerations, taint_toleration, tolerations_tolerate,
    RequiredNodeAffinity,
};

/// Why a node cannot take a pod, first reason first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionFailure {
    Insufficient(Shortage),
    /// A filter that failed: its name and reason.
    Predicate {
        name: &'static str,
        reason: &'static str,
    },
}

/// Every reason `pod` does not fit `node`, which already runs `others` (pods still holding resources).
pub fn admission_check(pod: &Pod, node: &Arc<Node>, others: &[Arc<Pod>]) -> Vec<AdmissionFailure> {
    let mut info = NodeInfo::new(node.clone());
    for other in others {
        info.add_pod(other.clone());
    }
    let pod = PodInfo::new(Arc::new(pod.clone()));
    let mut failures: Vec<AdmissionFailure> = node_resources_fit::shortages(&pod, &info)
        .into_iter()
        .map(AdmissionFailure::Insufficient)
        .collect();
    let mut fail = |name, reason| failures.push(AdmissionFailure::Predicate { name, reason });
    if !RequiredNodeAffinity::of(&pod.pod).matches(node) {
        fail(node_affinity::NAME, node_affinity::ERR_REASON_POD);
    }
    let wanted = pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    if wanted.is_some_and(|w| !w.is_empty() && w != info.name()) {
        fail(node_name::NAME, node_name::ERR_REASON);
    }
    if pod.host_ports.iter().any(|p| info.used_ports.conflicts(p)) {
        fail(node_ports::NAME, node_ports::ERR_REASON);
    }
    // Only NoExecute: a NoSchedule taint keeps the scheduler away, but a pod bound past it may run.
    let untolerated = info
        .taints()
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .any(|t| !tolerations_tolerate(pod_tolerations(&pod.pod), t));
    if untolerated {
        fail(
            taint_toleration::NAME,
            taint_toleration::ERR_REASON_NOT_MATCH,
        );
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "edge", "labels": {"zone": "a"}},
                "spec": {"taints": [
                    {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                    {"key": "quarantine", "effect": "NoExecute"},
                ]},
                "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "3"}},
            }))
            .unwrap(),
        )
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["tolerations"] = json!([{"key": "quarantine", "operator": "Exists"}]);
        spec["nodeName"] = json!("edge");
        if spec.get("containers").is_none() {
            spec["containers"] = json!([{"name": "app"}]);
        }
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn requesting(cpu: &str) -> Arc<Pod> {
        Arc::new(pod(json!({"containers": [
            {"name": "app", "resources": {"requests": {"cpu": cpu}}}
        ]})))
    }

    #[test]
    fn resources_come_first_with_the_numbers_kubelet_reports() {
        let failures = admission_check(&requesting("1500m"), &node(), &[requesting("1")]);
        assert_eq!(
            failures,
            [AdmissionFailure::Insufficient(Shortage {
                resource: "cpu".into(),
                requested: 1500,
                used: 1000,
                capacity: 2000,
            })]
        );
        let full = [requesting("10m"), requesting("10m"), requesting("10m")];
        let failures = admission_check(&pod(json!({})), &node(), &full);
        assert_eq!(
            failures,
            [AdmissionFailure::Insufficient(Shortage {
                resource: "pods".into(),
                requested: 1,
                used: 3,
                capacity: 3,
            })]
        );
        assert!(admission_check(&requesting("1"), &node(), &[requesting("1")]).is_empty());
    }

    #[test]
    fn affinity_name_ports_and_no_execute_taints_are_checked_no_schedule_is_not() {
        let predicate = |name, reason| AdmissionFailure::Predicate { name, reason };
        let elsewhere = pod(json!({"nodeSelector": {"zone": "b"}}));
        assert_eq!(
            admission_check(&elsewhere, &node(), &[]),
            [predicate(
                node_affinity::NAME,
                node_affinity::ERR_REASON_POD
            )]
        );
        let mut other_node = pod(json!({}));
        other_node.spec.as_mut().unwrap().node_name = Some("other".into());
        assert_eq!(
            admission_check(&other_node, &node(), &[]),
            [predicate(node_name::NAME, node_name::ERR_REASON)]
        );
        let port = json!({"containers": [{"name": "app", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
        assert_eq!(
            admission_check(&pod(port.clone()), &node(), &[Arc::new(pod(port))]),
            [predicate(node_ports::NAME, node_ports::ERR_REASON)]
        );
        let mut intolerant = pod(json!({}));
        intolerant.spec.as_mut().unwrap().tolerations = None;
        assert_eq!(
            admission_check(&intolerant, &node(), &[]),
            [predicate(
                taint_toleration::NAME,
                taint_toleration::ERR_REASON_NOT_MATCH
            )]
        );
    }
}
