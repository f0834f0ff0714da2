//! The kubelet role of the agent: registers this machine as a Node, waits for its podCIDR, sets up the
//! pod network, and makes the pods bound to the node real. Pods come from a watch of `spec.nodeName=<node>`;
//! a work queue gives each pod to one worker at a time (`sync.rs`), which admits a pod it has not seen
//! before (`admission.rs`), holds back a Pending one soft admission blocks (`apparmor.rs`), compares the
//! pod with its containers in the runtime and acts; container exits,
//! pod changes and a periodic relist re-queue it.
//! Everything it knows is on disk or in the API, so a restarted agent picks up where it left off.

pub mod active_deadline;
pub mod admission;
pub mod apparmor;
mod atomic_writer;
pub mod attach;
pub mod backoff;
pub mod container;
pub mod endpoint;
pub mod env;
pub mod eviction;
pub mod exec;
pub mod housekeeping;
pub mod local_storage;
pub mod logs;
pub mod plan;
pub mod pod_cgroup;
pub mod portforward;
pub mod probes;
pub mod resize;
pub mod run_dir;
pub mod sandbox;
pub mod stats;
pub mod status;
mod sync;
pub mod sysctls;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use tokio::sync::watch;

use super::image::registries::Registries;
use super::image::ImageService;
use super::network::Ipv4Cidr;
use super::network::{NetworkConfig, PodNetwork};
use super::node::{self, Taint};
use super::runtime::{Runtime, RuntimeConfig};
use super::AgentError;
use crate::client::events::Recorder;
use crate::client::informer::key_of;
use crate::client::{Client, Informer, WorkQueue};
use crate::util::rlimit::OpenFilesLimit;
use crate::util::Clock;

/// Pods synced at once. A sync spends much of its time waiting for a shim to start its container, so
/// more workers than cores keep the cores busy when many pods start together (kubelet has a worker per
/// pod).
const WORKERS: usize = 8;
/// Every pod is looked at this often even when nothing was heard of it (kubelet's relist).
pub(super) const RESYNC: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub max_pods: u32,
    pub data_dir: PathBuf,
    /// Where containers' logs are kept, as kubelet keeps them under `/var/log` (see `sandbox.rs`).
    pub log_root: PathBuf,
    /// A container's log rotates past this size, and this many files of it are kept, the current one
    /// included (kubelet's containerLogMaxSize and containerLogMaxFiles).
    pub container_log_max_bytes: u64,
    pub container_log_max_files: u32,
    /// Runtime state on tmpfs: libcontainer's state and the pod network namespaces (`/run/orch`).
    pub run_dir: PathBuf,
    pub cluster_cidr: String,
    pub service_cidr: String,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub registries: Registries,
    /// The `orch` executable the container shims run as.
    pub shim_executable: PathBuf,
    /// kubelet's `--eviction-hard`: the thresholds below which the node reports pressure.
    pub eviction_hard: String,
    /// kubelet's `--port`: where the node's HTTPS endpoint listens, when it serves one (a joined agent;
    /// the server's embedded agent answers the API server in-process).
    pub endpoint_port: Option<u16>,
    /// The open-files limit containers get: the one orch started with, before it raised its own.
    pub container_open_files: Option<OpenFilesLimit>,
    /// The sysctls pods may set: kubelet's safe ones and its `--allowed-unsafe-sysctls`.
    pub sysctls: sysctls::Allowlist,
}

