//! What the kubelet does on a timer rather than per pod:
//! - the node's pressure conditions from kubelet's hard eviction thresholds (`--eviction-hard`, same
//!   syntax and defaults as kubelet's);
//! - image garbage collection when the image filesystem fills up (kubelet's 85 % / 80 % thresholds),
//!   and, when a threshold stays crossed after that, the eviction of one pod per round (`eviction.rs`);
//! - the removal of pod cgroups that were still in use when their pod was released or that belong to no
//!   pod the node knows (left by an agent that stopped first), and of pod networks whose removal failed;
//! - the node's network rules, put back when something outside changed them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::stats::MachineMemory;
use super::{eviction, pod_cgroup, Kubelet};
use crate::agent::node::NodePressure;
use crate::agent::AgentError;

/// kubelet's default `--eviction-hard` on Linux.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%";
/// How long a stopping kubelet waits before its last try at removing pod cgroups still in use.
const LAST_CGROUP_TRY: Duration = Duration::from_millis(500);
/// How often the thresholds are compared with the machine (kubelet's eviction monitoring interval).
const PRESSURE_PERIOD: Duration = Duration::from_secs(10);
/// How often images are considered for removal (kubelet's ImageGCPeriod).
const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
const IMAGE_GC_HIGH_PERCENT: u8 = 85;
const IMAGE_GC_LOW_PERCENT: u8 = 80;

/// What the node has left of one resource, as kubelet's eviction signals name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
    PidAvailable,
}

impl Signal {
    fn parse(name: &str) -> Option<Signal> {
        Some(match name {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodefsAvailable,
            "nodefs.inodesFree" => Signal::NodefsInodesFree,
            "imagefs.available" => Signal::ImagefsAvailable,
            "imagefs.inodesFree" => Signal::ImagefsInodesFree,
            "pid.available" => Signal::PidAvailable,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Limit {
    Absolute(u64),
    /// A fraction of the capacity, 0..=1.
    Fraction(f64),
}

/// One `signal<quantity|percent>` of `--eviction-hard`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    signal: Signal,
    limit: Limit,
}

/// Parses kubelet's `--eviction-hard` (`memory.available<100Mi,nodefs.available<10%`); an empty text sets
/// no threshold.
pub fn parse_thresholds(text: &str) -> Result<Vec<Threshold>, AgentError> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| AgentError::Config(format!("--eviction-hard {item:?}: {why}"));
        let (name, value) = item
            .split_once('<')
            .ok_or_else(|| bad("expected <signal><<quantity>, e.g. memory.available<100Mi"))?;
        let signal = Signal::parse(name.trim()).ok_or_else(|| {
            bad(
                "unknown signal (memory.available, nodefs.available, nodefs.inodesFree, \
                 imagefs.available, imagefs.inodesFree, pid.available)",
            )
        })?;
        let value = value.trim();
        let limit = if let Some(percent) = value.strip_suffix('%') {
            let p: f64 = percent
                .parse()
                .map_err(|_| bad("the percentage is not a number"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad("the percentage must be between 0% and 100%"));
            }
            Limit::Fraction(p / 100.0)
        } else {
            let bytes = crate::api::quantity::parse_quantity(value)
                .map_err(|e| bad(&e.to_string()))?
                .to_bytes();
            Limit::Absolute(
                u64::try_from(bytes).map_err(|_| bad("the quantity must not be negative"))?,
            )
        };
        out.push(Threshold { signal, limit });
    }
    Ok(out)
}

/// kubelet's node allocatable: the capacity less what the hard eviction thresholds keep back, for memory
/// (memory.available) and ephemeral-storage (nodefs.available), so that the scheduler does not fill the
/// node past the point where it starts evicting.
pub fn allocatable(
    capacity: &BTreeMap<String, String>,
    thresholds: &[Threshold],
) -> BTreeMap<String, String> {
    let mut out = capacity.clone();
    for (resource, signal) in [
        ("memory", Signal::MemoryAvailable),
        ("ephemeral-storage", Signal::NodefsAvailable),
    ] {
        let Some(total) = capacity
            .get(resource)
            .and_then(|q| crate::api::quantity::parse_quantity(q).ok())
            .and_then(|q| u64::try_from(q.to_bytes()).ok())
        else {
            continue;
        };
        let kept: u64 = thresholds
            .iter()
            .filter(|t| t.signal == signal)
            .map(|t| match t.limit {
                Limit::Absolute(bytes) => bytes,
                Limit::Fraction(f) => (total as f64 * f) as u64,
            })
            .max()
            .unwrap_or(0);
        out.insert(
            resource.to_string(),
            format!("{}Ki", total.saturating_sub(kept) / 1024),
        );
    }
    out
}

/// How much of a resource there is and how much is left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub capacity: u64,
    pub available: u64,
}

