//! The table of every resource orch serves: group, version, kind, plural, scope, short names, categories,
//! subresources and verbs. Discovery, routing, storage keys and the OpenAPI documents are all derived from it,
//! so a resource exists in exactly one place.

/// A subresource of a resource, as discovery lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// The group/version/kind the subresource answers with (e.g. `autoscaling/v1 Scale` for `scale`).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource in one group version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The group and plural this resource is stored under; differs from its own only for a second
    /// version or group of the same objects (e.g. autoscaling/v1 HPAs live with autoscaling/v2).
    pub storage_group: &'static str,
    pub storage_plural: &'static str,
    pub verbs: &'static [&'static str],
}

pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
pub const READ_VERBS: &[&str] = &["get", "list"];

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn group_version(&self) -> (&'static str, &'static str) {
        (self.group, self.version)
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `deployments.apps`, `pods` — the qualified resource name used in error messages.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn verbs(&self) -> &'static [&'static str] {
        self.verbs
    }

    /// The storage key prefix all objects of this resource share (ends in `/`).
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        let group = if self.storage_group.is_empty() {
            "core"
        } else {
            self.storage_group
        };
        match namespace {
            Some(ns) if self.namespaced => {
                format!("/registry/{group}/{}/{ns}/", self.storage_plural)
            }
            _ => format!("/registry/{group}/{}/", self.storage_plural),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.key_prefix(namespace))
    }

    pub fn is_storage_version(&self) -> bool {
        self.storage_group == self.group
            && self.storage_plural == self.plural
            && self.version == storage_version(self)
    }
}

fn storage_version(info: &ResourceInfo) -> &'static str {
    RESOURCES
        .iter()
        .find(|r| r.group == info.storage_group && r.plural == info.storage_plural)
        .map(|r| r.version)
        .unwrap_or(info.version)
}

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

#[allow(clippy::too_many_arguments)]
const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceInfo {
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories,
        subresources,
        storage_group: group,
        storage_plural: plural,
        verbs: ALL_VERBS,
    }
}

const fn stored_as(
    mut info: ResourceInfo,
    group: &'static str,
    plural: &'static str,
) -> ResourceInfo {
    info.storage_group = group;
    info.storage_plural = plural;
    info
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Every served resource. The order is discovery order: it decides `kubectl get all` ordering and which group
/// wins an ambiguous short name (core `events` before `events.k8s.io`), as in Kubernetes.
pub static RESOURCES: &[ResourceInfo] = &[
    res(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        ALL,
        &[
            status("", "v1", "Pod"),
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: &["create"],
            },
            Subresource {
                name: "ephemeralcontainers",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: STATUS_VERBS,
            },
            Subresource {
                name: "resize",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: STATUS_VERBS,
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "attach",
                group: "",
                version: "v1",
                kind: "PodAttachOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "portforward",
                group: "",
                version: "v1",
                kind: "PodPortForwardOptions",
                verbs: &["create", "get"],
            },
        ],
    ),
    res(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        ALL,
        &[status("", "v1", "Service")],
    ),
    res(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        NONE,
        &[
            status("", "v1", "Namespace"),
            Subresource {
                name: "finalize",
                group: "",
                version: "v1",
                kind: "Namespace",
                verbs: &["update"],
            },
        ],
    ),
    res(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        NONE,
        &[status("", "v1", "Node")],
    ),
    res(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        NONE,
        &[],
    ),
    res(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        NONE,
        &[],
    ),
    res(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        NONE,
        &[],
    ),
    res(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        NONE,
        &[],
    ),
    res(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        &["pv"],
        NONE,
        &[status("", "v1", "PersistentVolume")],
    ),
    res(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
        NONE,
        &[status("", "v1", "PersistentVolumeClaim")],
    ),
    res(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        "resourcequota",
        true,
        &["quota"],
        NONE,
        &[status("", "v1", "ResourceQuota")],
    ),
    res(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        "limitrange",
        true,
        &["limits"],
        NONE,
        &[],
    ),
    res(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        ALL,
        &[scale(), status("apps", "v1", "Deployment")],
    ),
    res(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        ALL,
        &[scale(), status("apps", "v1", "ReplicaSet")],
    ),
    res(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        ALL,
        &[scale(), status("apps", "v1", "StatefulSet")],
    ),
    res(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
        ALL,
        &[status("apps", "v1", "DaemonSet")],
    ),
    res(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        NONE,
        &[],
    ),
    res(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        &["hpa"],
        ALL,
        &[status("autoscaling", "v2", "HorizontalPodAutoscaler")],
    ),
    stored_as(
        res(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            true,
            &["hpa"],
            ALL,
            &[status("autoscaling", "v1", "HorizontalPodAutoscaler")],
        ),
        "autoscaling",
        "horizontalpodautoscalers",
    ),
    res(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        NONE,
        ALL,
        &[status("batch", "v1", "Job")],
    ),
    res(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
        ALL,
        &[status("batch", "v1", "CronJob")],
    ),
    res(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        &["ing"],
        NONE,
        &[status("networking.k8s.io", "v1", "Ingress")],
    ),
    res(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
        NONE,
        &[],
    ),
    res(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
        NONE,
        &[status("policy", "v1", "PodDisruptionBudget")],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        NONE,
        NONE,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        &["sc"],
        NONE,
        &[],
    ),
    res(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        "priorityclass",
        false,
        &["pc"],
        NONE,
        &[],
    ),
    res(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        NONE,
        NONE,
        &[],
    ),
    res(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        NONE,
        NONE,
        &[],
    ),
];

