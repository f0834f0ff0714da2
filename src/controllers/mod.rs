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
pub fn start(ctx: Context) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = namespace::start(&ctx);
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
    // Last, so that every controller's handlers see the first list as additions.
    tasks.extend(ctx.informers.run(&ctx.shutdown));
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

/// A metav1.LabelSelector parsed once, to match many label sets; a missing selector matches nothing, as
/// for workloads (an unparsable one too).
pub fn label_matcher(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> impl Fn(Option<&std::collections::BTreeMap<String, String>>) -> bool {
    let parsed = selector
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| crate::api::selector::LabelSelector::from_json(&v).ok());
    move |labels| {
        parsed.as_ref().is_some_and(|parsed| {
            let labels: serde_json::Map<String, serde_json::Value> = labels
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            parsed.matches(&labels)
        })
    }
}

/// Whether labels match a metav1.LabelSelector; a missing selector matches nothing, as for workloads.
pub fn selector_matches(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    label_matcher(selector)(labels)
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

/// How soon a controller that adopted or released objects looks again, once its informer shows them.
pub const ADOPTION_RECHECK: Duration = Duration::from_millis(200);

/// Kubernetes' ControllerRefManager: `owner` claims objects of its namespace. Orphans its selector
/// matches are adopted, and objects it controls that the selector no longer matches are released, both
/// only while the owner is not being deleted (its dependents then stay its own until the garbage
/// collector is done with them).
#[derive(Clone, Copy)]
pub struct Claim<'a> {
    pub client: &'a Client,
    pub owner: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    pub owner_deleting: bool,
    pub selector: Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
}

impl Claim<'_> {
    /// Claims `objects` (pods, ReplicaSets, ControllerRevisions) under `collection`: of the orphans, only
    /// those `member` accepts, adopted with `finalizers` added. Both patches are guarded by the
    /// resourceVersion the object was seen at. Returns how many objects changed hands: the caller looks
    /// again once the informer shows them, rather than acting on the old picture.
    pub async fn over(
        &self,
        collection: &str,
        objects: &[&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta],
        member: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
        finalizers: &[&str],
    ) -> Result<usize, ControllerError> {
        let Claim {
            client,
            owner,
            owner_deleting,
            selector,
        } = *self;
        if owner_deleting {
            return Ok(0);
        }
        let selects = label_matcher(selector);
        let mut changed = 0;
        for meta in objects {
            let refs = meta.owner_references.clone().unwrap_or_default();
            let ours = refs
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == owner.uid);
            let patch = if ours && !selects(meta.labels.as_ref()) {
                let kept: Vec<_> = refs.into_iter().filter(|r| r.uid != owner.uid).collect();
                serde_json::json!({"metadata": {"resourceVersion": meta.resource_version, "ownerReferences": kept}})
            } else if !ours
                && !has_controller(meta)
                && meta.deletion_timestamp.is_none()
                && member(meta)
                && selects(meta.labels.as_ref())
            {
                let mut adopted = refs;
                adopted.push(owner.clone());
                let mut with_finalizers = meta.finalizers.clone().unwrap_or_default();
                for f in finalizers {
                    if !with_finalizers.iter().any(|have| have == f) {
                        with_finalizers.push(f.to_string());
                    }
                }
                serde_json::json!({"metadata": {"resourceVersion": meta.resource_version,
                    "ownerReferences": adopted, "finalizers": with_finalizers}})
            } else {
                continue;
            };
            let path = format!("{collection}/{}", meta.name.as_deref().unwrap_or_default());
            match client.merge_patch(&path, &patch).await {
                Ok(_) => changed += 1,
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(changed)
    }
}

