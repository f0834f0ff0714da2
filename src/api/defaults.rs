//! Server-side defaulting: fills in the fields Kubernetes v1.34 fills when it decodes an object
//! (`SetObjectDefaults_<Kind>` for core/v1, apps/v1, batch/v1, autoscaling, networking/v1 and
//! discovery/v1), so that objects read back from orch look the way `kubectl get -o yaml`
//! shows them on a real cluster.
//!
//! Objects are handled as `serde_json::Value` in their versioned JSON form. Two kinds of Go
//! field need different treatment and the helpers below keep them apart: pointer fields
//! (`*int32 replicas`) are defaulted only when absent or `null`, so an explicit `0` survives;
//! plain value fields (`string dnsPolicy`, `int32 timeoutSeconds`) cannot tell "unset" from
//! their zero value in Go, so `""` and `0` are defaulted too, exactly as upstream does.
//!
//! Besides the scheme defaulters this also applies the few create-time fills that a user sees
//! in the stored object and that Kubernetes performs in its registry strategies: a Service's
//! `clusterIPs`/`ipFamilyPolicy`/`ipFamilies` (as on a single-stack IPv4 cluster), and a new
//! Namespace's `kubernetes` finalizer. Allocation (cluster IPs, node ports), admission
//! (service account, tolerations, priority) and Job selector generation remain the caller's.
//! Resource quantities are rewritten in their canonical form, rounded up to milli-units, as
//! the API server does when it decodes a resource list.

use serde_json::{json, Map, Value};

use super::quantity::Quantity;

type Obj = Map<String, Value>;

/// Applies the defaults Kubernetes' `SetObjectDefaults_<Kind>` applies (v1.34), in place.
/// Unknown kinds, and values that are not JSON objects, are left untouched.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match kind {
        "Pod" => default_pod(root),
        "PodTemplate" => {
            if let Some(template) = child_or_insert(root, "template") {
                default_pod_template(template);
            }
        }
        "ReplicationController" => default_replication_controller(root),
        "Deployment" => default_deployment(root),
        "ReplicaSet" => default_replica_set(root),
        "StatefulSet" => default_stateful_set(root),
        "DaemonSet" => default_daemon_set(root),
        "Job" => default_job(root),
        "CronJob" => default_cron_job(root),
        "Service" => default_service(root),
        "Namespace" => default_namespace(root),
        "Secret" => default_value(root, "type", json!("Opaque")),
        "PersistentVolume" => default_persistent_volume(root),
        "PersistentVolumeClaim" => default_pvc(root),
        "Node" => default_node(root),
        "Endpoints" => default_endpoints(root),
        "EndpointSlice" => default_endpoint_slice(root),
        "HorizontalPodAutoscaler" => default_hpa(root),
        "NetworkPolicy" => default_network_policy(root),
        "LimitRange" => default_limit_range(root),
        "ResourceQuota" => default_resource_quota(root),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// JSON helpers

fn is_unset(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

/// Go's zero value for a non-pointer scalar: indistinguishable from "not set".
fn is_zero_value(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// Defaults a pointer field: only an absent or `null` value is replaced.
fn default_ptr(map: &mut Obj, key: &str, value: Value) {
    if is_unset(map.get(key)) {
        map.insert(key.to_string(), value);
    }
}

/// Defaults a value field: its zero value (`""`, `0`) counts as unset, as it does in Go.
fn default_value(map: &mut Obj, key: &str, value: Value) {
    if is_zero_value(map.get(key)) {
        map.insert(key.to_string(), value);
    }
}

fn str_of<'a>(map: &'a Obj, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

/// An existing child object; `None` when absent or not an object.
fn child<'a>(map: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    map.get_mut(key)?.as_object_mut()
}

/// A child object, created empty when absent or `null` (a Go struct or nil pointer that the
/// defaulter allocates). A value of the wrong type is left alone and yields `None`.
fn child_or_insert<'a>(map: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    if is_unset(map.get(key)) {
        map.insert(key.to_string(), Value::Object(Map::new()));
    }
    map.get_mut(key)?.as_object_mut()
}

/// The object elements of an array field.
fn items<'a>(map: &'a mut Obj, key: &str) -> impl Iterator<Item = &'a mut Obj> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn non_empty_array(map: &Obj, key: &str) -> bool {
    map.get(key)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Rewrites every quantity of a resource list in canonical form, rounded up to milli-units
/// (`SetDefaults_ResourceList` plus Quantity serialisation). Unparseable values are left for
/// validation to report.
fn canonicalize_resource_list(map: &mut Obj, key: &str) {
    let Some(list) = child(map, key) else {
        return;
    };
    for value in list.values_mut() {
        if let Ok(q) = Quantity::try_from(&*value) {
            *value = Value::String(q.round_up_to_millis().to_string());
        }
    }
}

fn default_field_ref_api_version(holder: &mut Obj) {
    if let Some(field_ref) = child(holder, "fieldRef") {
        default_value(field_ref, "apiVersion", json!("v1"));
    }
}

// ---------------------------------------------------------------------------------------
// Pods and pod templates

