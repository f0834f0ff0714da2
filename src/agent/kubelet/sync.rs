//! One pass over one pod (kubelet's SyncPod / SyncTerminatingPod / SyncTerminatedPod): a pod that is gone
//! from the API has its containers stopped within kubelet's least grace period and everything removed;
//! a pod being deleted has its containers stopped within its grace period, then its resources released
//! and its API object finalized; any other pod gets its sandbox and volumes, the containers its plan
//! asks for (pulling images as the pull policy says), and its status written back when it changed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::backoff::{self, Decision};
use super::container::BuildError;
use super::env::Sources;
use super::plan::{self, Action, Run, Runs};
use super::status::{self, Blocked, Observed, Waiting};
use super::{
    active_deadline, apparmor, container, env, pod_cgroup, probes, sandbox, sysctls, volumes,
    Kubelet,
};
use crate::agent::image::reference::PullPolicy;
use crate::agent::image::{Credentials, Image};
use crate::agent::runtime::{
    new_container_id, ContainerMeta, ContainerState, ProcessUser, RuntimeError, SharedNamespace,
};
use crate::agent::AgentError;
use crate::client::events::Involved;
use crate::client::informer::{key_of, split_key};
use crate::shim::InitProcess;

/// Default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: i64 = 30;
/// kubelet's least grace period for a pod it terminates, in seconds: what a force-deleted pod, an
/// orphan and a hard eviction get.
pub(super) const MIN_POD_GRACE: u64 = 1;
/// kubelet's minimumGracePeriodInSeconds: the least time between SIGTERM and SIGKILL, "to avoid
/// unnecessary SIGKILLs", whatever the grace period left after the preStop hook.
const MIN_STOP_WINDOW: Duration = Duration::from_secs(2);
/// How long a postStart hook may run. kubelet waits for one forever, keeping the container from being
/// Running; a bound lets a hung hook end in FailedPostStartHook and the restart policy instead.
const POST_START_LIMIT: Duration = Duration::from_secs(120);
/// How much of a termination message file is read, as kubelet.
const MAX_TERMINATION_MESSAGE: usize = 4096;
/// FallbackToLogsOnError takes at most this many bytes of the log's end.
const MAX_FALLBACK_LOG: usize = 2048;
/// kubelet's MaxContainerTerminationMessageLogLines.
const MAX_FALLBACK_LINES: usize = 80;
/// In a pod's run directory: its network namespace got its sysctls.
const NET_SYSCTLS_SET: &str = "net-sysctls-set";
/// Under the data directory: the Localhost seccomp profiles (kubelet's `<root-dir>/seccomp`).
const SECCOMP_PROFILES: &str = "agent/seccomp";
/// The annotation of a PersistentVolume naming a group its users join.
const VOLUME_GID: &str = "pv.beta.kubernetes.io/gid";

fn short_hash(value: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// What a container's run was made from, `<spec>.<resources>`: its spec but for its resources, and the
/// resources a resize changes only by restarting it (resizePolicy RestartContainer); the others change
/// in place. A run made from another hash is restarted.
fn spec_hash(c: &Container) -> String {
    let restarts_for = |resource: &str| {
        c.resize_policy
            .iter()
            .flatten()
            .any(|p| p.resource_name == resource && p.restart_policy == "RestartContainer")
    };
    let restarting = |list: Option<BTreeMap<String, Quantity>>| -> BTreeMap<String, Quantity> {
        list.into_iter()
            .flatten()
            .filter(|(name, _)| restarts_for(name))
            .collect()
    };
    let resources = c.resources.clone().unwrap_or_default();
    let rest = Container {
        resources: None,
        resize_policy: None,
        ..c.clone()
    };
    format!(
        "{}.{}",
        short_hash(&rest),
        short_hash(&(restarting(resources.requests), restarting(resources.limits)))
    )
}

/// Whether two hashes from [`spec_hash`] are of the same spec, whatever their resources.
fn same_spec(a: &str, b: &str) -> bool {
    a.split('.').next() == b.split('.').next()
}

/// The hash agents before in-place resize recorded (of the whole spec): runs recorded with it are
/// recorded again with [`spec_hash`] instead of being restarted.
fn hash_before_resize(c: &Container) -> String {
    short_hash(c)
}

/// Ephemeral containers are recorded without a hash: they never restart.
fn is_hash_from_before_resize(hash: &str) -> bool {
    !hash.is_empty() && !hash.contains('.')
}

/// Gives today's hash (`hashes`) to the runs an agent from before in-place resize recorded with the
/// hash of the same spec, so that an upgrade restarts none of them; returns (container id, hash) of
/// each, for its record.
fn rehashed_runs(
    spec: &PodSpec,
    runs: &mut HashMap<String, Runs>,
    hashes: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut rehashed = Vec::new();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for c in containers {
        let (Some(runs), Some(hash)) = (runs.get_mut(&c.name), hashes.get(&c.name)) else {
            continue;
        };
        let recorded_before = [runs.latest.as_mut(), runs.previous.as_mut()]
            .into_iter()
            .flatten()
            .filter(|run| is_hash_from_before_resize(&run.spec_hash));
        for run in recorded_before {
            if run.spec_hash == hash_before_resize(c) {
                run.spec_hash = hash.clone();
                rehashed.push((run.id.clone(), hash.clone()));
            }
        }
    }
    rehashed
}

fn involved(pod: &Pod) -> Involved<'_> {
    Involved::new("v1", "Pod", &pod.metadata)
}

/// kubelet's reference to one of the pod's containers in its events: the pod, at the container's field.
pub(super) fn container_involved<'a>(pod: &'a Pod, name: &str) -> Involved<'a> {
    let spec = pod.spec.as_ref();
    let named =
        |list: Option<&Vec<Container>>| list.is_some_and(|l| l.iter().any(|c| c.name == name));
    let ephemeral = spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == name));
    let field = if named(spec.and_then(|s| s.init_containers.as_ref())) {
        "initContainers"
    } else if ephemeral {
        "ephemeralContainers"
    } else {
        "containers"
    };
    involved(pod).at(format!("spec.{field}{{{name}}}"))
}

/// The running process of the pod's container `name`.
fn running_init(runs: &HashMap<String, Runs>, name: &str) -> Option<InitProcess> {
    match &runs.get(name)?.latest.as_ref()?.state {
        ContainerState::Running(init) => Some(*init),
        _ => None,
    }
}

/// What an ephemeral container waits with while the container it targets does not run.
fn target_not_running(target: &str) -> Waiting {
    Waiting {
        reason: "CreateContainerError".into(),
        message: format!("the target container {target} is not running"),
    }
}

/// `p_ns(uid)` as kubelet names a pod in messages.
pub(super) fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// What the runtime recorded of each container's latest run: the image it runs, who its process is and
/// the cgroup limits it has.
fn note_latest_runs(observed: &mut Observed, metas: &HashMap<String, ContainerMeta>) {
    for (name, meta) in metas {
        observed
            .image_ids
            .insert(name.clone(), meta.image_ref.clone());
        if let Some(user) = &meta.user {
            observed.users.insert(name.clone(), user.clone());
        }
        if let Some(resources) = &meta.resources {
            observed.limits.insert(name.clone(), resources.clone());
        }
    }
}

/// A container removed while it was being stopped (by another stop of its pod that finished first) is
/// as stopped as the caller wanted.
fn warn_unless_stopped(id: &str, stopped: Result<crate::shim::ExitRecord, RuntimeError>) {
    match stopped {
        Ok(_) | Err(RuntimeError::NotFound(_)) => {}
        Err(e) => tracing::warn!(container = %id, error = %e, "stopping a container"),
    }
}

