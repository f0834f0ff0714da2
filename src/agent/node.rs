//! A node's presence in the cluster: the Node object (labels, taints, capacity, addresses, nodeInfo,
//! conditions, and what its runtime supports) created or refreshed at start, and the heartbeat — the
//! Lease in `kube-node-lease` renewed every 10 s, and the conditions' heartbeat refreshed every minute,
//! or at once when the kubelet's pressure evaluation changes. The node's events are kubelet's: `Starting` at start, and one per condition whose
//! status is new or changed (`NodeHasSufficientMemory`, `NodeHasDiskPressure`, `NodeReady`…).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::kubelet::stats::MachineMemory;
use super::AgentError;
use crate::api::meta::{format_micro_time, format_time};
use crate::client::events::{Involved, Recorder};
use crate::client::Client;
use crate::util::Clock;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_DURATION_SECONDS: i64 = 40;
const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
const STATUS_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// What the node reports as its kubelet and runtime versions.
pub const KUBELET_VERSION: &str = "v1.34.0+orch";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// Parses `--node-taint key[=value]:Effect`.
pub fn parse_taint(text: &str) -> Result<Taint, AgentError> {
    let bad = |why: &str| AgentError::Config(format!("--node-taint {text:?}: {why}"));
    let (kv, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("expected key[=value]:Effect"))?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(bad(
            "effect must be NoSchedule, PreferNoSchedule or NoExecute",
        ));
    }
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        return Err(bad("the key is empty"));
    }
    Ok(Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
    })
}

/// Parses `--node-label key=value`.
pub fn parse_label(text: &str) -> Result<(String, String), AgentError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(AgentError::Config(format!(
            "--node-label {text:?}: expected key=value"
        ))),
    }
}

/// Which of the node's resources run short, as the kubelet's eviction thresholds judge them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodePressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl NodePressure {
    fn of(&self, condition: &str) -> bool {
        match condition {
            "MemoryPressure" => self.memory,
            "DiskPressure" => self.disk,
            "PIDPressure" => self.pid,
            _ => false,
        }
    }
}

/// kubelet's event reasons for each pressure condition: (condition, when False, when True).
const PRESSURE_EVENTS: [(&str, &str, &str); 3] = [
    (
        "MemoryPressure",
        "NodeHasSufficientMemory",
        "NodeHasInsufficientMemory",
    ),
    (
        "DiskPressure",
        "NodeHasNoDiskPressure",
        "NodeHasDiskPressure",
    ),
    (
        "PIDPressure",
        "NodeHasSufficientPID",
        "NodeHasInsufficientPID",
    ),
];

/// The event reasons for the conditions this node reports whose status differs from `before` (condition
/// → status last reported; `None` when absent or Unknown), as kubelet's status setters record them.
fn condition_events(
    before: impl Fn(&str) -> Option<bool>,
    pressure: NodePressure,
) -> Vec<&'static str> {
    let mut reasons: Vec<&'static str> = PRESSURE_EVENTS
        .iter()
        .filter(|(condition, _, _)| before(condition) != Some(pressure.of(condition)))
        .map(|&(condition, fine, pressed)| {
            if pressure.of(condition) {
                pressed
            } else {
                fine
            }
        })
        .collect();
    if before("Ready") != Some(true) {
        reasons.push("NodeReady");
    }
    reasons
}

/// The node as kubelet refers to it in its events: by name, its name standing in for its UID.
pub fn involved(node: &str) -> Involved<'_> {
    Involved::node(node, node)
}

/// The status of `condition` among a node's reported `conditions`: `None` when absent or Unknown.
fn reported_status(conditions: &Value, condition: &str) -> Option<bool> {
    let status = conditions
        .as_array()?
        .iter()
        .find(|c| c["type"] == condition)?["status"]
        .as_str()?;
    match status {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    }
}

/// Records kubelet's events about its node's start and conditions.
fn record_node_events(events: &Recorder, clock: &dyn Clock, node: &str, reasons: &[&str]) {
    let about = involved(node);
    for reason in reasons {
        let message = match *reason {
            "Starting" => "Starting kubelet.".to_string(),
            _ => format!("Node {node} status is now: {reason}"),
        };
        events.normal(clock, &about, reason, &message);
    }
}

/// When each pressure condition last changed status, so that heartbeats keep `lastTransitionTime`.
#[derive(Debug, Clone, Copy)]
struct Transitions {
    pressure: NodePressure,
    memory: jiff::Timestamp,
    disk: jiff::Timestamp,
    pid: jiff::Timestamp,
    ready: jiff::Timestamp,
}