fn default_pod(pod: &mut Obj) {
    let Some(spec) = child_or_insert(pod, "spec") else {
        return;
    };
    default_pod_only_fields(spec);
    default_pod_spec(spec);
}

/// `SetDefaults_Pod`: fields defaulted only on Pods, never in templates, so that changing
/// them does not roll every workload on upgrade.
fn default_pod_only_fields(spec: &mut Obj) {
    for list in ["containers", "initContainers"] {
        for container in items(spec, list) {
            let Some(resources) = child(container, "resources") else {
                continue;
            };
            let limits = match resources.get("limits").and_then(Value::as_object) {
                Some(limits) if !limits.is_empty() => limits.clone(),
                _ => continue,
            };
            // Requests default to limits, resource by resource.
            if let Some(requests) = child_or_insert(resources, "requests") {
                for (name, quantity) in limits {
                    requests.entry(name).or_insert(quantity);
                }
            }
        }
    }
    default_pod_level_requests(spec);
    default_ptr(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        // With host networking every container port is a host port.
        for list in ["containers", "initContainers"] {
            for container in items(spec, list) {
                for port in items(container, "ports") {
                    let container_port = port.get("containerPort").cloned().unwrap_or(json!(0));
                    default_value(port, "hostPort", container_port);
                }
            }
        }
    }
}

/// `defaultPodRequests`: when pod-level limits are set, each pod-level request not stated defaults, for
/// CPU and memory, to the containers' effective request when some container requests that resource,
/// and otherwise (hugepages too) to the pod-level limit.
fn default_pod_level_requests(spec: &mut Obj) {
    let limits = spec
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned();
    let Some(limits) = limits else {
        return;
    };
    let from_containers: Vec<(&str, Quantity)> = ["cpu", "memory"]
        .into_iter()
        .filter_map(|name| Some((name, effective_container_request(spec, name)?)))
        .collect();
    let Some(requests) = child(spec, "resources").and_then(|r| child_or_insert(r, "requests"))
    else {
        return;
    };
    for (name, request) in from_containers {
        requests
            .entry(name)
            .or_insert_with(|| Value::String(request.to_string()));
    }
    for (name, limit) in limits {
        if name == "cpu" || name == "memory" || name.starts_with("hugepages-") {
            requests.entry(name).or_insert(limit);
        }
    }
}

/// The pod's effective request of `resource` from its containers (`AggregateContainerRequests`): the
/// app containers' and sidecars' sum, or the largest init container plus the sidecars started before
/// it if that is more; none when no container requests it.
fn effective_container_request(spec: &Obj, resource: &str) -> Option<Quantity> {
    let request = |c: &Value| {
        let q = c.get("resources")?.get("requests")?.get(resource)?;
        Quantity::try_from(q).ok()
    };
    let list = |field: &str| {
        spec.get(field)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let (containers, init) = (list("containers"), list("initContainers"));
    if !containers.iter().chain(init).any(|c| request(c).is_some()) {
        return None;
    }
    let add = |a: Option<Quantity>, b: Option<Quantity>| match (a, b) {
        (Some(a), Some(b)) => Some(a.plus(&b)),
        (a, b) => a.or(b),
    };
    let larger = |a: Option<Quantity>, b: Option<Quantity>| match (a, b) {
        (Some(a), Some(b)) => Some(if a.minus(&b).is_negative() { b } else { a }),
        (a, b) => a.or(b),
    };
    let mut running = containers.iter().map(request).fold(None, add);
    let (mut sidecars, mut init_peak) = (None, None);
    for c in init {
        if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            running = add(running, request(c));
            sidecars = add(sidecars, request(c));
            init_peak = larger(init_peak, sidecars);
        } else {
            init_peak = larger(init_peak, add(request(c), sidecars));
        }
    }
    larger(running, init_peak)
}

fn default_pod_template(template: &mut Obj) {
    if let Some(spec) = child_or_insert(template, "spec") {
        default_pod_spec(spec);
    }
}

/// Defaults `spec.template` of a workload.
fn default_workload_template(spec: &mut Obj) {
    if let Some(template) = child_or_insert(spec, "template") {
        default_pod_template(template);
    }
}

/// `SetDefaults_PodSpec` plus the nested volume and container defaulters.
fn default_pod_spec(spec: &mut Obj) {
    default_value(spec, "dnsPolicy", json!("ClusterFirst"));
    // Job templates get Always too; batch validation then rejects it, as upstream does.
    default_value(spec, "restartPolicy", json!("Always"));
    default_ptr(spec, "securityContext", json!({}));
    default_ptr(spec, "terminationGracePeriodSeconds", json!(30));
    default_value(spec, "schedulerName", json!("default-scheduler"));
    for volume in items(spec, "volumes") {
        default_volume(volume);
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in items(spec, list) {
            default_container(container);
        }
    }
    canonicalize_resource_list(spec, "overhead");
    if let Some(resources) = child(spec, "resources") {
        canonicalize_resource_list(resources, "limits");
        canonicalize_resource_list(resources, "requests");
    }
}