/// A threshold the node is below: the signal, the threshold as a quantity, and what is available.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossed {
    pub signal: Signal,
    pub threshold: u64,
    pub available: u64,
}

/// The thresholds the node is below, given `read` for each signal (None: not measurable here).
pub fn evaluate(
    thresholds: &[Threshold],
    read: impl Fn(Signal) -> Option<Reading>,
) -> Vec<Crossed> {
    thresholds
        .iter()
        .filter_map(|t| {
            let r = read(t.signal)?;
            let threshold = match t.limit {
                Limit::Absolute(n) => n,
                Limit::Fraction(f) => (r.capacity as f64 * f) as u64,
            };
            (r.available < threshold).then_some(Crossed {
                signal: t.signal,
                threshold,
                available: r.available,
            })
        })
        .collect()
}

/// The node conditions the crossed thresholds set.
pub fn pressure_of(crossed: &[Crossed]) -> NodePressure {
    let mut pressure = NodePressure::default();
    for c in crossed {
        match c.signal {
            Signal::MemoryAvailable => pressure.memory = true,
            Signal::PidAvailable => pressure.pid = true,
            _ => pressure.disk = true,
        }
    }
    pressure
}

/// Reads the machine: memory from /proc/meminfo, the node and image filesystems from statvfs of the data
/// directory and the image store, pids from pid_max and the processes that exist.
fn read_machine(signal: Signal, data_dir: &Path, image_dir: &Path) -> Option<Reading> {
    let statvfs = |path: &Path| nix::sys::statvfs::statvfs(path).ok();
    match signal {
        Signal::MemoryAvailable => {
            let memory = MachineMemory::read()?;
            Some(Reading {
                capacity: memory.total,
                available: memory.available,
            })
        }
        Signal::NodefsAvailable | Signal::ImagefsAvailable => {
            let dir = if signal == Signal::NodefsAvailable {
                data_dir
            } else {
                image_dir
            };
            let s = statvfs(dir)?;
            let block = s.fragment_size();
            Some(Reading {
                capacity: s.blocks() * block,
                available: s.blocks_available() * block,
            })
        }
        Signal::NodefsInodesFree | Signal::ImagefsInodesFree => {
            let dir = if signal == Signal::NodefsInodesFree {
                data_dir
            } else {
                image_dir
            };
            let s = statvfs(dir)?;
            // Filesystems without an inode table (btrfs) report none: nothing to run out of.
            (s.files() > 0).then(|| Reading {
                capacity: s.files(),
                available: s.files_available(),
            })
        }
        Signal::PidAvailable => {
            let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let used = std::fs::read_dir("/proc")
                .ok()?
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64;
            Some(Reading {
                capacity: max,
                available: max.saturating_sub(used),
            })
        }
    }
}

