//! kubelet's pod admission: a pod that reaches this node is checked once before anything of it is made
//! real, in kubelet's order: the eviction manager's (under MemoryPressure alone only BestEffort pods that
//! do not tolerate the memory-pressure taint are refused; under disk or PID pressure every pod is;
//! critical pods always pass), the sysctls the node allows (`sysctls.rs`), the OS the pod asks for, then
//! the scheduler's own admission check against the node and the pods already admitted here (room for its requests and one more pod, node affinity,
//! node name, host ports, NoExecute taints). Pods bound without the scheduler meet these rules only here.
//!
//! A refused pod never runs: it fails at once, with phase Failed, the check's reason (`OutOfcpu`,
//! `OutOfpods`, `NodeAffinity`, `Evicted`, …), kubelet's `Pod was rejected: …` message and a warning
//! event. Decisions last as long as the pod; a restarted agent counts the pods that have containers as
//! admitted, and decides again for the others.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::{eviction, Kubelet};
use crate::agent::node::NodePressure;
use crate::agent::AgentError;
use crate::client::events::Involved;
use crate::scheduler::admission::{admission_check, AdmissionFailure};
use crate::scheduler::plugins::node_resources_fit::Shortage;
use crate::scheduler::plugins::{pod_tolerations, tolerations_tolerate};

/// The taint the node lifecycle controller puts on a node under memory pressure.
const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";
/// The label that names a node's (and a pod's wanted) operating system.
const OS_LABEL: &str = "kubernetes.io/os";
const NODE_OS: &str = "linux";

/// What was decided for a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    Rejected,
}

/// Why a pod may not run here: kubelet's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

