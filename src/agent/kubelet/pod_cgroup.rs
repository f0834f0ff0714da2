//! The pod's cgroup, `/orch/pod<uid>`: the parent of its containers' cgroups (libcontainer creates those
//! below it), holding the pod-level limits kubelet sets, so that a pod's containers together stay within
//! what they declared, and where eviction reads a pod's usage. On the hybrid layout each v1 hierarchy
//! (memory, cpu, pids, …) has its own copy of the directory; on cgroup v2 there is one. A resize
//! writes new limits into the pod's and its containers' cgroups, in an order the kernel accepts.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::agent::runtime::Resources;

/// Where the cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// Controllers a pod cgroup needs on cgroup v2, enabled for its ancestors as libcontainer does for its
/// own cgroups.
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct CgroupError {
    action: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError {
        action,
        path,
        source,
    }
}

/// The pod's cgroup, relative to a hierarchy's root.
pub fn path(uid: &str) -> String {
    format!("/orch/pod{}", uid.replace('-', "_"))
}

/// The cgroup of the pod's container `id`, relative to a hierarchy's root.
pub fn container_path(uid: &str, id: &str) -> String {
    format!("{}/{id}", path(uid))
}

/// The directory of `relative` in the hierarchy of `controller`: the v1 one where the controller has its
/// own (the hybrid layout), else the unified one.
pub fn controller_dir(root: &Path, controller: &str, relative: &str) -> PathBuf {
    let relative = relative.trim_start_matches('/');
    let v1 = root.join(controller);
    if v1.is_dir() {
        v1.join(relative)
    } else {
        root.join(relative)
    }
}

/// Creates the pod's cgroup with `limits` (from `container::pod_resources`) unless it exists: it is
/// created before the pod's first container; a resize changes its limits ([`resize`]).
pub fn create(root: &Path, uid: &str, limits: &Resources) -> Result<(), CgroupError> {
    let relative = path(uid);
    let settings = settings(root, limits);
    if root.join("memory").is_dir() || root.join("cpu").is_dir() {
        for controller in ["memory", "cpu"] {
            // A kernel without the controller has no hierarchy for it: nothing to limit there.
            if !root.join(controller).is_dir() {
                continue;
            }
            let dir = controller_dir(root, controller, &relative);
            if create_dir(&dir)? {
                for setting in settings.iter().filter(|s| s.controller == controller) {
                    write(&dir, setting.file, &setting.value)?;
                }
            }
        }
        return Ok(());
    }
    let relative = Path::new(relative.trim_start_matches('/'));
    let dir = root.join(relative);
    let mut ancestor = root.to_path_buf();
    for component in relative.parent().into_iter().flat_map(|p| p.iter()) {
        enable_v2_controllers(&ancestor)?;
        ancestor = ancestor.join(component);
        create_dir(&ancestor)?;
    }
    enable_v2_controllers(&ancestor)?;
    if create_dir(&dir)? {
        for setting in &settings {
            write(&dir, setting.file, &setting.value)?;
        }
    }
    Ok(())
}

/// One cgroup file a limit is written to, with the amount it stands for (to tell a raise from a cut).
struct Setting {
    controller: &'static str,
    file: &'static str,
    value: String,
    amount: i64,
}

