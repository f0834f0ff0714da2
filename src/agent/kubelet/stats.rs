//! The node's resource usage, served as kubelet's Summary API for `metrics.k8s.io` (`kubectl top`).
//! Every [`CPU_SAMPLE_PERIOD`] the CPU counters of the machine and of each running container are
//! sampled; a CPU usage is the rate between a counter's last two samples, as kubelet's CRI stats provider
//! keeps it (its eviction loop refreshes the cache on the same period). So a container has a CPU usage
//! one period after it was first seen running, as under metrics-server. Memory is the working set, read
//! when the summary is asked for; the machine's is what `/proc/meminfo` says is not available, which is
//! what kubelet's `memory.available` eviction signal subtracts from capacity.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::watch;

use super::pod_cgroup;
use crate::agent::runtime::{ContainerMeta, ContainerState, Runtime};
use crate::api::meta::format_time;
use crate::api::stats::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
    SummaryProvider, CPU_SAMPLE_PERIOD,
};

/// One reading of a cumulative CPU counter.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    time: Timestamp,
    used_ns: u64,
    /// The rate since the reading before, if there was one.
    nano_cores: Option<u64>,
}

impl Sample {
    fn after(previous: Option<&Sample>, used_ns: u64, at: Instant, time: Timestamp) -> Sample {
        let nano_cores = previous.and_then(|p| {
            let elapsed = at.checked_duration_since(p.at)?.as_nanos();
            // A counter that went back belongs to a cgroup made again under the same name.
            let used = used_ns.checked_sub(p.used_ns)?;
            (elapsed > 0).then(|| (u128::from(used) * 1_000_000_000 / elapsed) as u64)
        });
        Sample {
            at,
            time,
            used_ns,
            nano_cores,
        }
    }

    fn stats(&self) -> CpuStats {
        CpuStats {
            time: format_time(self.time),
            usage_nano_cores: self.nano_cores,
            usage_core_nano_seconds: Some(self.used_ns),
        }
    }
}

/// A running container as last sampled.
#[derive(Debug, Clone)]
struct SampledContainer {
    meta: ContainerMeta,
    cpu: Sample,
}

/// The last samples of the machine and of the containers that were running then.
#[derive(Debug, Default)]
struct Samples {
    node: Option<Sample>,
    containers: HashMap<String, SampledContainer>,
}

impl Samples {
    /// Takes the readings of one round: the machine's counter and those of the containers running now.
    /// Containers not among them are forgotten.
    fn record(
        &mut self,
        node_used: Option<u64>,
        running: Vec<(ContainerMeta, u64)>,
        at: Instant,
        time: Timestamp,
    ) {
        self.node = node_used.map(|used| Sample::after(self.node.as_ref(), used, at, time));
        let previous = std::mem::take(&mut self.containers);
        self.containers = running
            .into_iter()
            .map(|(meta, used)| {
                let before = previous.get(&meta.id).map(|c| &c.cpu);
                let cpu = Sample::after(before, used, at, time);
                (meta.id.clone(), SampledContainer { meta, cpu })
            })
            .collect();
    }

