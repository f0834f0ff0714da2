//! What an object counts against a ResourceQuota (Kubernetes' quota evaluators): object counts
//! (`pods`, `services`, `count/deployments.apps`, …) and, for pods, compute requests and limits; for
//! services, node ports and load balancers; for claims, requested storage. Also which objects a scoped
//! quota takes (only pods can fall under a scope), and the requests and limits a quota makes every
//! container of a pod state.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::pod_resources::{self, is_extended_resource, is_native_resource, Options, ResourceList};
use super::quantity::{parse_quantity, Quantity};

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

/// A pod's compute usage from its requests and limits (`podComputeUsageHelper`): CPU, memory and
/// ephemeral storage under their plain, `requests.` and `limits.` names; hugepages under their own and
/// `requests.` names; extended resources (`example.com/gpu`) as `requests.<name>`.
fn pod_compute_usage(requests: &ResourceList, limits: &ResourceList) -> Usage {
    let mut usage = Usage::new();
    for resource in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(resource) {
            usage.insert(resource.to_string(), *q);
            usage.insert(format!("requests.{resource}"), *q);
        }
        if let Some(q) = limits.get(resource) {
            usage.insert(format!("limits.{resource}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            usage.insert(name.clone(), *q);
            usage.insert(format!("requests.{name}"), *q);
        }
        if is_extended_resource(name) {
            usage.insert(format!("requests.{name}"), *q);
        }
    }
    usage
}

/// `QuotaV1Pod`: a pod that has finished, or that is past its grace period while being deleted (its
/// node may be gone), uses no compute resources, so that it does not block its replacement.
fn pod_is_charged(pod: &Value, now: Timestamp) -> bool {
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    ) {
        return false;
    }
    let deleted = pod["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let grace = pod["metadata"]["deletionGracePeriodSeconds"].as_i64();
    match (deleted, grace) {
        // A grace period past the end of time never runs out.
        (Some(deleted), Some(grace)) => deleted
            .checked_add(jiff::SignedDuration::from_secs(grace.max(0)))
            .map_or(true, |end| now <= end),
        _ => true,
    }
}

/// What one stored object of `plural` (in `group`) uses at `now`. `count/pods` counts every stored pod;
/// `pods` and compute resources only the pods still charged.
pub fn usage_of(group: &str, plural: &str, obj: &Value, now: Timestamp) -> Usage {
    let mut usage = Usage::new();
    let qualified = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    add(&mut usage, &format!("count/{qualified}"), count(1));
    if group.is_empty() && plural == "pods" {
        if !pod_is_charged(obj, now) {
            return usage;
        }
        add(&mut usage, "pods", count(1));
        if let Ok(pod) = serde_json::from_value::<Pod>(obj.clone()) {
            let options = Options {
                use_status_resources: true,
                ..Options::default()
            };
            let requests = pod_resources::pod_requests(&pod, &options);
            let limits = pod_resources::pod_limits(&pod, &options);
            for (name, q) in pod_compute_usage(&requests, &limits) {
                add(&mut usage, &name, q);
            }
        }
        return usage;
    }
    if group.is_empty() && SHORT_COUNTS.contains(&plural) {
        add(&mut usage, plural, count(1));
    }
    match (group, plural) {
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

/// Whether the quota takes `obj` at all (`generic.Matches`): an unscoped quota takes every object, a
/// scoped one (`spec.scopes`, `spec.scopeSelector`) only the pods that fall under each of its scopes.
pub fn in_scope(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let spec = &quota["spec"];
    let scopes = spec["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|scope| (scope, "Exists", Vec::new()));
    let expressions = spec["scopeSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            (
                e["scopeName"].as_str().unwrap_or_default(),
                e["operator"].as_str().unwrap_or_default(),
                values,
            )
        });
    let mut selectors = scopes.chain(expressions).peekable();
    if selectors.peek().is_none() {
        return true;
    }
    // Only the pod evaluator knows scopes; every other one matches no scoped quota.
    group.is_empty()
        && plural == "pods"
        && selectors.all(|(scope, operator, values)| pod_in_scope(obj, scope, operator, &values))
}

/// `podMatchesScopeFunc`.
fn pod_in_scope(pod: &Value, scope: &str, operator: &str, values: &[&str]) -> bool {
    let terminating = || {
        pod["spec"]["activeDeadlineSeconds"]
            .as_i64()
            .is_some_and(|s| s >= 0)
    };
    let best_effort = || {
        pod["status"]["qosClass"]
            .as_str()
            .filter(|class| !class.is_empty())
            .unwrap_or_else(|| pod_resources::qos_class(&pod["spec"]))
            == "BestEffort"
    };
    match scope {
        "Terminating" => terminating(),
        "NotTerminating" => !terminating(),
        "BestEffort" => best_effort(),
        "NotBestEffort" => !best_effort(),
        // A selector over the one label `PriorityClass=<class>`, absent when the pod names no class.
        "PriorityClass" => {
            let class = pod["spec"]["priorityClassName"]
                .as_str()
                .filter(|c| !c.is_empty());
            match operator {
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|c| values.contains(&c)),
                "NotIn" => class.is_none_or(|c| !values.contains(&c)),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

/// Whether a pod (anti-)affinity term of the pod reaches other namespaces (`namespaces` or
/// `namespaceSelector`).
fn uses_cross_namespace_affinity(pod: &Value) -> bool {
    let affinity = &pod["spec"]["affinity"];
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let required = affinity[kind]["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten();
        let preferred = affinity[kind]["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|weighted| &weighted["podAffinityTerm"]);
        required.chain(preferred).any(|term| {
            term["namespaces"].as_array().is_some_and(|n| !n.is_empty())
                || term["namespaceSelector"].is_object()
        })
    })
}

/// Whether objects of `plural` (in `group`) add to the quota resource `name`.
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
            name == "pods"
                || POD_COMPUTE.contains(&name)
                || name.ends_with("ephemeral-storage")
                || name.starts_with("hugepages-")
                || name.starts_with("requests.hugepages-")
                || (!is_native_resource(name) && name.starts_with("requests."))
        }
        "services" => name.starts_with("services"),
        "persistentvolumeclaims" => name == "persistentvolumeclaims" || name == "requests.storage",
        plural => name == plural,
    }
}

/// The compute resources a quota limits that containers of the pod leave unstated, with those
/// containers, as Kubernetes words them: `limits.memory for: app,init; requests.cpu for: app`. None when
/// every container states them.
pub fn unstated_compute(pod: &Value, hard: &Usage) -> Option<String> {
    let containers: Vec<&Value> = ["containers", "initContainers"]
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
        let mut lacking: Vec<&str> = containers
            .iter()
            .filter(|c| c["resources"][field].get(resource).is_none())
            .map(|c| c["name"].as_str().unwrap_or_default())
            .collect();
        if !lacking.is_empty() {
            lacking.sort_unstable();
            lacking.dedup();
            missing.push(format!("{name} for: {}", lacking.join(",")));
        }
    }
    missing.sort();
    (!missing.is_empty()).then(|| missing.join("; "))
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

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn pods_count_requests_limits_and_init_containers_as_kubernetes() {
        let pod = json!({"spec": {
            "initContainers": [
                {"name": "init", "resources": {"requests": {"cpu": "2"}}},
                {"name": "sidecar", "restartPolicy": "Always",
                 "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": "32Mi"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "1Gi",
                    "hugepages-2Mi": "4Mi", "example.com/gpu": "1"}}}]}});
        let usage = usage_of("", "pods", &pod, now());
        // The sidecar runs beside the app containers, so its memory adds up with theirs.
        assert_eq!(
            pretty(&usage),
            "count/pods=1,cpu=2,ephemeral-storage=1Gi,hugepages-2Mi=4Mi,limits.memory=160Mi,memory=160Mi,\
             pods=1,requests.cpu=2,requests.ephemeral-storage=1Gi,requests.example.com/gpu=1,\
             requests.hugepages-2Mi=4Mi,requests.memory=160Mi"
        );
        assert!(counts_toward("", "pods", "requests.example.com/gpu"));
        assert!(counts_toward("", "pods", "requests.hugepages-2Mi"));
        assert!(!counts_toward("", "pods", "requests.storage"));
    }

    #[test]
    fn finished_pods_and_pods_past_their_grace_count_only_as_objects() {
        let done = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]},
            "status": {"phase": "Succeeded"}});
        assert_eq!(pretty(&usage_of("", "pods", &done, now())), "count/pods=1");
        let deleting = |at: &str| {
            json!({"metadata": {"deletionTimestamp": at, "deletionGracePeriodSeconds": 30},
                "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}})
        };
        assert_eq!(
            pretty(&usage_of(
                "",
                "pods",
                &deleting("2026-11-25T11:59:40Z"),
                now()
            )),
            "count/pods=1,cpu=1,pods=1,requests.cpu=1"
        );
        assert_eq!(
            pretty(&usage_of(
                "",
                "pods",
                &deleting("2026-11-25T11:59:00Z"),
                now()
            )),
            "count/pods=1"
        );
        let forever = json!({"metadata": {"deletionTimestamp": "2026-11-25T11:00:00Z",
            "deletionGracePeriodSeconds": i64::MAX}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            pretty(&usage_of("", "pods", &forever, now())),
            "count/pods=1,pods=1"
        );
    }

    #[test]
    fn scoped_quotas_take_only_the_pods_of_their_scopes() {
        let quota = |spec: Value| json!({"spec": spec});
        let best_effort = json!({"spec": {"containers": [{"name": "a"}]},
            "status": {"qosClass": "BestEffort"}});
        let burstable = json!({"spec": {"containers": [{"name": "a"}], "activeDeadlineSeconds": 60,
            "priorityClassName": "high"}, "status": {"qosClass": "Burstable"}});
        let scopes = |names: Value| quota(json!({"scopes": names}));
        let pods = |q: &Value| {
            [&best_effort, &burstable]
                .iter()
                .map(|p| in_scope(q, "", "pods", p))
                .collect::<Vec<_>>()
        };
        assert_eq!(pods(&quota(json!({}))), [true, true]);
        assert_eq!(pods(&scopes(json!(["BestEffort"]))), [true, false]);
        assert_eq!(pods(&scopes(json!(["NotBestEffort"]))), [false, true]);
        assert_eq!(pods(&scopes(json!(["Terminating"]))), [false, true]);
        assert_eq!(
            pods(&scopes(json!(["NotTerminating", "BestEffort"]))),
            [true, false]
        );
        let priority = |operator: &str, values: Value| {
            quota(json!({"scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": operator, "values": values}]}}))
        };
        assert_eq!(pods(&priority("In", json!(["high", "low"]))), [false, true]);
        assert_eq!(pods(&priority("NotIn", json!(["high"]))), [true, false]);
        assert_eq!(pods(&priority("Exists", json!(null))), [false, true]);
        assert_eq!(pods(&priority("DoesNotExist", json!(null))), [true, false]);
        let cross = json!({"spec": {"containers": [{"name": "a"}], "affinity": {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {
                "topologyKey": "k", "namespaceSelector": {}}}]}}}});
        let cross_scope = scopes(json!(["CrossNamespacePodAffinity"]));
        assert!(in_scope(&cross_scope, "", "pods", &cross));
        assert!(!in_scope(&cross_scope, "", "pods", &best_effort));
        // Without a recorded class, the pod's resources decide; a deadline of 0 still terminates.
        let unrecorded = json!({"spec": {"activeDeadlineSeconds": 0, "containers": [{"name": "a",
            "resources": {"requests": {"cpu": "1"}}}]}, "status": {"qosClass": ""}});
        assert!(in_scope(
            &scopes(json!(["NotBestEffort", "Terminating"])),
            "",
            "pods",
            &unrecorded
        ));
        // A scoped quota takes nothing but pods.
        assert!(!in_scope(
            &scopes(json!(["NotTerminating"])),
            "",
            "services",
            &json!({})
        ));
        assert!(in_scope(&quota(json!({})), "", "services", &json!({})));
    }

    #[test]
    fn counts_services_and_other_kinds() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(
            pretty(&usage_of("", "services", &svc, now())),
            "count/services=1,services=1,services.nodeports=2"
        );
        assert_eq!(
            pretty(&usage_of("apps", "deployments", &json!({}), now())),
            "count/deployments.apps=1"
        );
    }

    #[test]
    fn unstated_compute_names_what_the_quota_needs() {
        let hard = parse_list(&json!({"requests.cpu": "1", "limits.memory": "1Gi", "pods": "3"}));
        let pod = json!({"spec": {
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [{"name": "init"}]}});
        assert_eq!(
            unstated_compute(&pod, &hard).as_deref(),
            Some("limits.memory for: app,init; requests.cpu for: init")
        );
        let stated = json!({"spec": {"containers": [{"name": "app", "resources": {
            "requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}}]}});
        assert_eq!(unstated_compute(&stated, &hard), None);
    }
}