/// The files `limits` are written to, on the v1 hierarchy of each controller where it has one, else
/// the unified one. Unset limits are left as they are: a resize cannot take a limit away.
fn settings(root: &Path, limits: &Resources) -> Vec<Setting> {
    let v1 = |controller: &str| root.join(controller).is_dir();
    let mut settings = Vec::new();
    if let Some(bytes) = limits.memory_limit {
        let file = if v1("memory") {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        settings.push(Setting {
            controller: "memory",
            file,
            value: bytes.to_string(),
            amount: bytes,
        });
    }
    if let Some(shares) = limits.cpu_shares {
        let (file, amount) = if v1("cpu") {
            ("cpu.shares", shares)
        } else {
            ("cpu.weight", cpu_weight(shares))
        };
        settings.push(Setting {
            controller: "cpu",
            file,
            value: amount.to_string(),
            amount: amount as i64,
        });
    }
    if let (Some(quota), Some(period)) = (limits.cpu_quota, limits.cpu_period) {
        if v1("cpu") {
            // The period first: the quota is checked against it.
            settings.push(Setting {
                controller: "cpu",
                file: "cpu.cfs_period_us",
                value: period.to_string(),
                amount: period as i64,
            });
            settings.push(Setting {
                controller: "cpu",
                file: "cpu.cfs_quota_us",
                value: quota.to_string(),
                amount: quota,
            });
        } else {
            settings.push(Setting {
                controller: "cpu",
                file: "cpu.max",
                value: format!("{quota} {period}"),
                amount: quota,
            });
        }
    }
    settings
}

/// The amount a cgroup file holds: its first number, unlimited (`max`, -1) as the largest.
fn current_amount(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.split_whitespace().next()? {
        "max" | "-1" => Some(i64::MAX),
        n => n.parse().ok(),
    }
}

/// Gives a resized pod its new limits: its cgroup's and those of its running containers (by id), as
/// kubelet's doPodResizeAction orders them: a value the pod gains is raised on the pod before its
/// containers, one it loses is lowered on the containers first, so that no container ever has more
/// than the pod (the kernel refuses a CPU quota above the parent's). Without `lower_pod` the pod's
/// limits are only raised (a container still running with more is being restarted).
pub fn resize(
    root: &Path,
    uid: &str,
    pod: &Resources,
    containers: &[(&str, &Resources)],
    lower_pod: bool,
) -> Result<(), CgroupError> {
    let relative = path(uid);
    let mut lowered = Vec::new();
    for setting in settings(root, pod) {
        let dir = controller_dir(root, setting.controller, &relative);
        match current_amount(&dir.join(setting.file)) {
            Some(now) if now == setting.amount => {}
            Some(now) if setting.amount < now => lowered.push((dir, setting)),
            _ => apply(&dir, &setting)?,
        }
    }
    for (id, limits) in containers {
        let container = container_path(uid, id);
        for setting in settings(root, limits) {
            let dir = controller_dir(root, setting.controller, &container);
            apply(&dir, &setting)?;
        }
    }
    for (dir, setting) in lowered.into_iter().filter(|_| lower_pod) {
        apply(&dir, &setting)?;
    }
    Ok(())
}

/// Writes a setting; a v1 memory limit together with the memory+swap limit when that was kept equal to
/// it (as runc sets a container's without swap): the kernel wants memory+swap never below memory, so
/// it moves first when the limit grows and last when it shrinks.
fn apply(dir: &Path, setting: &Setting) -> Result<(), CgroupError> {
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    if setting.file != "memory.limit_in_bytes" {
        return write(dir, setting.file, &setting.value);
    }
    let memory = current_amount(&dir.join(setting.file));
    let with_swap = memory.is_some() && current_amount(&dir.join(MEMSW)) == memory;
    if !with_swap {
        return write(dir, setting.file, &setting.value);
    }
    if memory.is_some_and(|now| setting.amount > now) {
        write(dir, MEMSW, &setting.value)?;
        write(dir, setting.file, &setting.value)
    } else {
        write(dir, setting.file, &setting.value)?;
        write(dir, MEMSW, &setting.value)
    }
}

/// The memory the cgroup at `relative` (a pod's or a container's) uses now, in bytes.
pub fn memory_usage(root: &Path, relative: &str) -> Option<i64> {
    let dir = controller_dir(root, "memory", relative);
    ["memory.usage_in_bytes", "memory.current"]
        .iter()
        .find_map(|file| current_amount(&dir.join(file)))
}

/// Memory in use minus the inactive page cache the kernel can drop (cAdvisor's working set, what
/// eviction and `kubectl top` count), in bytes.
pub fn working_set(root: &Path, relative: &str) -> Option<u64> {
    let usage = memory_usage(root, relative)?.max(0) as u64;
    let inactive_key = if root.join("memory").is_dir() {
        "total_inactive_file"
    } else {
        "inactive_file"
    };
    let stat = controller_dir(root, "memory", relative).join("memory.stat");
    let inactive = std::fs::read_to_string(stat)
        .ok()
        .and_then(|stat| stat_value(&stat, inactive_key))
        .unwrap_or(0);
    Some(usage.saturating_sub(inactive))
}

/// The CPU time the cgroup at `relative` (the empty path for the whole machine) has used, in
/// nanoseconds: cpuacct's counter on cgroup v1, `cpu.stat`'s `usage_usec` on v2.
pub fn cpu_usage(root: &Path, relative: &str) -> Option<u64> {
    let dir = controller_dir(root, "cpuacct", relative);
    if root.join("cpuacct").is_dir() {
        let text = std::fs::read_to_string(dir.join("cpuacct.usage")).ok()?;
        return text.trim().parse().ok();
    }
    let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    stat_value(&stat, "usage_usec").map(|micros| micros * 1000)
}

/// The value of `key` in a cgroup stat file's `key value` lines.
fn stat_value(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok())?
    })
}

