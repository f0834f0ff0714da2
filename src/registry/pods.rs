//! Pod strategy: status starts Pending with its QoS class, deletion of a bound pod is graceful (the node
//! agent finishes it), and binding sets `spec.nodeName` once.

use serde_json::{json, Value};

use crate::api::meta;
use crate::api::pod_resources;
use crate::api::resources::ResourceInfo;

use super::errors::RegistryError;
use super::generic;
use super::strategy::Strategy;

pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn prepare_for_create(&self, info: &ResourceInfo, obj: &mut Value) {
        generic::prepare_for_create(info, obj);
        add_default_tolerations(&mut obj["spec"]);
        let qos = pod_resources::qos_class(&obj["spec"]);
        obj["status"] = json!({"phase": "Pending", "qosClass": qos});
    }

    fn grace_period(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let bound = obj["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        );
        if !bound || finished {
            return None;
        }
        let seconds = requested
            .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        (seconds > 0).then_some(seconds)
    }
}

/// The stored pod carrying the identity and precondition fields of `new`, as a pod subresource update
/// starts from it (upstream's `ResetObjectMetaForStatus`).
fn stored_with_identity_of(new: &Value, old: &Value) -> Value {
    let mut pod = old.clone();
    for field in ["name", "namespace", "resourceVersion", "uid"] {
        match new["metadata"].get(field) {
            Some(value) => pod["metadata"][field] = value.clone(),
            None => {
                if let Some(meta) = pod["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    pod
}

/// `pods/ephemeralcontainers` changes nothing of the pod but its ephemeral containers (upstream's
/// `dropNonEphemeralContainerUpdates`).
pub fn prepare_for_ephemeral_containers_update(new: &mut Value, old: &Value) {
    let mut pod = stored_with_identity_of(new, old);
    match new["spec"].get("ephemeralContainers") {
        Some(containers) => pod["spec"]["ephemeralContainers"] = containers.clone(),
        None => {
            if let Some(spec) = pod["spec"].as_object_mut() {
                spec.remove("ephemeralContainers");
            }
        }
    }
    crate::api::defaults::apply_defaults("Pod", &mut pod);
    generic::bump_generation(&mut pod, old);
    *new = pod;
}

/// `pods/resize` changes nothing of the pod but its containers' and init containers' resources and
/// resize policies (upstream's `dropNonResizeUpdates`). Lists whose containers were added, removed,
/// renamed or reordered are taken as sent, for validation to refuse.
pub fn prepare_for_resize_update(new: &mut Value, old: &Value) {
    let mut pod = stored_with_identity_of(new, old);
    for list in ["containers", "initContainers"] {
        let sent = new["spec"][list].as_array().cloned().unwrap_or_default();
        let stored = old["spec"][list].as_array().cloned().unwrap_or_default();
        let same_containers = sent.len() == stored.len()
            && sent
                .iter()
                .zip(&stored)
                .all(|(a, b)| a["name"] == b["name"]);
        if !same_containers {
            match new["spec"].get(list) {
                Some(containers) => pod["spec"][list] = containers.clone(),
                None => {
                    if let Some(spec) = pod["spec"].as_object_mut() {
                        spec.remove(list);
                    }
                }
            }
            continue;
        }
        let kept = pod["spec"].get_mut(list).and_then(Value::as_array_mut);
        for (kept, sent) in kept.into_iter().flatten().zip(&sent) {
            for field in ["resources", "resizePolicy"] {
                match sent.get(field) {
                    Some(value) => kept[field] = value.clone(),
                    None => {
                        if let Some(c) = kept.as_object_mut() {
                            c.remove(field);
                        }
                    }
                }
            }
        }
    }
    crate::api::defaults::apply_defaults("Pod", &mut pod);
    generic::bump_generation(&mut pod, old);
    *new = pod;
}

/// `ValidatePodResize`, with the pod's QoS class (as its status has it, else as its spec computes)
/// and the one its new spec computes to.
pub fn validate_resize(new: &Value, old: &Value) -> Vec<crate::api::validation::FieldError> {
    let old_qos = old["status"]["qosClass"]
        .as_str()
        .filter(|q| !q.is_empty())
        .unwrap_or_else(|| pod_resources::qos_class(&old["spec"]));
    crate::api::validation::validate_pod_resize(
        new,
        old,
        old_qos,
        pod_resources::qos_class(&new["spec"]),
    )
}

/// The taints the DefaultTolerationSeconds admission plugin makes every pod tolerate for five minutes, so a
/// node that stops reporting has its pods evicted after that long rather than at once.
const DEFAULT_TOLERATED_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

fn add_default_tolerations(spec: &mut Value) {
    for taint in DEFAULT_TOLERATED_TAINTS {
        let tolerated = spec["tolerations"].as_array().is_some_and(|list| {
            list.iter().any(|t| {
                let key = t["key"].as_str().unwrap_or("");
                let effect = t["effect"].as_str().unwrap_or("");
                let exists = t["operator"].as_str() == Some("Exists");
                (key == taint || (key.is_empty() && exists))
                    && (effect.is_empty() || effect == "NoExecute")
            })
        });
        if tolerated {
            continue;
        }
        let toleration = json!({"key": taint, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS});
        match spec["tolerations"].as_array_mut() {
            Some(list) => list.push(toleration),
            None => spec["tolerations"] = json!([toleration]),
        }
    }
}

/// Applies a Binding to the current pod, as the binding subresource does.
pub fn bind(pod: &Value, binding: &Value, now: jiff::Timestamp) -> Result<Value, RegistryError> {
    let name = meta::name(pod).unwrap_or_default();
    let target = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            RegistryError::BadRequest("Binding.target.name: Required value".to_string())
        })?;
    if meta::is_deleting(pod) {
        return Err(RegistryError::Conflict {
            resource: "pods/binding".into(),
            name: name.into(),
            reason: format!("pod {name} is being deleted, cannot be assigned to a host"),
        });
    }
    if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(RegistryError::Conflict {
            resource: "pods/binding".into(),
            name: name.into(),
            reason: format!("pod {name} is already assigned to node \"{node}\""),
        });
    }
    let mut out = pod.clone();
    out["spec"]["nodeName"] = Value::String(target.to_string());
    if let Some(annotations) = binding["metadata"]["annotations"].as_object() {
        let m = meta::metadata_mut(&mut out);
        let entry = m.entry("annotations").or_insert_with(|| json!({}));
        for (k, v) in annotations {
            entry[k] = v.clone();
        }
    }
    let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": meta::format_time(now)});
    let conditions = out["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conditions.push(condition);
    out["status"]["conditions"] = Value::Array(conditions);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resize_takes_only_resources_and_resize_policies_and_counts_as_a_new_generation() {
        let mut old = json!({"metadata": {"name": "p", "generation": 1, "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "100m"}}}]},
            "status": {"phase": "Running"}});
        // As stored.
        crate::api::defaults::apply_defaults("Pod", &mut old);
        let mut sent = json!({"metadata": {"name": "p", "labels": {"a": "changed"}},
            "spec": {"containers": [{"name": "c", "image": "other",
                "resources": {"requests": {"cpu": "200m"}},
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}],
                "nodeName": "elsewhere"},
            "status": {"phase": "Failed"}});
        prepare_for_resize_update(&mut sent, &old);
        let c = &sent["spec"]["containers"][0];
        assert_eq!(c["image"], "busybox");
        assert_eq!(c["resources"]["requests"]["cpu"], "200m");
        assert_eq!(c["resizePolicy"][0]["resourceName"], "cpu");
        assert!(sent["spec"].get("nodeName").is_none());
        assert_eq!(sent["metadata"]["labels"]["a"], "b");
        assert_eq!(sent["status"]["phase"], "Running");
        assert_eq!(sent["metadata"]["generation"], 2);
        let mut unchanged = old.clone();
        prepare_for_resize_update(&mut unchanged, &old);
        assert_eq!(unchanged["metadata"]["generation"], 1);
        // Renamed containers are taken as sent, for validation to refuse.
        let mut renamed = json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "d", "image": "busybox"}]}});
        prepare_for_resize_update(&mut renamed, &old);
        assert_eq!(renamed["spec"]["containers"][0]["name"], "d");
    }

    #[test]
    fn pods_tolerate_not_ready_and_unreachable_for_five_minutes_unless_they_say_otherwise() {
        let mut spec = json!({"containers": []});
        add_default_tolerations(&mut spec);
        assert_eq!(spec["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(
            spec["tolerations"][1]["key"],
            "node.kubernetes.io/unreachable"
        );
        assert_eq!(spec["tolerations"][1]["tolerationSeconds"], 300);
        let mut own = json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]});
        add_default_tolerations(&mut own);
        let list = own["tolerations"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["tolerationSeconds"], 2);
        assert_eq!(list[1]["key"], "node.kubernetes.io/not-ready");
        let mut everything = json!({"tolerations": [{"operator": "Exists"}]});
        add_default_tolerations(&mut everything);
        assert_eq!(everything["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn grace_applies_only_to_bound_running_pods() {
        let unbound = json!({"spec":{}});
        assert_eq!(PodStrategy.grace_period(&unbound, None), None);
        let bound = json!({"spec":{"nodeName":"n","terminationGracePeriodSeconds":5},"status":{"phase":"Running"}});
        assert_eq!(PodStrategy.grace_period(&bound, None), Some(5));
        assert_eq!(PodStrategy.grace_period(&bound, Some(0)), None);
        let done = json!({"spec":{"nodeName":"n"},"status":{"phase":"Succeeded"}});
        assert_eq!(PodStrategy.grace_period(&done, None), None);
    }

    #[test]
    fn bind_sets_node_once() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let pod = json!({"metadata":{"name":"p"},"spec":{},"status":{"phase":"Pending"}});
        let bound = bind(&pod, &json!({"target":{"name":"n1"}}), now).unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        let err = bind(&bound, &json!({"target":{"name":"n2"}}), now).unwrap_err();
        assert!(
            err.to_string().contains("already assigned to node \"n1\""),
            "{err}"
        );
    }
}