impl Kubelet {
    /// Syncs the pod `key`; returns when to look again (besides events that re-queue it).
    pub(super) async fn sync(self: &Arc<Self>, key: &str) -> Result<Option<Duration>, AgentError> {
        let Some(pod) = self.pods.get(key) else {
            let last = self.known.lock().expect("known lock").remove(key);
            if let Some(last) = last {
                let uid = last.metadata.uid.clone().unwrap_or_default();
                // kubelet stops a pod that vanished (force-deleted: deletionGracePeriodSeconds 0) within
                // the least grace period, with its preStop hooks unless a stop under way ran them. In the
                // background: that takes seconds, which the workers owe to other pods.
                let hooks_ran = self.terminating.lock().expect("lock").contains_key(&uid);
                let pod = (!hooks_ran).then_some(last);
                let me = self.clone();
                tokio::spawn(async move {
                    me.kill_pod(&uid, pod.as_deref(), Duration::from_secs(MIN_POD_GRACE))
                        .await;
                    me.release_pod(&uid).await;
                });
            }
            return Ok(None);
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.known
            .lock()
            .expect("known lock")
            .insert(key.to_string(), pod.clone());
        if pod.metadata.deletion_timestamp.is_some() {
            return self.sync_terminating(key, &pod, &uid).await;
        }
        let eviction = self
            .evictions
            .lock()
            .expect("evictions lock")
            .get(&uid)
            .cloned();
        if let Some(eviction) = eviction.as_ref().filter(|e| !e.failed) {
            return self.sync_evicted(&pod, &uid, &eviction.message).await;
        }
        let now = self.clock.now();
        if active_deadline::exceeded(&pod, now) {
            return self.sync_deadline_exceeded(key, &pod, &uid).await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        // An evicted pod is finished even before its Failed status comes back through the watch.
        if matches!(phase, Some("Succeeded" | "Failed")) || eviction.is_some() {
            // Nothing of a finished pod runs on: a sidecar of a pod whose init container failed is
            // stopped as kubelet stops what is left of a terminal pod.
            if !self.running_containers(&uid).is_empty()
                && !self.terminating.lock().expect("lock").contains_key(&uid)
            {
                let grace = pod_grace(&pod);
                self.terminating
                    .lock()
                    .expect("lock")
                    .insert(uid.clone(), grace);
                self.kill_in_background(key, &uid, Some((*pod).clone()), grace);
                return Ok(None);
            }
            // Finished pods keep their containers (for logs) but not their network or pause process.
            if let Err(e) = self.network.remove_sandbox(&uid).await {
                tracing::warn!(pod = %key, error = %e, "releasing the network of a finished pod");
            }
            sandbox::end_pid_namespace(&self.config.run_dir, &uid);
            self.retry_deferred_resizes(&uid);
            return Ok(None);
        }
        if !self.admit(&pod, &uid).await? {
            return Ok(None);
        }
        let pod = self.allocate(&pod, &uid, now);
        let requeue = self.sync_running(&pod, &uid).await?;
        // Back in time to enforce the pod's deadline, when the periodic resync would come too late.
        Ok(match active_deadline::remaining(&pod, now) {
            Some(left) if left < super::RESYNC => Some(requeue.map_or(left, |r| r.min(left))),
            _ => requeue,
        })
    }

    async fn sync_terminating(
        self: &Arc<Self>,
        key: &str,
        pod: &Pod,
        uid: &str,
    ) -> Result<Option<Duration>, AgentError> {
        let running = self.running_containers(uid);
        if !running.is_empty() {
            let grace = pod_grace(pod);
            let under_way = self
                .terminating
                .lock()
                .expect("lock")
                .insert(uid.to_string(), grace);
            match under_way {
                None => {
                    for (_, name) in &running {
                        self.events.normal(
                            self.clock.as_ref(),
                            &container_involved(pod, name),
                            "Killing",
                            &format!("Stopping container {name}"),
                        );
                    }
                    self.kill_in_background(key, uid, Some(pod.clone()), grace);
                }
                // A second delete with a shorter grace period (`kubectl delete --grace-period=1` after
                // the default) cuts the stop under way short, as kubelet's pod workers do; its preStop
                // hooks have run already.
                Some(earlier) if grace < earlier => self.kill_in_background(key, uid, None, grace),
                Some(earlier) => {
                    self.terminating
                        .lock()
                        .expect("lock")
                        .insert(uid.to_string(), earlier);
                }
            }
            return Ok(None);
        }
        self.write_final_status(key, pod, uid).await;
        self.release_pod(uid).await;
        let (namespace, name) = split_key(key);
        let options = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
        match self
            .client
            .delete(
                &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
                &options,
            )
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// What the runtime holds of the pod's runs (with their images, users and termination messages) and
    /// its addresses: the status of a pod that is not synced as running (ended by the kubelet, or deleted).
    pub(super) fn observed_runs(&self, pod: &Pod, uid: &str) -> Observed {
        let (runs, metas) = self.runs(uid);
        let mut observed = Observed {
            runs,
            host_ip: self.config.node_ip.to_string(),
            pod_ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
            ..Default::default()
        };
        note_latest_runs(&mut observed, &metas);
        self.collect_termination_messages(pod, &mut observed);
        observed
    }

    /// Stops the pod's containers within `grace` seconds (with their preStop hooks when `pod` is given),
    /// then looks at the pod again.
    pub(super) fn kill_in_background(
        self: &Arc<Self>,
        key: &str,
        uid: &str,
        pod: Option<Pod>,
        grace: u64,
    ) {
        let (me, key, uid) = (self.clone(), key.to_string(), uid.to_string());
        tokio::spawn(async move {
            me.kill_pod(&uid, pod.as_ref(), Duration::from_secs(grace))
                .await;
            me.terminating.lock().expect("lock").remove(&uid);
            me.queue.add(&key);
        });
    }

    /// kubelet's last status for a deleted pod whose containers stopped: a final phase (Failed unless every
    /// container succeeded), so that whoever keeps the object past the node's delete (a finalizer, a Job
    /// counting failed pods) sees how it ended rather than Running. A pod already over keeps its status.
    async fn write_final_status(&self, key: &str, pod: &Pod, uid: &str) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        let observed = Observed {
            terminal: true,
            ..self.observed_runs(pod, uid)
        };
        if let Err(e) = self.write_status(pod, &observed, self.clock.now()).await {
            tracing::debug!(pod = %key, error = %e, "the final status of a deleted pod");
        }
    }

    /// Stops a container within the pod's grace period, once however many syncs ask for it meanwhile, and
    /// looks at the pod again when it has stopped.
    fn stop_in_background(self: &Arc<Self>, pod: &Pod, container: String, id: String, why: &str) {
        if !self.stopping.lock().expect("lock").insert(id.clone()) {
            return;
        }
        self.events.normal(
            self.clock.as_ref(),
            &container_involved(pod, &container),
            "Killing",
            why,
        );
        let grace = container_grace(pod, None);
        let (me, key, pod) = (self.clone(), key_of(&pod.metadata), pod.clone());
        tokio::spawn(async move {
            me.stop_container(&pod, &container, &id, grace).await;
            me.stopping.lock().expect("lock").remove(&id);
            me.queue.add(&key);
        });
    }

    /// (id, container name) of the pod's containers that have a process.
    pub(super) fn running_containers(&self, uid: &str) -> Vec<(String, String)> {
        self.running_metas(uid)
            .into_iter()
            .map(|m| (m.id, m.container))
            .collect()
    }

    /// The records of the pod's containers that have a process.
    pub(super) fn running_metas(&self, uid: &str) -> Vec<ContainerMeta> {
        self.runtime
            .list_pod(uid)
            .into_iter()
            .filter(|m| matches!(self.runtime.state(&m.id), Ok(ContainerState::Running(_))))
            .collect()
    }

    /// Stops every container of the pod, all at once, each with `grace` (preStop hooks included when the
    /// pod is known).
    pub(super) async fn kill_pod(&self, uid: &str, pod: Option<&Pod>, grace: Duration) {
        let stops = self
            .running_containers(uid)
            .into_iter()
            .map(|(id, name)| async move {
                match pod {
                    Some(pod) => self.stop_container(pod, &name, &id, grace).await,
                    None => self.terminate(&id, grace).await,
                }
            });
        futures_util::future::join_all(stops).await;
    }

    /// kubelet's killContainer: the preStop hook within the grace period (none when that is 0), then
    /// SIGTERM and, when the rest of the grace period is over but never sooner than [`MIN_STOP_WINDOW`]
    /// after it, SIGKILL.
    pub(super) async fn stop_container(&self, pod: &Pod, name: &str, id: &str, grace: Duration) {
        let started = std::time::Instant::now();
        let container = pod.spec.as_ref().and_then(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(&s.containers)
                .find(|c| c.name == name)
        });
        let pre_stop = container.and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref());
        if let (Some(hook), Some(c), false) = (pre_stop, container, grace.is_zero()) {
            let target = probes::target(pod, c, id);
            // One still running when the grace period is over is only cut short, as kubelet does.
            if let Err(probes::HookError::Failed(why)) =
                probes::run_hook(self, pod, c, hook, &target, grace).await
            {
                tracing::warn!(error = %why, "a preStop hook failed");
                // kubelet keeps the why out of the event: a hook's command and output can hold secrets.
                self.events.warning(
                    self.clock.as_ref(),
                    &container_involved(pod, name),
                    "FailedPreStopHook",
                    "PreStopHook failed",
                );
            }
        }
        self.terminate(id, grace.saturating_sub(started.elapsed()))
            .await;
    }

