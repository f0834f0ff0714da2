//! Server-side Table printing: what `kubectl get` shows when it asks for
//! `application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! This mirrors kube-apiserver's printers (`pkg/printers/internalversion`):
//! the column definitions (names, types, priorities, descriptions) and the
//! exact text of every cell, including the Pod STATUS reason logic, Service
//! EXTERNAL-IP, Node ROLES and the ages rendered by [`human_duration`].
//!
//! kube-apiserver always generates the wide form and lets the client drop
//! priority-1 columns, so [`cells`] returns one cell per column of
//! [`columns`]. Cells keep the JSON type upstream gives them: counts are
//! numbers, a few flags are booleans, the rest is text.
//!
//! Objects are read as Kubernetes JSON. Kubernetes prints objects after API
//! defaulting, so fields that defaulting always fills (Service type, port
//! protocol, replicas, CronJob suspend, PV reclaim policy, …) are read with
//! their defaults when absent: a store that skipped defaulting still prints
//! what kubectl users expect.
//!
//! Kinds without a printer upstream (Role, ClusterRole, LimitRange, custom
//! kinds, …) get the default convertor's Name + Created At pair.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::api::quantity::Quantity;

/// Builds a row from cells of mixed JSON types (text, counts, flags).
macro_rules! row {
    ($($cell:expr),* $(,)?) => { vec![$(Value::from($cell)),*] };
}

/// One column of a Table (`metav1.TableColumnDefinition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// The OpenAPI type: "string", "integer", "date" or (as upstream uses it
    /// for CronJob SUSPEND and PriorityClass GLOBAL-DEFAULT) "boolean".
    pub kind: &'static str,
    /// "name" for the column holding the object name, else "".
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for columns only `-o wide` shows.
    pub priority: i32,
}

/// Column definitions for a resource kind (e.g. "Pod"); unknown kinds get the
/// generic Name (format name) + Created At (type date) pair that Kubernetes'
/// default table convertor uses.
pub fn columns(kind: &str) -> &'static [Column] {
    match kind {
        "Pod" => &POD,
        "Node" => &NODE,
        "Namespace" => &NAMESPACE,
        "Service" => &SERVICE,
        "Endpoints" => &ENDPOINTS,
        "ConfigMap" => &CONFIG_MAP,
        "Secret" => &SECRET,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "Event" => &EVENT,
        "PersistentVolume" => &PERSISTENT_VOLUME,
        "PersistentVolumeClaim" => &PERSISTENT_VOLUME_CLAIM,
        "ResourceQuota" => &RESOURCE_QUOTA,
        "Deployment" => &DEPLOYMENT,
        "ReplicaSet" => &REPLICA_SET,
        "StatefulSet" => &STATEFUL_SET,
        "DaemonSet" => &DAEMON_SET,
        "ControllerRevision" => &CONTROLLER_REVISION,
        "Job" => &JOB,
        "CronJob" => &CRON_JOB,
        "HorizontalPodAutoscaler" => &HORIZONTAL_POD_AUTOSCALER,
        "Ingress" => &INGRESS,
        "IngressClass" => &INGRESS_CLASS,
        "NetworkPolicy" => &NETWORK_POLICY,
        "EndpointSlice" => &ENDPOINT_SLICE,
        "Lease" => &LEASE,
        "RoleBinding" => &ROLE_BINDING,
        "ClusterRoleBinding" => &CLUSTER_ROLE_BINDING,
        "StorageClass" => &STORAGE_CLASS,
        "PodDisruptionBudget" => &POD_DISRUPTION_BUDGET,
        "PriorityClass" => &PRIORITY_CLASS,
        "NodeMetrics" | "PodMetrics" => &METRICS,
        _ => &DEFAULT,
    }
}

/// The cells of one row, in column order. `now` is passed in (no clock reads
/// inside) so tests are deterministic.
pub fn cells(kind: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match kind {
        "Pod" => pod(obj, now),
        "Node" => node(obj, now),
        "Namespace" => {
            let phase = text_or(&obj["status"]["phase"], "Active");
            row![name(obj), phase, age(obj, now)]
        }
        "Service" => service(obj, now),
        "Endpoints" => row![
            name(obj),
            format_endpoints(items(&obj["subsets"])),
            age(obj, now)
        ],
        "ConfigMap" => row![
            name(obj),
            key_count(&obj["data"]) + key_count(&obj["binaryData"]),
            age(obj, now)
        ],
        "Secret" => secret(obj, now),
        "ServiceAccount" => row![name(obj), items(&obj["secrets"]).len(), age(obj, now)],
        "Event" => event(obj, now),
        "PersistentVolume" => persistent_volume(obj, now),
        "PersistentVolumeClaim" => persistent_volume_claim(obj, now),
        "ResourceQuota" => resource_quota(obj, now),
        "Deployment" => deployment(obj, now),
        "ReplicaSet" => replica_set(obj, now),
        "StatefulSet" => stateful_set(obj, now),
        "DaemonSet" => daemon_set(obj, now),
        "ControllerRevision" => controller_revision(obj, now),
        "Job" => job(obj, now),
        "CronJob" => cron_job(obj, now),
        "HorizontalPodAutoscaler" => horizontal_pod_autoscaler(obj, now),
        "Ingress" => ingress(obj, now),
        "IngressClass" => ingress_class(obj, now),
        "NetworkPolicy" => row![
            name(obj),
            format_label_selector(&obj["spec"]["podSelector"]),
            age(obj, now)
        ],
        "EndpointSlice" => endpoint_slice(obj, now),
        "Lease" => row![
            name(obj),
            text(&obj["spec"]["holderIdentity"]),
            age(obj, now)
        ],
        "RoleBinding" | "ClusterRoleBinding" => role_binding(obj, now),
        "StorageClass" => storage_class(obj, now),
        "PodDisruptionBudget" => pod_disruption_budget(obj, now),
        "PriorityClass" => priority_class(obj, now),
        "NodeMetrics" | "PodMetrics" => metrics(obj),
        _ => row![name(obj), created_at(obj)],
    }
}

/// HumanDuration as Kubernetes prints ages ("5s", "3m2s", "2d3h", "<invalid>"
/// for negative beyond tolerance …). About 2–3 significant figures; the unit
/// steps at 2m, 10m, 3h, 8h, 2d, 8d, 2y and 8y follow
/// `k8s.io/apimachinery/pkg/util/duration`.
pub fn human_duration(d: SignedDuration) -> String {
    // Whole seconds truncated toward zero, as Go's int(d.Seconds()); up to
    // 2s in the future is clock skew between machines and reads as "0s".
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            days => format!("{}y{days}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The `columnDefinitions` array of a Table for `kind`, each entry in
/// `metav1.TableColumnDefinition` form (`format` and `priority` always
/// present, as Kubernetes serialises them). The caller wraps it as
/// `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion": rv},
/// "columnDefinitions":[…],"rows":[{"cells":[…],"object":<row object>}]}`.
pub fn column_definitions_json(kind: &str) -> Value {
    columns(kind)
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------

const fn col(
    name: &'static str,
    kind: &'static str,
    description: &'static str,
    priority: i32,
) -> Column {
    Column {
        name,
        kind,
        format: "",
        description,
        priority,
    }
}

const NAME_COL: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: swagger::NAME,
    priority: 0,
};
const AGE: Column = col("Age", "string", swagger::CREATION_TIMESTAMP, 0);
const CONTAINERS: Column = col(
    "Containers",
    "string",
    "Names of each container in the template.",
    1,
);
const IMAGES: Column = col(
    "Images",
    "string",
    "Images referenced by each container in the template.",
    1,
);
const READY_PODS: &str = "Number of the pod with ready state";

static DEFAULT: [Column; 2] = [
    NAME_COL,
    col("Created At", "date", swagger::CREATION_TIMESTAMP, 0),
];

/// metrics-server's columns: the usage by resource name, summed over a pod's containers.
static METRICS: [Column; 4] = [
    NAME_COL,
    col("cpu", "string", "", 0),
    col("memory", "string", "", 0),
    col("Window", "string", "", 0),
];

static POD: [Column; 9] = [
    NAME_COL,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
        0,
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
        0,
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        0,
    ),
    AGE,
    col("IP", "string", swagger::POD_IP, 1),
    col("Node", "string", swagger::POD_NODE_NAME, 1),
    col("Nominated Node", "string", swagger::POD_NOMINATED_NODE, 1),
    col("Readiness Gates", "string", swagger::POD_READINESS_GATES, 1),
];

static NODE: [Column; 10] = [
    NAME_COL,
    col("Status", "string", "The status of the node", 0),
    col("Roles", "string", "The roles of the node", 0),
    AGE,
    col("Version", "string", swagger::NODE_KUBELET_VERSION, 0),
    col("Internal-IP", "string", swagger::NODE_ADDRESSES, 1),
    col("External-IP", "string", swagger::NODE_ADDRESSES, 1),
    col("OS-Image", "string", swagger::NODE_OS_IMAGE, 1),
    col("Kernel-Version", "string", swagger::NODE_KERNEL_VERSION, 1),
    col(
        "Container-Runtime",
        "string",
        swagger::NODE_CONTAINER_RUNTIME,
        1,
    ),
];

static NAMESPACE: [Column; 3] = [
    NAME_COL,
    col("Status", "string", "The status of the namespace", 0),
    AGE,
];

static SERVICE: [Column; 7] = [
    NAME_COL,
    col("Type", "string", swagger::SVC_TYPE, 0),
    col("Cluster-IP", "string", swagger::SVC_CLUSTER_IP, 0),
    col("External-IP", "string", swagger::SVC_EXTERNAL_IPS, 0),
    col("Port(s)", "string", swagger::SVC_PORTS, 0),
    AGE,
    col("Selector", "string", swagger::SVC_SELECTOR, 1),
];

static ENDPOINTS: [Column; 3] = [
    NAME_COL,
    col("Endpoints", "string", swagger::EP_SUBSETS, 0),
    AGE,
];

static CONFIG_MAP: [Column; 3] = [NAME_COL, col("Data", "string", swagger::CM_DATA, 0), AGE];

static SECRET: [Column; 4] = [
    NAME_COL,
    col("Type", "string", swagger::SECRET_TYPE, 0),
    col("Data", "string", swagger::SECRET_DATA, 0),
    AGE,
];

static SERVICE_ACCOUNT: [Column; 3] = [
    NAME_COL,
    col("Secrets", "string", swagger::SA_SECRETS, 0),
    AGE,
];

static EVENT: [Column; 10] = [
    col("Last Seen", "string", swagger::EV_LAST_TIMESTAMP, 0),
    col("Type", "string", swagger::EV_TYPE, 0),
    col("Reason", "string", swagger::EV_REASON, 0),
    col("Object", "string", swagger::EV_INVOLVED_OBJECT, 0),
    col("Subobject", "string", swagger::EV_FIELD_PATH, 1),
    col("Source", "string", swagger::EV_SOURCE, 1),
    col("Message", "string", swagger::EV_MESSAGE, 0),
    col("First Seen", "string", swagger::EV_FIRST_TIMESTAMP, 1),
    col("Count", "string", swagger::EV_COUNT, 1),
    Column {
        priority: 1,
        ..NAME_COL
    },
];

static PERSISTENT_VOLUME: [Column; 11] = [
    NAME_COL,
    col("Capacity", "string", swagger::PV_CAPACITY, 0),
    col("Access Modes", "string", swagger::PV_ACCESS_MODES, 0),
    col("Reclaim Policy", "string", swagger::PV_RECLAIM_POLICY, 0),
    col("Status", "string", swagger::PV_PHASE, 0),
    col("Claim", "string", swagger::PV_CLAIM_REF, 0),
    col("StorageClass", "string", "StorageClass of the pv", 0),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
        0,
    ),
    col("Reason", "string", swagger::PV_REASON, 0),
    AGE,
    col("VolumeMode", "string", swagger::PV_VOLUME_MODE, 1),
];