/// cgroup v1 shares (2..262144) as a v2 weight (1..10000), the conversion runc and kubelet use.
fn cpu_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// Lets the children of `dir` use the controllers a pod cgroup needs, of those `dir` has.
fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available_file = dir.join("cgroup.controllers");
    let available =
        std::fs::read_to_string(&available_file).map_err(io_error("reading", &available_file))?;
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(dir, "cgroup.subtree_control", &missing.join(" "))
}

/// Whether `dir` was created now (its parents are created as needed).
fn create_dir(dir: &Path) -> Result<bool, CgroupError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error("creating", dir)(e)),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    std::fs::write(&path, value).map_err(io_error("writing", &path))
}

/// The uids of the pods that have a cgroup under the agent's parent cgroup, in any hierarchy.
pub fn pod_uids(root: &Path) -> BTreeSet<String> {
    let parent = path("");
    let parent = parent.trim_start_matches('/');
    let (parent_dir, prefix) = parent.split_once('/').unwrap_or(("", parent));
    let hierarchies = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path());
    std::iter::once(root.to_path_buf())
        .chain(hierarchies)
        .flat_map(|h| {
            std::fs::read_dir(h.join(parent_dir))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| {
            let name = entry.file_name();
            Some(name.to_str()?.strip_prefix(prefix)?.replace('_', "-"))
        })
        .filter(|uid| !uid.is_empty())
        .collect()
}