impl Transitions {
    fn new(now: jiff::Timestamp) -> Self {
        Transitions {
            pressure: NodePressure::default(),
            memory: now,
            disk: now,
            pid: now,
            ready: now,
        }
    }

    /// Takes the pressure now evaluated. A condition changes now when its status differs from the one
    /// kept, or from the one the node shows (`reported`, its conditions when they could be read): the
    /// node controller may have marked them Unknown meanwhile.
    fn observe(&mut self, pressure: NodePressure, reported: Option<&Value>, now: jiff::Timestamp) {
        let differs = |condition: &str, is: bool| {
            reported.is_some_and(|r| reported_status(r, condition) != Some(is))
        };
        if self.pressure.memory != pressure.memory || differs("MemoryPressure", pressure.memory) {
            self.memory = now;
        }
        if self.pressure.disk != pressure.disk || differs("DiskPressure", pressure.disk) {
            self.disk = now;
        }
        if self.pressure.pid != pressure.pid || differs("PIDPressure", pressure.pid) {
            self.pid = now;
        }
        if differs("Ready", true) {
            self.ready = now;
        }
        self.pressure = pressure;
    }
}

/// Everything the agent states about its node.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// cpu, memory, pods, ephemeral-storage as Kubernetes quantities.
    pub capacity: BTreeMap<String, String>,
    /// What of the capacity pods may request (less what eviction keeps back).
    pub allocatable: BTreeMap<String, String>,
    pub runtime_version: String,
    pub kernel_version: String,
    pub os_image: String,
    /// nodeInfo's machineID, systemUUID and bootID, read as kubelet (cAdvisor) reads them.
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    /// The port of the node's kubelet endpoint, published for the API server, when it serves one.
    pub kubelet_port: Option<u16>,
}

impl NodeIdentity {
    fn labels(&self) -> Value {
        let arch = std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64");
        let mut labels = serde_json::Map::new();
        for (k, v) in [
            ("beta.kubernetes.io/arch", arch.as_str()),
            ("beta.kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", arch.as_str()),
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
        ] {
            labels.insert(k.into(), v.into());
        }
        for (k, v) in &self.labels {
            labels.insert(k.clone(), v.clone().into());
        }
        Value::Object(labels)
    }

    fn status(&self, now: jiff::Timestamp, transitions: &Transitions) -> Value {
        let condition =
            |kind: &str, pressed: bool, since: jiff::Timestamp, texts: [(&str, &str); 2]| {
                let (reason, message) = texts[usize::from(pressed)];
                json!({"type": kind, "status": if pressed { "True" } else { "False" },
                   "reason": reason, "message": message,
                   "lastHeartbeatTime": format_time(now), "lastTransitionTime": format_time(since)})
            };
        let p = transitions.pressure;
        let arch = std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64");
        json!({
            "capacity": self.capacity,
            "allocatable": self.allocatable,
            "conditions": [
                condition("MemoryPressure", p.memory, transitions.memory, [
                    ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
                ]),
                condition("DiskPressure", p.disk, transitions.disk, [
                    ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    ("KubeletHasDiskPressure", "kubelet has disk pressure"),
                ]),
                condition("PIDPressure", p.pid, transitions.pid, [
                    ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
                ]),
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status", "lastHeartbeatTime": format_time(now),
                 "lastTransitionTime": format_time(transitions.ready)},
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.ip.to_string()},
                {"type": "Hostname", "address": self.name},
            ],
            // The runtime honours supplementalGroupsPolicy Strict: pods asking for it may come here.
            "features": {"supplementalGroupsPolicy": true},
            // The one runtime handler, the default (named ""), makes recursive read-only mounts and has
            // no user namespaces.
            "runtimeHandlers": [
                {"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": false}},
            ],
            "daemonEndpoints": match self.kubelet_port {
                Some(port) => json!({"kubeletEndpoint": {"Port": port}}),
                None => json!({}),
            },
            "nodeInfo": {
                "machineID": self.machine_id, "systemUUID": self.system_uuid, "bootID": self.boot_id,
                "kernelVersion": self.kernel_version,
                "osImage": self.os_image,
                "containerRuntimeVersion": self.runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
        })
    }

    fn taints(&self) -> Value {
        Value::Array(
            self.taints
                .iter()
                .map(|t| {
                    let mut taint = json!({"key": t.key, "effect": t.effect});
                    if !t.value.is_empty() {
                        taint["value"] = t.value.clone().into();
                    }
                    taint
                })
                .collect(),
        )
    }
}

