//! A pod's requests and limits as Kubernetes adds them up (`component-helpers/resource`: PodRequests,
//! PodLimits): the app containers and sidecars (init containers with `restartPolicy: Always`) together,
//! or the largest plain init container with the sidecars started before it when that is more; pod-level
//! `spec.resources` in place of the containers' CPU, memory and hugepages; the RuntimeClass overhead on
//! top. The scheduler, ResourceQuota and the kubelet's eviction all count a pod through here. Also the
//! pod's QoS class, which follows from the same fields.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use serde_json::Value;

use super::quantity::{parse_quantity, Quantity};

/// Amounts by resource name.
pub type ResourceList = BTreeMap<String, Quantity>;

/// How to count, as `PodResourcesOptions` upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// Counts a resize under way at its larger side: the most of what the spec asks, what the node
    /// allocated (`allocatedResources`) and what runs (`status.resources`), per pod; a resize the node
    /// found infeasible counts only what is allocated and running.
    pub use_status_resources: bool,
    pub exclude_overhead: bool,
    /// Counts only pod-level resources, as if the pod had no containers.
    pub skip_container_level: bool,
    /// What a container that leaves one of these requests out is counted with for it
    /// (`NonMissingContainerRequests`).
    pub non_missing_requests: &'a [(&'a str, Quantity)],
}

/// `helper.IsNativeResource`: unqualified, or in the kubernetes.io domain.
pub fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `helper.IsExtendedResourceName`: a resource of another domain (`example.com/gpu`), other than a
/// quota's `requests.` name for one.
pub fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name) && !name.starts_with("requests.")
}

/// Pod-level resources count only for these (`IsSupportedPodLevelResource`).
pub fn is_supported_pod_level_resource(name: &str) -> bool {
    name == "cpu" || name == "memory" || name.starts_with("hugepages-")
}

/// Whether the pod states a pod-level resource it may (`IsPodLevelResourcesSet`).
fn pod_level_resources_set(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .is_some_and(|r| {
            [r.requests.as_ref(), r.limits.as_ref()]
                .into_iter()
                .flatten()
                .any(|l| l.keys().any(|k| is_supported_pod_level_resource(k)))
        })
}

/// Whether the pod states a pod-level request it may (`IsPodLevelRequestsSet`).
pub fn pod_level_requests_set(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .is_some_and(|r| r.keys().any(|k| is_supported_pod_level_resource(k)))
}

/// The pod's effective requests (`PodRequests`).
pub fn pod_requests(pod: &Pod, options: &Options) -> ResourceList {
    let mut requests = if options.skip_container_level {
        ResourceList::new()
    } else {
        aggregate_containers(pod, options, Side::Requests)
    };
    let pod_level = pod
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref());
    if pod_level_requests_set(pod) {
        apply_pod_level(&mut requests, pod_level);
    }
    if !options.exclude_overhead {
        add(&mut requests, &list_of(overhead(pod)));
    }
    requests
}

/// The pod's effective limits (`PodLimits`): the overhead is added only to limits that are set.
pub fn pod_limits(pod: &Pod, options: &Options) -> ResourceList {
    let options = Options {
        non_missing_requests: &[],
        ..*options
    };
    let mut limits = aggregate_containers(pod, &options, Side::Limits);
    if pod_level_resources_set(pod) {
        let pod_level = pod.spec.as_ref().and_then(|s| s.resources.as_ref());
        apply_pod_level(&mut limits, pod_level.and_then(|r| r.limits.as_ref()));
    }
    if !options.exclude_overhead {
        for (name, extra) in list_of(overhead(pod)) {
            if let Some(limit) = limits.get_mut(&name).filter(|l| !l.is_zero()) {
                *limit = limit.plus(&extra);
            }
        }
    }
    limits
}