    /// SIGTERM, then SIGKILL once `left` is over, but never sooner than [`MIN_STOP_WINDOW`] after it.
    async fn terminate(&self, id: &str, left: Duration) {
        let stopped = self.runtime.stop(id, left.max(MIN_STOP_WINDOW)).await;
        warn_unless_stopped(id, stopped);
    }

    /// Removes what a pod had on the node once its containers are stopped.
    pub(super) async fn release_pod(&self, uid: &str) {
        // The uid names directories that are removed whole.
        if uid.is_empty() || uid.starts_with('.') || uid.contains('/') {
            tracing::warn!(pod = %uid, "not releasing a pod whose uid is no file name");
            return;
        }
        let metas = self.runtime.list_pod(uid);
        // The pod's log directories, from where its runs log (`<dir>/<container>/<restart>.log`):
        // no scan of a log root that holds every pod's.
        let log_dirs: std::collections::BTreeSet<PathBuf> = metas
            .iter()
            .filter_map(|meta| Some(meta.log_path.parent()?.parent()?.to_path_buf()))
            .collect();
        for meta in metas {
            self.probes.forget(&meta.id);
            self.killed_for_restart
                .lock()
                .expect("lock")
                .remove(&meta.id);
            if let Err(e) = self.runtime.remove(&meta.id) {
                tracing::warn!(container = %meta.id, error = %e, "removing a container");
            }
        }
        if let Err(e) = self.network.remove_sandbox(uid).await {
            tracing::warn!(pod = %uid, error = %e, "removing the pod network (tried again later)");
            self.leftover_sandboxes
                .lock()
                .expect("lock")
                .insert(uid.to_string());
        }
        sandbox::release(&self.config.run_dir, uid);
        volumes::tear_down(&sandbox::pod_dir(&self.config.data_dir, uid));
        // As kubelet removes the log directories of pods that are gone.
        for dir in &log_dirs {
            remove_logs(uid, dir);
        }
        if !pod_cgroup::remove(Path::new(pod_cgroup::ROOT), uid) {
            self.leftover_cgroups
                .lock()
                .expect("lock")
                .insert(uid.to_string());
        }
        self.backoff.forget_pod(uid);
        self.image_backoff.forget_pod(uid);
        self.mount_backoff.forget_pod(uid);
        self.admissions.lock().expect("lock").remove(uid);
        self.forget_allocation(uid);
        let prefix = format!("{uid}/");
        self.start_failures
            .lock()
            .expect("lock")
            .retain(|k, _| !k.starts_with(&prefix));
        self.pull_failures
            .lock()
            .expect("lock")
            .retain(|k, _| !k.starts_with(&prefix));
    }

    /// Removes containers, sandboxes, pod directories and logs of pods this node no longer has, and
    /// containers a dead shim left in `created`: after an agent restart, what happened meanwhile.
    pub(super) async fn clean_up_orphans(&self) {
        let live: std::collections::HashSet<String> = self
            .pods
            .list()
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let mut orphans = std::collections::BTreeSet::new();
        for meta in self.runtime.list() {
            if !live.contains(&meta.pod_uid) {
                orphans.insert(meta.pod_uid.clone());
            } else if matches!(self.runtime.state(&meta.id), Ok(ContainerState::Created))
                && self.runtime.is_abandoned(&meta.id)
            {
                let _ = self.runtime.remove(&meta.id);
            }
        }
        let sandboxes = self.network.sandboxes().unwrap_or_default();
        for uid in sandboxes
            .into_iter()
            .chain(sandbox::sandbox_owners(&self.config.run_dir))
        {
            if !live.contains(&uid) {
                orphans.insert(uid);
            }
        }
        // All at once: each takes the least grace period when its containers ignore SIGTERM.
        let removals = orphans.into_iter().map(|uid| async move {
            tracing::info!(pod = %uid, "removing what is left of a pod that is gone");
            self.kill_pod(&uid, None, Duration::from_secs(MIN_POD_GRACE))
                .await;
            self.release_pod(&uid).await;
        });
        futures_util::future::join_all(removals).await;
        // Logs of pods whose runs were removed before (or by an orch that did not remove logs).
        for (uid, dir) in sandbox::log_dirs(&self.config.log_root, &self.config.data_dir) {
            if !live.contains(&uid) {
                remove_logs(&uid, &dir);
            }
        }
    }

    /// The runs of the pod's containers by name; older runs than the previous one are removed.
    pub(super) fn runs(
        &self,
        uid: &str,
    ) -> (HashMap<String, Runs>, HashMap<String, ContainerMeta>) {
        let mut by_name: HashMap<String, Vec<(ContainerMeta, ContainerState)>> = HashMap::new();
        for meta in self.runtime.list_pod(uid) {
            if let Ok(state) = self.runtime.state(&meta.id) {
                by_name
                    .entry(meta.container.clone())
                    .or_default()
                    .push((meta, state));
            }
        }
        let mut runs = HashMap::new();
        let mut latest_meta = HashMap::new();
        for (name, mut list) in by_name {
            list.sort_by_key(|(m, _)| std::cmp::Reverse(m.attempt));
            for (old, _) in list.iter().skip(2) {
                self.killed_for_restart
                    .lock()
                    .expect("lock")
                    .remove(&old.id);
                let _ = self.runtime.remove(&old.id);
            }
            let to_run = |(m, s): &(ContainerMeta, ContainerState)| Run {
                id: m.id.clone(),
                attempt: m.attempt,
                state: s.clone(),
                spec_hash: m.spec_hash.clone(),
            };
            if let Some(first) = list.first() {
                latest_meta.insert(name.clone(), first.0.clone());
            }
            runs.insert(
                name,
                Runs {
                    latest: list.first().map(to_run),
                    previous: list.get(1).map(to_run),
                },
            );
        }
        (runs, latest_meta)
    }

    /// Records today's hash for the runs an agent from before in-place resize recorded (see
    /// [`rehashed_runs`]).
    fn record_hashes(&self, rehashed: Vec<(String, String)>) {
        for (id, hash) in rehashed {
            if let Err(e) = self.runtime.update_meta(&id, |m| m.spec_hash = hash) {
                tracing::warn!(container = %id, error = %e, "recording a container's spec hash");
            }
        }
    }

    async fn fetch_sources(&self, pod: &Pod) -> Sources {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let spec = pod.spec.as_ref().expect("pods have a spec");
        let (mut cms, mut secrets) = volumes::referenced(pod);
        for c in &container::all(spec) {
            let (c_cms, c_secrets) = env::referenced(c);
            cms.extend(c_cms);
            secrets.extend(c_secrets);
        }
        secrets.extend(
            spec.image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone()),
        );
        let mut sources = Sources::default();
        for name in cms {
            if sources.config_maps.contains_key(&name) {
                continue;
            }
            let found = self
                .get_typed::<ConfigMap>(&format!(
                    "/api/v1/namespaces/{namespace}/configmaps/{name}"
                ))
                .await;
            sources.config_maps.insert(name, found);
        }
        for name in secrets {
            if sources.secrets.contains_key(&name) {
                continue;
            }
            let found = self
                .get_typed::<Secret>(&format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
                .await;
            sources.secrets.insert(name, found);
        }
        sources
    }