    /// The summary as of `now`: CPU from the samples, memory from `machine_memory` and
    /// `working_set` (a container's, by pod uid and container id), read now.
    fn summary(
        &self,
        node_name: &str,
        now: Timestamp,
        machine_memory: Option<MachineMemory>,
        working_set: impl Fn(&str, &str) -> Option<u64>,
    ) -> Summary {
        let time = format_time(now);
        let node = NodeStats {
            node_name: node_name.to_string(),
            cpu: self.node.as_ref().map(Sample::stats),
            memory: machine_memory.map(|m| MemoryStats {
                time: time.clone(),
                available_bytes: Some(m.available),
                usage_bytes: Some(m.total.saturating_sub(m.free)),
                working_set_bytes: Some(m.total.saturating_sub(m.available)),
            }),
        };
        let mut pods: BTreeMap<&str, PodStats> = BTreeMap::new();
        for sampled in self.containers.values() {
            let meta = &sampled.meta;
            let pod = pods
                .entry(meta.pod_uid.as_str())
                .or_insert_with(|| PodStats {
                    pod_ref: PodReference {
                        name: meta.pod_name.clone(),
                        namespace: meta.pod_namespace.clone(),
                        uid: meta.pod_uid.clone(),
                    },
                    containers: Vec::new(),
                });
            pod.containers.push(ContainerStats {
                name: meta.container.clone(),
                start_time: Some(meta.created_at.clone()).filter(|t| !t.is_empty()),
                cpu: Some(sampled.cpu.stats()),
                memory: working_set(&meta.pod_uid, &meta.id).map(|bytes| MemoryStats {
                    time: time.clone(),
                    working_set_bytes: Some(bytes),
                    ..Default::default()
                }),
            });
        }
        let mut pods: Vec<PodStats> = pods.into_values().collect();
        for pod in &mut pods {
            pod.containers.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Summary { node, pods }
    }
}

/// The machine's memory from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MachineMemory {
    total: u64,
    free: u64,
    available: u64,
}

impl MachineMemory {
    fn parse(meminfo: &str) -> Option<MachineMemory> {
        let field = |name: &str| -> Option<u64> {
            let line = meminfo.lines().find(|l| l.starts_with(name))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        };
        Some(MachineMemory {
            total: field("MemTotal:")?,
            free: field("MemFree:")?,
            available: field("MemAvailable:")?,
        })
    }
}

/// This node's Summary: what its containers and the machine use.
pub struct NodeSummary {
    node_name: String,
    runtime: Runtime,
    cgroup_root: PathBuf,
    samples: Mutex<Samples>,
}

impl NodeSummary {
    pub fn new(node_name: String, runtime: Runtime, cgroup_root: PathBuf) -> Self {
        NodeSummary {
            node_name,
            runtime,
            cgroup_root,
            samples: Mutex::default(),
        }
    }

    /// Reads the CPU counters of the machine and of every container running now.
    fn sample(&self) {
        let root = &self.cgroup_root;
        let node_used = pod_cgroup::cpu_usage(root, "");
        let running: Vec<(ContainerMeta, u64)> = self
            .runtime
            .list()
            .into_iter()
            .filter(|m| matches!(self.runtime.state(&m.id), Ok(ContainerState::Running(_))))
            .filter_map(|m| {
                let used =
                    pod_cgroup::cpu_usage(root, &pod_cgroup::container_path(&m.pod_uid, &m.id))?;
                Some((m, used))
            })
            .collect();
        self.samples.lock().expect("stats samples lock").record(
            node_used,
            running,
            Instant::now(),
            Timestamp::now(),
        );
    }
}

impl SummaryProvider for NodeSummary {
    fn node_name(&self) -> &str {
        &self.node_name
    }

    fn summary(&self) -> Summary {
        let machine_memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| MachineMemory::parse(&text));
        let working_set = |uid: &str, id: &str| {
            pod_cgroup::working_set(&self.cgroup_root, &pod_cgroup::container_path(uid, id))
        };
        self.samples.lock().expect("stats samples lock").summary(
            &self.node_name,
            Timestamp::now(),
            machine_memory,
            working_set,
        )
    }
}