fn default_container(container: &mut Obj) {
    if is_zero_value(container.get("imagePullPolicy")) {
        let policy = if image_tag_is_latest(str_of(container, "image")) {
            "Always"
        } else {
            "IfNotPresent"
        };
        container.insert("imagePullPolicy".into(), json!(policy));
    }
    default_value(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    default_value(container, "terminationMessagePolicy", json!("File"));
    for port in items(container, "ports") {
        default_value(port, "protocol", json!("TCP"));
    }
    for env in items(container, "env") {
        if let Some(value_from) = child(env, "valueFrom") {
            default_field_ref_api_version(value_from);
        }
    }
    // ResourceRequirements is a struct in Go, so it always serialises, if only as `{}`.
    if let Some(resources) = child_or_insert(container, "resources") {
        canonicalize_resource_list(resources, "limits");
        canonicalize_resource_list(resources, "requests");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = child(container, probe) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = child(container, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(http_get) = child(lifecycle, hook).and_then(|h| child(h, "httpGet")) {
                default_http_get(http_get);
            }
        }
    }
}

/// `ParseImageName` semantics: the tag is `latest` when the reference names neither a tag
/// nor a digest. A reference that does not parse has no tag at all (so `IfNotPresent`).
fn image_tag_is_latest(image: &str) -> bool {
    match split_image_reference(image) {
        Some((Some(tag), _)) => tag == "latest",
        Some((None, digest)) => digest.is_none(),
        None => false,
    }
}

/// Splits `[domain/]path[:tag][@digest]` into (tag, digest), or `None` when the reference
/// is not a valid normalised image name.
fn split_image_reference(image: &str) -> Option<(Option<&str>, Option<&str>)> {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) if digest.contains(':') => (rest, Some(digest)),
        Some(_) => return None,
        None => (image, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    let mut components: Vec<&str> = name.split('/').collect();
    // A first component with a dot or port, or "localhost", is a registry host and may
    // contain upper case; the repository path may not.
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost")
    {
        components.remove(0);
    }
    let path_ok = components.iter().all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    });
    let tag_ok = tag.is_none_or(|t| {
        !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    });
    (path_ok && tag_ok).then_some((tag, digest))
}

fn default_probe(probe: &mut Obj) {
    default_value(probe, "timeoutSeconds", json!(1));
    default_value(probe, "periodSeconds", json!(10));
    default_value(probe, "successThreshold", json!(1));
    default_value(probe, "failureThreshold", json!(3));
    if let Some(http_get) = child(probe, "httpGet") {
        default_http_get(http_get);
    }
    if let Some(grpc) = child(probe, "grpc") {
        default_ptr(grpc, "service", json!(""));
    }
}

fn default_http_get(http_get: &mut Obj) {
    default_value(http_get, "path", json!("/"));
    default_value(http_get, "scheme", json!("HTTP"));
}

fn default_volume(volume: &mut Obj) {
    // A volume naming no source at all is an emptyDir.
    if !volume.iter().any(|(k, v)| k != "name" && !v.is_null()) {
        volume.insert("emptyDir".into(), json!({}));
    }
    default_volume_source(volume);
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = child(volume, source) {
            default_ptr(source, "defaultMode", json!(420));
        }
    }
    if let Some(downward) = child(volume, "downwardAPI") {
        for item in items(downward, "items") {
            default_field_ref_api_version(item);
        }
    }
    if let Some(projected) = child(volume, "projected") {
        for source in items(projected, "sources") {
            if let Some(downward) = child(source, "downwardAPI") {
                for item in items(downward, "items") {
                    default_field_ref_api_version(item);
                }
            }
            if let Some(token) = child(source, "serviceAccountToken") {
                default_ptr(token, "expirationSeconds", json!(3600));
            }
        }
    }
    if let Some(claim_spec) = child(volume, "ephemeral")
        .and_then(|e| child(e, "volumeClaimTemplate"))
        .and_then(|t| child(t, "spec"))
    {
        default_pvc_spec(claim_spec);
    }
}

/// Defaults shared by pod volumes and PersistentVolume sources.
fn default_volume_source(source: &mut Obj) {
    if let Some(host_path) = child(source, "hostPath") {
        default_ptr(host_path, "type", json!(""));
    }
    if let Some(iscsi) = child(source, "iscsi") {
        default_value(iscsi, "iscsiInterface", json!("default"));
    }
    if let Some(rbd) = child(source, "rbd") {
        default_value(rbd, "pool", json!("rbd"));
        default_value(rbd, "user", json!("admin"));
        default_value(rbd, "keyring", json!("/etc/ceph/keyring"));
    }
}

// ---------------------------------------------------------------------------------------
// Workloads

fn default_replication_controller(rc: &mut Obj) {
    let Some(spec) = child_or_insert(rc, "spec") else {
        return;
    };
    default_ptr(spec, "replicas", json!(1));
    let template_labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned();
    if let Some(template) = child(spec, "template") {
        default_pod_template(template);
    }
    // The selector and the controller's own labels fall back to the template's labels.
    if let Some(labels) = template_labels {
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), Value::Object(labels.clone()));
        }
        copy_labels_if_empty(rc, labels);
    }
}

