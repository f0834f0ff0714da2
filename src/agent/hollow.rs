//! Hollow nodes, like Kubernetes' kubemark: many Nodes registered by one process, each with its Lease
//! heartbeat, whose bound pods are reported Running and Ready without running anything. Pods that are not
//! restarted forever (restartPolicy OnFailure/Never) "exit" after `orch.io/hollow-run-seconds` (default 1)
//! with the code in `orch.io/hollow-exit-code` (default 0), so Jobs complete. Deleted pods are finalized
//! at once. Scheduler and controller tests and scale benchmarks use them without root.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::node::{self, NodeIdentity, Taint};
use super::AgentError;
use crate::api::meta::format_time;
use crate::client::events::Recorder;
use crate::client::informer::{key_of, split_key};
use crate::client::{Client, Informer, WorkQueue};
use crate::util::Clock;

pub const RUN_SECONDS_ANNOTATION: &str = "orch.io/hollow-run-seconds";
pub const EXIT_CODE_ANNOTATION: &str = "orch.io/hollow-exit-code";
const DEFAULT_RUN_SECONDS: u64 = 1;
const WORKERS: usize = 8;

#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// Nodes are named `<prefix>-<index>`.
    pub name_prefix: String,
    pub count: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl HollowConfig {
    fn identity(&self, index: usize) -> NodeIdentity {
        let mut capacity = BTreeMap::new();
        capacity.insert("cpu".to_string(), self.cpu.clone());
        capacity.insert("memory".to_string(), self.memory.clone());
        capacity.insert("pods".to_string(), self.pods.to_string());
        capacity.insert("ephemeral-storage".to_string(), "100Gi".to_string());
        NodeIdentity {
            name: format!("{}-{index}", self.name_prefix),
            // Loopback addresses: a hollow node's IP is never a destination that leaves this machine.
            ip: IpAddr::V4(Ipv4Addr::new(
                127,
                1,
                (index / 250) as u8,
                (index % 250 + 1) as u8,
            )),
            labels: self.labels.clone(),
            taints: self.taints.clone(),
            allocatable: capacity.clone(),
            capacity,
            runtime_version: format!("hollow://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: "hollow".into(),
            kubelet_port: None,
            os_image: "orch hollow node".into(),
            machine_id: String::new(),
            system_uuid: String::new(),
            boot_id: String::new(),
        }
    }
}

struct Hollow {
    client: Client,
    clock: Arc<dyn Clock>,
    nodes: HashMap<String, NodeIdentity>,
    node_informer: Informer<Node>,
    pods: Informer<Pod>,
    queue: WorkQueue,
    /// Pod IPs handed out per node, by pod UID.
    addresses: Mutex<HashMap<String, HashMap<String, Ipv4Addr>>>,
}

/// Registers the nodes and serves their pods until `shutdown`.
pub async fn run(
    client: Client,
    config: HollowConfig,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let identities: Vec<NodeIdentity> = (0..config.count).map(|i| config.identity(i)).collect();
    let mut recorders = Vec::new();
    for identity in &identities {
        let events = Recorder::on_node(client.clone(), "kubelet", &identity.name);
        node::register(&client, identity, clock.as_ref(), &events).await?;
        recorders.push(events);
    }
    let mut tasks = Vec::new();
    for (identity, events) in identities.iter().zip(recorders) {
        // Hollow nodes have no resources to run short of.
        let (_, no_pressure) = watch::channel(node::NodePressure::default());
        tasks.push(tokio::spawn(node::heartbeat(
            client.clone(),
            identity.clone(),
            clock.clone(),
            events,
            no_pressure,
            shutdown.clone(),
        )));
    }
    let hollow = Arc::new(Hollow {
        client: client.clone(),
        clock,
        nodes: identities
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect(),
        node_informer: Informer::new(client.clone()),
        pods: Informer::new(client),
        queue: WorkQueue::new(),
        addresses: Mutex::new(HashMap::new()),
    });
    {
        let ours: HashSet<String> = hollow.nodes.keys().cloned().collect();
        let queue = hollow.queue.clone();
        hollow.pods.on_change(move |change| {
            let pod = change.object();
            let bound_here = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| ours.contains(n));
            if bound_here {
                queue.add(&key_of(&pod.metadata));
            }
        });
    }
    tasks.push(hollow.node_informer.run(shutdown.clone()));
    tasks.push(hollow.pods.run(shutdown.clone()));
    hollow.node_informer.wait_synced().await;
    for _ in 0..WORKERS {
        let hollow = hollow.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = hollow.queue.get().await {
                match hollow.sync(&key).await {
                    Ok(Some(after)) => {
                        hollow.queue.forget(&key);
                        hollow.queue.add_after(&key, after)
                    }
                    Ok(None) => hollow.queue.forget(&key),
                    Err(e) => {
                        tracing::debug!(pod = %key, error = %e, "hollow pod sync failed");
                        hollow.queue.add_rate_limited(&key);
                    }
                }
                hollow.queue.done(&key);
            }
        }));
    }
    let mut stop = shutdown.clone();
    let _ = stop.wait_for(|s| *s).await;
    hollow.queue.shut_down();
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