pub(crate) struct Kubelet {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub config: KubeletConfig,
    pub node: Informer<Node>,
    pub pods: Informer<Pod>,
    pub queue: WorkQueue,
    pub runtime: Runtime,
    pub images: ImageService,
    pub network: PodNetwork,
    pub events: Recorder,
    pub backoff: backoff::Backoff,
    pub image_backoff: backoff::Backoff,
    /// Volume set-ups that failed, by pod uid and volume name.
    pub mount_backoff: backoff::RetryBackoff,
    /// When each (pod, image) pull last failed, the start of its ImagePullBackOff, and why.
    pub pull_failures: Mutex<HashMap<String, (std::time::Instant, String)>>,
    /// Containers that failed to be created or started: when, what they wait with, and for how long,
    /// so that pod updates (our own status writes among them) do not retry them in a tight loop.
    pub start_failures: Mutex<HashMap<String, (std::time::Instant, status::Waiting, Duration)>>,
    /// Pod key → the pod as last seen, of every pod seen: to stop (with its preStop hooks) and clean up
    /// after pods that vanished from the API.
    pub known: Mutex<HashMap<String, Arc<Pod>>>,
    /// Pod uids whose containers are being stopped in the background, with the grace period (seconds)
    /// their stop was given.
    pub terminating: Mutex<HashMap<String, u64>>,
    pub probes: probes::ProbeResults,
    /// Containers the kubelet stopped in order to run them again (a changed spec, a failed liveness or
    /// startup probe): their exit restarts them whatever the restart policy says of it.
    pub killed_for_restart: Mutex<HashSet<String>>,
    /// Containers being stopped in the background while their pod lives on.
    pub stopping: Mutex<HashSet<String>>,
    pub http_prober: probes::HttpProber,
    /// The agent's own oom_score_adj: the lowest a container can be given without CAP_SYS_RESOURCE.
    pub min_oom_score_adj: i32,
    /// The kernel enforces AppArmor (looked at once, as kubelet's validator does).
    pub apparmor_enabled: bool,
    /// Containers with a task waiting for their exit.
    pub watched: Mutex<HashSet<String>>,
    /// Pods the eviction manager chose, by uid, while they exist.
    pub evictions: Mutex<HashMap<String, eviction::Eviction>>,
    /// Uids of released pods whose cgroup was still in use, for housekeeping to remove later.
    pub leftover_cgroups: Mutex<HashSet<String>>,
    /// Uids of released pods whose network could not be removed, for housekeeping to try again: until
    /// then the pod's IP and host ports stay taken.
    pub leftover_sandboxes: Mutex<HashSet<String>>,
    /// What admission decided for each pod, by uid, while it exists.
    pub admissions: Mutex<HashMap<String, admission::Admission>>,
    /// The node's pressure conditions as housekeeping last evaluated them.
    pub pressure: watch::Receiver<node::NodePressure>,
    /// What each pod's containers were allocated, by uid, as read from or written to its directory.
    pub allocations: Mutex<HashMap<String, resize::Allocation>>,
    /// Pods whose resize is pending or under way, by uid (kept in memory only, as kubelet keeps them).
    pub resizes: Mutex<HashMap<String, resize::ResizeState>>,
}