static PERSISTENT_VOLUME_CLAIM: [Column; 9] = [
    NAME_COL,
    col("Status", "string", swagger::PVC_PHASE, 0),
    col("Volume", "string", swagger::PVC_VOLUME_NAME, 0),
    col("Capacity", "string", swagger::PVC_CAPACITY, 0),
    col("Access Modes", "string", swagger::PVC_ACCESS_MODES, 0),
    col("StorageClass", "string", "StorageClass of the pvc", 0),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
        0,
    ),
    AGE,
    col("VolumeMode", "string", swagger::PVC_VOLUME_MODE, 1),
];

static RESOURCE_QUOTA: [Column; 4] = [
    NAME_COL,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
        0,
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        0,
    ),
    AGE,
];

static DEPLOYMENT: [Column; 8] = [
    NAME_COL,
    col("Ready", "string", READY_PODS, 0),
    col("Up-to-date", "string", swagger::DEPLOY_UPDATED, 0),
    col("Available", "string", swagger::DEPLOY_AVAILABLE, 0),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", swagger::DEPLOY_SELECTOR, 1),
];

static REPLICA_SET: [Column; 8] = [
    NAME_COL,
    col("Desired", "integer", swagger::RS_SPEC_REPLICAS, 0),
    col("Current", "integer", swagger::RS_STATUS_REPLICAS, 0),
    col("Ready", "integer", swagger::RS_READY_REPLICAS, 0),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", swagger::RS_SELECTOR, 1),
];

static STATEFUL_SET: [Column; 5] = [
    NAME_COL,
    col("Ready", "string", READY_PODS, 0),
    AGE,
    CONTAINERS,
    IMAGES,
];

static DAEMON_SET: [Column; 11] = [
    NAME_COL,
    col("Desired", "integer", swagger::DS_DESIRED, 0),
    col("Current", "integer", swagger::DS_CURRENT, 0),
    col("Ready", "integer", swagger::DS_READY, 0),
    col("Up-to-date", "integer", swagger::DS_UPDATED, 0),
    col("Available", "integer", swagger::DS_AVAILABLE, 0),
    col("Node Selector", "string", swagger::POD_NODE_SELECTOR, 0),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", swagger::DS_SELECTOR, 1),
];

static CONTROLLER_REVISION: [Column; 4] = [
    NAME_COL,
    col("Controller", "string", "Controller of the object", 0),
    col("Revision", "string", swagger::CR_REVISION, 0),
    AGE,
];

static JOB: [Column; 8] = [
    NAME_COL,
    col("Status", "string", "Status of the job.", 0),
    col("Completions", "string", swagger::JOB_SUCCEEDED, 0),
    col(
        "Duration",
        "string",
        "Time required to complete the job.",
        0,
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", swagger::JOB_SELECTOR, 1),
];

static CRON_JOB: [Column; 10] = [
    NAME_COL,
    col("Schedule", "string", swagger::CJ_SCHEDULE, 0),
    col("Timezone", "string", swagger::CJ_TIME_ZONE, 0),
    col("Suspend", "boolean", swagger::CJ_SUSPEND, 0),
    col("Active", "integer", swagger::CJ_ACTIVE, 0),
    col("Last Schedule", "string", swagger::CJ_LAST_SCHEDULE, 0),
    AGE,
    CONTAINERS,
    IMAGES,
    col("Selector", "string", swagger::JOB_SELECTOR, 1),
];

static HORIZONTAL_POD_AUTOSCALER: [Column; 7] = [
    NAME_COL,
    col("Reference", "string", swagger::HPA_SCALE_TARGET, 0),
    col("Targets", "string", swagger::HPA_METRICS, 0),
    col("MinPods", "string", swagger::HPA_MIN_REPLICAS, 0),
    col("MaxPods", "string", swagger::HPA_MAX_REPLICAS, 0),
    col("Replicas", "string", swagger::HPA_CURRENT_REPLICAS, 0),
    AGE,
];

static INGRESS: [Column; 6] = [
    NAME_COL,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
        0,
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
        0,
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
        0,
    ),
    col(
        "Ports",
        "string",
        "Ports of TLS configurations that open",
        0,
    ),
    AGE,
];

static INGRESS_CLASS: [Column; 4] = [
    NAME_COL,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
        0,
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
        0,
    ),
    AGE,
];

static NETWORK_POLICY: [Column; 3] = [
    NAME_COL,
    col("Pod-Selector", "string", swagger::NETPOL_POD_SELECTOR, 0),
    AGE,
];

static ENDPOINT_SLICE: [Column; 5] = [
    NAME_COL,
    col("AddressType", "string", swagger::EPS_ADDRESS_TYPE, 0),
    col("Ports", "string", swagger::EPS_PORTS, 0),
    col("Endpoints", "string", swagger::EPS_ENDPOINTS, 0),
    AGE,
];

static LEASE: [Column; 3] = [
    NAME_COL,
    col("Holder", "string", swagger::LEASE_HOLDER, 0),
    AGE,
];

static ROLE_BINDING: [Column; 6] = [
    NAME_COL,
    col("Role", "string", swagger::RB_ROLE_REF, 0),
    AGE,
    col("Users", "string", "Users in the roleBinding", 1),
    col("Groups", "string", "Groups in the roleBinding", 1),
    col(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
        1,
    ),
];

static CLUSTER_ROLE_BINDING: [Column; 6] = [
    NAME_COL,
    col("Role", "string", swagger::CRB_ROLE_REF, 0),
    AGE,
    col("Users", "string", "Users in the clusterRoleBinding", 1),
    col("Groups", "string", "Groups in the clusterRoleBinding", 1),
    col(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
        1,
    ),
];

static STORAGE_CLASS: [Column; 6] = [
    NAME_COL,
    col("Provisioner", "string", swagger::SC_PROVISIONER, 0),
    col("ReclaimPolicy", "string", swagger::SC_RECLAIM_POLICY, 0),
    col("VolumeBindingMode", "string", swagger::SC_BINDING_MODE, 0),
    col(
        "AllowVolumeExpansion",
        "string",
        swagger::SC_ALLOW_EXPANSION,
        0,
    ),
    AGE,
];

static POD_DISRUPTION_BUDGET: [Column; 5] = [
    NAME_COL,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
        0,
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
        0,
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
        0,
    ),
    AGE,
];

static PRIORITY_CLASS: [Column; 5] = [
    NAME_COL,
    col("Value", "integer", swagger::PC_VALUE, 0),
    col("Global-Default", "boolean", swagger::PC_GLOBAL_DEFAULT, 0),
    AGE,
    col("PreemptionPolicy", "string", swagger::PC_PREEMPTION, 0),
];

// ---------------------------------------------------------------------------
// JSON access: a missing or mistyped field reads as Go's zero value, which is
// what upstream prints for an unset field.
// ---------------------------------------------------------------------------

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn text_or<'a>(v: &'a Value, default: &'a str) -> &'a str {
    match text(v) {
        "" => default,
        s => s,
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn key_count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

/// A NodeMetrics' usage, or the sum of a PodMetrics' containers', and its window.
fn metrics(obj: &Value) -> Vec<Value> {
    let usages: Vec<&Value> = match obj["containers"].as_array() {
        Some(containers) => containers.iter().map(|c| &c["usage"]).collect(),
        None => vec![&obj["usage"]],
    };
    let total = |resource: &str| {
        usages
            .iter()
            .filter_map(|usage| Quantity::try_from(&usage[resource]).ok())
            .reduce(|sum, q| sum.plus(&q))
            .map_or_else(String::new, |sum| sum.to_string())
    };
    row![
        name(obj),
        total("cpu"),
        total("memory"),
        text(&obj["window"])
    ]
}

fn name(obj: &Value) -> &str {
    text(&obj["metadata"]["name"])
}

fn is_deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    }
}

fn timestamp(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

/// translateTimestampSince: "<unknown>" for an unset time.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map_or_else(
        || "<unknown>".to_string(),
        |t| human_duration(now.duration_since(t)),
    )
}

fn age(obj: &Value, now: Timestamp) -> String {
    since(timestamp(&obj["metadata"]["creationTimestamp"]), now)
}