    async fn get_typed<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        let value = self.client.get(path).await.ok()?;
        serde_json::from_value(value).ok()
    }

    /// Claim name → its bound local or hostPath volume (made when missing).
    async fn claimed_volumes(&self, pod: &Pod) -> HashMap<String, volumes::Claimed> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut out = HashMap::new();
        for claim in volumes::claims(pod) {
            let Some(pvc) = self
                .get_typed::<PersistentVolumeClaim>(&format!(
                    "/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}"
                ))
                .await
            else {
                continue;
            };
            let Some(volume) = pvc
                .spec
                .and_then(|s| s.volume_name)
                .filter(|v| !v.is_empty())
            else {
                continue;
            };
            let Some(pv) = self
                .get_typed::<PersistentVolume>(&format!("/api/v1/persistentvolumes/{volume}"))
                .await
            else {
                continue;
            };
            let provisioner = pv
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::api::meta::PROVISIONED_BY));
            let local_path =
                provisioner.map(String::as_str) == Some(crate::api::meta::LOCAL_PATH_PROVISIONER);
            // kubelet ignores a value that is not a number.
            let group = pv
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(VOLUME_GID))
                .and_then(|g| g.parse().ok());
            let spec = pv.spec.unwrap_or_default();
            let claimed = match (spec.host_path, spec.local) {
                (Some(h), _) => volumes::Claimed {
                    path: PathBuf::from(h.path),
                    owned_by_pod: false,
                    group,
                },
                (None, Some(l)) => volumes::Claimed {
                    path: PathBuf::from(l.path),
                    owned_by_pod: true,
                    group,
                },
                (None, None) => continue,
            };
            if !claimed.path.exists() {
                // k3s's local-path provisioner makes a volume's directory world-writable (its helper
                // runs `mkdir -m 0777`), so that pods that do not run as root can use it.
                let mode = if local_path { 0o777 } else { 0o755 };
                volumes::make_dir(&claimed.path, mode);
            }
            out.insert(claim, claimed);
        }
        out
    }

    /// The node's memory capacity in bytes, as its status reports it (the machine's before it does).
    fn node_memory(&self) -> i64 {
        let reported = self.node.get(&self.config.node_name).and_then(|n| {
            let memory = n.status.as_ref()?.capacity.as_ref()?.get("memory")?;
            crate::api::quantity::parse_quantity(&memory.0).ok()
        });
        match reported {
            Some(q) => q.to_bytes() as i64,
            None => nix::sys::sysinfo::sysinfo().map_or(0, |i| i.ram_total() as i64),
        }
    }

    fn allocatable(&self) -> BTreeMap<String, Quantity> {
        self.node
            .get(&self.config.node_name)
            .and_then(|n| n.status.as_ref()?.allocatable.clone())
            .unwrap_or_default()
    }

    async fn sync_running(
        self: &Arc<Self>,
        pod: &Pod,
        uid: &str,
    ) -> Result<Option<Duration>, AgentError> {
        let spec = pod.spec.clone().expect("pods have a spec");
        let now = self.clock.now();
        let mut observed = Observed {
            host_ip: self.config.node_ip.to_string(),
            resize: self.resize_state(uid),
            ..Default::default()
        };
        let mut requeue: Option<Duration> = None;
        let soon = |d: Duration, requeue: &mut Option<Duration>| {
            *requeue = Some(requeue.map_or(d, |r| r.min(d)));
        };

        // Soft admission: the pod waits, Pending, for what it needs of the node. One that already runs
        // containers (started by an agent that did not check) keeps them.
        let refusal = apparmor::refusal(pod, self.apparmor_enabled)
            .filter(|_| self.runtime.list_pod(uid).is_empty());
        if let Some(message) = refusal {
            let observed = Observed {
                blocked: Some(Blocked {
                    reason: apparmor::REASON.into(),
                    message,
                }),
                ..observed
            };
            self.write_status(pod, &observed, now).await?;
            return Ok(Some(super::RESYNC));
        }

        // The sandbox: namespaces and address, etc files, volumes.
        let namespaces = match self.create_sandbox(pod, uid, &mut observed).await {
            Ok(namespaces) => namespaces,
            Err(e) => {
                self.events.warning(
                    self.clock.as_ref(),
                    &involved(pod),
                    "FailedCreatePodSandBox",
                    &format!("Failed to create pod sandbox: {e}"),
                );
                self.write_status(pod, &observed, now).await?;
                return Ok(Some(Duration::from_secs(5)));
            }
        };
        // The addresses kubelet knows before the status shows them: for the env (status.podIP,
        // status.hostIP) of the first containers, and for hooks and probes.
        let addressed = with_addresses(pod, &observed);
        let pod_dir = sandbox::pod_dir(&self.config.data_dir, uid);
        let net = sandbox::Network {
            pod_ip: observed.pod_ip.as_deref().and_then(|ip| ip.parse().ok()),
            cluster_dns: self.config.cluster_dns,
            cluster_domain: &self.config.cluster_domain,
        };
        let run_pod_dir = sandbox::run_pod_dir(&self.config.run_dir, uid);
        let etc_mounts = sandbox::prepare(&run_pod_dir, pod, &net).map_err(AgentError::Config)?;
        let sources = self.fetch_sources(pod).await;
        let claims = self.claimed_volumes(pod).await;
        let downward_limits = env::downward_api_limits(pod, self.allocatable());
        let vcx = volumes::Context {
            pod,
            pod_dir: &pod_dir,
            sources: &sources,
            claims: &claims,
            allocatable: &downward_limits,
        };
        let mut prepared = HashMap::new();
        for volume in spec.volumes.iter().flatten() {
            let retry_key = backoff::key(uid, &format!("volume:{}", volume.name));
            let started = std::time::Instant::now();
            // A volume that failed is tried again once its back-off is over, not at every sync.
            let retry = match self.mount_backoff.remaining(&retry_key, started) {
                Some(remaining) => remaining,
                None => match volumes::prepare(&vcx, volume) {
                    Ok(p) => {
                        self.mount_backoff.succeeded(&retry_key);
                        prepared.insert(volume.name.clone(), p);
                        continue;
                    }
                    Err(e) => {
                        self.events.warning(
                            self.clock.as_ref(),
                            &involved(pod),
                            "FailedMount",
                            &format!(
                                "MountVolume.SetUp failed for volume \"{}\" : {e}",
                                volume.name
                            ),
                        );
                        self.mount_backoff.failed(&retry_key, started)
                    }
                },
            };
            // A pod whose containers ran goes on without it (what mounts it fails to start), as kubelet
            // does not hold a running pod's sync for a volume; a new pod waits for all its volumes.
            if !self.runtime.list_pod(uid).is_empty() {
                soon(retry, &mut requeue);
                continue;
            }
            let (runs, _) = self.runs(uid);
            observed.runs = runs;
            self.write_status(pod, &observed, now).await?;
            return Ok(Some(retry));
        }

        let hashes: HashMap<String, String> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| (c.name.clone(), spec_hash(c)))
            .collect();
        let (mut runs, mut metas) = self.runs(uid);
        self.record_hashes(rehashed_runs(&spec, &mut runs, &hashes));
        note_latest_runs(&mut observed, &metas);
        let notes = plan::RunNotes {
            killed_for_restart: self.killed_for_restart.lock().expect("lock").clone(),
            not_started: runs
                .values()
                .filter_map(|r| r.latest.as_ref())
                .filter(|run| matches!(run.state, ContainerState::Running(_)))
                .filter(|run| self.probes.get(&run.id).is_none_or(|p| !p.started))
                .map(|run| run.id.clone())
                .collect(),
        };
        let plan = plan::plan(uid, &spec, &runs, &hashes, &notes, &self.backoff, now);
        observed.failed_init = plan.failed_init;
        for (name, delay) in &plan.backing_off {
            observed.waiting.insert(
                name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: format!(
                        "back-off {} restarting failed container={name} pod={}",
                        crate::util::go_duration(delay.as_nanos() as i64),
                        pod_ref(pod)
                    ),
                },
            );
            self.events.warning(
                self.clock.as_ref(),
                &container_involved(pod, name),
                "BackOff",
                &format!(
                    "Back-off restarting failed container {name} in pod {}",
                    pod_ref(pod)
                ),
            );
        }
        if let Some(r) = plan.requeue {
            soon(r, &mut requeue);
        }
        observed.runs = runs;
        // Before anything starts, so that it starts under the pod's new limits.
        self.actuate_resize(pod, uid, &observed.runs, &metas, &hashes);
        observed.resize = self.resize_state(uid);

        let mut started_any = false;
        let mut started_now: Vec<String> = Vec::new();
        for action in plan.actions {
            match action {
                Action::Kill { id, container } => {
                    self.killed_for_restart
                        .lock()
                        .expect("lock")
                        .insert(id.clone());
                    let resized = observed
                        .runs
                        .get(&container)
                        .and_then(|r| r.latest.as_ref())
                        .zip(hashes.get(&container))
                        .is_some_and(|(run, hash)| same_spec(&run.spec_hash, hash));
                    let why = if resized {
                        format!("Container {container} resize requires restart")
                    } else {
                        format!("Container {container} definition changed, will be restarted")
                    };
                    self.stop_in_background(pod, container, id, &why);
                }
                Action::Stop { id, container } => {
                    let why = format!("Stopping container {container}");
                    self.stop_in_background(pod, container, id, &why);
                }
                Action::Start {
                    container,
                    init,
                    attempt,
                } => {
                    let (spec_container, target) = container::in_spec(&spec, &container)
                        .expect("planned containers are in the spec");
                    let failure_key = backoff::key(uid, &container);
                    let target = match target {
                        Some(target) => match running_init(&observed.runs, &target) {
                            Some(process) => Some((target, process)),
                            None => {
                                let waiting = target_not_running(&target);
                                observed.waiting.insert(container.clone(), waiting);
                                soon(super::RESYNC, &mut requeue);
                                continue;
                            }
                        },
                        None => None,
                    };
                    let start = StartRequest {
                        pod: &addressed,
                        uid,
                        container: &spec_container,
                        init,
                        attempt,
                        namespaces: namespaces.clone(),
                        target,
                        etc_mounts: &etc_mounts,
                        volumes: &prepared,
                        sources: &sources,
                        allocatable: &downward_limits,
                        hash: hashes.get(&container).cloned().unwrap_or_default(),
                    };
                    if let Some((waiting, remaining)) = self.recent_start_failure(&failure_key) {
                        observed.waiting.insert(container.clone(), waiting);
                        soon(remaining, &mut requeue);
                        continue;
                    }
                    match self.start_container(start).await {
                        Ok(()) => {
                            started_now.push(container.clone());
                            self.start_failures
                                .lock()
                                .expect("lock")
                                .remove(&failure_key);
                            started_any = true;
                        }
                        Err(StartFailure::Terminated) => {
                            started_any = true;
                            soon(Duration::ZERO, &mut requeue);
                        }
                        Err(StartFailure::Waiting(w, retry)) => {
                            // Pull failures have their own back-off in ensure_image.
                            if !matches!(w.reason.as_str(), "ErrImagePull" | "ImagePullBackOff") {
                                self.start_failures.lock().expect("lock").insert(
                                    failure_key,
                                    (std::time::Instant::now(), w.clone(), retry),
                                );
                            }
                            observed.waiting.insert(container.clone(), w);
                            soon(retry, &mut requeue);
                        }
                    }
                }
            }
        }
        if started_any {
            let (runs, latest) = self.runs(uid);
            observed.runs = runs;
            metas = latest;
            note_latest_runs(&mut observed, &metas);
        }
        self.run_post_start_hooks(&addressed, &started_now, &observed)
            .await;
        self.apply_probes(&addressed, &mut observed);
        self.collect_termination_messages(pod, &mut observed);
        self.watch_exits(pod, &observed);
        self.write_status(pod, &observed, now).await?;
        Ok(requeue)
    }

    /// The namespaces the pod's containers share: its network namespace with the pod's address (into
    /// `observed`; the node's for hostNetwork), and its IPC and UTS namespaces.
    async fn create_sandbox(
        &self,
        pod: &Pod,
        uid: &str,
        observed: &mut Observed,
    ) -> Result<container::PodNamespaces, String> {
        // Decided before anything is made, as kubelet decides them making the sandbox's config; a pod
        // whose containers already run keeps its sandbox.
        if let Some(why) = sandbox::unsupported(pod) {
            if !self.network.has_sandbox(uid) && self.runtime.list_pod(uid).is_empty() {
                return Err(why);
            }
        }
        sandbox::hostname(pod, &self.config.cluster_domain)?;
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let netns = if host_network {
            observed.pod_ip = Some(self.config.node_ip.to_string());
            None
        } else {
            // Containers ran, in a network namespace that is gone (the node rebooted): kubelet's word
            // for what the new sandbox means to them.
            if !self.network.has_sandbox(uid) && !self.runtime.list_pod(uid).is_empty() {
                self.events.normal(
                    self.clock.as_ref(),
                    &involved(pod),
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.",
                );
            }
            let sysctls = sysctls::of_namespace(pod, sysctls::SysctlNamespace::Net);
            // Beside the pod's etc files on the run dir's tmpfs: gone with the pod, and with the
            // namespace when the node reboots.
            let set_marker = sandbox::run_pod_dir(&self.config.run_dir, uid).join(NET_SYSCTLS_SET);
            let set = sysctls.is_empty() || set_marker.exists();
            let sandbox = self
                .network
                .create_sandbox(uid, &sysctls, set)
                .await
                .map_err(|e| e.to_string())?;
            if !set {
                std::fs::create_dir_all(set_marker.parent().expect("in the pod's run dir"))
                    .and_then(|()| std::fs::write(&set_marker, ""))
                    .map_err(|e| format!("recording {}: {e}", set_marker.display()))?;
            }
            self.network
                .set_host_ports(uid, sandbox.ip, sandbox::host_ports(pod))
                .await
                .map_err(|e| e.to_string())?;
            observed.pod_ip = Some(sandbox.ip.to_string());
            Some(sandbox.netns_path)
        };
        let (ipc, uts) =
            sandbox::ensure_namespaces(&self.config.run_dir, uid, pod, &self.config.cluster_domain)
                .await?;
        pod_cgroup::create(
            Path::new(pod_cgroup::ROOT),
            uid,
            &container::pod_resources(pod),
        )
        .map_err(|e| e.to_string())?;
        let spec = pod.spec.as_ref();
        let pid = if spec.and_then(|s| s.host_pid) == Some(true) {
            SharedNamespace::Host
        } else if spec.and_then(|s| s.share_process_namespace) == Some(true) {
            SharedNamespace::Pod(
                sandbox::ensure_pid_namespace(
                    &self.config.run_dir,
                    uid,
                    &self.config.shim_executable,
                )
                .await?,
            )
        } else {
            SharedNamespace::Own
        };
        Ok(container::PodNamespaces {
            netns,
            pid,
            ipc,
            uts,
        })
    }

    /// postStart hooks of the containers just started; a failed hook kills its container, as kubelet does.
    async fn run_post_start_hooks(&self, pod: &Pod, started: &[String], observed: &Observed) {
        let spec = pod.spec.as_ref().expect("pods have a spec");
        for name in started {
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| plan::is_sidecar(c));
            let Some(c) = sidecars.chain(&spec.containers).find(|c| &c.name == name) else {
                continue;
            };
            let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
                continue;
            };
            let Some(run) = observed.runs.get(name).and_then(|r| r.latest.as_ref()) else {
                continue;
            };
            let target = probes::target(pod, c, &run.id);
            if let Err(e) = probes::run_hook(self, pod, c, hook, &target, POST_START_LIMIT).await {
                match e {
                    probes::HookError::Failed(why) => {
                        tracing::warn!(error = %why, "a postStart hook failed")
                    }
                    probes::HookError::Unfinished => tracing::warn!(
                        pod = %pod_ref(pod),
                        container = %name,
                        "a postStart hook did not finish within {}",
                        crate::util::go_duration(POST_START_LIMIT.as_nanos() as i64)
                    ),
                }
                // kubelet keeps the why out of the event: a hook's command and output can hold secrets.
                self.events.warning(
                    self.clock.as_ref(),
                    &container_involved(pod, name),
                    "FailedPostStartHook",
                    "PostStartHook failed",
                );
                // kubelet's killContainer names the reason as the whole message here.
                self.events.normal(
                    self.clock.as_ref(),
                    &container_involved(pod, name),
                    "Killing",
                    "FailedPostStartHook",
                );
                self.stop_container(pod, name, &run.id, container_grace(pod, None))
                    .await;
            }
        }
    }

    /// Starts the probes of running containers that have none yet (just started, or adopted after an
    /// agent restart) and reads what the probes found into the status.
    fn apply_probes(self: &Arc<Self>, pod: &Pod, observed: &mut Observed) {
        let spec = pod.spec.as_ref().expect("pods have a spec");
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| plan::is_sidecar(c));
        for c in sidecars.chain(&spec.containers) {
            let Some(run) = observed.runs.get(&c.name).and_then(|r| r.latest.clone()) else {
                continue;
            };
            let ContainerState::Running(process) = &run.state else {
                continue;
            };
            if self.probes.get(&run.id).is_none() {
                probes::spawn(self.clone(), pod, c, &run.id, process.started_at_unix);
            }
            if let Some(state) = self.probes.get(&run.id) {
                observed.readiness.insert(c.name.clone(), state.ready);
                observed.started.insert(c.name.clone(), state.started);
            }
        }
    }

    /// A task per running container that re-queues the pod when the container exits.
    fn watch_exits(self: &Arc<Self>, pod: &Pod, observed: &Observed) {
        let key = crate::client::informer::key_of(&pod.metadata);
        for runs in observed.runs.values() {
            let Some(run) = &runs.latest else { continue };
            if !matches!(
                run.state,
                ContainerState::Running(_) | ContainerState::Created
            ) {
                continue;
            }
            if !self.watched.lock().expect("lock").insert(run.id.clone()) {
                continue;
            }
            let me = self.clone();
            let id = run.id.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let _ = me.runtime.wait(&id).await;
                me.watched.lock().expect("lock").remove(&id);
                me.queue.add(&key);
            });
        }
    }

    /// The termination message of every exited run kept (the latest and the one before, for lastState).
    pub(super) fn collect_termination_messages(&self, pod: &Pod, observed: &mut Observed) {
        let spec = pod.spec.as_ref().expect("pods have a spec");
        for c in &container::all(spec) {
            let Some(runs) = observed.runs.get(&c.name) else {
                continue;
            };
            let messages: Vec<(String, String)> = [&runs.latest, &runs.previous]
                .into_iter()
                .flatten()
                .filter_map(|run| {
                    let ContainerState::Exited(exit) = &run.state else {
                        return None;
                    };
                    let message = self.termination_message(c, run, exit.exit_code);
                    (!message.is_empty()).then(|| (run.id.clone(), message))
                })
                .collect();
            observed.termination_messages.extend(messages);
        }
    }

    /// kubelet's message for an exited run: the end of its terminationMessagePath file, or with
    /// FallbackToLogsOnError and a failure, the end of its log when that file is empty.
    fn termination_message(&self, c: &Container, run: &Run, exit_code: i32) -> String {
        let message = std::fs::read(self.runtime.termination_log(&run.id))
            .map(|b| {
                String::from_utf8_lossy(&b[b.len().saturating_sub(MAX_TERMINATION_MESSAGE)..])
                    .into_owned()
            })
            .unwrap_or_default();
        if message.is_empty()
            && exit_code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            let log = self.runtime.meta(&run.id).map(|meta| meta.log_path);
            return log.map(|log| log_tail(&log)).unwrap_or_default();
        }
        message
    }

    pub(super) async fn write_status(
        &self,
        pod: &Pod,
        observed: &Observed,
        now: jiff::Timestamp,
    ) -> Result<(), AgentError> {
        let status = status::pod_status(pod, observed, now);
        let new = serde_json::to_value(&status).unwrap_or_default();
        let old = serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
        if new == old {
            return Ok(());
        }
        let path = format!(
            "/api/v1/namespaces/{}/pods/{}/status",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": new});
        match self.client.merge_patch(&path, &patch).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The image for a container: local when the policy allows, pulled otherwise, behind the pull
    /// back-off; failures become ErrImagePull / ImagePullBackOff / ErrImageNeverPull.
    async fn ensure_image(
        &self,
        pod: &Pod,
        uid: &str,
        c: &Container,
        sources: &Sources,
    ) -> Result<Image, StartFailure> {
        let image = c.image.clone().unwrap_or_default();
        let policy = c
            .image_pull_policy
            .as_deref()
            .and_then(PullPolicy::from_api)
            .unwrap_or_else(|| PullPolicy::default_for(&image));
        let wait = |reason: &str, message: String, retry: Duration| {
            StartFailure::Waiting(
                Waiting {
                    reason: reason.into(),
                    message,
                },
                retry,
            )
        };
        // Not worth a pull or its back-off: kubelet reports the name and waits for a new spec.
        if crate::agent::image::reference::Reference::parse(&image).is_err() {
            let message = format!(
                "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": \
                 invalid reference format"
            );
            self.events.warning(
                self.clock.as_ref(),
                &container_involved(pod, &c.name),
                "InspectFailed",
                &message,
            );
            return Err(wait("InvalidImageName", message, Duration::from_secs(10)));
        }
        let local = self.images.local(&image).ok().flatten();
        match (policy, local) {
            (PullPolicy::IfNotPresent | PullPolicy::Never, Some(img)) => {
                self.events.normal(
                    self.clock.as_ref(),
                    &container_involved(pod, &c.name),
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(img);
            }
            (PullPolicy::Never, None) => {
                let message =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.events.warning(
                    self.clock.as_ref(),
                    &container_involved(pod, &c.name),
                    "ErrImageNeverPull",
                    &message,
                );
                return Err(wait("ErrImageNeverPull", message, Duration::from_secs(10)));
            }
            _ => {}
        }
        let key = backoff::key(uid, &format!("image:{image}"));
        // A failed pull is retried behind the back-off; the last failure is what it reports meanwhile.
        if let Some((last, why)) = self.last_pull_failure(&key) {
            if let Decision::Wait { remaining, .. } =
                self.image_backoff
                    .decide(&key, last.elapsed(), Duration::ZERO)
            {
                let backing_off = format!("Back-off pulling image \"{image}\"");
                let about = container_involved(pod, &c.name);
                let clock = self.clock.as_ref();
                self.events.normal(clock, &about, "BackOff", &backing_off);
                self.events
                    .warning(clock, &about, "Failed", "Error: ImagePullBackOff");
                return Err(wait(
                    "ImagePullBackOff",
                    format!("{backing_off}: ErrImagePull: {why}"),
                    remaining,
                ));
            }
        }
        self.events.normal(
            self.clock.as_ref(),
            &container_involved(pod, &c.name),
            "Pulling",
            &format!("Pulling image \"{image}\""),
        );
        let secrets = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default();
        let secret_data: Vec<(String, BTreeMap<String, Vec<u8>>)> = secrets
            .iter()
            .filter_map(|r| sources.secrets.get(&r.name)?.clone())
            .map(|s| {
                (
                    s.type_.unwrap_or_default(),
                    s.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                )
            })
            .collect();
        let creds = Credentials::from_secrets(secret_data.iter().map(|(t, d)| (t.as_str(), d)))
            .unwrap_or_default();
        let started = std::time::Instant::now();
        match self.images.pull(&image, &creds, &|_| {}).await {
            Ok(img) => {
                self.pull_failures.lock().expect("lock").remove(&key);
                self.events.normal(
                    self.clock.as_ref(),
                    &container_involved(pod, &c.name),
                    "Pulled",
                    &{
                        // Pulls are not queued behind each other here: no time is spent waiting.
                        let took = crate::util::go_duration(
                            (started.elapsed().as_millis() * 1_000_000) as i64,
                        );
                        format!(
                            "Successfully pulled image \"{image}\" in {took} ({took} including \
                             waiting). Image size: {} bytes.",
                            img.size
                        )
                    },
                );
                Ok(img)
            }
            Err(e) => {
                let message = format!("Failed to pull image \"{image}\": {e}");
                self.events.warning(
                    self.clock.as_ref(),
                    &container_involved(pod, &c.name),
                    "Failed",
                    &message,
                );
                self.events.warning(
                    self.clock.as_ref(),
                    &container_involved(pod, &c.name),
                    "Failed",
                    "Error: ErrImagePull",
                );
                self.pull_failures
                    .lock()
                    .expect("lock")
                    .insert(key.clone(), (std::time::Instant::now(), e.to_string()));
                self.image_backoff
                    .decide(&key, Duration::ZERO, Duration::ZERO);
                Err(wait("ErrImagePull", message, backoff::INITIAL))
            }
        }
    }

    /// A start failure still within its retry time: what to report and how long until the retry.
    fn recent_start_failure(&self, key: &str) -> Option<(Waiting, Duration)> {
        let failures = self.start_failures.lock().expect("lock");
        let (at, waiting, retry) = failures.get(key)?;
        let elapsed = at.elapsed();
        (elapsed < *retry).then(|| (waiting.clone(), *retry - elapsed))
    }

    /// Records kubelet's `Failed` event ("Error: <message>") for a container that could not start.
    fn failed(&self, pod: &Pod, container: &str, failure: StartFailure) -> StartFailure {
        if let StartFailure::Waiting(waiting, _) = &failure {
            self.failed_event(pod, container, &waiting.message);
        }
        failure
    }

    fn failed_event(&self, pod: &Pod, container: &str, message: &str) {
        self.events.warning(
            self.clock.as_ref(),
            &container_involved(pod, container),
            "Failed",
            &format!("Error: {message}"),
        );
    }

    fn last_pull_failure(&self, key: &str) -> Option<(std::time::Instant, String)> {
        self.pull_failures.lock().expect("lock").get(key).cloned()
    }

    async fn start_container(&self, req: StartRequest<'_>) -> Result<(), StartFailure> {
        let StartRequest {
            pod,
            uid,
            container: c,
            init,
            attempt,
            mut namespaces,
            target,
            etc_mounts,
            volumes: prepared,
            sources,
            allocatable,
            hash,
        } = req;
        let image = self.ensure_image(pod, uid, c, sources).await?;
        // Looked at again after the pull, which can take long: a target that ended meanwhile must not
        // lend its pid to whatever process has it now.
        if let Some((target, process)) = target {
            if !process.is_alive() {
                return Err(StartFailure::Waiting(
                    target_not_running(&target),
                    super::RESYNC,
                ));
            }
            namespaces.pid =
                SharedNamespace::Pod(PathBuf::from(format!("/proc/{}/ns/pid", process.pid)));
        }
        let config_error = |message: String| {
            StartFailure::Waiting(
                Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message,
                },
                Duration::from_secs(2),
            )
        };
        let env = match env::environment(pod, c, sources, allocatable) {
            Ok(env) => env,
            Err(message) => return Err(self.failed(pod, &c.name, config_error(message))),
        };
        let id = new_container_id();
        let mut mounts = etc_mounts.to_vec();
        match volumes::mounts(c, prepared, &env) {
            Ok(m) => mounts.extend(m),
            Err(message) => return Err(self.failed(pod, &c.name, config_error(message))),
        }
        let hostname = match sandbox::hostname(pod, &self.config.cluster_domain) {
            Ok(hostname) => hostname,
            Err(message) => return Err(self.failed(pod, &c.name, config_error(message))),
        };
        let create_error = |message: String| {
            StartFailure::Waiting(
                Waiting {
                    reason: "CreateContainerError".into(),
                    message,
                },
                Duration::from_secs(5),
            )
        };
        let config = match container::build(container::Inputs {
            pod,
            hostname,
            container: c,
            image: &image.config,
            layers: &image.layers,
            env,
            mounts,
            volume_groups: volumes::groups(prepared),
            namespaces,
            cgroup_path: pod_cgroup::container_path(uid, &id),
            open_files: self.config.container_open_files,
            node_memory: self.node_memory(),
            min_oom_score_adj: self.min_oom_score_adj,
            seccomp_profile_root: &self.config.data_dir.join(SECCOMP_PROFILES),
        }) {
            Ok(config) => config,
            Err(BuildError::Config(message)) => {
                return Err(self.failed(pod, &c.name, config_error(message)))
            }
            Err(BuildError::Runtime(message)) => {
                return Err(self.failed(pod, &c.name, create_error(message)))
            }
        };
        let meta = ContainerMeta {
            id: id.clone(),
            pod_uid: uid.into(),
            pod_namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            container: c.name.clone(),
            attempt,
            init_container: init,
            image: c.image.clone().unwrap_or_default(),
            image_id: image.id.clone(),
            image_ref: image.repo_digest.clone(),
            log_path: sandbox::log_path(&self.config.log_root, pod, &c.name, attempt),
            log_link: Some(sandbox::log_link(&self.config.log_root, pod, &c.name, &id)),
            created_at: jiff::Timestamp::now().to_string(),
            spec_hash: hash,
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            user: Some(ProcessUser {
                uid: config.uid,
                gid: config.gid,
                supplemental_groups: config.additional_gids.clone(),
            }),
            resources: Some(config.resources.clone()),
        };
        // Directories, files flushed to disk and a mount: off the async workers, which the API server
        // shares.
        let runtime = self.runtime.clone();
        let layers = image.layers.clone();
        let created = tokio::task::spawn_blocking(move || runtime.create(&meta, &config, &layers))
            .await
            .unwrap_or_else(|e| {
                Err(RuntimeError::Start {
                    id: id.clone(),
                    message: format!("creating the bundle: {e}"),
                })
            });
        if let Err(e) = created {
            let _ = self.runtime.remove(&id);
            return Err(self.failed(pod, &c.name, create_error(e.to_string())));
        }
        self.events.normal(
            self.clock.as_ref(),
            &container_involved(pod, &c.name),
            "Created",
            &format!("Created container: {}", c.name),
        );
        match self.runtime.start(&id).await {
            Ok(_) => {
                self.events.normal(
                    self.clock.as_ref(),
                    &container_involved(pod, &c.name),
                    "Started",
                    &format!("Started container {}", c.name),
                );
                Ok(())
            }
            Err(e) => {
                // Without the run's id, so that the same failure again counts up one event.
                let why = match e {
                    RuntimeError::Start { message, .. } => message,
                    e => e.to_string(),
                };
                let message = format!("failed to start container \"{}\": {why}", c.name);
                self.failed_event(pod, &c.name, &message);
                match self.runtime.record_start_failure(&id, &message) {
                    Ok(()) => Err(StartFailure::Terminated),
                    Err(record) => {
                        let _ = self.runtime.remove(&id);
                        Err(create_error(format!(
                            "{message} (and recording it: {record})"
                        )))
                    }
                }
            }
        }
    }
}

/// kubelet's calculateEffectiveGracePeriod for a pod it terminates (deleted, past its deadline, or
/// finished with containers left): the deletion's grace period, else the pod's
/// terminationGracePeriodSeconds (default 30), and never under [`MIN_POD_GRACE`]; in seconds.
pub(super) fn pod_grace(pod: &Pod) -> u64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE)
        .max(MIN_POD_GRACE as i64) as u64
}