/// The pod's request for one resource as kubelet ranks pods for eviction by it
/// (`GetResourceRequestQuantity`): its pod-level requests alone when it states pod-level resources, and
/// the overhead only on a request that is not zero.
pub fn request_quantity(pod: &Pod, resource: &str) -> Option<Quantity> {
    let options = Options {
        skip_container_level: pod_level_resources_set(pod),
        exclude_overhead: true,
        ..Options::default()
    };
    let request = pod_requests(pod, &options).get(resource).copied()?;
    let extra = list_of(overhead(pod)).get(resource).copied();
    Some(match extra {
        Some(extra) if !request.is_zero() => request.plus(&extra),
        _ => request,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Requests,
    Limits,
}

/// Which of a container's figures to count: its spec's, what the node allocated, or what it runs with.
#[derive(Clone, Copy)]
enum Source {
    Spec,
    Allocated,
    Actuated,
}

fn overhead(pod: &Pod) -> Option<&BTreeMap<String, ApiQuantity>> {
    pod.spec.as_ref().and_then(|s| s.overhead.as_ref())
}

fn apply_pod_level(result: &mut ResourceList, pod_level: Option<&BTreeMap<String, ApiQuantity>>) {
    for (name, q) in list_of(pod_level) {
        if is_supported_pod_level_resource(&name) {
            result.insert(name, q);
        }
    }
}

/// `AggregateContainerRequests` / `AggregateContainerLimits`.
fn aggregate_containers(pod: &Pod, options: &Options, side: Side) -> ResourceList {
    let spec = aggregate_by(pod, options, side, Source::Spec, false);
    if !options.use_status_resources {
        return spec;
    }
    let infeasible = is_resize_infeasible(pod);
    let actuated = aggregate_by(pod, options, side, Source::Actuated, infeasible);
    let mut result = if infeasible {
        ResourceList::new()
    } else {
        spec
    };
    max(&mut result, &actuated);
    if side == Side::Requests {
        max(
            &mut result,
            &aggregate_by(pod, options, side, Source::Allocated, infeasible),
        );
    }
    result
}

fn is_resize_infeasible(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodResizePending"))
        .is_some_and(|c| c.reason.as_deref() == Some("Infeasible"))
}

fn container_status<'p>(pod: &'p Pod, name: &str) -> Option<&'p ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == name)
}

/// One container's figures from `source`: what it is allocated or runs with, falling back to its spec
/// (to nothing when its resize is infeasible) where the status says nothing.
fn container_list(
    pod: &Pod,
    c: &Container,
    side: Side,
    source: Source,
    infeasible: bool,
) -> ResourceList {
    fn of(r: Option<&ResourceRequirements>, side: Side) -> Option<&BTreeMap<String, ApiQuantity>> {
        r.and_then(|r| match side {
            Side::Requests => r.requests.as_ref(),
            Side::Limits => r.limits.as_ref(),
        })
    }
    let spec = || {
        if infeasible {
            ResourceList::new()
        } else {
            list_of(of(c.resources.as_ref(), side))
        }
    };
    let status = || container_status(pod, &c.name);
    let allocated = || {
        status()
            .and_then(|s| s.allocated_resources.as_ref())
            .map(|a| list_of(Some(a)))
    };
    match (source, side) {
        (Source::Spec, _) => list_of(of(c.resources.as_ref(), side)),
        (Source::Allocated, _) => allocated().unwrap_or_else(spec),
        (Source::Actuated, Side::Requests) => status()
            .and_then(|s| of(s.resources.as_ref(), side))
            .map(|r| list_of(Some(r)))
            .or_else(allocated)
            .unwrap_or_else(spec),
        (Source::Actuated, Side::Limits) => status()
            .and_then(|s| of(s.resources.as_ref(), side))
            .map(|r| list_of(Some(r)))
            .unwrap_or_else(spec),
    }
}

/// `aggregateContainerResourcesByFn`: app containers and sidecars add up; each plain init container
/// runs alone beside the sidecars before it, and the largest of those moments counts if it is more.
fn aggregate_by(
    pod: &Pod,
    options: &Options,
    side: Side,
    source: Source,
    infeasible: bool,
) -> ResourceList {
    let Some(spec) = pod.spec.as_ref() else {
        return ResourceList::new();
    };
    let list = |c: &Container| {
        let mut list = container_list(pod, c, side, source, infeasible);
        for (name, value) in options.non_missing_requests {
            list.entry((*name).to_string()).or_insert(*value);
        }
        list
    };
    let mut result = ResourceList::new();
    for c in &spec.containers {
        add(&mut result, &list(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_peak = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let own = list(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut result, &own);
            add(&mut sidecars, &own);
            max(&mut init_peak, &sidecars);
        } else {
            let mut alone = own;
            add(&mut alone, &sidecars);
            max(&mut init_peak, &alone);
        }
    }
    max(&mut result, &init_peak);
    result
}

/// A resource list of the API as quantities; a value that does not parse (validation refuses those)
/// counts as nothing.
fn list_of(list: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), parse_quantity(&q.0).ok()?)))
        .collect()
}

fn add(acc: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        acc.entry(name.clone())
            .and_modify(|sum| *sum = sum.plus(q))
            .or_insert(*q);
    }
}

fn max(acc: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        match acc.get(name) {
            Some(current) if current >= q => {}
            _ => {
                acc.insert(name.clone(), *q);
            }
        }
    }
}

