//! The Priority admission plugin: a new pod's `priorityClassName`, or the cluster's globalDefault
//! PriorityClass when it names none, becomes its `spec.priority` and `spec.preemptionPolicy`. A class
//! that does not exist, or a priority or policy the pod states itself that its class contradicts, is
//! refused. The two system classes resolve even before anyone stored them, as Kubernetes bootstraps them.

use serde_json::{json, Value};

use super::forbidden;
use crate::api::resources::{self, ResourceInfo};
use crate::registry::errors::RegistryError;
use crate::registry::store::{ListOptions, Registry};

/// Kubernetes' built-in classes, for clusters that have not stored them.
const SYSTEM_CLASSES: [(&str, i64); 2] = [
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// What a class gives its pods.
#[derive(Debug)]
struct Resolved {
    class: Option<String>,
    priority: i64,
    preemption_policy: String,
}

fn resolved(class: &Value) -> Resolved {
    Resolved {
        class: class["metadata"]["name"].as_str().map(str::to_string),
        priority: class["value"].as_i64().unwrap_or(0),
        preemption_policy: class["preemptionPolicy"]
            .as_str()
            .unwrap_or(DEFAULT_PREEMPTION_POLICY)
            .to_string(),
    }
}

pub async fn admit_pod(
    registry: &Registry,
    info: &ResourceInfo,
    pod: &mut Value,
) -> Result<(), RegistryError> {
    let classes_info =
        resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
    let classes = registry
        .list(classes_info, None, &ListOptions::default())
        .await?
        .items;
    let resolution = resolve(pod, &classes).map_err(|message| forbidden(info, pod, &message))?;
    if let Some(spec) = pod["spec"].as_object_mut() {
        if let Some(class) = resolution.class {
            spec.insert("priorityClassName".into(), Value::String(class));
        }
        spec.insert("priority".into(), json!(resolution.priority));
        spec.insert(
            "preemptionPolicy".into(),
            Value::String(resolution.preemption_policy),
        );
    }
    Ok(())
}

/// What `pod` gets from `classes` (the stored PriorityClasses), or why it is refused.
fn resolve(pod: &Value, classes: &[Value]) -> Result<Resolved, String> {
    let named = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|n| !n.is_empty());
    let resolution = match named {
        Some(name) => match classes.iter().find(|c| c["metadata"]["name"] == name) {
            Some(class) => resolved(class),
            None => SYSTEM_CLASSES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| resolved(&json!({"metadata": {"name": name}, "value": value})))
                .ok_or_else(|| format!("no PriorityClass with name {name} was found"))?,
        },
        // The global default with the lowest value, as Kubernetes picks among several.
        None => classes
            .iter()
            .filter(|c| c["globalDefault"] == true)
            .min_by_key(|c| c["value"].as_i64().unwrap_or(0))
            .map(resolved)
            .unwrap_or(Resolved {
                class: None,
                priority: 0,
                preemption_policy: DEFAULT_PREEMPTION_POLICY.into(),
            }),
    };
    if let Some(stated) = pod["spec"]["priority"].as_i64() {
        if stated != resolution.priority {
            return Err(format!(
                "the integer value of priority ({stated}) must not be provided in pod spec; \
                 priority admission controller computed {} from the given PriorityClass name",
                resolution.priority
            ));
        }
    }
    if let Some(stated) = pod["spec"]["preemptionPolicy"].as_str() {
        if stated != resolution.preemption_policy {
            return Err(format!(
                "the string value of PreemptionPolicy ({stated}) must not be provided in pod spec; \
                 priority admission controller computed {} from the given PriorityClass name",
                resolution.preemption_policy
            ));
        }
    }
    Ok(resolution)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i64, global_default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": global_default})
    }

    #[test]
    fn the_class_or_the_lowest_global_default_sets_the_priority() {
        let classes = [
            class("high", 1000, false),
            class("default-a", 50, true),
            class("default-b", 20, true),
        ];
        let pod = |spec: Value| json!({"spec": spec});
        let r = resolve(&pod(json!({"priorityClassName": "high"})), &classes).unwrap();
        assert_eq!((r.class.as_deref(), r.priority), (Some("high"), 1000));
        assert_eq!(r.preemption_policy, "PreemptLowerPriority");
        let r = resolve(&pod(json!({})), &classes).unwrap();
        assert_eq!((r.class.as_deref(), r.priority), (Some("default-b"), 20));
        let r = resolve(&pod(json!({})), &[]).unwrap();
        assert_eq!((r.class, r.priority), (None, 0));
        let r = resolve(
            &pod(json!({"priorityClassName": "system-node-critical"})),
            &[],
        )
        .unwrap();
        assert_eq!(r.priority, 2_000_001_000);
        let never = json!({"metadata": {"name": "batch"}, "value": 5, "preemptionPolicy": "Never"});
        let r = resolve(&pod(json!({"priorityClassName": "batch"})), &[never]).unwrap();
        assert_eq!(r.preemption_policy, "Never");
    }

    #[test]
    fn unknown_classes_and_contradicting_values_are_refused() {
        let classes = [class("high", 1000, false)];
        let refused = |spec: Value| resolve(&json!({"spec": spec}), &classes).unwrap_err();
        assert_eq!(
            refused(json!({"priorityClassName": "nope"})),
            "no PriorityClass with name nope was found"
        );
        assert_eq!(
            refused(json!({"priority": 7})),
            "the integer value of priority (7) must not be provided in pod spec; priority admission \
             controller computed 0 from the given PriorityClass name"
        );
        assert!(
            refused(json!({"priorityClassName": "high", "preemptionPolicy": "Never"}))
                .starts_with("the string value of PreemptionPolicy (Never) must not be provided")
        );
        // A pod that states what its class gives is admitted (a controller copying a template).
        assert!(resolve(
            &json!({"spec": {"priorityClassName": "high", "priority": 1000}}),
            &classes
        )
        .is_ok());
    }
}