/// Compares the machine with the thresholds every 10 s, publishing the node's pressure through `pressure`
/// (the node heartbeat posts it at once when it changes), and collects unused images every 5 minutes or
/// sooner under disk pressure.
pub(super) async fn run(
    kubelet: Arc<Kubelet>,
    thresholds: Vec<Threshold>,
    pressure: watch::Sender<NodePressure>,
    mut shutdown: watch::Receiver<bool>,
) {
    let data_dir = kubelet.config.data_dir.clone();
    let image_dir = data_dir.join("agent/store");
    let mut last_gc = tokio::time::Instant::now();
    let mut rules_failure: Option<String> = None;
    loop {
        let read = |s| read_machine(s, &data_dir, &image_dir);
        let mut crossed = evaluate(&thresholds, read);
        let disk = pressure_of(&crossed).disk;
        if disk || last_gc.elapsed() >= IMAGE_GC_PERIOD {
            last_gc = tokio::time::Instant::now();
            collect_images(&kubelet);
            // Reclaiming node-level resources comes first: no pod is evicted for what GC freed.
            if disk {
                crossed = evaluate(&thresholds, read);
            }
        }
        let now = pressure_of(&crossed);
        pressure.send_if_modified(|current| {
            let changed = *current != now;
            if changed {
                tracing::info!(
                    memory = now.memory,
                    disk = now.disk,
                    pid = now.pid,
                    "node pressure changed"
                );
            }
            *current = now;
            changed
        });
        eviction::evict_one(&kubelet, &crossed);
        kubelet.evict_past_storage_limits();
        find_orphaned_cgroups(&kubelet);
        remove_leftover_cgroups(&kubelet);
        remove_leftover_sandboxes(&kubelet).await;
        match kubelet.network.remove_stray_veths().await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(
                    removed,
                    "deleted the veths of pod namespaces held past their pod"
                )
            }
            Err(e) => tracing::debug!(error = %e, "deleting stray veths"),
        }
        // The same failure every round is warned about once.
        match kubelet.network.converge_host_rules().await {
            Ok(()) => rules_failure = None,
            Err(e) => {
                let failure = e.to_string();
                if rules_failure.as_ref() != Some(&failure) {
                    tracing::warn!(error = %failure, "putting the node's network rules back");
                }
                rules_failure = Some(failure);
            }
        }
        let stopping = tokio::select! {
            _ = tokio::time::sleep(PRESSURE_PERIOD) => false,
            _ = shutdown.wait_for(|s| *s) => true,
        };
        if stopping {
            // Shims finish deleting their containers within moments: a last try before leaving.
            tokio::time::sleep(LAST_CGROUP_TRY).await;
            remove_leftover_cgroups(&kubelet);
            return;
        }
    }
}

/// Marks for removal the pod cgroups of pods the node no longer knows, as kubelet cleans up orphaned pod
/// cgroups: those an agent that stopped or was killed left before it could remove them.
fn find_orphaned_cgroups(kubelet: &Kubelet) {
    let mut known: HashSet<String> = kubelet
        .known
        .lock()
        .expect("lock")
        .values()
        .filter_map(|pod| pod.metadata.uid.clone())
        .collect();
    known.extend(
        kubelet
            .pods
            .list()
            .iter()
            .filter_map(|p| p.metadata.uid.clone()),
    );
    known.extend(kubelet.runtime.list().into_iter().map(|m| m.pod_uid));
    let orphans: Vec<String> = pod_cgroup::pod_uids(Path::new(pod_cgroup::ROOT))
        .into_iter()
        .filter(|uid| !known.contains(uid))
        .collect();
    if !orphans.is_empty() {
        tracing::info!(
            pods = orphans.len(),
            "removing the cgroups of pods that are gone"
        );
        kubelet
            .leftover_cgroups
            .lock()
            .expect("lock")
            .extend(orphans);
    }
}

fn remove_leftover_cgroups(kubelet: &Kubelet) {
    kubelet
        .leftover_cgroups
        .lock()
        .expect("lock")
        .retain(|uid| !pod_cgroup::remove(Path::new(pod_cgroup::ROOT), uid));
}

async fn remove_leftover_sandboxes(kubelet: &Kubelet) {
    let leftovers: Vec<String> = kubelet
        .leftover_sandboxes
        .lock()
        .expect("lock")
        .iter()
        .cloned()
        .collect();
    for uid in leftovers {
        match kubelet.network.remove_sandbox(&uid).await {
            Ok(()) => {
                tracing::info!(pod = %uid, "removed the network of a released pod");
                kubelet
                    .leftover_sandboxes
                    .lock()
                    .expect("lock")
                    .remove(&uid);
            }
            Err(e) => tracing::debug!(pod = %uid, error = %e, "removing the pod network"),
        }
    }
}