/// kubelet's setTerminationGracePeriod for a container it stops while its pod lives on (a changed spec,
/// a failed postStart hook, a failed liveness or startup probe, whose own terminationGracePeriodSeconds
/// is `probe_grace`): the deletion's grace period, else the probe's, else the pod's. It may be 0: then
/// the preStop hook is skipped, and SIGKILL still waits [`MIN_STOP_WINDOW`].
pub(super) fn container_grace(pod: &Pod, probe_grace: Option<i64>) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or(probe_grace)
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE);
    Duration::from_secs(seconds.max(0) as u64)
}

/// The pod with the addresses this sync found in its status.
fn with_addresses(pod: &Pod, observed: &Observed) -> Pod {
    let mut addressed = pod.clone();
    let status = addressed.status.get_or_insert_with(Default::default);
    status.pod_ip = observed.pod_ip.clone();
    status.pod_ips = observed
        .pod_ip
        .as_ref()
        .map(|ip| vec![k8s_openapi::api::core::v1::PodIP { ip: ip.clone() }]);
    status.host_ip = Some(observed.host_ip.clone());
    status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP {
        ip: observed.host_ip.clone(),
    }]);
    addressed
}

struct StartRequest<'a> {
    pod: &'a Pod,
    uid: &'a str,
    container: &'a Container,
    init: bool,
    attempt: u32,
    namespaces: container::PodNamespaces,
    /// For an ephemeral container aimed at another (kubectl debug --target): that container, and the
    /// process whose PID namespace it joins.
    target: Option<(String, InitProcess)>,
    etc_mounts: &'a [crate::agent::runtime::MountSpec],
    volumes: &'a HashMap<String, volumes::Prepared>,
    sources: &'a Sources,
    allocatable: &'a BTreeMap<String, Quantity>,
    hash: String,
}