/// Runs the kubelet until `shutdown`, on the node's runtime (see [`open_runtime`]).
pub async fn run(
    client: Client,
    config: KubeletConfig,
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    // As kubelet protects itself: the OOM killer takes any container before the node agent (its shims
    // inherit this; containers get their QoS's value, which is never below it).
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "-999") {
        tracing::info!(error = %e, "the agent keeps its oom_score_adj (lowering it takes CAP_SYS_RESOURCE)");
    }
    let min_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let agent_dir = config.data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir)
        .map_err(|e| AgentError::Config(format!("creating {}: {e}", agent_dir.display())))?;
    // As kubelet makes its root directory rshared: the pods' volumes are then on a shared mount, which
    // their HostToContainer and Bidirectional mounts need, whatever the host's own mounts are.
    let pods_dir = sandbox::pods_dir(&config.data_dir);
    std::fs::create_dir_all(&pods_dir)
        .map_err(|e| AgentError::Config(format!("creating {}: {e}", pods_dir.display())))?;
    crate::util::mounts::make_rshared(&pods_dir).map_err(|e| {
        AgentError::Config(format!("making {} a shared mount: {e}", pods_dir.display()))
    })?;
    let thresholds = housekeeping::parse_thresholds(&config.eviction_hard)?;
    let mut identity = node::detect_identity(
        &config.node_name,
        config.node_ip,
        config.labels.clone(),
        config.taints.clone(),
        config.max_pods,
        &config.data_dir,
        config.endpoint_port,
    );
    identity.allocatable = housekeeping::allocatable(&identity.capacity, &thresholds);
    let events = Recorder::on_node(client.clone(), "kubelet", &config.node_name);
    node::register(&client, &identity, clock.as_ref(), &events).await?;
    let (pressure, pressure_changes) = watch::channel(node::NodePressure::default());
    let mut tasks = vec![tokio::spawn(node::heartbeat(
        client.clone(),
        identity.clone(),
        clock.clone(),
        events.clone(),
        pressure_changes,
        shutdown.clone(),
    ))];

    let node_informer: Informer<Node> = Informer::with_query(
        client.clone(),
        &format!("fieldSelector=metadata.name%3D{}", config.node_name),
    );
    tasks.push(node_informer.run(shutdown.clone()));
    let pod_cidr = wait_for_pod_cidr(&node_informer, &config.node_name, shutdown.clone()).await?;
    let Some(pod_cidr) = pod_cidr else {
        return Ok(());
    };
    let parse = |flag: &str, text: &str| -> Result<Ipv4Cidr, AgentError> {
        text.parse()
            .map_err(|e| AgentError::Config(format!("{flag} {text:?}: {e}")))
    };
    let network = PodNetwork::setup(NetworkConfig {
        bridge: "orch0".into(),
        pod_cidr: parse("podCIDR", &pod_cidr)?,
        cluster_cidr: parse("--cluster-cidr", &config.cluster_cidr)?,
        service_cidr: parse("--service-cidr", &config.service_cidr)?,
        state_dir: agent_dir.join("network"),
        netns_dir: netns_dir(&config),
    })
    .await
    .map_err(|e| AgentError::Config(format!("setting up the pod network: {e}")))?;
    sandbox::prepare_namespace_dirs(&config.run_dir).map_err(AgentError::Config)?;
    let images = ImageService::open(&agent_dir.join("store"), config.registries.clone())
        .map_err(|e| AgentError::Config(format!("opening the image store: {e}")))?;
    let import_dir = agent_dir.join("images");
    if import_dir.is_dir() {
        match images.import_dir(&import_dir) {
            Ok(report) => tracing::info!(
                images = report.imported.len(),
                failed = report.failed.len(),
                "imported image tarballs"
            ),
            Err(e) => tracing::warn!(error = %e, "importing image tarballs"),
        }
    }

    let pods: Informer<Pod> = Informer::with_query(
        client.clone(),
        &format!("fieldSelector=spec.nodeName%3D{}", config.node_name),
    );
    let kubelet = Arc::new(Kubelet {
        events,
        client,
        clock,
        config,
        node: node_informer,
        pods,
        queue: WorkQueue::new(),
        runtime,
        images,
        network,
        backoff: Default::default(),
        image_backoff: Default::default(),
        mount_backoff: Default::default(),
        pull_failures: Default::default(),
        start_failures: Default::default(),
        known: Default::default(),
        terminating: Default::default(),
        watched: Default::default(),
        evictions: Default::default(),
        leftover_cgroups: Default::default(),
        leftover_sandboxes: Default::default(),
        admissions: Default::default(),
        allocations: Default::default(),
        resizes: Default::default(),
        pressure: pressure.subscribe(),
        probes: Default::default(),
        killed_for_restart: Default::default(),
        stopping: Default::default(),
        min_oom_score_adj,
        apparmor_enabled: apparmor::host_enabled(),
        http_prober: probes::HttpProber::new()
            .map_err(|e| AgentError::Config(format!("building the HTTP probe client: {e}")))?,
    });
    {
        let queue = kubelet.queue.clone();
        kubelet.pods.on_change(move |change| {
            queue.add(&key_of(&change.object().metadata));
        });
    }
    tasks.push(kubelet.pods.run(shutdown.clone()));
    kubelet.pods.wait_synced().await;
    kubelet.clean_up_orphans().await;
    kubelet.admit_existing();
    tracing::info!(node = %kubelet.config.node_name, pod_cidr = %pod_cidr, "kubelet is ready");
    tasks.push(tokio::spawn(housekeeping::run(
        kubelet.clone(),
        thresholds,
        pressure,
        shutdown.clone(),
    )));

    for _ in 0..WORKERS {
        let kubelet = kubelet.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(key) = kubelet.queue.get().await {
                match kubelet.sync(&key).await {
                    Ok(requeue) => {
                        kubelet.queue.forget(&key);
                        if let Some(after) = requeue {
                            kubelet.queue.add_after(&key, after);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(pod = %key, error = %e, "pod sync failed");
                        kubelet.queue.add_rate_limited(&key);
                    }
                }
                kubelet.queue.done(&key);
            }
        }));
    }
    {
        let kubelet = kubelet.clone();
        let mut stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(RESYNC) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                for key in kubelet.pods.keys() {
                    kubelet.queue.add(&key);
                }
                let gone: Vec<String> = {
                    let known = kubelet.known.lock().expect("known lock");
                    known
                        .keys()
                        .filter(|k| kubelet.pods.get(k).is_none())
                        .cloned()
                        .collect()
                };
                for key in gone {
                    kubelet.queue.add(&key);
                }
            }
        }));
    }
    let mut stop = shutdown;
    let _ = stop.wait_for(|s| *s).await;
    kubelet.queue.shut_down();
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// The node's containers (`<data-dir>/agent/containers`, state under `<run-dir>/containers`), opened
/// once and shared by the kubelet and the log server. The run dir is made volatile first (`run_dir.rs`):
/// this is the first use of it.
pub fn open_runtime(config: &KubeletConfig) -> Result<Runtime, AgentError> {
    match run_dir::ensure_volatile(&config.run_dir)? {
        run_dir::RunDir::Mounted => {
            tracing::info!(dir = %config.run_dir.display(), "mounted a tmpfs on the run dir")
        }
        run_dir::RunDir::KeptOnDisk => tracing::warn!(
            dir = %config.run_dir.display(),
            "the run dir is on disk and holds state: left on disk until it is empty"
        ),
        run_dir::RunDir::Volatile => {}
    }
    Runtime::new(RuntimeConfig {
        containers_dir: config.data_dir.join("agent/containers"),
        state_root: config.run_dir.join("containers"),
        bundles_dir: config.run_dir.join("bundles"),
        shim_executable: config.shim_executable.clone(),
        log_max_bytes: config.container_log_max_bytes,
        log_max_files: config.container_log_max_files,
    })
    .map_err(|e| AgentError::Config(e.to_string()))
}