impl Hollow {
    /// Moves one pod along its fake life; returns when to look at it again.
    async fn sync(&self, key: &str) -> Result<Option<Duration>, AgentError> {
        let Some(pod) = self.pods.get(key) else {
            return Ok(None);
        };
        let (namespace, name) = split_key(key);
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            self.release_address(&node_name, &uid);
            let options = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
            return match self.client.delete(&path, &options).await {
                Ok(_) => Ok(None),
                Err(e) if e.is_not_found() || e.is_conflict() => Ok(None),
                Err(e) => Err(e.into()),
            };
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Pending");
        match phase {
            "Succeeded" | "Failed" => {
                self.release_address(&node_name, &uid);
                Ok(None)
            }
            "Running" => self.maybe_exit(&pod, &path).await,
            _ => {
                let status = self.running_status(&pod, &node_name, &uid);
                self.client
                    .merge_patch(&format!("{path}/status"), &json!({"status": status}))
                    .await?;
                Ok(self.run_time(&pod))
            }
        }
    }

    fn run_time(&self, pod: &Pod) -> Option<Duration> {
        let restart = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
        if restart == Some("Always") || restart.is_none() {
            return None;
        }
        let seconds = annotation(pod, RUN_SECONDS_ANNOTATION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_RUN_SECONDS);
        Some(Duration::from_secs(seconds))
    }

    /// Finishes a run-to-completion pod whose run time has passed.
    async fn maybe_exit(&self, pod: &Pod, path: &str) -> Result<Option<Duration>, AgentError> {
        let Some(run_time) = self.run_time(pod) else {
            return Ok(None);
        };
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .unwrap_or_else(|| self.clock.now());
        let elapsed = self.clock.now().duration_since(started);
        let remaining = jiff::SignedDuration::try_from(run_time)
            .unwrap_or_default()
            .checked_sub(elapsed)
            .unwrap_or_default();
        if remaining.is_positive() {
            return Ok(Some(Duration::try_from(remaining).unwrap_or_default()));
        }
        let exit_code: i32 = annotation(pod, EXIT_CODE_ANNOTATION)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let now = format_time(self.clock.now());
        let started_at = format_time(started);
        let reason = if exit_code == 0 { "Completed" } else { "Error" };
        let statuses: Vec<Value> = containers(pod)
            .map(|(name, image)| {
                json!({"name": name, "image": image, "imageID": format!("hollow://{image}"),
                       "containerID": format!("hollow://{}-{name}", pod.metadata.uid.as_deref().unwrap_or("")),
                       "ready": false, "started": false, "restartCount": 0,
                       "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                                                "startedAt": started_at, "finishedAt": now}}})
            })
            .collect();
        let phase = if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
        let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastTransitionTime": now});
        let status = json!({
            "phase": phase,
            "conditions": [
                condition("PodReadyToStartContainers", "False"),
                condition("Initialized", "True"),
                json!({"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}),
                json!({"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}),
                condition("PodScheduled", "True"),
            ],
            "containerStatuses": statuses,
        });
        self.client
            .merge_patch(&format!("{path}/status"), &json!({"status": status}))
            .await?;
        Ok(None)
    }

    fn running_status(&self, pod: &Pod, node_name: &str, uid: &str) -> Value {
        let now = format_time(self.clock.now());
        let host_ip = self
            .nodes
            .get(node_name)
            .map(|n| n.ip.to_string())
            .unwrap_or_default();
        let pod_ip = self.address_for(node_name, uid);
        let condition =
            |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
        let statuses: Vec<Value> = containers(pod)
            .map(|(name, image)| {
                json!({"name": name, "image": image, "imageID": format!("hollow://{image}"),
                       "containerID": format!("hollow://{uid}-{name}"),
                       "ready": true, "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let mut status = json!({
            "phase": "Running",
            "conditions": [
                condition("PodReadyToStartContainers"),
                condition("Initialized"),
                condition("Ready"),
                condition("ContainersReady"),
                condition("PodScheduled"),
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": now,
            "containerStatuses": statuses,
        });
        if let Some(ip) = pod_ip {
            status["podIP"] = ip.to_string().into();
            status["podIPs"] = json!([{"ip": ip.to_string()}]);
        }
        status
    }

    /// The next free address of the node's podCIDR (host pods get the node's IP instead).
    fn address_for(&self, node_name: &str, uid: &str) -> Option<Ipv4Addr> {
        let node = self.node_informer.get(node_name)?;
        let cidr = node.spec.as_ref()?.pod_cidr.as_deref()?;
        let (base, prefix) = cidr.split_once('/')?;
        let base: Ipv4Addr = base.parse().ok()?;
        let size = 1u32.checked_shl(32 - prefix.parse::<u32>().ok()?.min(32))?;
        let mut addresses = self.addresses.lock().expect("address lock");
        let used = addresses.entry(node_name.to_string()).or_default();
        if let Some(ip) = used.get(uid) {
            return Some(*ip);
        }
        let taken: HashSet<Ipv4Addr> = used.values().copied().collect();
        let ip = (2..size.saturating_sub(1))
            .map(|offset| Ipv4Addr::from(u32::from(base) + offset))
            .find(|ip| !taken.contains(ip))?;
        used.insert(uid.to_string(), ip);
        Some(ip)
    }

    fn release_address(&self, node_name: &str, uid: &str) {
        if let Some(used) = self
            .addresses
            .lock()
            .expect("address lock")
            .get_mut(node_name)
        {
            used.remove(uid);
        }
    }
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn containers(pod: &Pod) -> impl Iterator<Item = (&str, &str)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or("")))
}