/// The QoS class pod-level resources give, when the pod states any for CPU or memory (`ComputePodQOS`).
fn pod_level_qos_class(spec: &Value) -> Option<&'static str> {
    let stated = |list: &Value| -> Vec<(String, Value)> {
        list.as_object()
            .into_iter()
            .flatten()
            .filter(|(name, q)| {
                (*name == "cpu" || *name == "memory")
                    && Quantity::try_from(*q).is_ok_and(|q| !q.is_zero() && !q.is_negative())
            })
            .map(|(name, q)| (name.clone(), q.clone()))
            .collect()
    };
    let requests = stated(&spec["resources"]["requests"]);
    let limits = stated(&spec["resources"]["limits"]);
    let same = |a: &Value, b: &Value| {
        matches!((Quantity::try_from(a), Quantity::try_from(b)),
            (Ok(a), Ok(b)) if a.minus(&b).is_zero())
    };
    if !(requests.is_empty() && limits.is_empty()) {
        return Some(
            if limits.len() == 2
                && requests.len() == limits.len()
                && requests.iter().all(|(name, request)| {
                    limits
                        .iter()
                        .any(|(limit_name, limit)| limit_name == name && same(request, limit))
                })
            {
                "Guaranteed"
            } else {
                "Burstable"
            },
        );
    }
    None
}