/// A [`Claim`] for an apps/v1 workload with history (DaemonSet, StatefulSet): its pods (those `member`
/// accepts) and its ControllerRevisions, so that a workload deleted with `--cascade=orphan` and created
/// again takes both back and rolls nothing out.
pub async fn claim_pods_and_revisions(
    ctx: &Context,
    kind: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    member: impl Fn(&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool,
) -> Result<usize, ControllerError> {
    let namespace = owner.namespace.as_deref().unwrap_or_default();
    let reference = rollout::controller_ref("apps/v1", kind, owner);
    let deleting = owner.deletion_timestamp.is_some();
    let pods = ctx.informers.pods.list_in(namespace);
    let revisions = ctx.informers.controller_revisions.list_in(namespace);
    let pods: Vec<_> = pods.iter().map(|p| &p.metadata).collect();
    let revisions: Vec<_> = revisions.iter().map(|r| &r.metadata).collect();
    let collection =
        |plural: &str, prefix: &str| format!("{prefix}/namespaces/{namespace}/{plural}");
    let claim = Claim {
        client: &ctx.client,
        owner: &reference,
        owner_deleting: deleting,
        selector,
    };
    let pods_changed = claim
        .over(&collection("pods", "/api/v1"), &pods, member, &[])
        .await?;
    let revisions_changed = claim
        .over(
            &collection("controllerrevisions", "/apis/apps/v1"),
            &revisions,
            |_| true,
            &[],
        )
        .await?;
    Ok(pods_changed + revisions_changed)
}

/// Queues the owners (ReplicaSets, DaemonSets, …) that may adopt the pod of `change`: when it exists and
/// has no controller, every owner in its namespace whose selector matches its labels. Whether it was such
/// an orphan.
pub fn queue_adopters<K>(
    change: &crate::client::Change<k8s_openapi::api::core::v1::Pod>,
    owners: &crate::client::Informer<K>,
    selector: impl Fn(&K) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    queue: &WorkQueue,
) -> bool
where
    K: k8s_openapi::Resource
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let pod = change.object();
    if has_controller(&pod.metadata) || matches!(change, crate::client::Change::Deleted(_)) {
        return false;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    for owner in owners.list_in(namespace) {
        if selector_matches(selector(&owner), pod.metadata.labels.as_ref()) {
            queue.add(&crate::client::informer::key_of(owner.metadata()));
        }
    }
    true
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, ObjectMeta, OwnerReference,
    };
    use serde_json::json;

    use super::*;
    use crate::client::Api;
    use crate::util::SystemClock;

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    async fn create(pods: &Api<Pod>, name: &str, app: &str, owners: Vec<OwnerReference>) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}, "ownerReferences": owners},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        pods.create(&pod).await.unwrap();
    }

    async fn all(pods: &Api<Pod>) -> Vec<Arc<Pod>> {
        pods.list("")
            .await
            .unwrap()
            .0
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    #[tokio::test]
    async fn claiming_adopts_matching_orphans_and_releases_what_no_longer_matches() {
        let (_dir, client) = crate::server::testing::in_process(Arc::new(SystemClock)).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let web = owner("web-uid");
        let other = OwnerReference {
            uid: "other-uid".into(),
            ..owner("other-uid")
        };
        create(&pods, "web-0", "web", vec![]).await;
        create(&pods, "stranger", "web", vec![]).await;
        create(&pods, "web-1", "db", vec![web.clone()]).await;
        create(&pods, "web-2", "web", vec![other.clone()]).await;
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        };
        let member = |m: &ObjectMeta| m.name.as_deref().unwrap().starts_with("web-");
        let collection = "/api/v1/namespaces/default/pods";
        let claim_pods =
            |snapshot: Vec<Arc<Pod>>, deleting: bool, finalizers: &'static [&'static str]| {
                let client = client.clone();
                let web = web.clone();
                let selector = selector.clone();
                async move {
                    let metas: Vec<&ObjectMeta> = snapshot.iter().map(|p| &p.metadata).collect();
                    Claim {
                        client: &client,
                        owner: &web,
                        owner_deleting: deleting,
                        selector: Some(&selector),
                    }
                    .over(collection, &metas, member, finalizers)
                    .await
                    .unwrap()
                }
            };
        let snapshot = all(&pods).await;
        let changed = claim_pods(snapshot.clone(), false, &["example.com/hold"]).await;
        assert_eq!(changed, 2, "web-0 adopted, web-1 released");
        let get = |name: &'static str| {
            let pods = pods.clone();
            async move { pods.get(name).await.unwrap() }
        };
        let adopted = get("web-0").await;
        assert_eq!(
            controller_of(&adopted.metadata, "StatefulSet").unwrap().uid,
            "web-uid"
        );
        assert_eq!(
            adopted.metadata.finalizers,
            Some(vec!["example.com/hold".to_string()])
        );
        assert!(
            !has_controller(&get("stranger").await.metadata),
            "not a member"
        );
        assert!(!has_controller(&get("web-1").await.metadata), "released");
        assert_eq!(
            controller_of(&get("web-2").await.metadata, "StatefulSet")
                .unwrap()
                .uid,
            "other-uid",
            "another controller's pod is left alone"
        );

        // A claim from a stale picture changes nothing; an owner being deleted adopts and releases
        // nothing: its dependents stay its own for the garbage collector.
        let changed = claim_pods(snapshot.clone(), false, &[]).await;
        assert_eq!(changed, 0);
        create(&pods, "web-3", "web", vec![]).await;
        create(&pods, "web-4", "db", vec![web.clone()]).await;
        let changed = claim_pods(all(&pods).await, true, &[]).await;
        assert_eq!(changed, 0);
        assert!(!has_controller(&get("web-3").await.metadata));
        assert!(has_controller(&get("web-4").await.metadata));
    }
}
