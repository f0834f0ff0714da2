//! Node lifecycle, as kube-controller-manager's node lifecycle controller and taint eviction do:
//! - a node whose Lease (or Ready heartbeat) is older than the grace period gets its conditions set to
//!   Unknown ("Kubelet stopped posting node status.") and its pods marked not Ready;
//! - node conditions become taints: Ready=Unknown → `node.kubernetes.io/unreachable`, Ready=False →
//!   `node.kubernetes.io/not-ready` (NoSchedule and NoExecute), `spec.unschedulable` →
//!   `node.kubernetes.io/unschedulable:NoSchedule`, MemoryPressure/DiskPressure/PIDPressure=True →
//!   `node.kubernetes.io/{memory,disk,pid}-pressure:NoSchedule`;
//! - pods on a node with NoExecute taints are deleted when they do not tolerate them, or once their
//!   `tolerationSeconds` have passed since the taint was added;
//! - pods bound to a node that no longer exists are deleted at once (pod GC);
//! - the node controller's events: `RegisteredNode` when it first sees a node, `NodeNotReady` when it
//!   marks one Unknown, `RemovingNode` when one is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use serde_json::{json, Value};

use super::{run_workers, Context, ControllerError};
use crate::api::meta::format_time;
use crate::client::events::{Involved, Recorder};
use crate::client::informer::key_of;
use crate::client::{Change, WorkQueue};

const MONITOR_PERIOD: Duration = Duration::from_secs(5);
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE_TAINT: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE_TAINT: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE_TAINT: &str = "node.kubernetes.io/pid-pressure";
const LEASE_NAMESPACE: &str = "kube-node-lease";

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let nodes = WorkQueue::new();
    let pods = WorkQueue::new();
    {
        let nodes = nodes.clone();
        let pods = pods.clone();
        let informers = ctx.informers.clone();
        ctx.informers.nodes.on_change(move |change| {
            let name = change.object().metadata.name.clone().unwrap_or_default();
            nodes.add(&name);
            // Taints changed or the node went away: its pods need a look.
            if !matches!(change, Change::Modified { old, new } if old.spec == new.spec) {
                for pod in informers.pods.list() {
                    if node_name(&pod) == Some(name.as_str()) {
                        pods.add(&key_of(&pod.metadata));
                    }
                }
            }
        });
    }
    {
        let nodes = nodes.clone();
        ctx.informers.leases.on_change(move |change| {
            let lease = change.object();
            if lease.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE) {
                nodes.add(lease.metadata.name.as_deref().unwrap_or_default());
            }
        });
    }
    {
        let pods = pods.clone();
        ctx.informers.pods.on_change(move |change| {
            if !matches!(change, Change::Deleted(_)) && node_name(change.object()).is_some() {
                pods.add(&key_of(&change.object().metadata));
            }
        });
    }
    let mut tasks = Vec::new();
    {
        // Staleness is a matter of time passing, not of events: look at every node each period.
        let ctx = ctx.clone();
        let nodes = nodes.clone();
        let mut shutdown = ctx.shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                for name in ctx.informers.nodes.keys() {
                    nodes.add(&name);
                }
                tokio::select! {
                    _ = tokio::time::sleep(MONITOR_PERIOD) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }));
    }
    {
        let ctx = ctx.clone();
        let pods = pods.clone();
        let monitor = Arc::new(Monitor {
            events: Recorder::new(ctx.client.clone(), "node-controller"),
            registered: Mutex::new(HashMap::new()),
        });
        tasks.extend(run_workers(
            "node-lifecycle",
            nodes,
            2,
            ctx.shutdown.clone(),
            move |name| {
                let ctx = ctx.clone();
                let pods = pods.clone();
                let monitor = monitor.clone();
                async move { sync_node(&ctx, &monitor, &pods, &name).await }
            },
        ));
    }
    let ctx = ctx.clone();
    tasks.extend(run_workers(
        "taint-eviction",
        pods,
        2,
        ctx.shutdown.clone(),
        move |key| {
            let ctx = ctx.clone();
            async move { sync_pod(&ctx, &key).await }
        },
    ));
    tasks
}

/// What the node controller remembers between looks at nodes: the nodes it has registered (name → UID),
/// and where it records its events.
struct Monitor {
    events: Recorder,
    registered: Mutex<HashMap<String, String>>,
}