/// The container logs of this node, for the API server's `pods/log`.
pub fn pod_logs(config: &KubeletConfig, runtime: Runtime) -> logs::NodeLogs {
    logs::NodeLogs {
        node_name: config.node_name.clone(),
        log_root: config.log_root.clone(),
        runtime,
    }
}

/// What this node and its containers use, for the API server's `metrics.k8s.io`; its CPU counters are
/// sampled until `shutdown`.
pub fn node_summary(
    config: &KubeletConfig,
    runtime: Runtime,
    shutdown: watch::Receiver<bool>,
) -> Arc<stats::NodeSummary> {
    let summary = Arc::new(stats::NodeSummary::new(
        config.node_name.clone(),
        runtime,
        PathBuf::from(pod_cgroup::ROOT),
    ));
    tokio::spawn(stats::run(summary.clone(), shutdown));
    summary
}

/// Exec sessions in the containers of this node, for the API server's `pods/exec`.
pub fn pod_exec(config: &KubeletConfig, runtime: Runtime) -> exec::NodeExec {
    exec::NodeExec {
        node_name: config.node_name.clone(),
        runtime,
    }
}

/// Port-forwarding to the pods of this node, for the API server's `pods/portforward`.
pub fn pod_port_forward(config: &KubeletConfig) -> portforward::NodePortForward {
    portforward::NodePortForward {
        node_name: config.node_name.clone(),
        netns_dir: netns_dir(config),
    }
}

/// Where the pods' network namespaces are bound.
fn netns_dir(config: &KubeletConfig) -> std::path::PathBuf {
    config.run_dir.join("netns")
}

/// The node's podCIDR, once the IPAM controller assigned it; None if shut down first.
async fn wait_for_pod_cidr(
    nodes: &Informer<Node>,
    name: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<String>, AgentError> {
    loop {
        if let Some(cidr) = nodes
            .get(name)
            .and_then(|n| n.spec.as_ref()?.pod_cidr.clone())
        {
            return Ok(Some(cidr));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(None),
        }
    }
}