/// Sets `metadata.labels` to `labels` when the object has none (RC and Job defaulting).
fn copy_labels_if_empty(root: &mut Obj, labels: Obj) {
    if labels.is_empty() {
        return;
    }
    if let Some(metadata) = child_or_insert(root, "metadata") {
        let has_labels = metadata
            .get("labels")
            .and_then(Value::as_object)
            .is_some_and(|l| !l.is_empty());
        if !has_labels {
            metadata.insert("labels".into(), Value::Object(labels));
        }
    }
}

fn default_deployment(deployment: &mut Obj) {
    let Some(spec) = child_or_insert(deployment, "spec") else {
        return;
    };
    default_ptr(spec, "replicas", json!(1));
    if let Some(strategy) = child_or_insert(spec, "strategy") {
        default_value(strategy, "type", json!("RollingUpdate"));
        if str_of(strategy, "type") == "RollingUpdate" {
            if let Some(rolling) = child_or_insert(strategy, "rollingUpdate") {
                default_ptr(rolling, "maxUnavailable", json!("25%"));
                default_ptr(rolling, "maxSurge", json!("25%"));
            }
        }
    }
    default_ptr(spec, "revisionHistoryLimit", json!(10));
    default_ptr(spec, "progressDeadlineSeconds", json!(600));
    default_workload_template(spec);
}

fn default_replica_set(replica_set: &mut Obj) {
    let Some(spec) = child_or_insert(replica_set, "spec") else {
        return;
    };
    default_ptr(spec, "replicas", json!(1));
    default_workload_template(spec);
}