impl Monitor {
    /// Records `reason` about the node (by its UID, as the node controller refers to it), with the
    /// controller's "Node <name> event: …" or "Node <name> status is now: …" message.
    fn record(&self, ctx: &Context, name: &str, uid: &str, reason: &str) {
        let message = match reason {
            "RegisteredNode" => format!("Node {name} event: Registered Node {name} in Controller"),
            "RemovingNode" => format!("Node {name} event: Removing Node {name} from Controller"),
            _ => format!("Node {name} status is now: {reason}"),
        };
        self.events.normal(
            ctx.clock.as_ref(),
            &Involved::node(name, uid),
            reason,
            &message,
        );
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

/// The last sign of life: the Lease's renewTime or the Ready condition's heartbeat, whichever is newer.
fn last_heartbeat(ctx: &Context, node: &Node) -> Option<jiff::Timestamp> {
    let name = node.metadata.name.as_deref()?;
    let lease = ctx
        .informers
        .leases
        .get_in(LEASE_NAMESPACE, name)
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
    let heartbeat =
        condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    lease.into_iter().chain(heartbeat).max()
}

async fn sync_node(
    ctx: &Context,
    monitor: &Monitor,
    pods: &WorkQueue,
    name: &str,
) -> Result<Option<Duration>, ControllerError> {
    let Some(node) = ctx.informers.nodes.get(name) else {
        let removed = monitor.registered.lock().expect("lock").remove(name);
        if let Some(uid) = removed {
            monitor.record(ctx, name, &uid, "RemovingNode");
        }
        return Ok(None);
    };
    let uid = node.metadata.uid.as_deref().unwrap_or_default();
    let before = monitor
        .registered
        .lock()
        .expect("lock")
        .insert(name.to_string(), uid.to_string());
    // A node deleted and made again under its name before this look is another node.
    if before.as_deref() != Some(uid) {
        if let Some(gone) = before {
            monitor.record(ctx, name, &gone, "RemovingNode");
        }
        monitor.record(ctx, name, uid, "RegisteredNode");
    }
    let now = ctx.clock.now();
    let grace = jiff::SignedDuration::try_from(ctx.config.node_monitor_grace_period)
        .unwrap_or(jiff::SignedDuration::from_secs(40));
    let stale = match last_heartbeat(ctx, &node) {
        Some(at) => now.duration_since(at) > grace,
        // Never heard of: give a new node the grace period from its creation.
        None => node
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|c| now.duration_since(c.0) > grace),
    };
    let ready = condition(&node, "Ready").map(|c| c.status.as_str());
    if stale && ready != Some("Unknown") {
        mark_unknown(ctx, &node, now).await?;
        if ready == Some("True") {
            monitor.record(ctx, name, uid, "NodeNotReady");
        }
        mark_pods_not_ready(ctx, name, now).await?;
        // The status change comes back through the informer and sets the taints.
        return Ok(None);
    }
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let before = taints.clone();
    let (unreachable, not_ready) = match ready {
        Some("Unknown") => (true, false),
        Some("False") => (false, true),
        _ => (false, false),
    };
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    let pressed = |kind: &str| condition(&node, kind).is_some_and(|c| c.status == "True");
    for (key, effect, wanted) in [
        (
            MEMORY_PRESSURE_TAINT,
            "NoSchedule",
            pressed("MemoryPressure"),
        ),
        (DISK_PRESSURE_TAINT, "NoSchedule", pressed("DiskPressure")),
        (PID_PRESSURE_TAINT, "NoSchedule", pressed("PIDPressure")),
        (UNREACHABLE_TAINT, "NoExecute", unreachable),
        (UNREACHABLE_TAINT, "NoSchedule", unreachable),
        (NOT_READY_TAINT, "NoExecute", not_ready),
        (NOT_READY_TAINT, "NoSchedule", not_ready),
        (UNSCHEDULABLE_TAINT, "NoSchedule", unschedulable),
    ] {
        let present = taints.iter().any(|t| t.key == key && t.effect == effect);
        if wanted && !present {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                time_added: (effect == "NoExecute")
                    .then_some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
                value: None,
            });
        } else if !wanted && present {
            taints.retain(|t| !(t.key == key && t.effect == effect));
        }
    }
    if taints != before {
        ctx.client
            .merge_patch(
                &format!("/api/v1/nodes/{name}"),
                &json!({"metadata": {"resourceVersion": node.metadata.resource_version},
                        "spec": {"taints": taints}}),
            )
            .await?;
        for pod in ctx.informers.pods.list() {
            if node_name(&pod) == Some(name) {
                pods.add(&key_of(&pod.metadata));
            }
        }
    }
    Ok(None)
}

async fn mark_unknown(
    ctx: &Context,
    node: &Node,
    now: jiff::Timestamp,
) -> Result<(), ControllerError> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let now = format_time(now);
    let conditions: Vec<Value> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            if c.status != "Unknown" {
                v["lastTransitionTime"] = now.clone().into();
            }
            v["status"] = "Unknown".into();
            v["reason"] = "NodeStatusUnknown".into();
            v["message"] = "Kubelet stopped posting node status.".into();
            v
        })
        .collect();
    tracing::info!(
        node = name,
        "node stopped posting status; marking it unknown"
    );
    ctx.client
        .merge_patch(
            &format!("/api/v1/nodes/{name}/status"),
            &json!({"metadata": {"resourceVersion": node.metadata.resource_version},
                    "status": {"conditions": conditions}}),
        )
        .await?;
    Ok(())
}

