//! kubelet's eviction manager for hard thresholds. When the node stays below a threshold after image GC
//! (housekeeping reads the machine every 10 s), one pod is chosen, ranked as kubelet ranks them for the
//! starved resource: pods using more than they request first, then lower priority, then the larger
//! consumer above its request (for pids: priority, then the larger number of processes). Critical pods
//! (priority of system-cluster-critical and above) are never chosen. The pod's worker then kills it with
//! kubelet's least grace period (hard thresholds allow none: 1 s for preStop hooks, SIGKILL 2 s after
//! SIGTERM) and fails it: phase Failed, reason Evicted, kubelet's
//! message, a DisruptionTarget condition and an Evicted event. The next pod is chosen only after that.

use std::cmp::Ordering;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use super::housekeeping::{Crossed, Signal};
use super::status::Observed;
use super::sync::MIN_POD_GRACE;
use super::{pod_cgroup, sandbox, Kubelet};
use crate::agent::runtime::ContainerMeta;
use crate::agent::AgentError;
use crate::api::pod_resources;
use crate::api::quantity::{Quantity, QuantityFormat};
use crate::client::events::Involved;
use crate::client::informer::key_of;

/// `SystemCriticalPriority`: pods at or above it are never evicted.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The resource a crossed threshold starves, as kubelet names it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Starved {
    Memory,
    EphemeralStorage,
    Inodes,
    Pids,
}

impl Starved {
    pub fn of(signal: Signal) -> Starved {
        match signal {
            Signal::MemoryAvailable => Starved::Memory,
            Signal::NodefsAvailable | Signal::ImagefsAvailable => Starved::EphemeralStorage,
            Signal::NodefsInodesFree | Signal::ImagefsInodesFree => Starved::Inodes,
            Signal::PidAvailable => Starved::Pids,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Starved::Memory => "memory",
            Starved::EphemeralStorage => "ephemeral-storage",
            Starved::Inodes => "inodes",
            Starved::Pids => "pids",
        }
    }

    fn quantity(self, n: u64) -> Quantity {
        let format = match self {
            Starved::Memory | Starved::EphemeralStorage => QuantityFormat::BinarySi,
            Starved::Inodes | Starved::Pids => QuantityFormat::DecimalSi,
        };
        Quantity::from_units(i128::from(n), format)
    }
}

/// A pod the eviction manager chose: kubelet's message, and whether its worker has failed it yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Eviction {
    pub message: String,
    pub failed: bool,
}

/// What a pod uses of the starved resource, in total and per app container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub total: u64,
    pub containers: Vec<(String, u64)>,
}

/// A pod that may be evicted, with what ranking looks at.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub pod: Arc<Pod>,
    pub usage: Usage,
    /// The pod's request for the starved resource (0 when none), or none for pids, which have no request.
    pub request: u64,
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Pods the node needs to stay healthy (`IsCriticalPod`): never evicted, and admitted under pressure.
pub fn is_critical(pod: &Pod) -> bool {
    priority(pod) >= SYSTEM_CRITICAL_PRIORITY
}

/// Orders `candidates` so that the first is the one kubelet would evict for `starved`.
pub fn rank(candidates: &mut [Candidate], starved: Starved) {
    let exceeds = |c: &Candidate| c.usage.total > c.request;
    let above_request = |c: &Candidate| i128::from(c.usage.total) - i128::from(c.request);
    candidates.sort_by(|a, b| {
        let by_priority = priority(&a.pod).cmp(&priority(&b.pod));
        match starved {
            Starved::Pids => by_priority.then(b.usage.total.cmp(&a.usage.total)),
            _ => exceeds(b)
                .cmp(&exceeds(a))
                .then(by_priority)
                .then(above_request(b).cmp(&above_request(a))),
        }
    });
}

/// kubelet's eviction message, trailing space included.
pub fn message(starved: Starved, crossed: &Crossed, candidate: &Candidate) -> String {
    let mut message = format!(
        "The node was low on resource: {}. Threshold quantity: {}, available: {}. ",
        starved.name(),
        starved.quantity(crossed.threshold),
        starved.quantity(crossed.available),
    );
    if matches!(starved, Starved::Memory | Starved::EphemeralStorage) {
        let spec = candidate.pod.spec.clone().unwrap_or_default();
        for (name, used) in &candidate.usage.containers {
            let request = spec
                .containers
                .iter()
                .find(|c| &c.name == name)
                .and_then(|c| c.resources.as_ref()?.requests.as_ref()?.get(starved.name()))
                .and_then(|q| crate::api::quantity::parse_quantity(&q.0).ok())
                .unwrap_or_else(|| Quantity::zero(QuantityFormat::DecimalSi));
            let used_quantity = starved.quantity(*used);
            if used_quantity.cmp(&request) == Ordering::Greater {
                message.push_str(&format!(
                    "Container {name} was using {used_quantity}, request is {request}, has larger consumption of {}. ",
                    starved.name()
                ));
            }
        }
    }
    message
}