fn default_stateful_set(stateful_set: &mut Obj) {
    let Some(spec) = child_or_insert(stateful_set, "spec") else {
        return;
    };
    default_value(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = child_or_insert(spec, "updateStrategy") {
        // rollingUpdate is only allocated when the type itself was defaulted.
        if is_zero_value(strategy.get("type")) {
            strategy.insert("type".into(), json!("RollingUpdate"));
            default_ptr(strategy, "rollingUpdate", json!({}));
        }
        if str_of(strategy, "type") == "RollingUpdate" {
            if let Some(rolling) = child(strategy, "rollingUpdate") {
                default_ptr(rolling, "partition", json!(0));
            }
        }
    }
    if let Some(policy) = child_or_insert(spec, "persistentVolumeClaimRetentionPolicy") {
        default_value(policy, "whenDeleted", json!("Retain"));
        default_value(policy, "whenScaled", json!("Retain"));
    }
    default_ptr(spec, "replicas", json!(1));
    default_ptr(spec, "revisionHistoryLimit", json!(10));
    default_workload_template(spec);
    for claim in items(spec, "volumeClaimTemplates") {
        default_pvc(claim);
    }
}

fn default_daemon_set(daemon_set: &mut Obj) {
    let Some(spec) = child_or_insert(daemon_set, "spec") else {
        return;
    };
    if let Some(strategy) = child_or_insert(spec, "updateStrategy") {
        default_value(strategy, "type", json!("RollingUpdate"));
        if str_of(strategy, "type") == "RollingUpdate" {
            if let Some(rolling) = child_or_insert(strategy, "rollingUpdate") {
                default_ptr(rolling, "maxUnavailable", json!(1));
                default_ptr(rolling, "maxSurge", json!(0));
            }
        }
    }
    default_ptr(spec, "revisionHistoryLimit", json!(10));
    default_workload_template(spec);
}

fn default_job(job: &mut Obj) {
    let template_labels = job
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned();
    if let Some(labels) = template_labels {
        copy_labels_if_empty(job, labels);
    }
    let Some(spec) = child_or_insert(job, "spec") else {
        return;
    };
    // A non-parallel job may leave both unset; then both are 1.
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_ptr(spec, "parallelism", json!(1));
    let backoff_limit = if is_unset(spec.get("backoffLimitPerIndex")) {
        json!(6)
    } else {
        json!(i32::MAX)
    };
    default_ptr(spec, "backoffLimit", backoff_limit);
    default_ptr(spec, "completionMode", json!("NonIndexed"));
    default_ptr(spec, "suspend", json!(false));
    let replacement = if is_unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default_ptr(spec, "podReplacementPolicy", json!(replacement));
    default_ptr(spec, "manualSelector", json!(false));
    default_pod_failure_policy(spec);
    default_workload_template(spec);
}

fn default_pod_failure_policy(job_spec: &mut Obj) {
    if let Some(policy) = child(job_spec, "podFailurePolicy") {
        for rule in items(policy, "rules") {
            for pattern in items(rule, "onPodConditions") {
                default_value(pattern, "status", json!("True"));
            }
        }
    }
}

fn default_cron_job(cron_job: &mut Obj) {
    let Some(spec) = child_or_insert(cron_job, "spec") else {
        return;
    };
    default_value(spec, "concurrencyPolicy", json!("Allow"));
    default_ptr(spec, "suspend", json!(false));
    default_ptr(spec, "successfulJobsHistoryLimit", json!(3));
    default_ptr(spec, "failedJobsHistoryLimit", json!(1));
    // The job template gets pod-template defaults only; Job defaults apply when the
    // controller creates each Job.
    if let Some(job_spec) =
        child_or_insert(spec, "jobTemplate").and_then(|t| child_or_insert(t, "spec"))
    {
        default_pod_failure_policy(job_spec);
        default_workload_template(job_spec);
    }
}

// ---------------------------------------------------------------------------------------
// Services and networking

fn default_service(service: &mut Obj) {
    let Some(spec) = child_or_insert(service, "spec") else {
        return;
    };
    default_value(spec, "sessionAffinity", json!("None"));
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            if let Some(client_ip) = child_or_insert(spec, "sessionAffinityConfig")
                .and_then(|c| child_or_insert(c, "clientIP"))
            {
                default_ptr(client_ip, "timeoutSeconds", json!(10800));
            }
        }
        _ => {}
    }
    default_value(spec, "type", json!("ClusterIP"));
    for port in items(spec, "ports") {
        default_value(port, "protocol", json!("TCP"));
        if is_zero_value(port.get("targetPort")) {
            let target = port.get("port").cloned().unwrap_or(json!(0));
            port.insert("targetPort".into(), target);
        }
    }
    let service_type = str_of(spec, "type").to_string();
    let externally_accessible = service_type == "LoadBalancer"
        || service_type == "NodePort"
        || (service_type == "ClusterIP" && non_empty_array(spec, "externalIPs"));
    if externally_accessible {
        default_value(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(
        service_type.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer"
    ) {
        default_ptr(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        default_ptr(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if service_type != "ExternalName" {
        default_service_ip_families(spec);
    }
    if service_type == "LoadBalancer" {
        if let Some(lb) = child(service, "status").and_then(|s| child(s, "loadBalancer")) {
            for ingress in items(lb, "ingress") {
                if !str_of(ingress, "ip").is_empty() {
                    default_ptr(ingress, "ipMode", json!("VIP"));
                }
            }
        }
    }
}

/// The Service registry's create-time fills, for a single-stack IPv4 cluster: `clusterIPs`
/// mirrors `clusterIP`, the policy defaults to SingleStack (RequireDualStack for headless
/// selectorless services), and families follow the cluster IPs or the cluster default.
fn default_service_ip_families(spec: &mut Obj) {
    let cluster_ip = str_of(spec, "clusterIP").to_string();
    if !cluster_ip.is_empty() && !non_empty_array(spec, "clusterIPs") {
        spec.insert("clusterIPs".into(), json!([cluster_ip]));
    }
    let headless = cluster_ip == "None";
    let selectorless = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let headless_selectorless = headless && selectorless;
    let policy = if headless_selectorless {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    default_ptr(spec, "ipFamilyPolicy", json!(policy));
    if !non_empty_array(spec, "ipFamilies") {
        let mut families: Vec<Value> = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .take_while(|ip| *ip != "None")
            .map(|ip| json!(if ip.contains(':') { "IPv6" } else { "IPv4" }))
            .collect();
        if families.is_empty() {
            families.push(json!("IPv4"));
        }
        spec.insert("ipFamilies".into(), Value::Array(families));
    }
    // Headless selectorless services may carry both families even on a single-stack cluster.
    if headless_selectorless && str_of(spec, "ipFamilyPolicy") != "SingleStack" {
        if let Some(families) = spec.get_mut("ipFamilies").and_then(Value::as_array_mut) {
            if families.len() == 1 {
                let other = if families[0] == "IPv6" {
                    "IPv4"
                } else {
                    "IPv6"
                };
                families.push(json!(other));
            }
        }
    }
}

fn default_endpoints(endpoints: &mut Obj) {
    for subset in items(endpoints, "subsets") {
        for port in items(subset, "ports") {
            default_value(port, "protocol", json!("TCP"));
        }
    }
}

fn default_endpoint_slice(slice: &mut Obj) {
    for port in items(slice, "ports") {
        default_ptr(port, "name", json!(""));
        default_ptr(port, "protocol", json!("TCP"));
    }
}

fn default_network_policy(policy: &mut Obj) {
    let Some(spec) = child_or_insert(policy, "spec") else {
        return;
    };
    for direction in ["ingress", "egress"] {
        for rule in items(spec, direction) {
            for port in items(rule, "ports") {
                default_ptr(port, "protocol", json!("TCP"));
            }
        }
    }
    // Every policy implies Ingress; Egress only when egress rules are given.
    if !non_empty_array(spec, "policyTypes") {
        let mut types = vec![json!("Ingress")];
        if non_empty_array(spec, "egress") {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
}

// ---------------------------------------------------------------------------------------
// Cluster, storage and policy objects

fn default_namespace(namespace: &mut Obj) {
    let name = namespace
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        if let Some(labels) =
            child_or_insert(namespace, "metadata").and_then(|m| child_or_insert(m, "labels"))
        {
            labels.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
    }
    // The strategy adds the `kubernetes` finalizer on create only: once the namespace
    // controller removes it the namespace must be able to go away. A namespace that has
    // never been through the server has no status phase yet.
    let is_new = namespace
        .get("status")
        .and_then(|s| s.get("phase"))
        .is_none_or(|p| is_zero_value(Some(p)));
    if is_new {
        if let Some(spec) = child_or_insert(namespace, "spec") {
            if is_unset(spec.get("finalizers")) {
                spec.insert("finalizers".into(), json!([]));
            }
            if let Some(finalizers) = spec.get_mut("finalizers").and_then(Value::as_array_mut) {
                if !finalizers.iter().any(|f| f == "kubernetes") {
                    finalizers.push(json!("kubernetes"));
                }
            }
        }
    }
    if let Some(status) = child_or_insert(namespace, "status") {
        default_value(status, "phase", json!("Active"));
    }
}

fn default_persistent_volume(volume: &mut Obj) {
    if let Some(status) = child_or_insert(volume, "status") {
        default_value(status, "phase", json!("Pending"));
    }
    let Some(spec) = child_or_insert(volume, "spec") else {
        return;
    };
    default_value(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    default_ptr(spec, "volumeMode", json!("Filesystem"));
    canonicalize_resource_list(spec, "capacity");
    default_volume_source(spec);
}

/// A PersistentVolumeClaim, or a StatefulSet's claim template (which upstream defaults the
/// same way, hence the `status: {phase: Pending}` seen in templates).
fn default_pvc(claim: &mut Obj) {
    if let Some(status) = child_or_insert(claim, "status") {
        default_value(status, "phase", json!("Pending"));
        canonicalize_resource_list(status, "capacity");
        canonicalize_resource_list(status, "allocatedResources");
    }
    if let Some(spec) = child_or_insert(claim, "spec") {
        default_pvc_spec(spec);
    }
}

fn default_pvc_spec(spec: &mut Obj) {
    default_ptr(spec, "volumeMode", json!("Filesystem"));
    if let Some(resources) = child(spec, "resources") {
        canonicalize_resource_list(resources, "limits");
        canonicalize_resource_list(resources, "requests");
    }
}

fn default_node(node: &mut Obj) {
    let Some(status) = child(node, "status") else {
        return;
    };
    // Allocatable starts out as the full capacity.
    if is_unset(status.get("allocatable")) {
        if let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned() {
            status.insert("allocatable".into(), capacity);
        }
    }
    canonicalize_resource_list(status, "capacity");
    canonicalize_resource_list(status, "allocatable");
}

fn default_hpa(hpa: &mut Obj) {
    let v1 = str_of(hpa, "apiVersion") == "autoscaling/v1";
    let Some(spec) = child_or_insert(hpa, "spec") else {
        return;
    };
    default_ptr(spec, "minReplicas", json!(1));
    if v1 {
        return;
    }
    // autoscaling/v2: no metrics means 80% average CPU utilisation.
    if !non_empty_array(spec, "metrics") {
        spec.insert(
            "metrics".into(),
            json!([{
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}
                }
            }]),
        );
    }
    // A behavior block, once given, is completed with the historical scaling rules.
    if let Some(behavior) = child(spec, "behavior") {
        if let Some(up) = child_or_insert(behavior, "scaleUp") {
            default_ptr(up, "stabilizationWindowSeconds", json!(0));
            default_ptr(up, "selectPolicy", json!("Max"));
            default_ptr(
                up,
                "policies",
                json!([
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15}
                ]),
            );
        }
        if let Some(down) = child_or_insert(behavior, "scaleDown") {
            default_ptr(down, "selectPolicy", json!("Max"));
            default_ptr(
                down,
                "policies",
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
    }
}

fn default_limit_range(limit_range: &mut Obj) {
    let Some(spec) = child(limit_range, "spec") else {
        return;
    };
    for item in items(spec, "limits") {
        if str_of(item, "type") == "Container" {
            let list = |item: &Obj, key: &str| {
                item.get(key)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            // Default limit falls back to max; default request to the default limit, then min.
            let mut default = list(item, "default");
            let mut default_request = list(item, "defaultRequest");
            for (name, q) in list(item, "max") {
                default.entry(name).or_insert(q);
            }
            for (name, q) in default.clone().into_iter().chain(list(item, "min")) {
                default_request.entry(name).or_insert(q);
            }
            if !default.is_empty() {
                item.insert("default".into(), Value::Object(default));
            }
            if !default_request.is_empty() {
                item.insert("defaultRequest".into(), Value::Object(default_request));
            }
        }
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            canonicalize_resource_list(item, key);
        }
    }
}

fn default_resource_quota(quota: &mut Obj) {
    if let Some(spec) = child(quota, "spec") {
        canonicalize_resource_list(spec, "hard");
    }
    if let Some(status) = child(quota, "status") {
        canonicalize_resource_list(status, "hard");
        canonicalize_resource_list(status, "used");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(kind: &str, mut obj: Value) -> Value {
        apply_defaults(kind, &mut obj);
        obj
    }

    #[test]
    fn minimal_deployment_gets_full_defaults() {
        let obj = defaulted(
            "Deployment",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "nginx",
                            "image": "nginx:1.27",
                            "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}}
                        }]}
                    }
                }
            }),
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}
                    },
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600,
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {
                            "containers": [{
                                "name": "nginx",
                                "image": "nginx:1.27",
                                "imagePullPolicy": "IfNotPresent",
                                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File"
                            }],
                            "restartPolicy": "Always",
                            "terminationGracePeriodSeconds": 30,
                            "dnsPolicy": "ClusterFirst",
                            "securityContext": {},
                            "schedulerName": "default-scheduler"
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn pod_level_requests_default_from_the_containers_or_the_pod_level_limits() {
        let pod =
            |spec: Value| defaulted("Pod", json!({"spec": spec}))["spec"]["resources"].clone();
        let limits = json!({"cpu": "2", "memory": "1Gi", "hugepages-2Mi": "4Mi"});
        // No container requests anything: the limits.
        assert_eq!(
            pod(json!({"resources": {"limits": limits}, "containers": [{"name": "a"}]})),
            json!({"limits": limits, "requests": limits})
        );
        // Containers request CPU (one through its limit): their effective sum, where the init
        // container that runs alone beside the sidecar asks for less. Memory comes from the limit.
        let spec = json!({
            "resources": {"limits": limits},
            "initContainers": [
                {"name": "side", "restartPolicy": "Always",
                 "resources": {"requests": {"cpu": "100m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "300m"}}},
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m"}}},
                {"name": "b", "resources": {"limits": {"cpu": "150m"}}},
            ],
        });
        assert_eq!(
            pod(spec.clone())["requests"],
            json!({"cpu": "500m", "memory": "1Gi", "hugepages-2Mi": "4Mi"})
        );
        // An init container that needs more than the rest together decides, with the sidecars before it.
        let mut greedy = spec.clone();
        greedy["initContainers"][1]["resources"]["requests"]["cpu"] = json!("1");
        assert_eq!(pod(greedy)["requests"]["cpu"], "1100m");
        // Stated requests stay; without pod-level limits nothing is defaulted.
        let mut stated = spec;
        stated["resources"]["requests"] = json!({"cpu": "1"});
        assert_eq!(pod(stated)["requests"]["cpu"], "1");
        assert_eq!(
            pod(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]})),
            Value::Null
        );
    }

    #[test]
    fn explicit_pointer_values_are_kept() {
        let obj = defaulted(
            "Deployment",
            json!({"spec": {"replicas": 0, "progressDeadlineSeconds": 0,
                "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(obj["spec"]["replicas"], 0);
        assert_eq!(obj["spec"]["progressDeadlineSeconds"], 0);
        assert_eq!(obj["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn service_defaults() {
        let obj = defaulted(
            "Service",
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"app": "web"},
                    "ports": [{"port": 80}, {"name": "metrics", "port": 9090, "targetPort": "http-metrics"}]
                }
            }),
        );
        assert_eq!(
            obj["spec"],
            json!({
                "selector": {"app": "web"},
                "ports": [
                    {"port": 80, "protocol": "TCP", "targetPort": 80},
                    {"name": "metrics", "port": 9090, "targetPort": "http-metrics", "protocol": "TCP"}
                ],
                "sessionAffinity": "None",
                "type": "ClusterIP",
                "internalTrafficPolicy": "Cluster",
                "ipFamilyPolicy": "SingleStack",
                "ipFamilies": ["IPv4"]
            })
        );
    }

    #[test]
    fn load_balancer_and_headless_services() {
        let lb = defaulted(
            "Service",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 443}],
                "sessionAffinity": "ClientIP"},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example"}]}}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        assert_eq!(
            lb["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        assert_eq!(
            lb["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "192.0.2.1", "ipMode": "VIP"}, {"hostname": "lb.example"}])
        );

        let headless = defaulted(
            "Service",
            json!({"spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
        );
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        assert_eq!(headless["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));

        let external = defaulted(
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        );
        assert_eq!(
            external["spec"],
            json!({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"})
        );
    }

    #[test]
    fn job_defaults() {
        let obj = defaulted(
            "Job",
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "pi"},
                "spec": {"template": {
                    "metadata": {"labels": {"app": "pi"}},
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "pi", "image": "perl"}]
                    }
                }}
            }),
        );
        assert_eq!(obj["metadata"]["labels"], json!({"app": "pi"}));
        let spec = &obj["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["manualSelector"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");

        let indexed = defaulted(
            "Job",
            json!({"spec": {"parallelism": 3, "backoffLimitPerIndex": 1,
                "podFailurePolicy": {"rules": [{"action": "Ignore",
                    "onPodConditions": [{"type": "DisruptionTarget"}]}]}}}),
        );
        assert!(indexed["spec"].get("completions").is_none());
        assert_eq!(indexed["spec"]["backoffLimit"], i32::MAX);
        assert_eq!(indexed["spec"]["podReplacementPolicy"], "Failed");
        assert_eq!(
            indexed["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
            "True"
        );
        // Without a restart policy the template gets Always, which batch validation rejects.
        assert_eq!(
            indexed["spec"]["template"]["spec"]["restartPolicy"],
            "Always"
        );
    }

    #[test]
    fn pod_with_probes_volumes_and_resources() {
        let obj = defaulted(
            "Pod",
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.example.com:5000/team/app",
                        "ports": [{"containerPort": 8080}],
                        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "resources": {"limits": {"cpu": "1", "memory": "128Mi"}, "requests": {"cpu": "0.1"}},
                        "livenessProbe": {"httpGet": {"port": 8080}, "timeoutSeconds": 0},
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 5},
                        "startupProbe": {"grpc": {"port": 9000}}
                    }],
                    "volumes": [
                        {"name": "scratch"},
                        {"name": "config", "configMap": {"name": "cfg"}},
                        {"name": "creds", "secret": {"secretName": "s", "defaultMode": 256}},
                        {"name": "host", "hostPath": {"path": "/var/log"}}
                    ]
                }
            }),
        );
        let spec = &obj["spec"];
        assert_eq!(spec["enableServiceLinks"], true);
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(
            c["ports"][0],
            json!({"containerPort": 8080, "protocol": "TCP"})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            c["resources"],
            json!({"limits": {"cpu": "1", "memory": "128Mi"},
                   "requests": {"cpu": "100m", "memory": "128Mi"}})
        );
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
                   "timeoutSeconds": 1, "periodSeconds": 10,
                   "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(c["readinessProbe"]["timeoutSeconds"], 1);
        assert_eq!(
            c["startupProbe"]["grpc"],
            json!({"port": 9000, "service": ""})
        );
        assert_eq!(
            spec["volumes"],
            json!([
                {"name": "scratch", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "cfg", "defaultMode": 420}},
                {"name": "creds", "secret": {"secretName": "s", "defaultMode": 256}},
                {"name": "host", "hostPath": {"path": "/var/log", "type": ""}}
            ])
        );
    }

    #[test]
    fn host_network_pods_get_host_ports() {
        let obj = defaulted(
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "a",
                "ports": [{"containerPort": 53, "protocol": "UDP"}]}]}}),
        );
        assert_eq!(
            obj["spec"]["containers"][0]["ports"][0],
            json!({"containerPort": 53, "protocol": "UDP", "hostPort": 53})
        );
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("localhost:5000/app", "Always"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("nginx:latest@sha256:abcd", "Always"),
            ("NGINX", "IfNotPresent"),
            ("", "IfNotPresent"),
        ] {
            assert_eq!(image_tag_is_latest(image), policy == "Always", "{image}");
        }
    }

    #[test]
    fn stateful_set_and_daemon_set_defaults() {
        let sts = defaulted(
            "StatefulSet",
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        );
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"],
            json!({"phase": "Pending"})
        );

        let ds = defaulted("DaemonSet", json!({}));
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn cron_job_defaults_leave_job_fields_to_the_controller() {
        let obj = defaulted(
            "CronJob",
            json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox:1"}]}}}}}}),
        );
        let spec = &obj["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
        assert_eq!(
            spec["jobTemplate"]["spec"]["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );
    }

    #[test]
    fn namespace_secret_and_storage_defaults() {
        let ns = defaulted("Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(
            ns,
            json!({"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
                   "spec": {"finalizers": ["kubernetes"]},
                   "status": {"phase": "Active"}})
        );
        // A terminating namespace whose finalizer was removed does not get it back.
        let finalized = defaulted(
            "Namespace",
            json!({"metadata": {"name": "old"}, "status": {"phase": "Terminating"}}),
        );
        assert!(finalized.get("spec").is_none());

        let secret = defaulted("Secret", json!({"metadata": {"name": "s"}}));
        assert_eq!(secret["type"], "Opaque");

        let pv = defaulted(
            "PersistentVolume",
            json!({"spec": {"capacity": {"storage": "10Gi"}}}),
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pv["status"]["phase"], "Pending");

        let pvc = defaulted(
            "PersistentVolumeClaim",
            json!({"spec": {"resources": {"requests": {"storage": "1073741824"}}}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(
            pvc["spec"]["resources"]["requests"]["storage"],
            "1073741824"
        );
        assert_eq!(pvc["status"]["phase"], "Pending");
    }

    #[test]
    fn autoscaling_networking_and_discovery_defaults() {
        let hpa = defaulted(
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 5,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 80})
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["value"],
            4
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleDown"],
            json!({"stabilizationWindowSeconds": 60, "selectPolicy": "Max",
                   "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]})
        );
        let hpa_v1 = defaulted(
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 5}}),
        );
        assert!(hpa_v1["spec"].get("metrics").is_none());

        let np = defaulted(
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");

        let eps = defaulted("Endpoints", json!({"subsets": [{"ports": [{"port": 80}]}]}));
        assert_eq!(eps["subsets"][0]["ports"][0]["protocol"], "TCP");
        let slice = defaulted("EndpointSlice", json!({"ports": [{"port": 80}]}));
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
    }

    #[test]
    fn limit_range_node_and_unknown_kinds() {
        let lr = defaulted(
            "LimitRange",
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"},
                "min": {"memory": "64Mi"}}]}}),
        );
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "64Mi"})
        );

        let node = defaulted(
            "Node",
            json!({"status": {"capacity": {"cpu": "4", "memory": "8Gi"}}}),
        );
        assert_eq!(
            node["status"]["allocatable"],
            json!({"cpu": "4", "memory": "8Gi"})
        );

        let original = json!({"spec": {"anything": ""}});
        assert_eq!(defaulted("Widget", original.clone()), original);
    }
}