impl Rejection {
    fn new(reason: impl Into<String>, message: impl Into<String>) -> Rejection {
        Rejection {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The eviction manager's admission: whether the node's pressure keeps `pod` off it.
pub fn pressure_rejection(pressure: NodePressure, pod: &Pod) -> Option<Rejection> {
    let conditions: Vec<&str> = [
        ("MemoryPressure", pressure.memory),
        ("DiskPressure", pressure.disk),
        ("PIDPressure", pressure.pid),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if conditions.is_empty() || eviction::is_critical(pod) {
        return None;
    }
    if conditions == ["MemoryPressure"] {
        let best_effort =
            pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) == Some("BestEffort");
        let memory_pressure = Taint {
            key: MEMORY_PRESSURE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !best_effort || tolerations_tolerate(pod_tolerations(pod), &memory_pressure) {
            return None;
        }
    }
    Some(Rejection::new(
        "Evicted",
        format!("The node had condition: [{}]. ", conditions.join(" ")),
    ))
}

/// kubelet's words for what the node lacks for a pod (or for a pod's resize).
pub fn insufficient_resource(shortage: &Shortage) -> String {
    format!(
        "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
        shortage.resource, shortage.requested, shortage.used, shortage.capacity
    )
}

/// The predicate admission: the OS the pod asks for, then the first reason the scheduler's check gives.
pub fn predicate_rejection(pod: &Pod, node: &Arc<Node>, others: &[Arc<Pod>]) -> Option<Rejection> {
    let wanted_os = pod.metadata.labels.as_ref().and_then(|l| l.get(OS_LABEL));
    if wanted_os.is_some_and(|os| os != NODE_OS) {
        return Some(Rejection::new(
            "PodOSSelectorNodeLabelDoesNotMatch",
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label",
        ));
    }
    let os_field = pod.spec.as_ref().and_then(|s| s.os.as_ref());
    if os_field.is_some_and(|os| os.name != NODE_OS) {
        return Some(Rejection::new(
            "PodOSNotSupported",
            "Failed to admit pod as the OS field doesn't match node OS",
        ));
    }
    Some(
        match admission_check(pod, node, others).into_iter().next()? {
            AdmissionFailure::Insufficient(shortage) => Rejection::new(
                format!("OutOf{}", shortage.resource),
                insufficient_resource(&shortage),
            ),
            AdmissionFailure::Predicate { name, reason } => {
                Rejection::new(name, format!("Predicate {name} failed: {reason}"))
            }
        },
    )
}

impl Kubelet {
    /// Whether `pod` may run here: admits it the first time it is seen, or rejects it (and reports
    /// that).
    pub(super) async fn admit(&self, pod: &Pod, uid: &str) -> Result<bool, AgentError> {
        let rejection = {
            let mut admissions = self.admissions.lock().expect("admissions lock");
            match admissions.get(uid) {
                Some(Admission::Admitted) => return Ok(true),
                // Reported already; the pod's Failed status is on its way back through the watch.
                Some(Admission::Rejected) => return Ok(false),
                None => {}
            }
            // The decision is taken under the lock, so that pods synced at once are counted in turn.
            let rejection = self.decide(pod, uid, &admissions);
            let admission = match rejection {
                Some(_) => Admission::Rejected,
                None => Admission::Admitted,
            };
            admissions.insert(uid.to_string(), admission);
            rejection
        };
        let Some(rejection) = rejection else {
            return Ok(true);
        };
        let key = crate::client::informer::key_of(&pod.metadata);
        tracing::info!(pod = %key, reason = %rejection.reason, message = %rejection.message,
            "rejecting a pod");
        self.events.warning(
            self.clock.as_ref(),
            &Involved::new("v1", "Pod", &pod.metadata),
            &rejection.reason,
            &rejection.message,
        );
        let old = pod.status.clone().unwrap_or_default();
        let status = PodStatus {
            phase: Some("Failed".into()),
            reason: Some(rejection.reason),
            message: Some(format!("Pod was rejected: {}", rejection.message)),
            qos_class: old.qos_class,
            start_time: old.start_time.or(Some(Time(self.clock.now()))),
            conditions: old.conditions,
            ..Default::default()
        };
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/status",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let patch = json!({"metadata": {"uid": uid}, "status": status});
        match self.client.merge_patch(&path, &patch).await {
            Ok(_) => Ok(false),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(false),
            Err(e) => {
                // Decided again on the retry.
                self.admissions.lock().expect("admissions lock").remove(uid);
                Err(e.into())
            }
        }
    }

    /// At start: the pods that have containers were admitted by the agent that started them, and hold
    /// their place before any new pod is judged.
    pub(super) fn admit_existing(&self) {
        let mut admissions = self.admissions.lock().expect("admissions lock");
        for container in self.runtime.list() {
            admissions.insert(container.pod_uid, Admission::Admitted);
        }
    }

    fn decide(
        &self,
        pod: &Pod,
        uid: &str,
        admissions: &HashMap<String, Admission>,
    ) -> Option<Rejection> {
        if let Some(rejection) = pressure_rejection(*self.pressure.borrow(), pod) {
            return Some(rejection);
        }
        if let Some(message) = self.config.sysctls.forbidden(pod) {
            return Some(Rejection::new("SysctlForbidden", message));
        }
        let Some(node) = self.node.get(&self.config.node_name) else {
            return Some(Rejection::new(
                "InvalidNodeInfo",
                "Kubelet cannot get node info.",
            ));
        };
        predicate_rejection(pod, &node, &self.admitted_others(uid, admissions))
    }

    /// The pods other than `uid` that hold room on this node: admitted and not finished.
    pub(super) fn admitted_others(
        &self,
        uid: &str,
        admissions: &HashMap<String, Admission>,
    ) -> Vec<Arc<Pod>> {
        self.pods
            .list()
            .into_iter()
            .filter(|other| {
                let other_uid = other.metadata.uid.as_deref().unwrap_or_default();
                let phase = other.status.as_ref().and_then(|s| s.phase.as_deref());
                other_uid != uid
                    && admissions.get(other_uid) == Some(&Admission::Admitted)
                    && !matches!(phase, Some("Succeeded" | "Failed"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn best_effort() -> Pod {
        pod(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {"qosClass": "BestEffort"},
        }))
    }

    #[test]
    fn memory_pressure_refuses_only_best_effort_pods_that_do_not_tolerate_it() {
        let memory = NodePressure {
            memory: true,
            ..Default::default()
        };
        let rejected = pressure_rejection(memory, &best_effort()).unwrap();
        assert_eq!(rejected.reason, "Evicted");
        assert_eq!(
            rejected.message,
            "The node had condition: [MemoryPressure]. "
        );
        let mut burstable = best_effort();
        burstable.status.as_mut().unwrap().qos_class = Some("Burstable".into());
        assert_eq!(pressure_rejection(memory, &burstable), None);
        let mut tolerant = best_effort();
        tolerant.spec.as_mut().unwrap().tolerations = Some(vec![serde_json::from_value(
            json!({"key": MEMORY_PRESSURE_TAINT, "operator": "Exists", "effect": "NoSchedule"}),
        )
        .unwrap()]);
        assert_eq!(pressure_rejection(memory, &tolerant), None);
        assert_eq!(
            pressure_rejection(NodePressure::default(), &best_effort()),
            None
        );

        // Any other pressure refuses every pod but the critical ones.
        let disk_and_memory = NodePressure {
            memory: true,
            disk: true,
            pid: false,
        };
        assert_eq!(
            pressure_rejection(disk_and_memory, &burstable)
                .unwrap()
                .message,
            "The node had condition: [MemoryPressure DiskPressure]. "
        );
        let mut critical = burstable;
        critical.spec.as_mut().unwrap().priority = Some(2_000_001_000);
        assert_eq!(pressure_rejection(disk_and_memory, &critical), None);
    }

    #[test]
    fn predicates_give_kubelets_reasons_and_messages() {
        let node = Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "edge"},
                "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}},
            }))
            .unwrap(),
        );
        let greedy = pod(json!({
            "metadata": {"name": "greedy"},
            "spec": {"nodeName": "edge", "containers": [
                {"name": "app", "resources": {"requests": {"cpu": "3"}}}
            ]},
        }));
        assert_eq!(
            predicate_rejection(&greedy, &node, &[]),
            Some(Rejection::new(
                "OutOfcpu",
                "Node didn't have enough resource: cpu, requested: 3000, used: 0, capacity: 2000"
            ))
        );
        let elsewhere = pod(json!({
            "metadata": {"name": "elsewhere"},
            "spec": {"nodeName": "edge", "nodeSelector": {"disk": "ssd"}, "containers": [{"name": "app"}]},
        }));
        assert_eq!(
            predicate_rejection(&elsewhere, &node, &[]),
            Some(Rejection::new(
                "NodeAffinity",
                "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
            ))
        );
        let windows = pod(json!({
            "metadata": {"name": "win"},
            "spec": {"os": {"name": "windows"}, "containers": [{"name": "app"}]},
        }));
        assert_eq!(
            predicate_rejection(&windows, &node, &[]).unwrap().reason,
            "PodOSNotSupported"
        );
        let fits = pod(json!({
            "metadata": {"name": "fits"},
            "spec": {"nodeName": "edge", "containers": [{"name": "app"}]},
        }));
        assert_eq!(predicate_rejection(&fits, &node, &[Arc::new(greedy)]), None);
    }
}