fn cgroup_dir(controller: &str, relative: &str) -> PathBuf {
    pod_cgroup::controller_dir(Path::new(pod_cgroup::ROOT), controller, relative)
}

fn working_set(relative: &str) -> u64 {
    pod_cgroup::working_set(Path::new(pod_cgroup::ROOT), relative).unwrap_or(0)
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Bytes (or inodes) under `path` on its own filesystem, like `du -x`: an overlay root or a tmpfs
/// mounted inside is not counted.
pub(super) fn disk_usage(path: &Path, inodes: bool) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let device = top.dev();
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if meta.dev() != device {
            continue;
        }
        total += if inodes { 1 } else { meta.blocks() * 512 };
        if meta.is_dir() {
            pending.extend(
                std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        }
    }
    total
}

impl Kubelet {
    /// What a container keeps on the node's disk (bytes, or inodes): its root filesystem's changes and
    /// its logs under the pod's log directory `logs`.
    pub(super) fn container_disk_usage(
        &self,
        meta: &ContainerMeta,
        logs: &Path,
        inodes: bool,
    ) -> u64 {
        disk_usage(&self.runtime.dir(&meta.id), inodes)
            + disk_usage(&logs.join(&meta.container), inodes)
    }

    /// What `pod` uses of `starved` now.
    fn usage(&self, pod: &Pod, starved: Starved) -> Usage {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let pod_cgroup = pod_cgroup::path(uid);
        let running = self.running_metas(uid);
        match starved {
            Starved::Memory => Usage {
                total: working_set(&pod_cgroup),
                containers: running
                    .iter()
                    .filter(|m| !m.init_container)
                    .map(|m| {
                        (
                            m.container.clone(),
                            working_set(&format!("{pod_cgroup}/{}", m.id)),
                        )
                    })
                    .collect(),
            },
            Starved::Pids => Usage {
                total: read_number(&cgroup_dir("pids", &pod_cgroup).join("pids.current"))
                    .unwrap_or(0),
                containers: Vec::new(),
            },
            Starved::EphemeralStorage | Starved::Inodes => {
                let inodes = starved == Starved::Inodes;
                let logs = sandbox::log_dir(&self.config.log_root, pod);
                let containers: Vec<(String, u64)> = running
                    .iter()
                    .filter(|m| !m.init_container)
                    .map(|m| {
                        (
                            m.container.clone(),
                            self.container_disk_usage(m, &logs, inodes),
                        )
                    })
                    .collect();
                let volumes = disk_usage(&sandbox::pod_dir(&self.config.data_dir, uid), inodes);
                Usage {
                    total: volumes + containers.iter().map(|(_, used)| used).sum::<u64>(),
                    containers,
                }
            }
        }
    }

    /// Pods that may be evicted: running here, not finished or being deleted, not critical.
    fn eviction_candidates(&self, starved: Starved) -> Vec<Candidate> {
        self.pods
            .list()
            .into_iter()
            .filter(|pod| {
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                pod.metadata.deletion_timestamp.is_none()
                    && !matches!(phase, Some("Succeeded" | "Failed"))
                    && !is_critical(pod)
            })
            .filter_map(|pod| {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                if self.runtime.list_pod(uid).is_empty() {
                    return None;
                }
                let usage = self.usage(&pod, starved);
                let request = match starved {
                    Starved::Pids => 0,
                    _ => pod_resources::request_quantity(&pod, starved.name())
                        .map_or(0, |q| q.to_bytes().max(0) as u64),
                };
                Some(Candidate {
                    pod,
                    usage,
                    request,
                })
            })
            .collect()
    }

    /// Fails `pod`, which the eviction manager chose: kills its containers with the least grace period
    /// and writes phase Failed with reason Evicted.
    pub(super) async fn sync_evicted(
        &self,
        pod: &Pod,
        uid: &str,
        message: &str,
    ) -> Result<Option<Duration>, AgentError> {
        self.events.warning(
            self.clock.as_ref(),
            &Involved::new("v1", "Pod", &pod.metadata),
            "Evicted",
            message,
        );
        self.kill_pod(uid, Some(pod), Duration::from_secs(MIN_POD_GRACE))
            .await;
        let observed = Observed {
            evicted: Some(message.to_string()),
            ..self.observed_runs(pod, uid)
        };
        self.write_status(pod, &observed, self.clock.now()).await?;
        if let Some(eviction) = self.evictions.lock().expect("evictions lock").get_mut(uid) {
            eviction.failed = true;
        }
        Ok(None)
    }
}

