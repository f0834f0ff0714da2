//! The node's resource usage, served as kubelet's Summary API for `metrics.k8s.io` (`kubectl top`).
//! Every [`CPU_SAMPLE_PERIOD`] the CPU counters and working sets of the machine and of each running
//! container are read, as kubelet's stats cache is refreshed by its housekeeping; a CPU usage is the rate
//! between a counter's last two readings. So a container has a CPU usage one period after it was first
//! seen running, as under metrics-server, and a Summary costs no reading of its own. The machine's
//! working set is the root memory cgroup's usage less its inactive page cache, as cAdvisor reads it
//! (on cgroup v2, whose root keeps no usage, what `/proc/meminfo` says is not available).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::pod_cgroup;
use crate::agent::runtime::{ContainerMeta, ContainerState, Runtime};
use crate::api::meta::format_time;
use crate::api::stats::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
    SummaryProvider, CPU_SAMPLE_PERIOD,
};

/// A cumulative CPU counter read at one moment.
#[derive(Debug, Clone, Copy)]
struct CpuReading {
    used_ns: u64,
    at: Instant,
    time: Timestamp,
}

impl CpuReading {
    fn now(used_ns: u64) -> CpuReading {
        CpuReading {
            used_ns,
            at: Instant::now(),
            time: Timestamp::now(),
        }
    }
}

/// A counter's last reading and the rate since the one before.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    last: CpuReading,
    nano_cores: Option<u64>,
}

impl CpuSample {
    fn after(previous: Option<&CpuSample>, last: CpuReading) -> CpuSample {
        let nano_cores = previous.and_then(|p| {
            let elapsed = last.at.checked_duration_since(p.last.at)?.as_nanos();
            // A counter that went back belongs to a cgroup made again under the same name.
            let used = last.used_ns.checked_sub(p.last.used_ns)?;
            (elapsed > 0).then(|| (u128::from(used) * 1_000_000_000 / elapsed) as u64)
        });
        CpuSample { last, nano_cores }
    }

    fn stats(&self) -> CpuStats {
        CpuStats {
            time: format_time(self.last.time),
            usage_nano_cores: self.nano_cores,
            usage_core_nano_seconds: Some(self.last.used_ns),
        }
    }
}

/// What one round read of a running container.
#[derive(Debug, Clone)]
struct ContainerReading {
    meta: ContainerMeta,
    cpu: CpuReading,
    working_set: Option<u64>,
}

/// A running container as last sampled.
#[derive(Debug, Clone)]
struct SampledContainer {
    meta: ContainerMeta,
    cpu: CpuSample,
    working_set: Option<u64>,
}

/// The last readings of the machine and of the containers that were running then.
#[derive(Debug, Default)]
struct Samples {
    node_cpu: Option<CpuSample>,
    node_memory: Option<MemoryStats>,
    containers: HashMap<String, SampledContainer>,
}

impl Samples {
    /// Takes one round's readings; containers not among them are forgotten.
    fn record(
        &mut self,
        node_cpu: Option<CpuReading>,
        node_memory: Option<MemoryStats>,
        running: Vec<ContainerReading>,
    ) {
        self.node_cpu = node_cpu.map(|cpu| CpuSample::after(self.node_cpu.as_ref(), cpu));
        self.node_memory = node_memory;
        let previous = std::mem::take(&mut self.containers);
        self.containers = running
            .into_iter()
            .map(|reading| {
                let before = previous.get(&reading.meta.id).map(|c| &c.cpu);
                let sampled = SampledContainer {
                    cpu: CpuSample::after(before, reading.cpu),
                    working_set: reading.working_set,
                    meta: reading.meta,
                };
                (sampled.meta.id.clone(), sampled)
            })
            .collect();
    }