/// Resources served from what the nodes report instead of from storage, as metrics-server serves them
/// (`kubectl top`): they can only be read.
pub static NODE_REPORTED: &[ResourceInfo] = &[
    read_only(res(
        "metrics.k8s.io",
        "v1beta1",
        "NodeMetrics",
        "nodes",
        "nodemetrics",
        false,
        NONE,
        NONE,
        &[],
    )),
    read_only(res(
        "metrics.k8s.io",
        "v1beta1",
        "PodMetrics",
        "pods",
        "podmetrics",
        true,
        NONE,
        NONE,
        &[],
    )),
];

const fn read_only(mut info: ResourceInfo) -> ResourceInfo {
    info.verbs = READ_VERBS;
    info
}

/// Every resource discovery lists: the stored ones, then those the nodes report.
pub fn discoverable() -> impl Iterator<Item = &'static ResourceInfo> {
    RESOURCES.iter().chain(NODE_REPORTED)
}

fn group_versions_of(
    infos: impl Iterator<Item = &'static ResourceInfo>,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in infos {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Group versions of the stored resources in discovery order, each once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    group_versions_of(RESOURCES.iter())
}

/// Groups in discovery order with their versions, preferred version first.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (g, v) in group_versions_of(discoverable()) {
        match out.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => versions.push(v),
            None => out.push((g, vec![v])),
        }
    }
    out
}

/// Whether `info` is one of the resources the nodes report.
pub fn is_node_reported(info: &ResourceInfo) -> bool {
    NODE_REPORTED.iter().any(|r| std::ptr::eq(r, info))
}

/// A resource the nodes report, by its group, version and plural.
pub fn find_node_reported(
    group: &str,
    version: &str,
    plural: &str,
) -> Option<&'static ResourceInfo> {
    NODE_REPORTED
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Splits an `apiVersion` into group and version (`v1` → ("", "v1")).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

impl ResourceInfo {
    /// The URL path of the collection (`/apis/apps/v1/namespaces/ns/deployments`) or, with a name, of one object.
    pub fn path(&self, namespace: Option<&str>, name: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        let scoped = match namespace {
            Some(ns) if self.namespaced => format!("{root}/namespaces/{ns}/{}", self.plural),
            _ => format!("{root}/{}", self.plural),
        };
        match name {
            Some(n) => format!("{scoped}/{n}"),
            None => scoped,
        }
    }
}

/// Each stored resource once, in its storage version.
pub fn storage_resources() -> impl Iterator<Item = &'static ResourceInfo> {
    RESOURCES.iter().filter(|r| r.is_storage_version())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_order_puts_core_events_before_events_group() {
        let core = RESOURCES
            .iter()
            .position(|r| r.group.is_empty() && r.plural == "events")
            .unwrap();
        let grp = RESOURCES
            .iter()
            .position(|r| r.group == "events.k8s.io")
            .unwrap();
        assert!(core < grp);
    }

    #[test]
    fn keys_are_scoped_by_namespace_only_for_namespaced_resources() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "p"),
            "/registry/core/pods/default/p"
        );
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("default"), "n"), "/registry/core/nodes/n");
    }

    #[test]
    fn hpa_v1_shares_storage_with_v2() {
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v2 = find("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
        assert_eq!(v1.key_prefix(Some("a")), v2.key_prefix(Some("a")));
        assert!(v2.is_storage_version());
        assert!(!v1.is_storage_version());
    }

    #[test]
    fn groups_list_preferred_version_first() {
        let g = groups();
        let autoscaling = g.iter().find(|(n, _)| *n == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
        assert_eq!(g[0].0, "");
    }
}
