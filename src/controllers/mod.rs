//! Control loops that keep the cluster's objects consistent. Each reads and writes only through the API
//! client, so validation and admission always run; each is level-based, so a restart converges to the same
//! state. Controllers share one set of informers; their change handlers only enqueue keys, and workers
//! take keys off a work queue and sync them.

pub mod cron_schedule;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod event_ttl;
pub mod expectations;
pub mod garbage_collector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod persistent_volume;
pub mod pod_ranking;
pub mod replicaset;
pub mod resource_quota;
pub mod rollout;
pub mod service_account;
pub mod statefulset;
pub mod ttl_after_finished;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::{Client, ClientError, SharedInformers, WorkQueue};
use crate::util::Clock;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Invalid(String),
}

/// Settings of the controllers that users tune (kube-controller-manager's flags of the same names).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub cluster_cidr: String,
    /// Per-node pod CIDR prefix length carved from `cluster_cidr`.
    pub node_cidr_mask_size: u8,
    /// How long a node may go without renewing its Lease before it is considered unreachable.
    pub node_monitor_grace_period: Duration,
    /// Where the local-path provisioner puts volumes (`<data-dir>/storage`).
    pub storage_dir: std::path::PathBuf,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            cluster_cidr: "10.42.0.0/16".into(),
            node_cidr_mask_size: 24,
            node_monitor_grace_period: Duration::from_secs(40),
            storage_dir: "/var/lib/orch/storage".into(),
        }
    }
}

/// What every controller is given.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub informers: Arc<SharedInformers>,
    pub clock: Arc<dyn Clock>,
    pub config: ControllerConfig,
    pub shutdown: watch::Receiver<bool>,
}

/// Starts the informers and every controller; returns their tasks.
pub async fn start(ctx: Context) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = ctx.informers.run(&ctx.shutdown);
    tasks.push(tokio::spawn(namespace::run(
        ctx.client.clone(),
        ctx.shutdown.clone(),
    )));
    tasks.push(tokio::spawn(garbage_collector::run(
        ctx.client.clone(),
        ctx.shutdown.clone(),
    )));
    tasks.extend(node_ipam::start(&ctx));
    tasks.extend(node_lifecycle::start(&ctx));
    tasks.extend(replicaset::start(&ctx));
    tasks.extend(deployment::start(&ctx));
    tasks.extend(resource_quota::start(&ctx));
    tasks.extend(service_account::start(&ctx));
    tasks.extend(persistent_volume::start(&ctx));
    tasks.extend(job::start(&ctx));
    tasks.extend(cronjob::start(&ctx));
    tasks.extend(ttl_after_finished::start(&ctx));
    tasks.extend(daemonset::start(&ctx));
    tasks.extend(statefulset::start(&ctx));
    tasks.extend(event_ttl::start(&ctx));
    tasks
}

/// Runs `workers` loops that take keys from `queue` and call `sync` until shutdown. A sync that fails is
/// retried with backoff; one that asks for a later look is re-queued after that delay.
pub fn run_workers<F, Fut>(
    name: &'static str,
    queue: WorkQueue,
    workers: usize,
    mut shutdown: watch::Receiver<bool>,
    sync: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, ControllerError>> + Send,
{
    let mut tasks = Vec::new();
    {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
            queue.shut_down();
        }));
    }
    for _ in 0..workers {
        let queue = queue.clone();
        let sync = sync.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                match sync(key.clone()).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(after) = requeue {
                            queue.add_after(&key, after);
                        }
                    }
                    Err(e) => {
                        if matches!(&e, ControllerError::Client(c) if c.is_conflict()) {
                            tracing::debug!(controller = name, %key, error = %e, "sync conflict, retrying");
                        } else {
                            tracing::warn!(controller = name, %key, error = %e, "sync failed");
                        }
                        queue.add_rate_limited(&key);
                    }
                }
                queue.done(&key);
            }
        }));
    }
    tasks
}

/// Whether labels match a metav1.LabelSelector; a missing selector matches nothing, as for workloads.
pub fn selector_matches(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let Ok(parsed) = serde_json::to_value(selector)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            crate::api::selector::LabelSelector::from_json(&v).map_err(|e| e.to_string())
        })
    else {
        return false;
    };
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    parsed.matches(&labels)
}

/// The cache key (`namespace/name`) of the object of `kind` controlling `meta`'s object.
pub fn controller_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
) -> Option<String> {
    let owner = controller_of(meta, kind)?;
    Some(format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        owner.name
    ))
}

/// Whether an object has a controlling owner of any kind.
pub fn has_controller(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true))
}

/// Adopts orphans as Kubernetes' ControllerRefManager does: each object under `collection` gets `owner`
/// as its controller, guarded by the resourceVersion it was seen at (an object that changed meanwhile is
/// looked at again on the next sync). Returns how many were adopted.
pub async fn adopt(
    client: &Client,
    collection: &str,
    orphans: &[&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta],
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<usize, ControllerError> {
    let mut adopted = 0;
    for meta in orphans {
        let mut refs = meta.owner_references.clone().unwrap_or_default();
        refs.push(owner.clone());
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": meta.resource_version, "ownerReferences": refs,
        }});
        let path = format!("{collection}/{}", meta.name.as_deref().unwrap_or_default());
        match client.merge_patch(&path, &patch).await {
            Ok(_) => adopted += 1,
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(adopted)
}

/// The controlling owner reference of the given kind.
pub fn controller_of<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == kind)
}