/// Kubernetes' QoS classes: Guaranteed when every container limits cpu and memory with equal requests,
/// BestEffort when nothing requests or limits anything, Burstable otherwise. Pod-level resources, when
/// the pod states them for CPU or memory, decide alone (`ComputePodQOS`); zero amounts count as
/// unstated.
pub fn qos_class(spec: &Value) -> &'static str {
    if let Some(class) = pod_level_qos_class(spec) {
        return class;
    }
    // Per container: a positive request (a limit stands in for a request left out, as defaulting
    // does) or limit counts; Guaranteed needs both limits on every container, each equal to its request.
    let positive = |q: &Value| {
        Quantity::try_from(q)
            .ok()
            .filter(|q| *q > Quantity::zero(q.format()))
    };
    let containers = ["initContainers", "containers"]
        .iter()
        .flat_map(|field| spec[*field].as_array().into_iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        for resource in ["cpu", "memory"] {
            let limit = positive(&c["resources"]["limits"][resource]);
            let request = match c["resources"]["requests"].get(resource) {
                Some(stated) => positive(stated),
                None => limit,
            };
            any |= limit.is_some() || request.is_some();
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn shown(list: &ResourceList) -> String {
        list.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn requests(cpu: &str, memory: &str) -> serde_json::Value {
        json!({"requests": {"cpu": cpu, "memory": memory}})
    }

    #[test]
    fn sidecars_add_up_and_a_plain_init_container_counts_with_the_sidecars_before_it() {
        let p = pod(json!({"spec": {
        "initContainers": [
            {"name": "first", "resources": requests("2", "64Mi")},
            {"name": "sidecar", "restartPolicy": "Always", "resources": requests("500m", "32Mi")},
            {"name": "late", "resources": requests("1", "512Mi")},
        ],
        "containers": [
            {"name": "a", "resources": requests("250m", "64Mi")},
            {"name": "b", "resources": requests("250m", "64Mi")},
        ]}}));
        // cpu: apps + sidecar = 1, the first init container alone 2; memory: 'late' beside the sidecar,
        // 544Mi, over apps + sidecar at 160Mi.
        assert_eq!(
            shown(&pod_requests(&p, &Options::default())),
            "cpu=2,memory=544Mi"
        );
    }

    #[test]
    fn pod_level_resources_replace_cpu_memory_and_hugepages_and_overhead_adds_on() {
        let p = pod(json!({"spec": {
            "resources": {"requests": {"cpu": "3", "ephemeral-storage": "9Gi"}, "limits": {"memory": "1Gi"}},
            "overhead": {"cpu": "100m", "memory": "10Mi"},
            "containers": [{"name": "a", "resources": {
                "requests": {"cpu": "1", "memory": "64Mi", "ephemeral-storage": "1Gi"},
                "limits": {"cpu": "2", "ephemeral-storage": "2Gi"}}}]}}));
        assert_eq!(
            shown(&pod_requests(&p, &Options::default())),
            "cpu=3100m,ephemeral-storage=1Gi,memory=74Mi"
        );
        // Overhead goes only onto limits that are set; ephemeral-storage is not a pod-level resource.
        assert_eq!(
            shown(&pod_limits(&p, &Options::default())),
            "cpu=2100m,ephemeral-storage=2Gi,memory=1034Mi"
        );
        let bare = Options {
            exclude_overhead: true,
            ..Options::default()
        };
        assert_eq!(
            shown(&pod_limits(&p, &bare)),
            "cpu=2,ephemeral-storage=2Gi,memory=1Gi"
        );
    }

    #[test]
    fn eviction_ranks_by_pod_level_requests_alone_and_adds_overhead_to_what_is_requested() {
        let containers = json!([{"name": "a", "resources": {"requests": {"memory": "64Mi", "ephemeral-storage": "1Gi"}}}]);
        let plain = pod(
            json!({"spec": {"containers": containers, "overhead": {"memory": "8Mi", "cpu": "10m"}}}),
        );
        assert_eq!(
            request_quantity(&plain, "memory").unwrap().to_string(),
            "72Mi"
        );
        // No cpu is requested, so no overhead is added to it.
        assert_eq!(request_quantity(&plain, "cpu"), None);
        let pod_level = pod(json!({"spec": {"containers": containers,
            "resources": {"requests": {"memory": "256Mi"}}}}));
        assert_eq!(
            request_quantity(&pod_level, "memory").unwrap().to_string(),
            "256Mi"
        );
        assert_eq!(request_quantity(&pod_level, "ephemeral-storage"), None);
    }

    #[test]
    fn missing_requests_are_filled_in_only_where_a_container_states_none() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "0"}}},
            {"name": "b"},
        ]}}));
        let defaults = [
            ("cpu", parse_quantity("100m").unwrap()),
            ("memory", parse_quantity("200Mi").unwrap()),
        ];
        let options = Options {
            non_missing_requests: &defaults,
            ..Options::default()
        };
        assert_eq!(shown(&pod_requests(&p, &options)), "cpu=100m,memory=400Mi");
        assert_eq!(shown(&pod_limits(&p, &options)), "");
    }

    #[test]
    fn a_resize_under_way_counts_at_its_larger_side_unless_infeasible() {
        let resizing = |reason: &str| {
            pod(json!({
            "spec": {"containers": [
                {"name": "a", "resources": requests("2", "64Mi")},
                {"name": "b", "resources": requests("100m", "64Mi")},
            ]},
            "status": {
                "conditions": [{"type": "PodResizePending", "status": "True", "reason": reason}],
                "containerStatuses": [
                    {"name": "a", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                     "allocatedResources": {"cpu": "1", "memory": "64Mi"},
                     "resources": requests("1", "64Mi")},
                    {"name": "b", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                     "allocatedResources": {"cpu": "500m", "memory": "64Mi"},
                     "resources": requests("500m", "64Mi")},
                ]}}))
        };
        let with_status = Options {
            use_status_resources: true,
            ..Options::default()
        };
        // Per pod, not per container: the spec's 2.1 over what runs, 1.5.
        assert_eq!(
            shown(&pod_requests(&resizing("Deferred"), &with_status)),
            "cpu=2100m,memory=128Mi"
        );
        assert_eq!(
            shown(&pod_requests(&resizing("Infeasible"), &with_status)),
            "cpu=1500m,memory=128Mi"
        );
        assert_eq!(
            shown(&pod_requests(&resizing("Infeasible"), &Options::default())),
            "cpu=2100m,memory=128Mi"
        );
    }

    #[test]
    fn qos_classes() {
        assert_eq!(
            qos_class(&json!({"containers":[{"name":"a"}]})),
            "BestEffort"
        );
        // Zero is unstated; equal amounts are equal however they are written.
        assert_eq!(
            qos_class(&json!({"containers":[{"resources":{"limits":{"cpu":"0","memory":"0"}}}]})),
            "BestEffort"
        );
        assert_eq!(
            qos_class(&json!({"containers":[{"resources":{
                "requests":{"cpu":"1000m","memory":"1073741824"},
                "limits":{"cpu":"1","memory":"1Gi"}}}]})),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]})),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&json!({"containers":[{"resources":{"requests":{"cpu":"1"}}}]})),
            "Burstable"
        );
        // Pod-level resources decide alone: Guaranteed whatever the containers say, when both are
        // stated with equal requests; zero is unstated.
        let pod_level = |resources: Value| {
            qos_class(&json!({"resources": resources,
                "containers":[{"resources":{"requests":{"cpu":"1"}}}]}))
        };
        let both = json!({"cpu": "1", "memory": "1Gi"});
        assert_eq!(
            pod_level(json!({"limits": both, "requests": {"cpu": "1000m", "memory": "1Gi"}})),
            "Guaranteed"
        );
        assert_eq!(
            pod_level(json!({"limits": both, "requests": {"cpu": "500m", "memory": "1Gi"}})),
            "Burstable"
        );
        assert_eq!(
            pod_level(json!({"limits": {"cpu": "1", "memory": "0"}, "requests": {"cpu": "1"}})),
            "Burstable"
        );
        assert_eq!(pod_level(json!({})), "Burstable", "the containers decide");
        assert_eq!(
            qos_class(&json!({"resources": {"limits": {"memory": "0"}}, "containers": [{}]})),
            "BestEffort"
        );
    }
}