    fn summary(&self, node_name: &str) -> Summary {
        let node = NodeStats {
            node_name: node_name.to_string(),
            cpu: self.node_cpu.as_ref().map(CpuSample::stats),
            memory: self.node_memory.clone(),
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
                memory: sampled.working_set.map(|bytes| MemoryStats {
                    time: format_time(sampled.cpu.last.time),
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
pub(in crate::agent) struct MachineMemory {
    pub total: u64,
    pub free: u64,
    pub available: u64,
}

impl MachineMemory {
    pub fn read() -> Option<MachineMemory> {
        MachineMemory::parse(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

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

    /// The machine's memory as the Summary reports it; `root_working_set` is the root cgroup's, if
    /// it keeps one.
    fn stats(&self, root_working_set: Option<u64>, time: Timestamp) -> MemoryStats {
        MemoryStats {
            time: format_time(time),
            available_bytes: Some(self.available),
            usage_bytes: Some(self.total.saturating_sub(self.free)),
            working_set_bytes: Some(
                root_working_set.unwrap_or(self.total.saturating_sub(self.available)),
            ),
        }
    }
}

/// The CPU time the whole machine has used from `/proc/stat` (in USER_HZ ticks, 100 a second on Linux),
/// for a cgroup v2 root that keeps no `cpu.stat` (kernels before 5.8).
fn machine_cpu_from_proc_stat(stat: &str) -> Option<u64> {
    const NS_PER_TICK: u64 = 10_000_000;
    let fields: Vec<u64> = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user, nice, system, idle, iowait, irq, softirq, steal: all but idle and iowait were busy.
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| fields.get(i))
        .sum();
    Some(busy * NS_PER_TICK)
}

fn machine_cpu(root: &Path) -> Option<u64> {
    pod_cgroup::cpu_usage(root, "")
        .or_else(|| machine_cpu_from_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?))
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

    /// Reads the machine and every container running now.
    fn sample(&self) {
        let root = &self.cgroup_root;
        let node_cpu = machine_cpu(root).map(CpuReading::now);
        let node_memory = MachineMemory::read()
            .map(|m| m.stats(pod_cgroup::working_set(root, ""), Timestamp::now()));
        let running: Vec<ContainerReading> = self
            .runtime
            .list()
            .into_iter()
            .filter(|m| matches!(self.runtime.state(&m.id), Ok(ContainerState::Running(_))))
            .filter_map(|meta| {
                let cgroup = pod_cgroup::container_path(&meta.pod_uid, &meta.id);
                let cpu = CpuReading::now(pod_cgroup::cpu_usage(root, &cgroup)?);
                let working_set = pod_cgroup::working_set(root, &cgroup);
                Some(ContainerReading {
                    meta,
                    cpu,
                    working_set,
                })
            })
            .collect();
        self.samples
            .lock()
            .expect("stats samples lock")
            .record(node_cpu, node_memory, running);
    }
}

impl SummaryProvider for NodeSummary {
    fn node_name(&self) -> &str {
        &self.node_name
    }

    fn summary(&self) -> Summary {
        self.samples
            .lock()
            .expect("stats samples lock")
            .summary(&self.node_name)
    }
}

/// Samples `summary`'s node every [`CPU_SAMPLE_PERIOD`] until `shutdown`, off the async workers (a node
/// with a thousand containers reads a few thousand files).
pub async fn run(summary: Arc<NodeSummary>, mut shutdown: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(CPU_SAMPLE_PERIOD);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let sampling = summary.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sampling.sample()).await {
            tracing::warn!(error = %e, "sampling the node's resource usage");
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

    fn cpu(used_ns: u64, at: Instant) -> CpuReading {
        CpuReading {
            used_ns,
            at,
            time: "2026-11-25T10:00:10Z".parse().unwrap(),
        }
    }

    fn reading(uid: &str, id: &str, used_ns: u64, at: Instant) -> ContainerReading {
        ContainerReading {
            meta: meta(uid, id, "app"),
            cpu: cpu(used_ns, at),
            working_set: Some(42),
        }
    }

    fn nano_cores(summary: &Summary, uid: &str) -> Option<u64> {
        let pod = summary.pods.iter().find(|p| p.pod_ref.uid == uid).unwrap();
        pod.containers[0].cpu.as_ref().unwrap().usage_nano_cores
    }

    #[test]
    fn cpu_usage_is_the_rate_between_the_last_two_readings_of_a_counter() {
        let start = Instant::now();
        let later = start + Duration::from_secs(10);
        let mut samples = Samples::default();
        samples.record(
            Some(cpu(1_000, start)),
            None,
            vec![reading("u1", "a", 5_000_000_000, start)],
        );
        let first = samples.summary("n");
        assert_eq!(nano_cores(&first, "u1"), None, "one reading gives no rate");
        assert_eq!(first.node.cpu.as_ref().unwrap().usage_nano_cores, None);

        // 2.5 CPU-seconds in 10 s: a quarter of a core. A container seen for the first time has no rate.
        samples.record(
            Some(cpu(1_000 + 20_000_000_000, later)),
            None,
            vec![
                reading("u1", "a", 7_500_000_000, later),
                reading("u2", "b", 1, later),
            ],
        );
        let second = samples.summary("n");
        assert_eq!(
            second.node.cpu.as_ref().unwrap().usage_nano_cores,
            Some(2_000_000_000)
        );
        assert_eq!(nano_cores(&second, "u1"), Some(250_000_000));
        assert_eq!(nano_cores(&second, "u2"), None);
        let memory = second.pods[0].containers[0].memory.clone().unwrap();
        assert_eq!(memory.working_set_bytes, Some(42));
        assert_eq!(memory.time, "2026-11-25T10:00:10Z");

        // A container that stopped running is forgotten; one whose counter went back starts over.
        samples.record(
            None,
            None,
            vec![reading("u1", "a", 10, later + Duration::from_secs(10))],
        );
        let third = samples.summary("n");
        assert_eq!(third.pods.len(), 1);
        assert_eq!(nano_cores(&third, "u1"), None);
        assert!(third.node.cpu.is_none());
    }

    #[test]
    fn containers_are_grouped_by_pod_in_name_order() {
        let now = Instant::now();
        let mut samples = Samples::default();
        let named = |uid: &str, id: &str, container: &str| ContainerReading {
            meta: meta(uid, id, container),
            cpu: cpu(1, now),
            working_set: None,
        };
        samples.record(
            None,
            None,
            vec![
                named("u1", "z", "web"),
                named("u1", "y", "sidecar"),
                named("u2", "x", "web"),
            ],
        );
        let summary = samples.summary("n");
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
        assert!(summary.pods[0].containers[0].memory.is_none());
    }

    #[test]
    fn the_machines_working_set_is_its_root_cgroups_or_else_what_is_not_available() {
        let meminfo =
            "MemTotal:        4000 kB\nMemFree:          1000 kB\nMemAvailable:     3000 kB\n";
        let memory = MachineMemory::parse(meminfo).unwrap();
        let time = Timestamp::now();
        let from_meminfo = memory.stats(None, time);
        assert_eq!(from_meminfo.working_set_bytes, Some(1000 * 1024));
        assert_eq!(from_meminfo.available_bytes, Some(3000 * 1024));
        assert_eq!(from_meminfo.usage_bytes, Some(3000 * 1024));
        assert_eq!(memory.stats(Some(7), time).working_set_bytes, Some(7));
        assert!(MachineMemory::parse("MemTotal: 1 kB\n").is_none());
    }

    #[test]
    fn the_machines_cpu_time_from_proc_stat_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 2 30 5000 40 1 2 3 0 0\ncpu0 50 1 15 2500 20 0 1 1 0 0\n";
        assert_eq!(
            machine_cpu_from_proc_stat(stat),
            Some((100 + 2 + 30 + 1 + 2 + 3) * 10_000_000)
        );
        assert_eq!(machine_cpu_from_proc_stat("intr 1 2\n"), None);
    }
}