/// Samples `summary`'s counters every [`CPU_SAMPLE_PERIOD`] until `shutdown`, off the async workers (a
/// node with a thousand containers reads a few thousand files).
pub async fn run(summary: Arc<NodeSummary>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let sampling = summary.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sampling.sample()).await {
            tracing::warn!(error = %e, "sampling the node's CPU counters");
        }
        tokio::select! {
            _ = tokio::time::sleep(CPU_SAMPLE_PERIOD) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn meta(uid: &str, id: &str, container: &str) -> ContainerMeta {
        serde_json::from_value(serde_json::json!({
            "id": id, "pod_uid": uid, "pod_namespace": "default", "pod_name": format!("pod-{uid}"),
            "container": container, "attempt": 0, "init_container": false, "image": "i", "image_id": "",
            "image_ref": "", "log_path": "/dev/null", "created_at": "2026-11-25T10:00:00Z", "spec_hash": ""
        }))
        .unwrap()
    }

    #[test]
    fn cpu_usage_is_the_rate_between_the_last_two_samples_of_a_container() {
        let start = Instant::now();
        let time = Timestamp::now();
        let later = start + Duration::from_secs(10);
        let mut samples = Samples::default();
        samples.record(
            Some(1_000),
            vec![(meta("u1", "a", "app"), 5_000_000_000)],
            start,
            time,
        );
        let first = samples.summary("n", time, None, |_, _| Some(1));
        assert_eq!(
            first.pods[0].containers[0]
                .cpu
                .as_ref()
                .unwrap()
                .usage_nano_cores,
            None,
            "one sample gives no rate"
        );
        assert_eq!(first.node.cpu.as_ref().unwrap().usage_nano_cores, None);

        // 2.5 CPU-seconds in 10 s: a quarter of a core. A container seen for the first time has no rate.
        samples.record(
            Some(1_000 + 20_000_000_000),
            vec![
                (meta("u1", "a", "app"), 7_500_000_000),
                (meta("u2", "b", "new"), 1),
            ],
            later,
            time,
        );
        let second = samples.summary("n", time, None, |_, id| (id == "a").then_some(42));
        assert_eq!(
            second.node.cpu.as_ref().unwrap().usage_nano_cores,
            Some(2_000_000_000)
        );
        let container = |uid: &str| {
            second
                .pods
                .iter()
                .find(|p| p.pod_ref.uid == uid)
                .unwrap()
                .containers[0]
                .clone()
        };
        let a = container("u1");
        assert_eq!(a.cpu.unwrap().usage_nano_cores, Some(250_000_000));
        assert_eq!(a.memory.unwrap().working_set_bytes, Some(42));
        let b = container("u2");
        assert_eq!(b.cpu.unwrap().usage_nano_cores, None);
        assert!(b.memory.is_none(), "its cgroup could not be read");

        // A container that stopped running is forgotten; one whose counter went back starts over.
        samples.record(
            None,
            vec![(meta("u1", "a", "app"), 10)],
            later + Duration::from_secs(10),
            time,
        );
        let third = samples.summary("n", time, None, |_, _| None);
        assert_eq!(third.pods.len(), 1);
        assert_eq!(
            third.pods[0].containers[0]
                .cpu
                .as_ref()
                .unwrap()
                .usage_nano_cores,
            None
        );
        assert!(third.node.cpu.is_none());
    }

    #[test]
    fn containers_are_grouped_by_pod_in_name_order() {
        let now = Instant::now();
        let time = Timestamp::now();
        let mut samples = Samples::default();
        samples.record(
            None,
            vec![
                (meta("u1", "z", "web"), 1),
                (meta("u1", "y", "sidecar"), 1),
                (meta("u2", "x", "web"), 1),
            ],
            now,
            time,
        );
        let summary = samples.summary("n", time, None, |_, _| None);
        let pods: Vec<(&str, Vec<&str>)> = summary
            .pods
            .iter()
            .map(|p| {
                (
                    p.pod_ref.name.as_str(),
                    p.containers.iter().map(|c| c.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            pods,
            vec![("pod-u1", vec!["sidecar", "web"]), ("pod-u2", vec!["web"])]
        );
    }

    #[test]
    fn machine_memory_working_set_is_what_is_not_available() {
        let meminfo =
            "MemTotal:        4000 kB\nMemFree:          1000 kB\nMemAvailable:     3000 kB\n";
        let memory = MachineMemory::parse(meminfo).unwrap();
        let summary = Samples::default().summary("n", Timestamp::now(), Some(memory), |_, _| None);
        let node = summary.node.memory.unwrap();
        assert_eq!(node.working_set_bytes, Some(1000 * 1024));
        assert_eq!(node.available_bytes, Some(3000 * 1024));
        assert_eq!(node.usage_bytes, Some(3000 * 1024));
        assert!(MachineMemory::parse("MemTotal: 1 kB\n").is_none());
    }
}