/// kubelet's image GC: images no container on the node uses, least recently used first.
fn collect_images(kubelet: &Kubelet) {
    let in_use: HashSet<String> = kubelet
        .runtime
        .list()
        .into_iter()
        .flat_map(|m| [m.image_id, m.image])
        .collect();
    match kubelet
        .images
        .garbage_collect(&in_use, IMAGE_GC_HIGH_PERCENT, IMAGE_GC_LOW_PERCENT)
    {
        Ok(report) if !report.removed.is_empty() => tracing::info!(
            removed = ?report.removed,
            usage_percent = report.usage_percent,
            "image garbage collection"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "image garbage collection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_keeps_back_what_eviction_would_reclaim() {
        let capacity: BTreeMap<String, String> = [
            ("cpu", "2"),
            ("memory", "8Gi"),
            ("ephemeral-storage", "100Gi"),
            ("pods", "110"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let thresholds = parse_thresholds("memory.available<100Mi,nodefs.available<10%").unwrap();
        let left = allocatable(&capacity, &thresholds);
        assert_eq!(left["memory"], format!("{}Ki", (8 << 20) - 100 * 1024));
        assert_eq!(left["ephemeral-storage"], format!("{}Ki", 90 << 20));
        assert_eq!((left["cpu"].as_str(), left["pods"].as_str()), ("2", "110"));
        assert_eq!(
            allocatable(&capacity, &[])["memory"],
            format!("{}Ki", 8 << 20)
        );
    }

    #[test]
    fn parses_kubelet_syntax_and_rejects_bad_thresholds() {
        let t = parse_thresholds(DEFAULT_EVICTION_HARD).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            t[0],
            Threshold {
                signal: Signal::MemoryAvailable,
                limit: Limit::Absolute(100 << 20)
            }
        );
        assert_eq!(t[1].limit, Limit::Fraction(0.10));
        assert!(parse_thresholds("").unwrap().is_empty());
        for bad in [
            "memory.available>1Gi",
            "swap.available<1Gi",
            "nodefs.available<150%",
            "memory.available<lots",
        ] {
            let e = parse_thresholds(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn pressure_follows_the_signal_that_crossed_its_threshold() {
        let t = parse_thresholds("memory.available<1Gi,nodefs.available<10%,pid.available<100")
            .unwrap();
        let machine = |memory: u64, disk_free: u64, pids_free: u64| {
            move |s: Signal| match s {
                Signal::MemoryAvailable => Some(Reading {
                    capacity: 8 << 30,
                    available: memory,
                }),
                Signal::NodefsAvailable => Some(Reading {
                    capacity: 1000,
                    available: disk_free,
                }),
                Signal::PidAvailable => Some(Reading {
                    capacity: 4096,
                    available: pids_free,
                }),
                _ => None,
            }
        };
        assert_eq!(
            pressure_of(&evaluate(&t, machine(2 << 30, 500, 4000))),
            NodePressure::default()
        );
        let low_memory = pressure_of(&evaluate(&t, machine(512 << 20, 500, 4000)));
        assert!(low_memory.memory && !low_memory.disk && !low_memory.pid);
        let full_disk = pressure_of(&evaluate(&t, machine(2 << 30, 99, 4000)));
        assert!(full_disk.disk && !full_disk.memory);
        assert_eq!(
            evaluate(&t, machine(2 << 30, 99, 4000)),
            vec![Crossed {
                signal: Signal::NodefsAvailable,
                threshold: 100,
                available: 99
            }]
        );
        // Exactly at the threshold is not below it.
        assert!(evaluate(&t, machine(2 << 30, 100, 4000)).is_empty());
        assert!(pressure_of(&evaluate(&t, machine(2 << 30, 500, 50))).pid);
        // A signal the machine cannot measure never reports pressure.
        assert!(evaluate(&t, |_| None).is_empty());
    }
}