/// The eviction manager's round: if a threshold is crossed and no eviction is under way, hands the
/// first-ranked pod to its worker.
pub(super) fn evict_one(kubelet: &Kubelet, crossed: &[Crossed]) {
    {
        let mut evictions = kubelet.evictions.lock().expect("evictions lock");
        let live: std::collections::HashSet<String> = kubelet
            .pods
            .list()
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        evictions.retain(|uid, _| live.contains(uid));
        if evictions.values().any(|e| !e.failed) {
            return;
        }
    }
    // Memory first, as kubelet orders the thresholds it reclaims for.
    let Some(target) = crossed
        .iter()
        .min_by_key(|c| c.signal != Signal::MemoryAvailable)
    else {
        return;
    };
    let starved = Starved::of(target.signal);
    kubelet.events.warning(
        kubelet.clock.as_ref(),
        &crate::agent::node::involved(&kubelet.config.node_name),
        "EvictionThresholdMet",
        &format!("Attempting to reclaim {}", starved.name()),
    );
    let mut candidates = kubelet.eviction_candidates(starved);
    rank(&mut candidates, starved);
    let Some(victim) = candidates.first() else {
        tracing::warn!(
            resource = starved.name(),
            "the node is low on a resource and no pod can be evicted"
        );
        return;
    };
    let message = message(starved, target, victim);
    let uid = victim.pod.metadata.uid.clone().unwrap_or_default();
    let key = key_of(&victim.pod.metadata);
    tracing::warn!(pod = %key, %message, "evicting a pod");
    kubelet.evictions.lock().expect("evictions lock").insert(
        uid,
        Eviction {
            message,
            failed: false,
        },
    );
    kubelet.queue.add(&key);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, priority: i32, used: u64, request: u64) -> Candidate {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"priority": priority, "containers": [{"name": "app"}]},
        }))
        .unwrap();
        Candidate {
            pod: Arc::new(pod),
            usage: Usage {
                total: used,
                containers: vec![("app".into(), used)],
            },
            request,
        }
    }

    fn names(candidates: &[Candidate]) -> Vec<&str> {
        candidates
            .iter()
            .map(|c| c.pod.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn memory_ranks_pods_over_their_request_then_priority_then_usage_above_request() {
        let mut pods = vec![
            candidate("within-request", 0, 100, 200),
            candidate("over-important", 1000, 300, 100),
            candidate("over-small", 0, 150, 100),
            candidate("over-big", 0, 900, 100),
        ];
        rank(&mut pods, Starved::Memory);
        assert_eq!(
            names(&pods),
            ["over-big", "over-small", "over-important", "within-request"]
        );
    }

    #[test]
    fn pids_rank_by_priority_then_processes() {
        let mut pods = vec![
            candidate("many-important", 10, 500, 0),
            candidate("few", 0, 3, 0),
            candidate("many", 0, 400, 0),
        ];
        rank(&mut pods, Starved::Pids);
        assert_eq!(names(&pods), ["many", "few", "many-important"]);
    }

    #[test]
    fn the_message_is_kubelets() {
        let crossed = Crossed {
            signal: Signal::MemoryAvailable,
            threshold: 100 << 20,
            available: 50 << 20,
        };
        let hog = candidate("hog", 0, 150 << 20, 0);
        assert_eq!(
            message(Starved::Memory, &crossed, &hog),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. \
             Container app was using 150Mi, request is 0, has larger consumption of memory. "
        );
        let pids = Crossed {
            signal: Signal::PidAvailable,
            threshold: 1000,
            available: 10,
        };
        assert_eq!(
            message(Starved::Pids, &pids, &hog),
            "The node was low on resource: pids. Threshold quantity: 1k, available: 10. "
        );
    }

    #[test]
    fn disk_usage_stays_on_its_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 64 << 10]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![1u8; 64 << 10]).unwrap();
        assert!(disk_usage(dir.path(), false) >= 128 << 10);
        assert_eq!(disk_usage(dir.path(), true), 4);
        assert_eq!(disk_usage(&dir.path().join("missing"), true), 0);
    }
}