/// Removes the pod's cgroup directories, with the containers' own that are empty, under the v1
/// hierarchies and the unified one; whether none is left. What still holds a process stays: a shim
/// deletes its container (and that container's cgroup) in its own time, so the kubelet tries again.
pub fn remove(root: &Path, uid: &str) -> bool {
    let relative = path(uid);
    let relative = relative.trim_start_matches('/');
    let Ok(hierarchies) = std::fs::read_dir(root) else {
        return true;
    };
    let mut candidates = vec![root.join(relative)];
    for h in hierarchies.flatten() {
        candidates.push(h.path().join(relative));
    }
    let mut gone = true;
    for dir in candidates {
        if let Ok(children) = std::fs::read_dir(&dir) {
            for child in children.flatten() {
                if child.path().is_dir() {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
        }
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => gone = false,
            _ => {}
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn guaranteed() -> Resources {
        Resources {
            memory_limit: Some(32 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            pids_limit: None,
        }
    }

    #[test]
    fn a_resize_writes_the_pod_and_its_containers_and_moves_memory_and_swap_together() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu"] {
            std::fs::create_dir(root.path().join(h)).unwrap();
        }
        create(root.path(), "a-b", &guaranteed()).unwrap();
        let pod_memory = root.path().join("memory/orch/poda_b");
        let container_memory = pod_memory.join("c1");
        let container_cpu = root.path().join("cpu/orch/poda_b/c1");
        std::fs::create_dir_all(&container_memory).unwrap();
        std::fs::create_dir_all(&container_cpu).unwrap();
        // As runc leaves a container without swap: memory+swap equal to memory.
        std::fs::write(container_memory.join("memory.limit_in_bytes"), "1048576").unwrap();
        std::fs::write(
            container_memory.join("memory.memsw.limit_in_bytes"),
            "1048576",
        )
        .unwrap();
        std::fs::write(
            pod_memory.join("memory.memsw.limit_in_bytes"),
            "9223372036854771712",
        )
        .unwrap();
        let bigger = Resources {
            memory_limit: Some(64 << 20),
            cpu_shares: Some(1024),
            cpu_quota: Some(80_000),
            ..guaranteed()
        };
        let container = Resources {
            memory_limit: Some(48 << 20),
            ..bigger.clone()
        };
        resize(root.path(), "a-b", &bigger, &[("c1", &container)], true).unwrap();
        assert_eq!(
            read(pod_memory.join("memory.limit_in_bytes")),
            (64 << 20).to_string()
        );
        assert_eq!(
            read(pod_memory.join("memory.memsw.limit_in_bytes")),
            "9223372036854771712",
            "a pod's unlimited memory+swap stays so"
        );
        assert_eq!(
            read(container_memory.join("memory.limit_in_bytes")),
            (48 << 20).to_string()
        );
        assert_eq!(
            read(container_memory.join("memory.memsw.limit_in_bytes")),
            (48 << 20).to_string()
        );
        assert_eq!(read(container_cpu.join("cpu.cfs_quota_us")), "80000");
        assert_eq!(read(container_cpu.join("cpu.shares")), "1024");
        assert_eq!(
            read(root.path().join("cpu/orch/poda_b/cpu.cfs_quota_us")),
            "80000"
        );
        std::fs::write(container_memory.join("memory.usage_in_bytes"), "123").unwrap();
        assert_eq!(
            memory_usage(root.path(), &container_path("a-b", "c1")),
            Some(123)
        );
        // While a container is being restarted the pod's limits only grow.
        resize(root.path(), "a-b", &guaranteed(), &[], false).unwrap();
        assert_eq!(
            read(pod_memory.join("memory.limit_in_bytes")),
            (64 << 20).to_string()
        );
        resize(root.path(), "a-b", &guaranteed(), &[], true).unwrap();
        assert_eq!(
            read(pod_memory.join("memory.limit_in_bytes")),
            (32 << 20).to_string()
        );
    }

    #[test]
    fn usage_is_read_from_cpuacct_and_memory_on_v1_and_from_the_unified_files_on_v2() {
        let v1 = tempfile::tempdir().unwrap();
        let container = v1.path().join("memory/orch/podu/c");
        std::fs::create_dir_all(&container).unwrap();
        std::fs::create_dir_all(v1.path().join("cpuacct/orch/podu/c")).unwrap();
        std::fs::write(v1.path().join("cpuacct/cpuacct.usage"), "900\n").unwrap();
        std::fs::write(v1.path().join("cpuacct/orch/podu/c/cpuacct.usage"), "77\n").unwrap();
        std::fs::write(container.join("memory.usage_in_bytes"), "10000\n").unwrap();
        std::fs::write(
            container.join("memory.stat"),
            "inactive_file 5\ntotal_inactive_file 4000\n",
        )
        .unwrap();
        assert_eq!(cpu_usage(v1.path(), ""), Some(900));
        assert_eq!(cpu_usage(v1.path(), "/orch/podu/c"), Some(77));
        assert_eq!(working_set(v1.path(), "/orch/podu/c"), Some(6000));
        assert_eq!(working_set(v1.path(), "/orch/podu/gone"), None);

        let v2 = tempfile::tempdir().unwrap();
        let container = v2.path().join("orch/podu/c");
        std::fs::create_dir_all(&container).unwrap();
        std::fs::write(
            container.join("cpu.stat"),
            "usage_usec 12\nuser_usec 10\nsystem_usec 2\n",
        )
        .unwrap();
        std::fs::write(container.join("memory.current"), "10000\n").unwrap();
        std::fs::write(
            container.join("memory.stat"),
            "anon 1\ninactive_file 3000\n",
        )
        .unwrap();
        assert_eq!(cpu_usage(v2.path(), "/orch/podu/c"), Some(12_000));
        assert_eq!(working_set(v2.path(), "/orch/podu/c"), Some(7000));
        assert_eq!(cpu_usage(v2.path(), ""), None);
    }

    #[test]
    fn pod_uids_are_found_in_every_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        for dir in [
            "memory/orch/poda1_b2",
            "cpu/orch/poda1_b2",
            "pids/orch/podc3",
            "orch/podd4",
            "memory/orch/unrelated",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("memory/orch/pode5"), "").unwrap();
        let found: Vec<String> = pod_uids(root.path()).into_iter().collect();
        assert_eq!(found, ["a1-b2", "c3", "d4"]);
    }

    #[test]
    fn v1_hierarchies_get_the_limits_once() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu", "pids"] {
            std::fs::create_dir(root.path().join(h)).unwrap();
        }
        create(root.path(), "a-b", &guaranteed()).unwrap();
        let memory = root.path().join("memory/orch/poda_b");
        let cpu = root.path().join("cpu/orch/poda_b");
        assert_eq!(read(memory.join("memory.limit_in_bytes")), "33554432");
        assert_eq!(read(cpu.join("cpu.shares")), "512");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(
            controller_dir(root.path(), "memory", &path("a-b")),
            memory,
            "eviction reads the same directory"
        );

        // An existing pod cgroup (the agent restarted) is left as it is.
        std::fs::write(memory.join("memory.limit_in_bytes"), "1").unwrap();
        create(root.path(), "a-b", &guaranteed()).unwrap();
        assert_eq!(read(memory.join("memory.limit_in_bytes")), "1");

        // Burstable without limits: shares only.
        create(
            root.path(),
            "c",
            &Resources {
                cpu_shares: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!root
            .path()
            .join("memory/orch/podc/memory.limit_in_bytes")
            .exists());
        assert!(!root.path().join("cpu/orch/podc/cpu.cfs_quota_us").exists());
        assert_eq!(read(root.path().join("cpu/orch/podc/cpu.shares")), "2");

        // A real cgroup directory holds only kernel files, which rmdir ignores; the fake's are real.
        assert!(
            !remove(root.path(), "a-b"),
            "a directory with contents stays"
        );
        for dir in [&memory, &cpu] {
            for file in std::fs::read_dir(dir).unwrap() {
                std::fs::remove_file(file.unwrap().path()).unwrap();
            }
        }
        assert!(remove(root.path(), "a-b"));
        assert!(!memory.exists() && !cpu.exists());
    }

    #[test]
    fn v2_enables_controllers_down_to_the_pod_and_converts_shares_to_weight() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids",
        )
        .unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "memory").unwrap();
        // A real kernel fills these in for a new cgroup; the fake needs /orch to exist with them.
        std::fs::create_dir(root.path().join("orch")).unwrap();
        std::fs::write(
            root.path().join("orch/cgroup.controllers"),
            "cpu memory pids",
        )
        .unwrap();
        create(root.path(), "p", &guaranteed()).unwrap();

        assert_eq!(
            read(root.path().join("cgroup.subtree_control")),
            "+cpu +pids",
            "only what is missing, and only what the parent has"
        );
        assert_eq!(
            read(root.path().join("orch/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        let pod = root.path().join("orch/podp");
        assert_eq!(read(pod.join("memory.max")), "33554432");
        assert_eq!(read(pod.join("cpu.max")), "50000 100000");
        assert_eq!(read(pod.join("cpu.weight")), "20");
        assert_eq!(controller_dir(root.path(), "memory", &path("p")), pod);

        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
    }
}