/// The default convertor's Created At: RFC 3339 in UTC at whole seconds, and
/// Go's zero time when unset.
fn created_at(obj: &Value) -> String {
    match timestamp(&obj["metadata"]["creationTimestamp"]) {
        Some(t) => Timestamp::from_second(t.as_second())
            .unwrap_or(t)
            .to_string(),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

/// A resource.Quantity's text. The API server canonicalises quantities when
/// it stores them, so the stored form is printed as is.
fn quantity(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A `*resource.Quantity`, which Go prints as "<nil>" when unset.
fn quantity_ptr(v: &Value) -> String {
    quantity(v).unwrap_or_else(|| "<nil>".to_string())
}

/// An IntOrString, or None when unset.
fn int_or_string(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Status of the first condition of `kind`, as upstream's condition lookups
/// stop at the first match.
fn condition_true(conditions: &Value, kind: &str) -> bool {
    items(conditions)
        .iter()
        .find(|c| text(&c["type"]) == kind)
        .is_some_and(|c| text(&c["status"]) == "True")
}

/// layoutContainerCells: container names and images, comma separated.
fn container_cells(containers: &Value) -> (String, String) {
    let containers = items(containers);
    let names: Vec<&str> = containers.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// labels.FormatLabels: sorted `k=v` pairs, "<none>" when empty.
fn format_labels(labels: &Value) -> String {
    let mut pairs: Vec<String> = labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", text(v))).collect())
        .unwrap_or_default();
    pairs.sort();
    none_if_empty(pairs.join(","))
}

/// metav1.LabelSelectorAsSelector(..).String(): requirements sorted by key,
/// set values sorted; an unset or empty selector is "". None where upstream
/// fails to convert (unknown operator, wrong number of values).
fn selector_string(selector: &Value) -> Option<String> {
    if !selector.is_object() {
        return Some(String::new());
    }
    let mut requirements: Vec<(&str, String)> = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (key, value) in labels {
            requirements.push((key, format!("{key}={}", text(value))));
        }
    }
    for expr in items(&selector["matchExpressions"]) {
        let key = text(&expr["key"]);
        let mut values: Vec<&str> = items(&expr["values"]).iter().map(text).collect();
        values.sort_unstable();
        let rendered = match (text(&expr["operator"]), values.is_empty()) {
            ("In", false) => format!("{key} in ({})", values.join(",")),
            ("NotIn", false) => format!("{key} notin ({})", values.join(",")),
            ("Exists", true) => key.to_string(),
            ("DoesNotExist", true) => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key, rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    let rendered: Vec<String> = requirements.into_iter().map(|r| r.1).collect();
    Some(rendered.join(","))
}

/// metav1.FormatLabelSelector: "<none>" for an empty selector, "<error>" for
/// one that does not convert.
fn format_label_selector(selector: &Value) -> String {
    match selector_string(selector) {
        None => "<error>".to_string(),
        Some(s) => none_if_empty(s),
    }
}

/// A list capped at three entries with a "+ N more..." tail, "<unset>" when
/// empty (listWithMoreString).
fn list_with_more(list: &[String]) -> String {
    const MAX: usize = 3;
    match list.len() {
        0 => "<unset>".to_string(),
        n if n > MAX => format!("{} + {} more...", list[..MAX].join(","), n - MAX),
        _ => list.join(","),
    }
}

/// Load-balancer ingress points (IP, else hostname), sorted and de-duplicated
/// as upstream's string set. The server prints the wide form, so nothing is
/// clipped.
fn load_balancer_addresses(ingress: &Value) -> Vec<&str> {
    let set: BTreeSet<&str> = items(ingress)
        .iter()
        .map(|i| text_or(&i["ip"], text(&i["hostname"])))
        .filter(|a| !a.is_empty())
        .collect();
    set.into_iter().collect()
}

// ---------------------------------------------------------------------------
// Per-kind rows
// ---------------------------------------------------------------------------

fn pod(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let init_specs = items(&spec["initContainers"]);
    // A sidecar (init container with restartPolicy Always) runs alongside the
    // app containers, so it counts towards READY and RESTARTS like them.
    let is_sidecar = |c: &Value| text(&c["restartPolicy"]) == "Always";
    let sidecar_named = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(&c["name"]) == name && is_sidecar(c))
    };
    let total =
        items(&spec["containers"]).len() + init_specs.iter().filter(|c| is_sidecar(c)).count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    // Option orders None first, so max() keeps the latest known restart.
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = text(&status["phase"]);
    let mut reason = text_or(&status["reason"], phase).to_string();
    let gated = items(&status["conditions"])
        .iter()
        .any(|c| text(&c["type"]) == "PodScheduled" && text(&c["reason"]) == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".to_string();
    }

    // Init containers run in order: the first one that has not finished
    // successfully decides the status.
    let mut initializing = false;
    for (i, c) in items(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&c["restartCount"]);
        let finished = timestamp(&c["lastState"]["terminated"]["finishedAt"]);
        restarts += count;
        last_restart = last_restart.max(finished);
        let sidecar = sidecar_named(text(&c["name"]));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = &c["state"]["terminated"];
        let waiting_reason = text(&c["state"]["waiting"]["reason"]);
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if terminated.is_object() {
            match (text(&terminated["reason"]), int(&terminated["signal"])) {
                ("", 0) => format!("Init:ExitCode:{}", int(&terminated["exitCode"])),
                ("", signal) => format!("Init:Signal:{signal}"),
                (r, _) => format!("Init:{r}"),
            }
        } else if !matches!(waiting_reason, "" | "PodInitializing") {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(&status["conditions"], "Initialized") {
        // Restarts of one-shot init containers no longer matter once the
        // pod is initialised; sidecar restarts still do.
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in items(&status["containerStatuses"]).iter().rev() {
            restarts += int(&c["restartCount"]);
            last_restart = last_restart.max(timestamp(&c["lastState"]["terminated"]["finishedAt"]));
            let waiting_reason = text(&c["state"]["waiting"]["reason"]);
            let terminated = &c["state"]["terminated"];
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if !text(&terminated["reason"]).is_empty() {
                reason = text(&terminated["reason"]).to_string();
            } else if terminated.is_object() {
                reason = match int(&terminated["signal"]) {
                    0 => format!("ExitCode:{}", int(&terminated["exitCode"])),
                    signal => format!("Signal:{signal}"),
                };
            } else if c["ready"].as_bool() == Some(true) && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // One container completed while another still runs: the pod is
        // running, not completed.
        if reason == "Completed" && has_running {
            reason = if condition_true(&status["conditions"], "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if is_deleting(pod) && text(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if is_deleting(pod) && !matches!(phase, "Failed" | "Succeeded") {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };

    // The internal PodIPs list is status.podIP first (conversion treats it as
    // authoritative), else status.podIPs.
    let ip = text_or(&status["podIP"], text(&status["podIPs"][0]["ip"]));
    let gates = items(&spec["readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = items(&status["conditions"]);
        let passed = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| text(&c["type"]) == text(&g["conditionType"]))
                    .is_some_and(|c| text(&c["status"]) == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };

    row![
        name(pod),
        format!("{ready}/{total}"),
        reason,
        restarts_cell,
        age(pod, now),
        none_if_empty(ip.to_string()),
        none_if_empty(text(&spec["nodeName"]).to_string()),
        none_if_empty(text(&status["nominatedNodeName"]).to_string()),
        gates_cell,
    ]
}

fn node(node: &Value, now: Timestamp) -> Vec<Value> {
    let status = &node["status"];
    // Only the Ready condition is summarised; upstream keys conditions by
    // type, so a later duplicate wins.
    let ready = items(&status["conditions"])
        .iter()
        .rev()
        .find(|c| text(&c["type"]) == "Ready");
    let mut state = vec![match ready {
        None => "Unknown",
        Some(c) if text(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
    }];
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        state.push("SchedulingDisabled");
    }

    // Roles come from node-role.kubernetes.io/<role> label keys and the
    // older kubernetes.io/role=<role> label.
    let mut roles = BTreeSet::new();
    for (key, value) in node["metadata"]["labels"].as_object().into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if key == "kubernetes.io/role" && !text(value).is_empty() {
            roles.insert(text(value));
        }
    }

    let address = |kind: &str| {
        items(&status["addresses"])
            .iter()
            .find(|a| text(&a["type"]) == kind)
            .map_or("<none>", |a| text(&a["address"]))
    };
    let info = &status["nodeInfo"];
    row![
        name(node),
        state.join(","),
        none_if_empty(roles.into_iter().collect::<Vec<_>>().join(",")),
        age(node, now),
        text(&info["kubeletVersion"]),
        address("InternalIP"),
        address("ExternalIP"),
        text_or(&info["osImage"], "<unknown>"),
        text_or(&info["kernelVersion"], "<unknown>"),
        text_or(&info["containerRuntimeVersion"], "<unknown>"),
    ]
}

fn service(svc: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &svc["spec"];
    let kind = text_or(&spec["type"], "ClusterIP");
    // As with pod IPs, spec.clusterIP wins over spec.clusterIPs; a headless
    // service shows "None".
    let cluster_ip = text_or(
        &spec["clusterIP"],
        text_or(&spec["clusterIPs"][0], "<none>"),
    );
    let external_ips: Vec<&str> = items(&spec["externalIPs"]).iter().map(text).collect();
    let external = match kind {
        "ClusterIP" | "NodePort" => none_if_empty(external_ips.join(",")),
        "LoadBalancer" => {
            let mut addresses = load_balancer_addresses(&svc["status"]["loadBalancer"]["ingress"]);
            if addresses.is_empty() && external_ips.is_empty() {
                "<pending>".to_string()
            } else {
                addresses.extend(external_ips);
                addresses.join(",")
            }
        }
        "ExternalName" => text(&spec["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = items(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = text_or(&p["protocol"], "TCP");
            match int(&p["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(&p["port"])),
                _ => format!("{}/{protocol}", int(&p["port"])),
            }
        })
        .collect();
    row![
        name(svc),
        kind,
        cluster_ip,
        external,
        none_if_empty(ports.join(",")),
        age(svc, now),
        format_labels(&spec["selector"]),
    ]
}

/// formatEndpoints: up to three `ip:port` entries over all subsets and
/// ports, then "+ N more...".
fn format_endpoints(subsets: &[Value]) -> String {
    const MAX: usize = 3;
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = items(&subset["addresses"]);
        let ports = items(&subset["ports"]);
        if ports.is_empty() {
            // A headless service without ports lists bare addresses.
            count += addresses.len();
            list.extend(addresses.iter().map(|a| text(&a["ip"]).to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                let ip = text(&address["ip"]);
                let port = int(&port["port"]);
                // net.JoinHostPort brackets IPv6 addresses.
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    if count > MAX {
        format!("{} + {} more...", list[..MAX].join(","), count - MAX)
    } else {
        list.join(",")
    }
}

fn secret(secret: &Value, now: Timestamp) -> Vec<Value> {
    // stringData is merged into data on write; count both in case the store
    // kept it apart.
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for field in ["data", "stringData"] {
        keys.extend(
            secret[field]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.as_str()),
        );
    }
    row![
        name(secret),
        text_or(&secret["type"], "Opaque"),
        keys.len(),
        age(secret, now),
    ]
}

/// The events.k8s.io/v1 spelling of a core/v1 Event field, so both API
/// versions of Event print the same.
fn event_field<'a>(event: &'a Value, core: &str, events: &str) -> &'a Value {
    if event[core].is_null() {
        &event[events]
    } else {
        &event[core]
    }
}

fn event(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_seen = timestamp(event_field(
        event,
        "firstTimestamp",
        "deprecatedFirstTimestamp",
    ));
    // New-style events only carry eventTime.
    let first = since(first_seen.or_else(|| timestamp(&event["eventTime"])), now);
    let mut last = match timestamp(event_field(
        event,
        "lastTimestamp",
        "deprecatedLastTimestamp",
    )) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int(event_field(event, "count", "deprecatedCount"));
    let series = &event["series"];
    if series.is_object() {
        last = since(timestamp(&series["lastObservedTime"]), now);
        count = int(&series["count"]);
    } else if count == 0 {
        // Singleton events don't set a count in the new API.
        count = 1;
    }

    let involved = event_field(event, "involvedObject", "regarding");
    let kind = text(&involved["kind"]).to_lowercase();
    let object = match text(&involved["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let source = event_field(event, "source", "deprecatedSource");
    let component = text_or(
        &source["component"],
        text(event_field(
            event,
            "reportingComponent",
            "reportingController",
        )),
    );
    let source_cell = match text_or(&source["host"], text(&event["reportingInstance"])) {
        "" => component.to_string(),
        instance => format!("{component}, {instance}"),
    };
    row![
        last,
        text(&event["type"]),
        text(&event["reason"]),
        object,
        text(&involved["fieldPath"]),
        source_cell,
        text(event_field(event, "message", "note")).trim(),
        first,
        count,
        name(event),
    ]
}

/// GetAccessModesAsString: short forms in a fixed order, duplicates dropped.
fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = items(modes).iter().map(text).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class, preferring the beta annotation as upstream does.
fn storage_class_name<'a>(obj: &'a Value, spec_class: &'a Value) -> &'a str {
    match &obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"] {
        Value::String(class) => class,
        _ => text(spec_class),
    }
}

fn persistent_volume(pv: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pv["spec"];
    let claim = &spec["claimRef"];
    let claim_cell = if claim.is_object() {
        format!("{}/{}", text(&claim["namespace"]), text(&claim["name"]))
    } else {
        String::new()
    };
    let phase = if is_deleting(pv) {
        "Terminating"
    } else {
        text_or(&pv["status"]["phase"], "Pending")
    };
    row![
        name(pv),
        quantity(&spec["capacity"]["storage"]).unwrap_or_else(|| "0".to_string()),
        access_modes(&spec["accessModes"]),
        text_or(&spec["persistentVolumeReclaimPolicy"], "Retain"),
        phase,
        claim_cell,
        storage_class_name(pv, &spec["storageClassName"]),
        text_or(&spec["volumeAttributesClassName"], "<unset>"),
        text(&pv["status"]["reason"]),
        age(pv, now),
        text_or(&spec["volumeMode"], "Filesystem"),
    ]
}

fn persistent_volume_claim(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pvc["spec"];
    let status = &pvc["status"];
    let phase = if is_deleting(pvc) {
        "Terminating"
    } else {
        text_or(&status["phase"], "Pending")
    };
    // Capacity and access modes are the bound volume's, so only shown once
    // the claim names one.
    let (capacity, modes) = if text(&spec["volumeName"]).is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(&status["capacity"]["storage"]).unwrap_or_else(|| "0".to_string()),
            access_modes(&status["accessModes"]),
        )
    };
    row![
        name(pvc),
        phase,
        text(&spec["volumeName"]),
        capacity,
        modes,
        storage_class_name(pvc, &spec["storageClassName"]),
        text_or(&spec["volumeAttributesClassName"], "<unset>"),
        age(pvc, now),
        text_or(&spec["volumeMode"], "Filesystem"),
    ]
}

fn resource_quota(quota: &Value, now: Timestamp) -> Vec<Value> {
    let status = &quota["status"];
    let hard = status["hard"].as_object();
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|h| h.keys()).collect();
    resources.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let used = quantity(&status["used"][resource]).unwrap_or_else(|| "0".to_string());
        let limit = quantity(&status["hard"][resource]).unwrap_or_else(|| "0".to_string());
        let entry = format!("{resource}: {used}/{limit}");
        if resource.starts_with("limits.") {
            limits.push(entry);
        } else {
            requests.push(entry);
        }
    }
    row![
        name(quota),
        requests.join(", "),
        limits.join(", "),
        age(quota, now),
    ]
}

fn deployment(deploy: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &deploy["spec"];
    let status = &deploy["status"];
    let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
    row![
        name(deploy),
        format!(
            "{}/{}",
            int(&status["readyReplicas"]),
            spec["replicas"].as_i64().unwrap_or(1)
        ),
        int(&status["updatedReplicas"]),
        int(&status["availableReplicas"]),
        age(deploy, now),
        names,
        images,
        // Unlike the other workloads, Deployment prints an empty selector
        // as "" and a broken one as "<invalid>".
        selector_string(&spec["selector"]).unwrap_or_else(|| "<invalid>".to_string()),
    ]
}

fn replica_set(rs: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &rs["spec"];
    let status = &rs["status"];
    let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
    row![
        name(rs),
        spec["replicas"].as_i64().unwrap_or(1),
        int(&status["replicas"]),
        int(&status["readyReplicas"]),
        age(rs, now),
        names,
        images,
        format_label_selector(&spec["selector"]),
    ]
}

fn stateful_set(sts: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &sts["spec"];
    let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
    row![
        name(sts),
        format!(
            "{}/{}",
            int(&sts["status"]["readyReplicas"]),
            spec["replicas"].as_i64().unwrap_or(1)
        ),
        age(sts, now),
        names,
        images,
    ]
}

fn daemon_set(ds: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &ds["spec"];
    let status = &ds["status"];
    let pod_spec = &spec["template"]["spec"];
    let (names, images) = container_cells(&pod_spec["containers"]);
    row![
        name(ds),
        int(&status["desiredNumberScheduled"]),
        int(&status["currentNumberScheduled"]),
        int(&status["numberReady"]),
        int(&status["updatedNumberScheduled"]),
        int(&status["numberAvailable"]),
        format_labels(&pod_spec["nodeSelector"]),
        age(ds, now),
        names,
        images,
        format_label_selector(&spec["selector"]),
    ]
}

fn controller_revision(rev: &Value, now: Timestamp) -> Vec<Value> {
    let controller = items(&rev["metadata"]["ownerReferences"])
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true));
    // "<kind>.<group>/<name>" in lower case, e.g. "daemonset.apps/fluentd".
    let controller_cell = match controller {
        None => "<none>".to_string(),
        Some(owner) => {
            let group = text(&owner["apiVersion"])
                .split_once('/')
                .map_or("", |(group, _)| group);
            let kind = text(&owner["kind"]);
            let owner_name = text(&owner["name"]);
            match (kind, group) {
                ("", "") => owner_name.to_string(),
                (kind, "") => format!("{}/{owner_name}", kind.to_lowercase()),
                (kind, group) => format!(
                    "{}.{}/{owner_name}",
                    kind.to_lowercase(),
                    group.to_lowercase()
                ),
            }
        }
    };
    row![
        name(rev),
        controller_cell,
        int(&rev["revision"]),
        age(rev, now),
    ]
}

fn job(job: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &job["spec"];
    let status = &job["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(total) => format!("{succeeded}/{total}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (
        timestamp(&status["startTime"]),
        timestamp(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now.duration_since(start)),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = &status["conditions"];
    let state = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
    row![
        name(job),
        state,
        completions,
        duration,
        age(job, now),
        names,
        images,
        format_label_selector(&spec["selector"]),
    ]
}

fn cron_job(cj: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &cj["spec"];
    let status = &cj["status"];
    let last_schedule = match timestamp(&status["lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let (names, images) = container_cells(&job_spec["template"]["spec"]["containers"]);
    row![
        name(cj),
        text(&spec["schedule"]),
        text_or(&spec["timeZone"], "<none>"),
        if spec["suspend"].as_bool() == Some(true) {
            "True"
        } else {
            "False"
        },
        items(&status["active"]).len(),
        last_schedule,
        age(cj, now),
        names,
        images,
        format_label_selector(&job_spec["selector"]),
    ]
}

/// One metric target as "current/target" (formatHPAMetrics). `status` is the
/// current metric at the same index, as upstream pairs them by position.
fn hpa_metric(spec: &Value, status: &Value) -> String {
    const UNKNOWN: &str = "<unknown>";
    // Object and External metrics: an average-value target, else a value.
    let value_or_average = |source: &str| {
        let target = &spec[source]["target"];
        let current = &status[source];
        if target["averageValue"].is_null() {
            let now = if current.is_object() {
                quantity_ptr(&current["current"]["value"])
            } else {
                UNKNOWN.to_string()
            };
            format!("{now}/{}", quantity_ptr(&target["value"]))
        } else {
            let now = if current["current"]["averageValue"].is_null() {
                UNKNOWN.to_string()
            } else {
                quantity_ptr(&current["current"]["averageValue"])
            };
            format!("{now}/{} (avg)", quantity_ptr(&target["averageValue"]))
        }
    };
    // Resource and ContainerResource metrics: "cpu: 20%/80%" style.
    let resource = |source: &str| {
        let resource = &spec[source];
        let target = &resource["target"];
        let current = &status[source];
        let name = text(&resource["name"]);
        if target["averageValue"].is_null() {
            let now = current["current"]["averageUtilization"]
                .as_i64()
                .map_or_else(|| UNKNOWN.to_string(), |u| format!("{u}%"));
            let goal = target["averageUtilization"]
                .as_i64()
                .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
            format!("{name}: {now}/{goal}")
        } else {
            let now = if current.is_object() {
                quantity_ptr(&current["current"]["averageValue"])
            } else {
                UNKNOWN.to_string()
            };
            format!("{name}: {now}/{}", quantity_ptr(&target["averageValue"]))
        }
    };
    match text(&spec["type"]) {
        "External" => value_or_average("external"),
        "Object" => value_or_average("object"),
        "Pods" => {
            let now = if status["pods"].is_object() {
                quantity_ptr(&status["pods"]["current"]["averageValue"])
            } else {
                UNKNOWN.to_string()
            };
            format!(
                "{now}/{}",
                quantity_ptr(&spec["pods"]["target"]["averageValue"])
            )
        }
        "Resource" => resource("resource"),
        "ContainerResource" => resource("containerResource"),
        _ => "<unknown type>".to_string(),
    }
}

fn horizontal_pod_autoscaler(hpa: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 2;
    let spec = &hpa["spec"];
    let status = &hpa["status"];
    // autoscaling/v2 defaulting gives an HPA without metrics an 80% average
    // CPU target.
    let default_metrics = [json!({
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    })];
    let specs = match items(&spec["metrics"]) {
        [] => &default_metrics[..],
        specs => specs,
    };
    let statuses = items(&status["currentMetrics"]);
    let metrics: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| hpa_metric(s, statuses.get(i).unwrap_or(&Value::Null)))
        .collect();
    let targets = if metrics.len() > MAX {
        format!(
            "{} + {} more...",
            metrics[..MAX].join(", "),
            metrics.len() - MAX
        )
    } else {
        metrics.join(", ")
    };
    let target = &spec["scaleTargetRef"];
    row![
        name(hpa),
        format!("{}/{}", text(&target["kind"]), text(&target["name"])),
        targets,
        spec["minReplicas"].as_i64().unwrap_or(1).to_string(),
        int(&spec["maxReplicas"]),
        int(&status["currentReplicas"]),
        age(hpa, now),
    ]
}

fn ingress(ing: &Value, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let spec = &ing["spec"];
    let rules = items(&spec["rules"]);
    // The first three named hosts; "more" once a rule follows the third.
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
            break;
        }
        if !text(&rule["host"]).is_empty() {
            hosts.push(text(&rule["host"]));
        }
    }
    let hosts_cell = if hosts.is_empty() {
        "*".to_string()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let ports = if items(&spec["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    row![
        name(ing),
        text_or(&spec["ingressClassName"], "<none>"),
        hosts_cell,
        load_balancer_addresses(&ing["status"]["loadBalancer"]["ingress"]).join(","),
        ports,
        age(ing, now),
    ]
}

fn ingress_class(class: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &class["spec"];
    let params = &spec["parameters"];
    // "<Kind>[.<apiGroup>]/<name>"
    let params_cell = if params.is_object() {
        let group = match &params["apiGroup"] {
            Value::String(group) => format!(".{group}"),
            _ => String::new(),
        };
        format!("{}{group}/{}", text(&params["kind"]), text(&params["name"]))
    } else {
        "<none>".to_string()
    };
    row![
        name(class),
        text(&spec["controller"]),
        params_cell,
        age(class, now),
    ]
}

fn endpoint_slice(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = items(&slice["ports"])
        .iter()
        .map(|p| match (&p["port"], &p["name"]) {
            (Value::Number(port), _) => port.to_string(),
            (_, Value::String(name)) => name.clone(),
            _ => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = items(&slice["endpoints"])
        .iter()
        .flat_map(|e| items(&e["addresses"]).iter().map(|a| text(a).to_string()))
        .collect();
    row![
        name(slice),
        text(&slice["addressType"]),
        list_with_more(&ports),
        list_with_more(&addresses),
        age(slice, now),
    ]
}

fn role_binding(binding: &Value, now: Timestamp) -> Vec<Value> {
    let role = &binding["roleRef"];
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(&binding["subjects"]) {
        let subject_name = text(&subject["name"]);
        match text(&subject["kind"]) {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => {
                accounts.push(format!("{}/{subject_name}", text(&subject["namespace"])))
            }
            _ => {}
        }
    }
    row![
        name(binding),
        format!("{}/{}", text(&role["kind"]), text(&role["name"])),
        age(binding, now),
        users.join(", "),
        groups.join(", "),
        accounts.join(", "),
    ]
}

fn storage_class(class: &Value, now: Timestamp) -> Vec<Value> {
    let annotations = &class["metadata"]["annotations"];
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|key| text(&annotations[*key]) == "true");
    let display_name = if is_default {
        format!("{} (default)", name(class))
    } else {
        name(class).to_string()
    };
    row![
        display_name,
        text(&class["provisioner"]),
        text_or(&class["reclaimPolicy"], "Delete"),
        text_or(&class["volumeBindingMode"], "Immediate"),
        class["allowVolumeExpansion"].as_bool().unwrap_or(false),
        age(class, now),
    ]
}

fn pod_disruption_budget(pdb: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pdb["spec"];
    let not_set = || "N/A".to_string();
    row![
        name(pdb),
        int_or_string(&spec["minAvailable"]).unwrap_or_else(not_set),
        int_or_string(&spec["maxUnavailable"]).unwrap_or_else(not_set),
        int(&pdb["status"]["disruptionsAllowed"]),
        age(pdb, now),
    ]
}

fn priority_class(class: &Value, now: Timestamp) -> Vec<Value> {
    row![
        name(class),
        int(&class["value"]),
        class["globalDefault"].as_bool().unwrap_or(false),
        age(class, now),
        text_or(&class["preemptionPolicy"], "PreemptLowerPriority"),
    ]
}

/// Field descriptions from the Kubernetes API reference, which upstream's
/// column definitions reuse via `SwaggerDoc()`.
mod swagger {
    pub(super) const NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
    pub(super) const CREATION_TIMESTAMP: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
    pub(super) const POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
    pub(super) const POD_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
    pub(super) const POD_NOMINATED_NODE: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
    pub(super) const POD_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
    pub(super) const POD_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
    pub(super) const RS_SPEC_REPLICAS: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub(super) const RS_STATUS_REPLICAS: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
    pub(super) const RS_READY_REPLICAS: &str =
        "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
    pub(super) const RS_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub(super) const DS_DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
    pub(super) const DS_CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
    pub(super) const DS_READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";
    pub(super) const DS_UPDATED: &str =
        "The total number of nodes that are running updated daemon pod";
    pub(super) const DS_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
    pub(super) const DS_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub(super) const JOB_SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
    pub(super) const JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
    pub(super) const CJ_SCHEDULE: &str =
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
    pub(super) const CJ_TIME_ZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
    pub(super) const CJ_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";
    pub(super) const CJ_ACTIVE: &str = "A list of pointers to currently running jobs.";
    pub(super) const CJ_LAST_SCHEDULE: &str =
        "Information when was the last time the job was successfully scheduled.";
    pub(super) const SVC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
    pub(super) const SVC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub(super) const SVC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
    pub(super) const SVC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
    pub(super) const SVC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
    pub(super) const EP_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
    pub(super) const NODE_KUBELET_VERSION: &str = "Kubelet Version reported by the node.";
    pub(super) const NODE_OS_IMAGE: &str =
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
    pub(super) const NODE_KERNEL_VERSION: &str =
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
    pub(super) const NODE_CONTAINER_RUNTIME: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";
    pub(super) const NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
    pub(super) const EV_LAST_TIMESTAMP: &str =
        "The time at which the most recent occurrence of this event was recorded.";
    pub(super) const EV_TYPE: &str =
        "Type of this event (Normal, Warning), new types could be added in the future";
    pub(super) const EV_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
    pub(super) const EV_INVOLVED_OBJECT: &str = "The object that this event is about.";
    pub(super) const EV_SOURCE: &str =
        "The component reporting this event. Should be a short machine understandable string.";
    pub(super) const EV_MESSAGE: &str =
        "A human-readable description of the status of this operation.";
    pub(super) const EV_FIRST_TIMESTAMP: &str =
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
    pub(super) const EV_COUNT: &str = "The number of times this event has occurred.";
    pub(super) const EV_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
    pub(super) const SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
    pub(super) const SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
    pub(super) const SA_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
    pub(super) const PV_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";
    pub(super) const PV_ACCESS_MODES: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";
    pub(super) const PV_RECLAIM_POLICY: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";
    pub(super) const PV_CLAIM_REF: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";
    pub(super) const PV_VOLUME_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";
    pub(super) const PV_PHASE: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";
    pub(super) const PV_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";
    pub(super) const PVC_PHASE: &str =
        "phase represents the current phase of PersistentVolumeClaim.";
    pub(super) const PVC_CAPACITY: &str =
        "capacity represents the actual resources of the underlying volume.";
    pub(super) const PVC_ACCESS_MODES: &str = "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1";
    pub(super) const PVC_VOLUME_NAME: &str =
        "volumeName is the binding reference to the PersistentVolume backing this claim.";
    pub(super) const PVC_VOLUME_MODE: &str = "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.";
    pub(super) const DEPLOY_UPDATED: &str = "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
    pub(super) const DEPLOY_AVAILABLE: &str = "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
    pub(super) const DEPLOY_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
    pub(super) const HPA_SCALE_TARGET: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";
    pub(super) const HPA_METRICS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization.";
    pub(super) const HPA_MIN_REPLICAS: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";
    pub(super) const HPA_MAX_REPLICAS: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";
    pub(super) const HPA_CURRENT_REPLICAS: &str = "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";
    pub(super) const CM_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
    pub(super) const NETPOL_POD_SELECTOR: &str = "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in the policy's namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is optional. If it is not specified, it defaults to an empty selector.";
    pub(super) const RB_ROLE_REF: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
    pub(super) const CRB_ROLE_REF: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.";
    pub(super) const LEASE_HOLDER: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";
    pub(super) const SC_PROVISIONER: &str = "provisioner indicates the type of the provisioner.";
    pub(super) const SC_RECLAIM_POLICY: &str = "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.";
    pub(super) const SC_BINDING_MODE: &str = "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.";
    pub(super) const SC_ALLOW_EXPANSION: &str =
        "allowVolumeExpansion shows whether the storage class allow volume expand.";
    pub(super) const CR_REVISION: &str =
        "Revision indicates the revision of the state represented by Data.";
    pub(super) const PC_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";
    pub(super) const PC_GLOBAL_DEFAULT: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";
    pub(super) const PC_PREEMPTION: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";
    pub(super) const EPS_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";
    pub(super) const EPS_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";
    pub(super) const EPS_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    /// An RFC 3339 timestamp `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        (now() - SignedDuration::from_secs(secs)).to_string()
    }

    const MIN: i64 = 60;
    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;

    fn print(kind: &str, obj: &Value) -> Vec<Value> {
        let cells = cells(kind, obj, now());
        assert_eq!(
            cells.len(),
            columns(kind).len(),
            "{kind}: one cell per column"
        );
        cells
    }

    fn pod_with_status(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-7d4b9c8f6d-x2k8p", "namespace": "default", "creationTimestamp": ago(3 * HOUR + 5 * MIN)},
            "spec": spec,
            "status": status,
        })
    }

    fn web_spec() -> Value {
        json!({"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx:1.25"}]})
    }

    #[test]
    fn pod_running_with_restarts() {
        let pod = pod_with_status(
            web_spec(),
            json!({
                "phase": "Running",
                "podIP": "10.42.0.12",
                "podIPs": [{"ip": "10.42.0.12"}],
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"},
                    {"type": "PodScheduled", "status": "True"},
                ],
                "containerStatuses": [{
                    "name": "web", "ready": true, "started": true, "restartCount": 3,
                    "image": "nginx:1.25",
                    "state": {"running": {"startedAt": ago(5 * MIN)}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": ago(5 * MIN)}},
                }],
            }),
        );
        assert_eq!(
            print("Pod", &pod),
            row![
                "web-7d4b9c8f6d-x2k8p",
                "1/1",
                "Running",
                "3 (5m ago)",
                "3h5m",
                "10.42.0.12",
                "node-1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pod_pending_with_waiting_reason() {
        let pod = pod_with_status(
            web_spec(),
            json!({
                "phase": "Pending",
                "containerStatuses": [{
                    "name": "web", "ready": false, "started": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}},
                }],
            }),
        );
        assert_eq!(
            print("Pod", &pod),
            row![
                "web-7d4b9c8f6d-x2k8p",
                "0/1",
                "ImagePullBackOff",
                "0",
                "3h5m",
                "<none>",
                "node-1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pod_unscheduled_and_scheduling_gated() {
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let unscheduled = pod_with_status(
            spec.clone(),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}),
        );
        assert_eq!(
            print("Pod", &unscheduled),
            row![
                "web-7d4b9c8f6d-x2k8p",
                "0/2",
                "Pending",
                "0",
                "3h5m",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ]
        );
        let gated = pod_with_status(
            spec,
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(print("Pod", &gated)[2], "SchedulingGated");
    }

    fn init_spec() -> Value {
        json!({
            "nodeName": "node-1",
            "initContainers": [{"name": "migrate", "image": "app:1"}, {"name": "warm", "image": "app:1"}],
            "containers": [{"name": "app", "image": "app:1"}],
        })
    }

    #[test]
    fn pod_init_progress() {
        let pod = pod_with_status(
            init_spec(),
            json!({
                "phase": "Pending",
                "podIP": "10.42.0.20",
                "conditions": [{"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}],
                "initContainerStatuses": [
                    {"name": "migrate", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": ago(20)}}},
                    {"name": "warm", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
                ],
                "containerStatuses": [
                    {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
                ],
            }),
        );
        assert_eq!(
            print("Pod", &pod),
            row![
                "web-7d4b9c8f6d-x2k8p",
                "0/1",
                "Init:0/2",
                "0",
                "3h5m",
                "10.42.0.20",
                "node-1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pod_init_failures() {
        let crash = pod_with_status(
            init_spec(),
            json!({
                "phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "False"}],
                "initContainerStatuses": [
                    {"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "warm", "restartCount": 4,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(30)}}},
                ],
                "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            }),
        );
        let cells = print("Pod", &crash);
        assert_eq!(
            cells[1..4],
            row!["0/1", "Init:CrashLoopBackOff", "4 (30s ago)"]
        );

        let exit_code = pod_with_status(
            init_spec(),
            json!({
                "phase": "Pending",
                "initContainerStatuses": [{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}],
            }),
        );
        assert_eq!(print("Pod", &exit_code)[2], "Init:ExitCode:2");

        let signal = pod_with_status(
            init_spec(),
            json!({
                "phase": "Pending",
                "initContainerStatuses": [{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}],
            }),
        );
        assert_eq!(print("Pod", &signal)[2], "Init:Signal:9");

        let failed_reason = pod_with_status(
            init_spec(),
            json!({
                "phase": "Failed",
                "initContainerStatuses": [{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
            }),
        );
        assert_eq!(print("Pod", &failed_reason)[2], "Init:Error");
    }

    #[test]
    fn pod_initializing_after_init_containers_finish() {
        let pod = pod_with_status(
            init_spec(),
            json!({
                "phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "migrate", "restartCount": 1, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(2 * MIN)}}},
                    {"name": "warm", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                ],
                "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
            }),
        );
        // One-shot init container restarts stop counting once initialised.
        assert_eq!(
            print("Pod", &pod)[1..4],
            row!["0/1", "PodInitializing", "0"]
        );
    }

    #[test]
    fn pod_with_sidecar_counts_it() {
        let pod = pod_with_status(
            json!({
                "nodeName": "node-1",
                "initContainers": [{"name": "proxy", "image": "envoy:1.30", "restartPolicy": "Always"}],
                "containers": [{"name": "app", "image": "app:1"}],
            }),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                    "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(4 * HOUR)}}}],
                "containerStatuses": [{"name": "app", "ready": true, "started": true, "restartCount": 0, "state": {"running": {}}}],
            }),
        );
        assert_eq!(
            print("Pod", &pod)[1..4],
            row!["2/2", "Running", "1 (4h ago)"]
        );
    }

    #[test]
    fn pod_terminating_and_node_lost() {
        let mut pod = pod_with_status(
            web_spec(),
            json!({
                "phase": "Running",
                "podIPs": [{"ip": "fd00::12"}],
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}],
            }),
        );
        pod["metadata"]["deletionTimestamp"] = json!(ago(10));
        let cells = print("Pod", &pod);
        assert_eq!(cells[1..3], row!["1/1", "Terminating"]);
        assert_eq!(cells[5], "fd00::12");

        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(print("Pod", &pod)[2], "Unknown");

        // A pod that already finished is not "Terminating".
        pod["status"] = json!({"phase": "Succeeded"});
        assert_eq!(print("Pod", &pod)[2], "Succeeded");
    }

    #[test]
    fn pod_completed() {
        let pod = pod_with_status(
            json!({"nodeName": "node-2", "containers": [{"name": "pi", "image": "perl:5.34.0"}], "restartPolicy": "Never"}),
            json!({
                "phase": "Succeeded",
                "podIP": "10.42.1.7",
                "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
                "containerStatuses": [{"name": "pi", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": ago(2 * MIN)}}}],
            }),
        );
        assert_eq!(
            print("Pod", &pod),
            row![
                "web-7d4b9c8f6d-x2k8p",
                "0/1",
                "Completed",
                "0",
                "3h5m",
                "10.42.1.7",
                "node-2",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pod_completed_container_beside_running_one() {
        let status = |ready: &str| {
            json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": ready}],
                "containerStatuses": [
                    {"name": "setup", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}},
                ],
            })
        };
        let spec = json!({"containers": [{"name": "setup"}, {"name": "web"}]});
        let not_ready = pod_with_status(spec.clone(), status("False"));
        assert_eq!(print("Pod", &not_ready)[1..3], row!["1/2", "NotReady"]);
        let ready = pod_with_status(spec, status("True"));
        assert_eq!(print("Pod", &ready)[1..3], row!["1/2", "Running"]);
    }

    #[test]
    fn pod_terminated_without_reason_and_wide_fields() {
        let pod = pod_with_status(
            json!({
                "containers": [{"name": "web"}],
                "readinessGates": [{"conditionType": "example.com/lb-ready"}, {"conditionType": "example.com/warm"}],
            }),
            json!({
                "phase": "Running",
                "nominatedNodeName": "node-3",
                "conditions": [{"type": "example.com/lb-ready", "status": "True"}, {"type": "example.com/warm", "status": "False"}],
                "containerStatuses": [{"name": "web", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "signal": 15}}}],
            }),
        );
        assert_eq!(
            print("Pod", &pod),
            row![
                "web-7d4b9c8f6d-x2k8p",
                "0/1",
                "Signal:15",
                "0",
                "3h5m",
                "<none>",
                "<none>",
                "node-3",
                "1/2"
            ]
        );
    }

    #[test]
    fn deployment() {
        let deploy = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(51 * HOUR)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "log", "image": "busybox:1.36"}]},
                },
            },
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
        });
        assert_eq!(
            print("Deployment", &deploy),
            row![
                "web",
                "2/3",
                3,
                2,
                "2d3h",
                "web,log",
                "nginx:1.25,busybox:1.36",
                "app=web"
            ]
        );

        // Fresh object: no status yet, replicas defaulted.
        let fresh = json!({"metadata": {"name": "api", "creationTimestamp": ago(5)}, "spec": {"selector": {}}});
        assert_eq!(
            print("Deployment", &fresh),
            row!["api", "0/1", 0, 0, "5s", "", "", ""]
        );
    }

    fn service(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(10 * DAY)},
            "spec": spec,
            "status": status,
        })
    }

    #[test]
    fn service_cluster_ip_and_headless() {
        let svc = service(
            json!({"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
                   "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}),
            json!({"loadBalancer": {}}),
        );
        assert_eq!(
            print("Service", &svc),
            row![
                "web",
                "ClusterIP",
                "10.43.0.1",
                "<none>",
                "443/TCP",
                "10d",
                "<none>"
            ]
        );

        let headless = service(
            json!({"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"},
                   "ports": [{"port": 5432}, {"port": 53, "protocol": "UDP"}]}),
            json!({}),
        );
        assert_eq!(
            print("Service", &headless),
            row![
                "web",
                "ClusterIP",
                "None",
                "<none>",
                "5432/TCP,53/UDP",
                "10d",
                "app=db"
            ]
        );
    }

    #[test]
    fn service_node_port() {
        let svc = service(
            json!({
                "type": "NodePort",
                "clusterIPs": ["10.43.12.7"],
                "externalIPs": ["198.51.100.7"],
                "selector": {"tier": "frontend", "app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": 8443, "nodePort": 30443, "protocol": "TCP"},
                ],
            }),
            json!({}),
        );
        assert_eq!(
            print("Service", &svc),
            row![
                "web",
                "NodePort",
                "10.43.12.7",
                "198.51.100.7",
                "80:30080/TCP,443:30443/TCP",
                "10d",
                "app=web,tier=frontend"
            ]
        );
    }

    #[test]
    fn service_load_balancer() {
        let spec = json!({"type": "LoadBalancer", "clusterIP": "10.43.99.1",
                          "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"}]});
        let pending = service(spec.clone(), json!({"loadBalancer": {}}));
        assert_eq!(
            print("Service", &pending),
            row![
                "web",
                "LoadBalancer",
                "10.43.99.1",
                "<pending>",
                "80:31234/TCP",
                "10d",
                "<none>"
            ]
        );

        let mut assigned = service(
            spec,
            json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "203.0.113.10"}, {"ip": "203.0.113.10"}]}}),
        );
        assert_eq!(
            print("Service", &assigned)[3],
            "203.0.113.10,lb.example.com"
        );
        assigned["spec"]["externalIPs"] = json!(["198.51.100.7"]);
        assert_eq!(
            print("Service", &assigned)[3],
            "203.0.113.10,lb.example.com,198.51.100.7"
        );
    }

    #[test]
    fn service_external_name() {
        let svc = service(
            json!({"type": "ExternalName", "externalName": "db.example.com"}),
            json!({}),
        );
        assert_eq!(
            print("Service", &svc),
            row![
                "web",
                "ExternalName",
                "<none>",
                "db.example.com",
                "<none>",
                "10d",
                "<none>"
            ]
        );
    }

    #[test]
    fn node_ready_unschedulable_with_roles() {
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "cp-1",
                "creationTimestamp": ago(30 * DAY),
                "labels": {
                    "kubernetes.io/hostname": "cp-1",
                    "node-role.kubernetes.io/master": "",
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/": "",
                },
            },
            "spec": {"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
            "status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                ],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "cp-1"}],
                "nodeInfo": {
                    "kubeletVersion": "v1.34.1",
                    "osImage": "Ubuntu 24.04.1 LTS",
                    "kernelVersion": "6.8.0-45-generic",
                    "containerRuntimeVersion": "containerd://1.7.22",
                },
            },
        });
        assert_eq!(
            print("Node", &node),
            row![
                "cp-1",
                "Ready,SchedulingDisabled",
                "control-plane,master",
                "30d",
                "v1.34.1",
                "192.168.1.10",
                "<none>",
                "Ubuntu 24.04.1 LTS",
                "6.8.0-45-generic",
                "containerd://1.7.22"
            ]
        );
    }

    #[test]
    fn node_not_ready_and_unknown() {
        let not_ready = json!({
            "metadata": {"name": "edge-1", "creationTimestamp": ago(5 * MIN), "labels": {"kubernetes.io/role": "worker"}},
            "status": {
                "conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}],
                "addresses": [{"type": "ExternalIP", "address": "203.0.113.5"}],
            },
        });
        assert_eq!(
            print("Node", &not_ready),
            row![
                "edge-1",
                "NotReady",
                "worker",
                "5m",
                "",
                "<none>",
                "203.0.113.5",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]
        );
        let registering = json!({"metadata": {"name": "edge-2", "creationTimestamp": ago(3)}});
        assert_eq!(print("Node", &registering)[1..3], row!["Unknown", "<none>"]);
    }

    #[test]
    fn event_core_v1() {
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web-1.17c6a2b1f0e2d3a4", "namespace": "default", "creationTimestamp": ago(10 * MIN)},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "apiVersion": "v1", "fieldPath": "spec.containers{web}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container web in pod web-1_default\n",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": ago(10 * MIN),
            "lastTimestamp": ago(45),
            "count": 7,
            "type": "Warning",
            "eventTime": null,
            "reportingComponent": "kubelet",
            "reportingInstance": "node-1",
        });
        assert_eq!(
            print("Event", &event),
            row![
                "45s",
                "Warning",
                "BackOff",
                "pod/web-1",
                "spec.containers{web}",
                "kubelet, node-1",
                "Back-off restarting failed container web in pod web-1_default",
                "10m",
                7,
                "web-1.17c6a2b1f0e2d3a4"
            ]
        );
    }

    #[test]
    fn event_series_and_singleton() {
        let series = json!({
            "metadata": {"name": "web-1.17c6a2b1f0e2d3a5", "creationTimestamp": ago(3 * HOUR)},
            "involvedObject": {"kind": "Pod", "name": "web-1"},
            "reason": "Scheduled",
            "message": "Successfully assigned default/web-1 to node-1",
            "type": "Normal",
            "eventTime": "2024-05-01T08:59:59.500000Z",
            "series": {"count": 12, "lastObservedTime": "2024-05-01T11:58:30.000000Z"},
            "reportingComponent": "default-scheduler",
            "reportingInstance": "",
            "source": {},
        });
        assert_eq!(
            print("Event", &series),
            row![
                "90s",
                "Normal",
                "Scheduled",
                "pod/web-1",
                "",
                "default-scheduler",
                "Successfully assigned default/web-1 to node-1",
                "3h",
                12,
                "web-1.17c6a2b1f0e2d3a5"
            ]
        );

        // events.k8s.io/v1 spelling, no count: a singleton.
        let new_api = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "cp-1.1", "creationTimestamp": ago(2 * MIN)},
            "regarding": {"kind": "Node", "name": "cp-1"},
            "note": "Node cp-1 status is now: NodeReady",
            "reason": "NodeReady",
            "type": "Normal",
            "reportingController": "kubelet",
            "reportingInstance": "cp-1",
            "eventTime": ago(2 * MIN),
        });
        assert_eq!(
            print("Event", &new_api),
            row![
                "2m",
                "Normal",
                "NodeReady",
                "node/cp-1",
                "",
                "kubelet, cp-1",
                "Node cp-1 status is now: NodeReady",
                "2m",
                1,
                "cp-1.1"
            ]
        );

        let bare = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Namespace"}});
        assert_eq!(
            print("Event", &bare)[..4],
            row!["<unknown>", "", "", "namespace"]
        );
    }

    fn job(spec: Value, status: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "5a3c1e2f-7b6d-4c1a-9f0e-2d8b7a6c5e4f"}});
        spec["template"] = json!({"spec": {"containers": [{"name": "pi", "image": "perl:5.34.0"}], "restartPolicy": "Never"}});
        json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "creationTimestamp": ago(3 * MIN)},
            "spec": spec,
            "status": status,
        })
    }

    #[test]
    fn job_complete() {
        let job = job(
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 6}),
            json!({
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True"},
                    {"type": "Complete", "status": "True"},
                ],
                "startTime": ago(170),
                "completionTime": ago(128),
                "succeeded": 1,
                "ready": 0,
            }),
        );
        assert_eq!(
            print("Job", &job),
            row![
                "pi",
                "Complete",
                "1/1",
                "42s",
                "3m",
                "pi",
                "perl:5.34.0",
                "batch.kubernetes.io/controller-uid=5a3c1e2f-7b6d-4c1a-9f0e-2d8b7a6c5e4f"
            ]
        );
    }

    #[test]
    fn job_running_failed_suspended() {
        let running = job(
            json!({"parallelism": 3}),
            json!({"startTime": ago(5 * MIN + 10), "active": 3}),
        );
        assert_eq!(
            print("Job", &running)[1..4],
            row!["Running", "0/1 of 3", "5m10s"]
        );

        let failed = job(
            json!({"completions": 5}),
            json!({"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}],
                   "startTime": ago(HOUR), "succeeded": 2, "failed": 7}),
        );
        assert_eq!(print("Job", &failed)[1..4], row!["Failed", "2/5", "60m"]);

        let suspended = job(
            json!({"suspend": true}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
        );
        assert_eq!(print("Job", &suspended)[1..4], row!["Suspended", "0/1", ""]);

        let mut deleting = job(json!({}), json!({"startTime": ago(30)}));
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(
            print("Job", &deleting)[1..4],
            row!["Terminating", "0/1", "30s"]
        );
    }

    #[test]
    fn cron_job() {
        let cron = json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default", "creationTimestamp": ago(10 * DAY)},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {
                    "containers": [{"name": "hello", "image": "busybox:1.36"}],
                    "restartPolicy": "OnFailure",
                }}}},
            },
            "status": {"active": [{"kind": "Job", "name": "hello-28573920"}], "lastScheduleTime": ago(3 * MIN)},
        });
        assert_eq!(
            print("CronJob", &cron),
            row![
                "hello",
                "*/5 * * * *",
                "<none>",
                "False",
                1,
                "3m",
                "10d",
                "hello",
                "busybox:1.36",
                "<none>"
            ]
        );

        let mut suspended = cron;
        suspended["spec"]["suspend"] = json!(true);
        suspended["spec"]["timeZone"] = json!("Europe/Berlin");
        suspended["status"] = json!({});
        assert_eq!(
            print("CronJob", &suspended)[2..6],
            row!["Europe/Berlin", "True", 0, "<none>"]
        );
    }

    #[test]
    fn workloads() {
        let template = json!({"spec": {"containers": [{"name": "db", "image": "postgres:16"}]}});
        let rs = json!({
            "metadata": {"name": "web-7d4b9c8f6d", "creationTimestamp": ago(2 * DAY)},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c8f6d"}}, "template": template},
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            print("ReplicaSet", &rs),
            row![
                "web-7d4b9c8f6d",
                2,
                2,
                1,
                "2d",
                "db",
                "postgres:16",
                "app=web,pod-template-hash=7d4b9c8f6d"
            ]
        );

        let sts = json!({
            "metadata": {"name": "db", "creationTimestamp": ago(9 * DAY)},
            "spec": {"replicas": 3, "template": template},
            "status": {"replicas": 3, "readyReplicas": 3},
        });
        assert_eq!(
            print("StatefulSet", &sts),
            row!["db", "3/3", "9d", "db", "postgres:16"]
        );

        let ds = json!({
            "metadata": {"name": "fluentd", "creationTimestamp": ago(400 * DAY)},
            "spec": {
                "selector": {"matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["logging", "agent"]},
                    {"key": "app", "operator": "Exists"},
                ]},
                "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "fluentd", "image": "fluentd:v1"}]}},
            },
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2},
        });
        assert_eq!(
            print("DaemonSet", &ds),
            row![
                "fluentd",
                3,
                3,
                2,
                3,
                2,
                "kubernetes.io/os=linux",
                "400d",
                "fluentd",
                "fluentd:v1",
                "app,tier in (agent,logging)"
            ]
        );

        let rev = json!({
            "metadata": {"name": "fluentd-6b9c7d8f5", "creationTimestamp": ago(400 * DAY),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "controller": true}]},
            "revision": 4,
        });
        assert_eq!(
            print("ControllerRevision", &rev),
            row!["fluentd-6b9c7d8f5", "daemonset.apps/fluentd", 4, "400d"]
        );
    }

    #[test]
    fn label_selectors() {
        let sel = json!({"matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ], "matchLabels": {"app": "web"}});
        assert_eq!(
            format_label_selector(&sel),
            "app=web,!canary,env notin (prod)"
        );
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(format_label_selector(&Value::Null), "<none>");
        let broken =
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
        assert_eq!(format_label_selector(&broken), "<error>");
        assert_eq!(selector_string(&broken), None);
    }

    #[test]
    fn config_and_access() {
        let cm = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": ago(HOUR)},
                        "data": {"ca.crt": "..."}, "binaryData": {"blob": "AAE="}});
        assert_eq!(print("ConfigMap", &cm), row!["kube-root-ca.crt", 2, "60m"]);

        let secret = json!({"metadata": {"name": "tls", "creationTimestamp": ago(HOUR)},
                            "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            print("Secret", &secret),
            row!["tls", "kubernetes.io/tls", 2, "60m"]
        );
        let opaque = json!({"metadata": {"name": "creds"}, "stringData": {"password": "x"}, "data": {"password": "eA=="}});
        assert_eq!(
            print("Secret", &opaque),
            row!["creds", "Opaque", 1, "<unknown>"]
        );

        let sa = json!({"metadata": {"name": "default", "creationTimestamp": ago(DAY)}});
        assert_eq!(print("ServiceAccount", &sa), row!["default", 0, "24h"]);

        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(DAY)}, "status": {"phase": "Active"}});
        assert_eq!(
            print("Namespace", &ns),
            row!["kube-system", "Active", "24h"]
        );

        let rb = json!({
            "metadata": {"name": "admins", "creationTimestamp": ago(DAY)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "User", "name": "bob"},
                {"kind": "Group", "name": "ops"},
                {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
            ],
        });
        assert_eq!(
            print("RoleBinding", &rb),
            row![
                "admins",
                "ClusterRole/admin",
                "24h",
                "alice, bob",
                "ops",
                "tools/ci"
            ]
        );
        assert_eq!(print("ClusterRoleBinding", &rb)[1], "ClusterRole/admin");

        let lease = json!({"metadata": {"name": "kube-scheduler", "creationTimestamp": ago(DAY)}, "spec": {"holderIdentity": "cp-1_0a1b"}});
        assert_eq!(
            print("Lease", &lease),
            row!["kube-scheduler", "cp-1_0a1b", "24h"]
        );

        let pc = json!({"metadata": {"name": "system-cluster-critical", "creationTimestamp": ago(DAY)}, "value": 2000000000});
        assert_eq!(
            print("PriorityClass", &pc),
            row![
                "system-cluster-critical",
                2000000000,
                false,
                "24h",
                "PreemptLowerPriority"
            ]
        );

        let pdb = json!({"metadata": {"name": "web", "creationTimestamp": ago(DAY)}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            print("PodDisruptionBudget", &pdb),
            row!["web", "50%", "N/A", 1, "24h"]
        );
    }

    #[test]
    fn storage() {
        let pv = json!({
            "metadata": {"name": "pvc-1f2e", "creationTimestamp": ago(DAY)},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "local-path",
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data"}},
            "status": {"phase": "Bound"},
        });
        assert_eq!(
            print("PersistentVolume", &pv),
            row![
                "pvc-1f2e",
                "10Gi",
                "RWO,RWX",
                "Delete",
                "Bound",
                "default/data",
                "local-path",
                "<unset>",
                "",
                "24h",
                "Filesystem"
            ]
        );

        let pvc = json!({
            "metadata": {"name": "data", "creationTimestamp": ago(DAY),
                         "annotations": {"volume.beta.kubernetes.io/storage-class": "legacy"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                     "storageClassName": "local-path", "volumeName": "pvc-1f2e", "volumeMode": "Block"},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}},
        });
        assert_eq!(
            print("PersistentVolumeClaim", &pvc),
            row!["data", "Bound", "pvc-1f2e", "10Gi", "RWO", "legacy", "<unset>", "24h", "Block"]
        );
        let pending =
            json!({"metadata": {"name": "new"}, "spec": {"storageClassName": "local-path"}});
        assert_eq!(
            print("PersistentVolumeClaim", &pending)[1..6],
            row!["Pending", "", "", "", "local-path"]
        );

        let sc = json!({
            "metadata": {"name": "local-path", "creationTimestamp": ago(DAY),
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
        });
        assert_eq!(
            print("StorageClass", &sc),
            row![
                "local-path (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "24h"
            ]
        );

        let quota = json!({
            "metadata": {"name": "compute", "creationTimestamp": ago(DAY)},
            "status": {"hard": {"requests.cpu": "4", "limits.memory": "8Gi", "pods": "10", "limits.cpu": "8"},
                       "used": {"requests.cpu": "500m", "limits.cpu": "1", "pods": "3"}},
        });
        assert_eq!(
            print("ResourceQuota", &quota),
            row![
                "compute",
                "pods: 3/10, requests.cpu: 500m/4",
                "limits.cpu: 1/8, limits.memory: 0/8Gi",
                "24h"
            ]
        );
    }

    #[test]
    fn networking() {
        let ep = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(DAY)},
            "subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}], "ports": [{"name": "http", "port": 8080}, {"name": "m", "port": 9090}]}],
        });
        assert_eq!(
            print("Endpoints", &ep),
            row![
                "web",
                "10.42.0.5:8080,10.42.0.6:8080,10.42.0.5:9090 + 1 more...",
                "24h"
            ]
        );
        let v6 = json!({"metadata": {"name": "v6"}, "subsets": [{"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 80}]}]});
        assert_eq!(print("Endpoints", &v6)[1], "[fd00::5]:80");
        assert_eq!(
            print("Endpoints", &json!({"metadata": {"name": "none"}}))[1],
            "<none>"
        );

        let slice = json!({
            "metadata": {"name": "web-abc12", "creationTimestamp": ago(DAY)},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.42.0.5"]}, {"addresses": ["10.42.0.6"]}],
        });
        assert_eq!(
            print("EndpointSlice", &slice),
            row!["web-abc12", "IPv4", "8080", "10.42.0.5,10.42.0.6", "24h"]
        );
        let empty_slice = json!({"metadata": {"name": "e"}, "addressType": "IPv4", "ports": [{}]});
        assert_eq!(
            print("EndpointSlice", &empty_slice)[2..4],
            row!["*", "<unset>"]
        );

        let ing = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(DAY)},
            "spec": {"ingressClassName": "traefik", "tls": [{"hosts": ["a.example.com"]}],
                     "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}, {"ip": "192.168.1.11"}]}},
        });
        assert_eq!(
            print("Ingress", &ing),
            row![
                "web",
                "traefik",
                "a.example.com,b.example.com,c.example.com + 2 more...",
                "192.168.1.10,192.168.1.11",
                "80, 443",
                "24h"
            ]
        );
        let catch_all = json!({"metadata": {"name": "default"}, "spec": {"defaultBackend": {}}});
        assert_eq!(
            print("Ingress", &catch_all)[1..5],
            row!["<none>", "*", "", "80"]
        );

        let class = json!({"metadata": {"name": "traefik", "creationTimestamp": ago(DAY)},
                           "spec": {"controller": "traefik.io/ingress-controller",
                                    "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            print("IngressClass", &class),
            row![
                "traefik",
                "traefik.io/ingress-controller",
                "IngressParameters.k8s.example.com/external-lb",
                "24h"
            ]
        );

        let netpol = json!({"metadata": {"name": "deny-all", "creationTimestamp": ago(DAY)}, "spec": {"podSelector": {}}});
        assert_eq!(
            print("NetworkPolicy", &netpol),
            row!["deny-all", "<none>", "24h"]
        );
    }

    #[test]
    fn horizontal_pod_autoscaler() {
        let hpa = json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "creationTimestamp": ago(DAY)},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                ],
            },
            "status": {
                "currentReplicas": 3,
                "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 23, "averageValue": "115m"}}},
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "200Mi"}}},
                ],
            },
        });
        assert_eq!(
            print("HorizontalPodAutoscaler", &hpa),
            row![
                "web",
                "Deployment/web",
                "cpu: 23%/60%, memory: 200Mi/500Mi + 1 more...",
                "2",
                10,
                3,
                "24h"
            ]
        );

        // `kubectl autoscale` without a target: defaulted to 80% CPU.
        let defaulted = json!({"metadata": {"name": "api"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "maxReplicas": 4}});
        assert_eq!(
            print("HorizontalPodAutoscaler", &defaulted),
            row![
                "api",
                "Deployment/api",
                "cpu: <unknown>/80%",
                "1",
                4,
                0,
                "<unknown>"
            ]
        );

        let external = json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}});
        assert_eq!(hpa_metric(&external, &Value::Null), "<unknown>/30");
        let object = json!({"type": "Object", "object": {"target": {"type": "AverageValue", "averageValue": "2"}}});
        let object_status =
            json!({"type": "Object", "object": {"current": {"averageValue": "1500m"}}});
        assert_eq!(hpa_metric(&object, &object_status), "1500m/2 (avg)");
        assert_eq!(
            hpa_metric(&json!({"type": "Custom"}), &Value::Null),
            "<unknown type>"
        );
    }

    #[test]
    fn kinds_without_printer_use_default_convertor() {
        let role = json!({"metadata": {"name": "pod-reader", "creationTimestamp": "2024-04-01T08:30:00.250Z"}, "rules": []});
        for kind in ["Role", "ClusterRole", "LimitRange", "Widget"] {
            assert_eq!(
                print(kind, &role),
                row!["pod-reader", "2024-04-01T08:30:00Z"]
            );
        }
        assert_eq!(print("Role", &json!({}))[1], "0001-01-01T00:00:00Z");
        assert_eq!(
            column_definitions_json("ClusterRole"),
            json!([
                {"name": "Name", "type": "string", "format": "name", "description": swagger::NAME, "priority": 0},
                {"name": "Created At", "type": "date", "format": "", "description": swagger::CREATION_TIMESTAMP, "priority": 0},
            ])
        );
    }

    #[test]
    fn every_kind_has_one_name_column_and_matching_cells() {
        let kinds = [
            "Pod",
            "Node",
            "Namespace",
            "Service",
            "Endpoints",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Event",
            "PersistentVolume",
            "PersistentVolumeClaim",
            "ResourceQuota",
            "LimitRange",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "ControllerRevision",
            "Job",
            "CronJob",
            "HorizontalPodAutoscaler",
            "Ingress",
            "IngressClass",
            "NetworkPolicy",
            "EndpointSlice",
            "Lease",
            "Role",
            "RoleBinding",
            "ClusterRole",
            "ClusterRoleBinding",
            "StorageClass",
            "PodDisruptionBudget",
            "PriorityClass",
        ];
        for kind in kinds {
            let cols = columns(kind);
            assert_eq!(
                cols.iter().filter(|c| c.format == "name").count(),
                1,
                "{kind}"
            );
            assert_eq!(cells(kind, &json!({}), now()).len(), cols.len(), "{kind}");
            let defs = column_definitions_json(kind);
            assert_eq!(defs.as_array().unwrap().len(), cols.len());
        }
        let pod_defs = column_definitions_json("Pod");
        assert_eq!(
            pod_defs[5],
            json!({"name": "IP", "type": "string", "format": "", "description": swagger::POD_IP, "priority": 1})
        );
        let wide: Vec<&str> = columns("Event")
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name)
            .collect();
        assert_eq!(wide, ["Subobject", "Source", "First Seen", "Count", "Name"]);
    }

    #[test]
    fn human_duration_examples() {
        let cases = [
            (SignedDuration::from_secs(1), "1s"),
            (SignedDuration::from_secs(70), "70s"),
            (SignedDuration::from_secs(190), "3m10s"),
            (SignedDuration::from_mins(70), "70m"),
            (SignedDuration::from_hours(47), "47h"),
            (SignedDuration::from_hours(49), "2d1h"),
            (SignedDuration::from_hours(8 * 24 + 2), "8d"),
            (SignedDuration::from_hours(367 * 24), "367d"),
            (SignedDuration::from_hours(365 * 2 * 24 + 25), "2y1d"),
            (SignedDuration::from_hours(365 * 8 * 24 + 2), "8y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn human_duration_boundaries() {
        let ms = SignedDuration::from_millis(1);
        let ns = SignedDuration::from_nanos(1);
        let s = SignedDuration::from_secs;
        let m = SignedDuration::from_mins;
        let h = SignedDuration::from_hours;
        let cases = [
            (s(-2), "<invalid>"),
            (s(-2) + ns, "0s"),
            (s(0), "0s"),
            (s(1) - ms, "0s"),
            (m(2) - ms, "119s"),
            (m(2), "2m"),
            (m(2) + s(1), "2m1s"),
            (m(10) - ms, "9m59s"),
            (m(10), "10m"),
            (m(10) + s(1), "10m"),
            (h(3) - ms, "179m"),
            (h(3), "3h"),
            (h(3) + m(1), "3h1m"),
            (h(8) - ms, "7h59m"),
            (h(8), "8h"),
            (h(8) + m(59), "8h"),
            (h(2 * 24) - ms, "47h"),
            (h(2 * 24), "2d"),
            (h(2 * 24) + h(1), "2d1h"),
            (h(8 * 24) - ms, "7d23h"),
            (h(8 * 24), "8d"),
            (h(8 * 24) + h(23), "8d"),
            (h(2 * 365 * 24) - ms, "729d"),
            (h(2 * 365 * 24), "2y"),
            (h(2 * 365 * 24) + h(23), "2y"),
            (h(2 * 365 * 24) + h(23) + m(59), "2y"),
            (h(2 * 365 * 24) + h(24) - ms, "2y"),
            (h(2 * 365 * 24) + h(24), "2y1d"),
            (h(3 * 365 * 24), "3y"),
            (h(4 * 365 * 24), "4y"),
            (h(5 * 365 * 24), "5y"),
            (h(6 * 365 * 24), "6y"),
            (h(7 * 365 * 24), "7y"),
            (h(8 * 365 * 24) - ms, "7y364d"),
            (h(8 * 365 * 24), "8y"),
            (h(8 * 365 * 24) + h(364 * 24), "8y"),
            (h(9 * 365 * 24), "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }
}