enum StartFailure {
    /// The container waits with this reason; retry after the duration.
    Waiting(Waiting, Duration),
    /// Its process could not be started: the run is recorded as exited (StartError), and the restart
    /// policy decides what follows, as for any exit.
    Terminated,
}

/// Removes a gone pod's log directory; a failure is only a warning.
fn remove_logs(uid: &str, dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(pod = %uid, error = %e, dir = %dir.display(), "removing the pod's logs");
        }
    }
}

/// The end of a CRI log as `kubectl logs --tail` shows it (partial lines joined, each line ending in a
/// newline, bytes that are not UTF-8 replaced): its last [`MAX_FALLBACK_LINES`] lines, at most their
/// last [`MAX_FALLBACK_LOG`] bytes.
fn log_tail(path: &std::path::Path) -> String {
    let records = std::fs::read(path).unwrap_or_default();
    let lines = super::logs::render(&records, &Default::default(), None);
    let tail = lines[lines.len().saturating_sub(MAX_FALLBACK_LINES)..].concat();
    let out = String::from_utf8_lossy(&tail);
    let mut cut = out.len().saturating_sub(MAX_FALLBACK_LOG);
    while !out.is_char_boundary(cut) {
        cut += 1;
    }
    out[cut..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(deletion_grace: Option<i64>, spec_grace: Option<i64>) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                deletion_grace_period_seconds: deletion_grace,
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                termination_grace_period_seconds: spec_grace,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_containers_hash_changes_with_its_resources_only_where_a_resize_restarts_it() {
        let container = |resources: serde_json::Value, policy: serde_json::Value| -> Container {
            serde_json::from_value(serde_json::json!({
                "name": "c", "image": "busybox", "resources": resources, "resizePolicy": policy}))
            .unwrap()
        };
        let small = serde_json::json!({"limits": {"cpu": "100m", "memory": "32Mi"}});
        let big_cpu = serde_json::json!({"limits": {"cpu": "200m", "memory": "32Mi"}});
        let big_memory = serde_json::json!({"limits": {"cpu": "100m", "memory": "64Mi"}});
        let in_place = serde_json::json!([]);
        assert_eq!(
            spec_hash(&container(small.clone(), in_place.clone())),
            spec_hash(&container(big_memory.clone(), in_place.clone()))
        );
        let restart_memory =
            serde_json::json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"}]);
        let before = spec_hash(&container(small.clone(), restart_memory.clone()));
        assert_eq!(
            before,
            spec_hash(&container(big_cpu, restart_memory.clone())),
            "cpu changes in place"
        );
        let after = spec_hash(&container(big_memory, restart_memory.clone()));
        assert_ne!(before, after);
        assert_eq!(
            before.split('.').next(),
            after.split('.').next(),
            "the spec part tells a resize from a new definition"
        );
        let mut new_image = container(small.clone(), restart_memory);
        new_image.image = Some("busybox:1.37".into());
        assert_ne!(
            spec_hash(&new_image).split('.').next(),
            before.split('.').next()
        );
        assert!(!hash_before_resize(&container(small, in_place)).contains('.'));
    }

    #[test]
    fn runs_recorded_before_in_place_resize_keep_running_under_todays_hash() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({"containers": [
            {"name": "same", "image": "busybox", "resources": {"limits": {"cpu": "1"}}},
            {"name": "changed", "image": "busybox:1.37"},
            {"name": "new", "image": "busybox"}]}))
        .unwrap();
        let hashes: HashMap<String, String> = spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), spec_hash(c)))
            .collect();
        let mut older = spec.containers[1].clone();
        older.image = Some("busybox:1.36".into());
        let run = |id: &str, hash: String| plan::Runs {
            latest: Some(Run {
                id: id.into(),
                attempt: 0,
                state: ContainerState::Created,
                spec_hash: hash,
            }),
            previous: None,
        };
        let mut runs: HashMap<String, plan::Runs> = [
            (
                "same".to_string(),
                run("a", hash_before_resize(&spec.containers[0])),
            ),
            ("changed".to_string(), run("b", hash_before_resize(&older))),
            ("new".to_string(), run("c", hashes["new"].clone())),
        ]
        .into_iter()
        .collect();
        let rehashed = rehashed_runs(&spec, &mut runs, &hashes);
        assert_eq!(rehashed, [("a".to_string(), hashes["same"].clone())]);
        assert_eq!(
            runs["same"].latest.as_ref().unwrap().spec_hash,
            hashes["same"]
        );
        assert_eq!(
            runs["changed"].latest.as_ref().unwrap().spec_hash,
            hash_before_resize(&older),
            "a spec that changed meanwhile still restarts its container"
        );
    }

    #[test]
    fn a_terminated_pod_gets_the_deletions_grace_else_its_own_and_at_least_a_second() {
        assert_eq!(pod_grace(&pod_with(Some(5), Some(60))), 5);
        assert_eq!(pod_grace(&pod_with(None, Some(60))), 60);
        assert_eq!(pod_grace(&pod_with(None, None)), 30);
        // Force-deleted, or a pod that asks for none: kubelet still gives it a second.
        assert_eq!(pod_grace(&pod_with(Some(0), Some(60))), 1);
        assert_eq!(pod_grace(&pod_with(None, Some(0))), 1);
    }

    #[test]
    fn a_container_stopped_in_a_live_pod_gets_the_probes_grace_over_the_pods() {
        let secs = Duration::from_secs;
        assert_eq!(container_grace(&pod_with(None, Some(60)), Some(7)), secs(7));
        assert_eq!(container_grace(&pod_with(None, Some(60)), None), secs(60));
        assert_eq!(
            container_grace(&pod_with(Some(3), Some(60)), Some(7)),
            secs(3)
        );
        // No floor here: a grace of 0 skips the preStop hook, and SIGKILL still waits MIN_STOP_WINDOW.
        assert_eq!(container_grace(&pod_with(None, Some(0)), None), secs(0));
        assert_eq!(container_grace(&pod_with(None, None), None), secs(30));
    }

    #[test]
    fn the_log_fallback_message_is_the_last_80_lines_with_partial_lines_joined() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let mut text = String::new();
        for i in 0..99 {
            text.push_str(&format!(
                "2026-11-24T10:00:00.000000000Z stdout F line {i}\n"
            ));
        }
        text.push_str("2026-11-24T10:00:00.000000000Z stderr P fatal: \n");
        text.push_str("2026-11-24T10:00:00.000000000Z stderr F no config\n");
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert!(tail.starts_with("line 20\nline 21\n"), "{tail:?}");
        assert!(tail.ends_with("line 98\nfatal: no config\n"), "{tail:?}");
        assert_eq!(tail.lines().count(), 80);

        let long = format!(
            "2026-11-24T10:00:00.000000000Z stdout F {}é\n",
            "x".repeat(4000)
        );
        std::fs::write(&log, long).unwrap();
        let tail = log_tail(&log);
        assert!(tail.len() <= MAX_FALLBACK_LOG && tail.len() > MAX_FALLBACK_LOG - 4);
        assert!(tail.ends_with("xé\n"));

        // Bytes that are not UTF-8 (Latin-1 "café") are replaced, not a reason to give no message.
        std::fs::write(
            &log,
            b"2026-11-24T10:00:00.000000000Z stderr F caf\xe9: no config\n",
        )
        .unwrap();
        assert_eq!(log_tail(&log), "caf\u{fffd}: no config\n");
    }
}
