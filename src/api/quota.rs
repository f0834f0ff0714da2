//! What an object counts against a ResourceQuota (Kubernetes' quota evaluators): object counts
//! (`pods`, `services`, `count/deployments.apps`, …) and, for pods, compute requests and limits; for
//! services, node ports and load balancers; for claims, requested storage.

use std::collections::BTreeMap;

use serde_json::Value;

use super::quantity::{parse_quantity, Quantity, QuantityFormat};

pub type Usage = BTreeMap<String, Quantity>;

/// The short object-count names Kubernetes accepts besides `count/<resource>`.
const SHORT_COUNTS: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// Compute resources every container must state when a quota limits them.
pub const POD_COMPUTE: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

fn count(n: i64) -> Quantity {
    parse_quantity(&n.to_string()).expect("integer quantity")
}

fn add(usage: &mut Usage, name: &str, q: Quantity) {
    let sum = match usage.get(name) {
        Some(previous) => previous.plus(&q),
        None => q,
    };
    usage.insert(name.to_string(), sum);
}

/// Sum of the containers' values for one resource in `requests` or `limits`, with init containers
/// counted as Kubernetes does (the larger of the app sum and any one init container).
fn pod_resource(spec: &Value, field: &str, resource: &str) -> Option<Quantity> {
    let get = |c: &Value| Quantity::try_from(&c["resources"][field][resource]).ok();
    let apps: Vec<Quantity> = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(get)
        .collect();
    let inits: Vec<Quantity> = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(get)
        .collect();
    if apps.is_empty() && inits.is_empty() {
        return None;
    }
    let format = apps
        .first()
        .or(inits.first())
        .map(Quantity::format)
        .unwrap_or(QuantityFormat::DecimalSi);
    let sum = apps
        .iter()
        .fold(Quantity::zero(format), |acc, q| acc.plus(q));
    Some(
        inits
            .into_iter()
            .fold(sum, |acc, q| if q > acc { q } else { acc }),
    )
}

/// A pod's request for `resource` (its `spec` as JSON), init containers counted as Kubernetes does; None
/// when no container states one.
pub fn pod_request(spec: &Value, resource: &str) -> Option<Quantity> {
    pod_resource(spec, "requests", resource)
}

fn is_terminal_pod(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

/// What one stored object of `plural` (in `group`) uses.
pub fn usage_of(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut usage = Usage::new();
    if group.is_empty() && plural == "pods" && is_terminal_pod(obj) {
        return usage;
    }
    let qualified = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    add(&mut usage, &format!("count/{qualified}"), count(1));
    if group.is_empty() && SHORT_COUNTS.contains(&plural) {
        add(&mut usage, plural, count(1));
    }
    match (group, plural) {
        ("", "pods") => {
            let spec = &obj["spec"];
            for resource in ["cpu", "memory", "ephemeral-storage"] {
                if let Some(q) = pod_resource(spec, "requests", resource) {
                    add(&mut usage, &format!("requests.{resource}"), q);
                    if resource != "ephemeral-storage" {
                        add(&mut usage, resource, q);
                    }
                }
                if let Some(q) = pod_resource(spec, "limits", resource) {
                    add(&mut usage, &format!("limits.{resource}"), q);
                }
            }
        }
        ("", "services") => {
            let kind = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
            if kind == "LoadBalancer" {
                add(&mut usage, "services.loadbalancers", count(1));
            }
            if kind == "NodePort" || kind == "LoadBalancer" {
                let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len);
                add(&mut usage, "services.nodeports", count(ports as i64));
            }
        }
        ("", "persistentvolumeclaims") => {
            if let Ok(q) = Quantity::try_from(&obj["spec"]["resources"]["requests"]["storage"]) {
                add(&mut usage, "requests.storage", q);
            }
        }
        _ => {}
    }
    usage
}

/// Whether objects of `plural` in `group` add to the quota resource `name`.
pub fn counts_toward(group: &str, plural: &str, name: &str) -> bool {
    let qualified = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    if name == format!("count/{qualified}") {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    match plural {
        "pods" => {
            name == "pods" || POD_COMPUTE.contains(&name) || name.ends_with("ephemeral-storage")
        }
        "services" => name.starts_with("services"),
        "persistentvolumeclaims" => name == "persistentvolumeclaims" || name == "requests.storage",
        plural => name == plural,
    }
}

/// The compute resources a quota limits that some container of the pod leaves unstated.
pub fn unstated_compute(pod: &Value, hard: &Usage) -> Vec<String> {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .collect();
    let mut missing = Vec::new();
    for name in POD_COMPUTE.iter().filter(|n| hard.contains_key(**n)) {
        let (field, resource) = match name.split_once('.') {
            Some(("limits", r)) => ("limits", r),
            Some((_, r)) => ("requests", r),
            None => ("requests", *name),
        };
        if containers
            .iter()
            .any(|c| c["resources"][field].get(resource).is_none())
        {
            missing.push(name.to_string());
        }
    }
    missing
}

/// A quota's `spec.hard` or `status.used` as quantities.
pub fn parse_list(list: &Value) -> Usage {
    list.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::try_from(v).ok().map(|q| (k.clone(), q)))
        .collect()
}

/// `a=1,b=2`, as Kubernetes prints resource lists in quota messages.
pub fn pretty(list: &Usage) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn to_json(list: &Usage) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_count_requests_limits_and_init_containers_as_kubernetes() {
        let pod = json!({"spec": {
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
            "containers": [
                {"resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
                {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}});
        let usage = usage_of("", "pods", &pod);
        assert_eq!(pretty(&usage), "count/pods=1,cpu=2,limits.memory=128Mi,memory=128Mi,pods=1,requests.cpu=2,requests.memory=128Mi");
        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert!(usage_of("", "pods", &done).is_empty());
    }

    #[test]
    fn counts_services_and_other_kinds() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            pretty(&usage_of("", "services", &svc)),
            "count/services=1,services=1,services.nodeports=2"
        );
        assert_eq!(
            pretty(&usage_of("apps", "deployments", &json!({}))),
            "count/deployments.apps=1"
        );
    }

    #[test]
    fn unstated_compute_names_what_the_quota_needs() {
        let hard = parse_list(&json!({"requests.cpu": "1", "limits.memory": "1Gi", "pods": "3"}));
        let pod = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(unstated_compute(&pod, &hard), vec!["limits.memory"]);
    }
}