/// Creates the Node, or refreshes the labels, taints and status of an existing one (a restarted agent).
pub async fn register(
    client: &Client,
    identity: &NodeIdentity,
    clock: &dyn Clock,
    events: &Recorder,
) -> Result<(), AgentError> {
    let path = format!("/api/v1/nodes/{}", identity.name);
    let mut reported = Value::Null;
    match client.get(&path).await {
        Ok(node) => {
            reported = node["status"]["conditions"].clone();
            client
                .merge_patch(
                    &path,
                    &json!({"metadata": {"labels": identity.labels()}, "spec": {"taints": identity.taints()}}),
                )
                .await?;
        }
        Err(e) if e.is_not_found() => {
            let node = json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": identity.name, "labels": identity.labels()},
                "spec": {"taints": identity.taints()},
            });
            match client.create("/api/v1/nodes", &node).await {
                Ok(_) => {}
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    }
    client
        .merge_patch(
            &format!("{path}/status"),
            &json!({"status": identity.status(clock.now(), &Transitions::new(clock.now()))}),
        )
        .await?;
    let mut reasons = vec!["Starting"];
    reasons.extend(condition_events(
        |condition| reported_status(&reported, condition),
        NodePressure::default(),
    ));
    record_node_events(events, clock, &identity.name, &reasons);
    Ok(())
}

