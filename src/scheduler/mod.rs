//! The scheduler (kube-scheduler's role): pending pods come off a queue one at a time, the framework picks
//! a node from the cache's snapshot, the pod is assumed onto that node at once (so the next decision sees
//! it), and the binding is written in the background. Pods that fit nowhere get PodScheduled=False and a
//! `FailedScheduling` event, and wait until the cluster changes.
//!
//! `framework`, `node_info` and `plugins` hold the decisions; `cache` and `queue` the state around them;
//! `admission` the checks the kubelet repeats when a pod reaches its node.

pub mod admission;
pub mod cache;
pub mod framework;
pub mod node_info;
pub mod plugins;
pub mod queue;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::sync::watch;

pub use framework::{
    Code, CycleState, FitError, Framework, PluginSet, ScheduleError, SchedulerProfile,
    ScoringStrategy, Status,
};
pub use node_info::{NodeInfo, PodInfo, Resource, Snapshot};

use crate::api::meta::format_time;
use crate::client::events::{Involved, Recorder};
use crate::client::informer::key_of;
use crate::client::{Change, Client, SharedInformers};
use crate::util::Clock;
use cache::Cache;
use queue::SchedulingQueue;

pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

struct Scheduler {
    client: Client,
    informers: Arc<SharedInformers>,
    clock: Arc<dyn Clock>,
    framework: Framework,
    cache: Cache,
    queue: Arc<SchedulingQueue>,
    recorder: Recorder,
}

/// Whether the scheduler should place this pod: pending, unbound, not being deleted, and ours.
fn wants_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let unbound = spec
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty);
    let ours = spec
        .and_then(|s| s.scheduler_name.as_deref())
        .is_none_or(|n| n.is_empty() || n == DEFAULT_SCHEDULER_NAME);
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    );
    unbound && ours && !finished && pod.metadata.deletion_timestamp.is_none()
}

/// Starts the scheduler on the shared informers (which the caller runs).
pub fn start(
    client: Client,
    informers: Arc<SharedInformers>,
    clock: Arc<dyn Clock>,
    profile: SchedulerProfile,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let scheduler = Arc::new(Scheduler {
        recorder: Recorder::new(client.clone(), DEFAULT_SCHEDULER_NAME),
        client,
        informers: informers.clone(),
        clock,
        framework: Framework::new(&profile),
        cache: Cache::new(informers.clone()),
        queue: Arc::new(SchedulingQueue::new()),
    });
    {
        let s = scheduler.clone();
        informers.pods.on_change(move |change| {
            s.cache.pod_changed(change);
            match change {
                Change::Added(pod) if wants_scheduling(pod) => s.queue.add(&key_of(&pod.metadata)),
                Change::Modified { old, new } if wants_scheduling(new) => {
                    let changed =
                        old.spec != new.spec || old.metadata.labels != new.metadata.labels;
                    s.queue.update(&key_of(&new.metadata), changed);
                }
                Change::Modified { old, new } => {
                    if is_terminal(new) && !is_terminal(old) {
                        s.queue.move_all_to_active();
                    }
                }
                Change::Deleted(pod) => {
                    s.queue.forget(&key_of(&pod.metadata));
                    s.queue.move_all_to_active();
                }
                Change::Added(_) => {}
            }
        });
    }
    {
        let s = scheduler.clone();
        informers.nodes.on_change(move |change| {
            s.cache.node_changed(change);
            let relevant = match change {
                Change::Modified { old, new } => {
                    old.spec != new.spec
                        || old.metadata.labels != new.metadata.labels
                        || old.status.as_ref().map(|s| &s.allocatable)
                            != new.status.as_ref().map(|s| &s.allocatable)
                }
                _ => true,
            };
            if relevant {
                s.queue.move_all_to_active();
            }
        });
    }
    for structural in [
        &informers.namespaces as &dyn cache::Structural,
        &informers.services,
        &informers.replica_sets,
        &informers.stateful_sets,
    ] {
        let s = scheduler.clone();
        structural.on_any_change(Box::new(move || s.cache.mark_structural_change()));
    }
    let mut tasks = vec![scheduler.queue.flush_periodically(shutdown.clone())];
    {
        let s = scheduler.clone();
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let _ = stop.wait_for(|v| *v).await;
            s.queue.shut_down();
        }));
    }
    let s = scheduler;
    tasks.push(tokio::spawn(async move {
        s.informers.pods.wait_synced().await;
        s.informers.nodes.wait_synced().await;
        while let Some((key, cycle)) = s.queue.pop().await {
            s.schedule_one(&key, cycle).await;
            s.queue.done(&key);
        }
    }));
    tasks
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

impl Scheduler {
    async fn schedule_one(self: &Arc<Self>, key: &str, cycle: u64) {
        let Some(pod) = self.informers.pods.get(key) else {
            return;
        };
        if !wants_scheduling(&pod) || self.cache.is_assumed(&pod) {
            return;
        }
        match self.cache.schedule(&self.framework, &pod) {
            Ok(node) => {
                self.queue.scheduled(key);
                let s = self.clone();
                tokio::spawn(async move { s.bind(&pod, &node).await });
            }
            Err(e) => self.failed(&pod, key, cycle, &e).await,
        }
    }

    async fn bind(&self, pod: &Pod, node: &str) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/binding");
        match self.client.create(&path, &binding).await {
            Ok(_) => {
                self.recorder.normal(
                    self.clock.as_ref(),
                    &Involved::new("v1", "Pod", &pod.metadata),
                    "Scheduled",
                    &format!("Successfully assigned {namespace}/{name} to {node}"),
                );
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), node, error = %e, "binding failed");
                self.cache.forget_assumed(pod);
                if !e.is_not_found() {
                    self.queue.backoff(&key_of(&pod.metadata));
                }
            }
        }
    }

    async fn failed(&self, pod: &Pod, key: &str, cycle: u64, error: &ScheduleError) {
        let message = error.to_string();
        tracing::debug!(pod = key, %message, "pod unschedulable");
        self.queue.unschedulable(key, cycle);
        self.recorder.warning(
            self.clock.as_ref(),
            &Involved::new("v1", "Pod", &pod.metadata),
            "FailedScheduling",
            &message,
        );
        let already = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(&message));
        if already {
            return;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let condition = json!({
            "type": "PodScheduled", "status": "False", "reason": error.condition_reason(),
            "message": message, "lastProbeTime": null,
            "lastTransitionTime": format_time(self.clock.now()),
        });
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}/status");
        if let Err(e) = self
            .client
            .merge_patch(&path, &json!({"status": {"conditions": [condition]}}))
            .await
        {
            tracing::debug!(pod = key, error = %e, "PodScheduled condition not written");
        }
    }
}