/// Sets Ready=False on the pods of an unreachable node, as the controller's MarkPodsNotReady does.
async fn mark_pods_not_ready(
    ctx: &Context,
    node: &str,
    now: jiff::Timestamp,
) -> Result<(), ControllerError> {
    let now = format_time(now);
    for pod in ctx.informers.pods.list() {
        if node_name(&pod) != Some(node) {
            continue;
        }
        let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
            continue;
        };
        if !conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            continue;
        }
        let updated: Vec<Value> = conditions
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                if c.type_ == "Ready" {
                    v["status"] = "False".into();
                    v["lastTransitionTime"] = now.clone().into();
                }
                v
            })
            .collect();
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/status",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        match ctx
            .client
            .merge_patch(&path, &json!({"status": {"conditions": updated}}))
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_matches = toleration
        .effect
        .as_deref()
        .is_none_or(|e| e.is_empty() || e == taint.effect);
    let key = toleration.key.as_deref().unwrap_or("");
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if !effect_matches {
        return false;
    }
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        _ => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    }
}

/// When a pod must leave a node with these NoExecute taints: now (`Some(ZERO)`), after a delay, or never.
pub fn eviction_delay(
    tolerations: &[Toleration],
    taints: &[Taint],
    now: jiff::Timestamp,
) -> Option<Duration> {
    let mut delay: Option<Duration> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(Duration::ZERO);
        }
        let Some(seconds) = matching
            .iter()
            .map(|t| t.toleration_seconds)
            .try_fold(i64::MAX, |min, s| s.map(|s| min.min(s)))
        else {
            continue;
        };
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let elapsed = now.duration_since(added).as_secs_f64().max(0.0);
        let remaining = Duration::from_secs_f64((seconds.max(0) as f64 - elapsed).max(0.0));
        delay = Some(delay.map_or(remaining, |d| d.min(remaining)));
    }
    delay
}

async fn sync_pod(ctx: &Context, key: &str) -> Result<Option<Duration>, ControllerError> {
    let Some(pod) = ctx.informers.pods.get(key) else {
        return Ok(None);
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(node_name) = node_name(&pod) else {
        return Ok(None);
    };
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let uid = pod.metadata.uid.clone();
    let Some(node) = ctx.informers.nodes.get(node_name) else {
        // Orphaned by its node: nothing will ever stop it, so it goes at once.
        if !ctx.informers.nodes.has_synced() {
            return Ok(Some(MONITOR_PERIOD));
        }
        tracing::info!(
            pod = key,
            node = node_name,
            "deleting pod of a node that no longer exists"
        );
        delete_pod(
            ctx,
            &path,
            json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}),
        )
        .await?;
        return Ok(None);
    };
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    match eviction_delay(&tolerations, &taints, ctx.clock.now()) {
        Some(d) if d.is_zero() => {
            tracing::info!(
                pod = key,
                node = node_name,
                "evicting pod from tainted node"
            );
            delete_pod(ctx, &path, json!({"preconditions": {"uid": uid}})).await?;
            Ok(None)
        }
        Some(d) => Ok(Some(d)),
        None => Ok(None),
    }
}

async fn delete_pod(ctx: &Context, path: &str, options: Value) -> Result<(), ControllerError> {
    match ctx.client.delete(path, &options).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn taint(key: &str, effect: &str, added: jiff::Timestamp) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: Some(Time(added)),
            value: None,
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn eviction_waits_for_the_shortest_matching_toleration() {
        let added: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now = added + jiff::SignedDuration::from_secs(100);
        let taints = [taint(UNREACHABLE_TAINT, "NoExecute", added)];
        let tolerate_300 = [toleration(UNREACHABLE_TAINT, Some(300))];
        assert_eq!(
            eviction_delay(&tolerate_300, &taints, now),
            Some(Duration::from_secs(200))
        );
        assert_eq!(eviction_delay(&[], &taints, now), Some(Duration::ZERO));
        let forever = [toleration(UNREACHABLE_TAINT, None)];
        assert_eq!(eviction_delay(&forever, &taints, now), None);
        let expired = [toleration(UNREACHABLE_TAINT, Some(5))];
        assert_eq!(eviction_delay(&expired, &taints, now), Some(Duration::ZERO));
        let no_schedule = [taint(UNREACHABLE_TAINT, "NoSchedule", added)];
        assert_eq!(eviction_delay(&[], &no_schedule, now), None);
    }

    #[test]
    fn tolerations_match_by_key_operator_value_and_effect() {
        let t = Taint {
            key: "dedicated".into(),
            value: Some("edge".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let equal = Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("edge".into()),
            ..Default::default()
        };
        assert!(tolerates(&equal, &t));
        let other_value = Toleration {
            value: Some("core".into()),
            ..equal.clone()
        };
        assert!(!tolerates(&other_value, &t));
        let wildcard = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&wildcard, &t));
        let wrong_effect = Toleration {
            effect: Some("NoExecute".into()),
            ..equal
        };
        assert!(!tolerates(&wrong_effect, &t));
    }
}