/// Renews the node's Lease every 10 s and refreshes its conditions every minute and whenever `pressure`
/// changes, until `shutdown`.
pub async fn heartbeat(
    client: Client,
    identity: NodeIdentity,
    clock: Arc<dyn Clock>,
    events: Recorder,
    mut pressure: watch::Receiver<NodePressure>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut transitions = Transitions::new(clock.now());
    let mut last_status = tokio::time::Instant::now();
    let mut lease_due = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= lease_due {
            lease_due = tokio::time::Instant::now() + LEASE_RENEW_INTERVAL;
            if let Err(e) = renew_lease(&client, &identity.name, clock.as_ref()).await {
                tracing::warn!(node = %identity.name, error = %e, "lease renewal failed");
            }
        }
        let current = *pressure.borrow_and_update();
        if current != transitions.pressure || last_status.elapsed() >= STATUS_REPORT_INTERVAL {
            last_status = tokio::time::Instant::now();
            // Against what the node shows, as kubelet compares: the node controller may have marked
            // it Unknown while this agent could not reach the server.
            let reported = client
                .get(&format!("/api/v1/nodes/{}", identity.name))
                .await
                .ok()
                .map(|node| node["status"]["conditions"].clone());
            transitions.observe(current, reported.as_ref(), clock.now());
            if let Some(reported) = &reported {
                let changed = condition_events(|c| reported_status(reported, c), current);
                record_node_events(&events, clock.as_ref(), &identity.name, &changed);
            }
            let path = format!("/api/v1/nodes/{}/status", identity.name);
            let status = json!({"status": identity.status(clock.now(), &transitions)});
            if let Err(e) = client.merge_patch(&path, &status).await {
                tracing::warn!(node = %identity.name, error = %e, "node status update failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(lease_due) => {}
            _ = pressure_changed(&mut pressure) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Resolves when the pressure changes; never, once nobody evaluates it any more (hollow nodes).
async fn pressure_changed(pressure: &mut watch::Receiver<NodePressure>) {
    if pressure.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn renew_lease(client: &Client, node: &str, clock: &dyn Clock) -> Result<(), AgentError> {
    let collection = format!("/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases");
    let now = format_micro_time(clock.now());
    match client
        .merge_patch(
            &format!("{collection}/{node}"),
            &json!({"spec": {"renewTime": now, "holderIdentity": node}}),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let owner = client.get(&format!("/api/v1/nodes/{node}")).await?;
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": LEASE_NAMESPACE, "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Node", "name": node,
                    "uid": owner["metadata"]["uid"],
                }]},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now},
            });
            match client.create(&collection, &lease).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_conflict() => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// This machine as a node: capacity from /proc and the data directory's filesystem, the kernel release and
/// the OS name from /etc/os-release.
pub fn detect_identity(
    name: &str,
    ip: IpAddr,
    labels: BTreeMap<String, String>,
    taints: Vec<Taint>,
    max_pods: u32,
    data_dir: &std::path::Path,
    kubelet_port: Option<u16>,
) -> NodeIdentity {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = MachineMemory::read().map_or(0, |m| m.total / 1024);
    let storage = nix::sys::statvfs::statvfs(data_dir)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0);
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), cpus.to_string());
    capacity.insert("memory".to_string(), format!("{memory_kib}Ki"));
    capacity.insert("pods".to_string(), max_pods.to_string());
    capacity.insert(
        "ephemeral-storage".to_string(),
        format!("{}Ki", storage / 1024),
    );
    let kernel_version = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into());
    let first_line = |paths: &[&str]| {
        paths
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|text| text.trim().to_string())
            .unwrap_or_default()
    };
    NodeIdentity {
        name: name.into(),
        ip,
        labels,
        taints,
        allocatable: capacity.clone(),
        capacity,
        runtime_version: format!("orch://{}", env!("CARGO_PKG_VERSION")),
        kernel_version,
        os_image,
        machine_id: first_line(&["/etc/machine-id", "/var/lib/dbus/machine-id"]),
        system_uuid: first_line(&["/sys/class/dmi/id/product_uuid"]).to_lowercase(),
        boot_id: first_line(&["/proc/sys/kernel/random/boot_id"]),
        kubelet_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_the_node_controller_marked_unknown_changes_when_reported_again() {
        let start: jiff::Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let later: jiff::Timestamp = "2026-11-24T10:05:00Z".parse().unwrap();
        let mut transitions = Transitions::new(start);
        let as_reported = serde_json::json!([
            {"type": "MemoryPressure", "status": "False"}, {"type": "DiskPressure", "status": "False"},
            {"type": "PIDPressure", "status": "False"}, {"type": "Ready", "status": "True"},
        ]);
        transitions.observe(NodePressure::default(), Some(&as_reported), later);
        assert_eq!((transitions.memory, transitions.ready), (start, start));
        // Unreadable: only what this agent saw itself counts.
        transitions.observe(NodePressure::default(), None, later);
        assert_eq!(transitions.ready, start);

        let unknown = serde_json::json!([
            {"type": "MemoryPressure", "status": "Unknown"}, {"type": "DiskPressure", "status": "False"},
            {"type": "PIDPressure", "status": "False"}, {"type": "Ready", "status": "Unknown"},
        ]);
        transitions.observe(NodePressure::default(), Some(&unknown), later);
        assert_eq!(
            (transitions.memory, transitions.disk, transitions.ready),
            (later, start, later)
        );
    }

    #[test]
    fn events_name_the_conditions_that_are_new_or_changed() {
        let fine = NodePressure::default();
        assert_eq!(
            condition_events(|_| None, fine),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID",
                "NodeReady"
            ]
        );
        let reported = |condition: &str| Some(condition == "Ready");
        assert_eq!(condition_events(reported, fine), Vec::<&str>::new());
        let short = NodePressure { disk: true, ..fine };
        assert_eq!(condition_events(reported, short), ["NodeHasDiskPressure"]);
        let back = |condition: &str| Some(condition == "Ready" || condition == "DiskPressure");
        assert_eq!(condition_events(back, fine), ["NodeHasNoDiskPressure"]);
        // Marked Unknown by the node controller while the agent was away: Ready again.
        let unknown = |condition: &str| (condition != "Ready").then_some(false);
        assert_eq!(condition_events(unknown, fine), ["NodeReady"]);
    }

    #[test]
    fn taints_and_labels_parse_like_k3s_flags() {
        assert_eq!(
            parse_taint("dedicated=edge:NoSchedule").unwrap(),
            Taint {
                key: "dedicated".into(),
                value: "edge".into(),
                effect: "NoSchedule".into()
            }
        );
        assert_eq!(parse_taint("gpu:NoExecute").unwrap().value, "");
        assert!(parse_taint("gpu=x:Sometimes")
            .unwrap_err()
            .to_string()
            .contains("effect must be"));
        assert!(parse_taint("novalue").is_err());
        assert_eq!(
            parse_label("zone=a").unwrap(),
            ("zone".to_string(), "a".to_string())
        );
        assert!(parse_label("zone").is_err());
    }

    #[test]
    fn node_identity_names_the_machine_its_boot_and_its_memory() {
        let dir = tempfile::tempdir().unwrap();
        let identity = detect_identity(
            "n",
            "127.0.0.1".parse().unwrap(),
            BTreeMap::new(),
            Vec::new(),
            110,
            dir.path(),
            None,
        );
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert_eq!(identity.boot_id, boot_id.trim());
        assert_eq!(identity.boot_id.len(), 36);
        if let Ok(machine_id) = std::fs::read_to_string("/etc/machine-id") {
            assert_eq!(identity.machine_id, machine_id.trim());
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB");
        assert_eq!(identity.capacity["memory"], format!("{total}Ki"));
    }
}
