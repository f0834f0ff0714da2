//! The OCI runtime spec (config.json) of one container, from the runtime-level [`ContainerConfig`]: what the
//! process runs as, its namespaces (joining the pod's network namespace), mounts, cgroup and resource limits,
//! and the confinement containerd applies by default — its capability set, masked and read-only /proc paths,
//! no_new_privileges and the RuntimeDefault seccomp profile (or the node's Localhost profile the pod names)
//! — relaxed by `privileged` and the securityContext's capability changes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccomp, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use super::RuntimeError;
use crate::util::rlimit::OpenFilesLimit;

/// containerd's default capability set for unprivileged containers.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Paths containerd hides from unprivileged containers (bind-mounted over with /dev/null or an empty tmpfs).
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything the runtime needs to know to create one container; the pod worker derives it from the pod,
/// the container and the image config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Set in the container's own UTS namespace only: a pod's is named when it is created.
    pub hostname: String,
    pub mounts: Vec<MountSpec>,
    /// The pod's network namespace to join; None shares the host's (hostNetwork).
    pub netns: Option<PathBuf>,
    pub pid: SharedNamespace,
    pub ipc: SharedNamespace,
    pub uts: SharedNamespace,
    /// Absolute cgroup path, under the pod's cgroup.
    pub cgroup_path: String,
    pub resources: Resources,
    pub privileged: bool,
    /// securityContext.capabilities, without the CAP_ prefix as Kubernetes writes them; "ALL" allowed.
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    /// allowPrivilegeEscalation: false (and the default for non-privileged containers in containerd is
    /// to allow it, i.e. no_new_privileges false).
    pub no_new_privileges: bool,
    pub readonly_rootfs: bool,
    /// The seccomp profile; privileged containers have none whatever it says, as in containerd.
    pub seccomp: Seccomp,
    /// The container runs on a terminal (`tty: true`), which its shim holds.
    pub terminal: bool,
    /// RLIMIT_NOFILE of the container's processes; None: the shim's.
    pub open_files: Option<OpenFilesLimit>,
    /// Where the container finds its termination message file (terminationMessagePath). The runtime
    /// keeps the file with the container's records: [`super::Runtime::termination_log`].
    pub termination_log: Option<String>,
    /// The processes' oom_score_adj (None: the shim's).
    pub oom_score_adj: Option<i32>,
}

/// Where a container gets a namespace that the containers of a pod share.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum SharedNamespace {
    /// A namespace of its own (each container's PID namespace; a container outside any pod: tests,
    /// benchmarks).
    #[default]
    Own,
    /// The pod's, bind-mounted at this path.
    Pod(PathBuf),
    /// The host's (hostPID, hostIPC, hostNetwork).
    Host,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MountSpec {
    pub destination: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MountKind {
    Bind {
        source: PathBuf,
        access: BindAccess,
        propagation: MountPropagation,
    },
    Tmpfs {
        size_bytes: Option<u64>,
    },
}

/// Kubernetes' mountPropagation, as containerd sets it up: whether mounts the node makes later under a
/// bind mount's source reach the container, and whether mounts the container makes under the
/// destination reach the node.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum MountPropagation {
    /// Neither way (None: "rprivate").
    #[default]
    Private,
    /// From the node to the container ("rslave").
    HostToContainer,
    /// Both ways ("rshared", in a container whose root stays shared with the node's).
    Bidirectional,
}

impl MountPropagation {
    /// What the node's mount of the source must be for this to propagate (containerd's wording).
    pub fn node_mount_needed(&self) -> &'static str {
        match self {
            MountPropagation::Bidirectional => "shared",
            _ => "shared or slave",
        }
    }
}

/// A container's seccomp profile (Kubernetes' seccompProfile).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Seccomp {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A profile in the OCI `linux.seccomp` format, in this file of the node's (type Localhost).
    Localhost(PathBuf),
}

/// What a bind mount lets the container do to its files.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BindAccess {
    ReadWrite,
    /// The mount is read-only; mounts under its source stay as they are (Kubernetes' readOnly).
    ReadOnly,
    /// The mount and every mount under it are read-only (recursiveReadOnly).
    RecursiveReadOnly,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    pub memory_limit: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub pids_limit: Option<i64>,
}

fn spec_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Spec(e.to_string())
}

/// Resolves the capability set: defaults (or all the agent holds, privileged), minus drops, plus adds.
pub fn capabilities(config: &ContainerConfig) -> Result<Capabilities, RuntimeError> {
    let parse = |name: &str| -> Result<Capability, RuntimeError> {
        let full = format!("CAP_{}", name.trim_start_matches("CAP_").to_uppercase());
        serde_json::from_value(serde_json::Value::String(full.clone()))
            .map_err(|_| RuntimeError::Spec(format!("unknown capability {name:?}")))
    };
    let mut set: HashSet<Capability> = if config.privileged {
        held_capabilities()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| parse(c))
            .collect::<Result<_, _>>()?
    };
    if !config.privileged {
        for drop in &config.capabilities_drop {
            if drop.eq_ignore_ascii_case("ALL") {
                set.clear();
            } else {
                set.remove(&parse(drop)?);
            }
        }
    }
    for add in &config.capabilities_add {
        if add.eq_ignore_ascii_case("ALL") {
            set.extend(held_capabilities());
        } else {
            set.insert(parse(add)?);
        }
    }
    Ok(set)
}

/// Every capability the kernel has had, in the order of their numbers.
const CAPABILITY_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities this process holds (its effective set): what a privileged container gets, as
/// containerd gives it, since asking for more fails the container's start.
fn held_capabilities() -> HashSet<Capability> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let held = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| held & (1 << bit) != 0)
        .filter_map(|(_, n)| {
            serde_json::from_value(serde_json::Value::String(format!("CAP_{n}"))).ok()
        })
        .collect()
}

fn namespace(
    kind: LinuxNamespaceType,
    path: Option<&PathBuf>,
) -> Result<LinuxNamespace, RuntimeError> {
    let mut b = LinuxNamespaceBuilder::default().typ(kind);
    if let Some(p) = path {
        b = b.path(p.clone());
    }
    b.build().map_err(spec_err)
}

fn mounts(config: &ContainerConfig) -> Result<Vec<Mount>, RuntimeError> {
    let mut out = oci_spec::runtime::get_default_mounts();
    // /sys is read-only unless privileged, as containerd mounts it.
    if config.privileged {
        for m in &mut out {
            if m.destination() == &PathBuf::from("/sys") {
                let options: Vec<String> = m
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o != "ro")
                    .collect();
                m.set_options(Some(options));
            }
        }
    }
    // Shallower first, as containerd orders them: a mount under another's destination (the
    // termination log under a volume at /dev, /etc/hosts under one at /etc) lands on top of it.
    let mut ordered: Vec<&MountSpec> = config.mounts.iter().collect();
    ordered.sort_by_key(|m| Path::new(&m.destination).components().count());
    for m in ordered {
        // A user mount replaces a default one at the same place (e.g. an emptyDir at /dev/shm).
        out.retain(|d| d.destination() != &PathBuf::from(&m.destination));
        let built = match &m.kind {
            MountKind::Bind {
                source,
                access,
                propagation,
            } => {
                let propagation = match propagation {
                    MountPropagation::Private => "rprivate",
                    MountPropagation::HostToContainer => "rslave",
                    MountPropagation::Bidirectional => "rshared",
                };
                let mut options = vec!["rbind".to_string(), propagation.to_string()];
                match access {
                    BindAccess::ReadWrite => {}
                    BindAccess::ReadOnly => options.push("ro".into()),
                    // libcontainer's mount_setattr(AT_RECURSIVE) of the clone, as runc does for "rro".
                    BindAccess::RecursiveReadOnly => options.push("rro".into()),
                }
                MountBuilder::default()
                    .destination(&m.destination)
                    .typ("bind")
                    .source(source)
                    .options(options)
                    .build()
            }
            MountKind::Tmpfs { size_bytes } => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                MountBuilder::default()
                    .destination(&m.destination)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(options)
                    .build()
            }
        };
        out.push(built.map_err(spec_err)?);
    }
    Ok(out)
}

/// A Localhost seccomp profile, read as containerd reads it: the file is the OCI section as JSON.
fn localhost_profile(path: &Path) -> Result<LinuxSeccomp, RuntimeError> {
    let failed = |message: String| RuntimeError::SeccompProfile {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| failed(format!("decoding it: {e}")))
}

/// The complete config.json for a container whose root filesystem is `<bundle>/rootfs`.
pub fn build(config: &ContainerConfig) -> Result<Spec, RuntimeError> {
    let caps = capabilities(config)?;
    let mut process = ProcessBuilder::default()
        .terminal(config.terminal)
        .args(config.args.clone())
        .env(config.env.clone())
        .cwd(if config.cwd.is_empty() {
            "/"
        } else {
            config.cwd.as_str()
        })
        .user(
            UserBuilder::default()
                .uid(config.uid)
                .gid(config.gid)
                .additional_gids(config.additional_gids.clone())
                .build()
                .map_err(spec_err)?,
        )
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                // Empty, as containerd leaves them: oci-spec's defaults would keep three capabilities
                // in every non-root process and fail the start of a container that drops them.
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()
                .map_err(spec_err)?,
        )
        .rlimits(
            config
                .open_files
                .map(|limit| {
                    PosixRlimitBuilder::default()
                        .typ(PosixRlimitType::RlimitNofile)
                        .soft(limit.soft)
                        .hard(limit.hard)
                        .build()
                })
                .transpose()
                .map_err(spec_err)?
                .into_iter()
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(spec_err)?;
    // libcontainer loads seccomp before dropping capabilities only when noNewPrivileges is absent, not
    // when it is false: absent is how "allowed to escalate" must be written.
    process.set_no_new_privileges(config.no_new_privileges.then_some(true));
    process.set_oom_score_adj(config.oom_score_adj);

    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)?];
    for (kind, shared) in [
        (LinuxNamespaceType::Pid, &config.pid),
        (LinuxNamespaceType::Ipc, &config.ipc),
        (LinuxNamespaceType::Uts, &config.uts),
    ] {
        match shared {
            SharedNamespace::Own => namespaces.push(namespace(kind, None)?),
            SharedNamespace::Pod(path) => namespaces.push(namespace(kind, Some(path))?),
            SharedNamespace::Host => {}
        }
    }
    if let Some(netns) = &config.netns {
        namespaces.push(namespace(LinuxNamespaceType::Network, Some(netns))?);
    }

    let mut memory = LinuxMemoryBuilder::default();
    if let Some(limit) = config.resources.memory_limit {
        // No extra swap beyond the limit, as kubelet sets it.
        memory = memory.limit(limit).swap(limit);
    }
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(shares) = config.resources.cpu_shares {
        cpu = cpu.shares(shares);
    }
    if let Some(quota) = config.resources.cpu_quota {
        cpu = cpu.quota(quota);
    }
    if let Some(period) = config.resources.cpu_period {
        cpu = cpu.period(period);
    }
    let mut resources = LinuxResourcesBuilder::default()
        .memory(memory.build().map_err(spec_err)?)
        .cpu(cpu.build().map_err(spec_err)?);
    if let Some(pids) = config.resources.pids_limit {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(pids)
                .build()
                .map_err(spec_err)?,
        );
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&config.cgroup_path))
        .resources(resources.build().map_err(spec_err)?);
    // A Bidirectional mount is a peer of the node's only if the container's copy of the node's mounts
    // stays shared (containerd's rshared root); otherwise it is made a slave of them. libcontainer
    // takes "shared" (always recursive) and refuses containerd's "rshared".
    let bidirectional = config.mounts.iter().any(|m| {
        matches!(
            m.kind,
            MountKind::Bind {
                propagation: MountPropagation::Bidirectional,
                ..
            }
        )
    });
    if bidirectional {
        linux = linux.rootfs_propagation("shared");
    }
    if config.privileged {
        linux = linux.masked_paths(vec![]).readonly_paths(vec![]);
    } else {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            );
    }
    if !config.privileged {
        match &config.seccomp {
            Seccomp::Unconfined => {}
            Seccomp::RuntimeDefault => {
                linux = linux.seccomp(super::seccomp::runtime_default(&caps))
            }
            Seccomp::Localhost(path) => linux = linux.seccomp(localhost_profile(path)?),
        }
    }

    let mut spec = Spec::default();
    spec.set_process(Some(process));
    // libcontainer names only a UTS namespace it creates, and refuses a hostname without one.
    spec.set_hostname((config.uts == SharedNamespace::Own).then(|| config.hostname.clone()));
    spec.set_root(Some(
        RootBuilder::default()
            .path("rootfs")
            .readonly(config.readonly_rootfs)
            .build()
            .map_err(spec_err)?,
    ));
    spec.set_mounts(Some(mounts(config)?));
    spec.set_linux(Some(linux.build().map_err(spec_err)?));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_localhost_seccomp_profile_is_read_from_its_file_unless_privileged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.json");
        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_LOG"}"#).unwrap();
        let config = |seccomp: Seccomp, privileged: bool| ContainerConfig {
            args: vec!["/bin/sh".into()],
            cwd: "/".into(),
            seccomp,
            privileged,
            ..Default::default()
        };
        let profile_of = |seccomp, privileged| {
            build(&config(seccomp, privileged))
                .map(|spec| serde_json::to_value(spec).unwrap()["linux"]["seccomp"].clone())
        };
        let localhost = Seccomp::Localhost(path.clone());
        assert_eq!(
            profile_of(localhost.clone(), false).unwrap(),
            serde_json::json!({"defaultAction": "SCMP_ACT_LOG"})
        );
        assert_eq!(
            profile_of(localhost, true).unwrap(),
            serde_json::Value::Null
        );
        assert_eq!(
            profile_of(Seccomp::Unconfined, false).unwrap(),
            serde_json::Value::Null
        );
        std::fs::write(&path, "{").unwrap();
        let err = profile_of(Seccomp::Localhost(path.clone()), false).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot load seccomp profile {path:?}: decoding it: "
            )),
            "{err}"
        );
    }

    fn cap(name: &str) -> Capability {
        serde_json::from_value(serde_json::Value::String(format!("CAP_{name}"))).unwrap()
    }

    #[test]
    fn default_capabilities_minus_drops_plus_adds() {
        let config = ContainerConfig {
            capabilities_add: vec!["NET_ADMIN".into()],
            capabilities_drop: vec!["NET_RAW".into(), "CAP_CHOWN".into()],
            ..Default::default()
        };
        let set = capabilities(&config).unwrap();
        assert!(set.contains(&cap("NET_ADMIN")));
        assert!(!set.contains(&cap("NET_RAW")));
        assert!(!set.contains(&cap("CHOWN")));
        assert!(set.contains(&cap("KILL")));
        assert_eq!(set.len(), DEFAULT_CAPABILITIES.len() - 2 + 1);

        let dropped_all = ContainerConfig {
            capabilities_drop: vec!["ALL".into()],
            capabilities_add: vec!["NET_BIND_SERVICE".into()],
            ..Default::default()
        };
        assert_eq!(
            capabilities(&dropped_all).unwrap(),
            HashSet::from([cap("NET_BIND_SERVICE")])
        );

        let privileged = ContainerConfig {
            privileged: true,
            capabilities_drop: vec!["ALL".into()],
            ..Default::default()
        };
        let all_held = capabilities(&privileged).unwrap();
        assert!(all_held.contains(&cap("SYS_ADMIN")));
        assert_eq!(all_held, held_capabilities());

        let bad = ContainerConfig {
            capabilities_add: vec!["FLY".into()],
            ..Default::default()
        };
        assert!(capabilities(&bad).unwrap_err().to_string().contains("FLY"));
    }

    #[test]
    fn pod_namespaces_are_joined_host_ones_left_out_and_only_an_own_uts_is_named() {
        let types = |config: &ContainerConfig| -> Vec<(String, Option<String>)> {
            let json = serde_json::to_value(build(config).unwrap()).unwrap();
            json["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| {
                    let path = n.get("path").and_then(|p| p.as_str()).map(str::to_string);
                    (n["type"].as_str().unwrap().to_string(), path)
                })
                .collect()
        };
        let in_pod = ContainerConfig {
            hostname: "web-0".into(),
            ipc: SharedNamespace::Pod("/run/orch/ipcns/u1".into()),
            uts: SharedNamespace::Pod("/run/orch/utsns/u1".into()),
            ..Default::default()
        };
        let joined = types(&in_pod);
        assert!(joined.contains(&("ipc".into(), Some("/run/orch/ipcns/u1".into()))));
        assert!(joined.contains(&("uts".into(), Some("/run/orch/utsns/u1".into()))));
        assert!(build(&in_pod).unwrap().hostname().is_none());

        let host = ContainerConfig {
            hostname: "node".into(),
            ipc: SharedNamespace::Host,
            uts: SharedNamespace::Host,
            ..Default::default()
        };
        let kinds: Vec<String> = types(&host).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, ["mount", "pid"]);
        let host_pid = ContainerConfig {
            pid: SharedNamespace::Host,
            ..host.clone()
        };
        let kinds: Vec<String> = types(&host_pid).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, ["mount"]);
        assert!(build(&host).unwrap().hostname().is_none());

        let own = ContainerConfig {
            hostname: "solo".into(),
            ..Default::default()
        };
        assert!(types(&own).contains(&("uts".into(), None)));
        assert_eq!(build(&own).unwrap().hostname().as_deref(), Some("solo"));
    }

    #[test]
    fn spec_joins_the_pod_netns_and_sets_limits_masks_and_mounts() {
        let config = ContainerConfig {
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["HOME=/root".into()],
            hostname: "web-0".into(),
            netns: Some(PathBuf::from("/run/orch/netns/pod1")),
            cgroup_path: "/orch/podabc/c1".into(),
            resources: Resources {
                memory_limit: Some(64 << 20),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                cpu_shares: Some(512),
                pids_limit: None,
            },
            mounts: vec![MountSpec {
                destination: "/data".into(),
                kind: MountKind::Bind {
                    source: "/var/lib/orch/agent/pods/x/volumes/data".into(),
                    access: BindAccess::ReadOnly,
                    propagation: MountPropagation::Private,
                },
            }],
            seccomp: Seccomp::RuntimeDefault,
            readonly_rootfs: true,
            open_files: Some(OpenFilesLimit {
                soft: 1024,
                hard: 4096,
            }),
            ..Default::default()
        };
        let spec = build(&config).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json["process"]["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}])
        );
        let namespaces = json["linux"]["namespaces"].as_array().unwrap();
        assert!(namespaces
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/orch/netns/pod1"));
        assert!(namespaces
            .iter()
            .any(|n| n["type"] == "pid" && n.get("path").is_none()));
        assert_eq!(json["linux"]["cgroupsPath"], "/orch/podabc/c1");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 512);
        assert!(json["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("/proc/kcore")));
        assert!(json["linux"]["seccomp"]["defaultAction"].is_string());
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["hostname"], "web-0");
        let data = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert_eq!(
            data["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
        assert!(
            json["linux"].get("rootfsPropagation").is_none(),
            "the root stays a slave of the node's mounts"
        );

        let bind = |destination: &str, propagation| MountSpec {
            destination: destination.into(),
            kind: MountKind::Bind {
                source: "/srv".into(),
                access: BindAccess::ReadWrite,
                propagation,
            },
        };
        let propagating = build(&ContainerConfig {
            mounts: vec![
                bind("/etc/hosts", MountPropagation::Private),
                bind("/a", MountPropagation::HostToContainer),
                bind("/b", MountPropagation::Bidirectional),
                bind("/etc", MountPropagation::Private),
            ],
            ..Default::default()
        })
        .unwrap();
        let json = serde_json::to_value(&propagating).unwrap();
        let options_of = |destination: &str| {
            json["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["destination"] == destination)
                .unwrap()["options"]
                .clone()
        };
        let order: Vec<&str> = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["destination"].as_str())
            .filter(|d| d.starts_with("/etc"))
            .collect();
        assert_eq!(order, ["/etc", "/etc/hosts"], "shallower mounts first");
        assert_eq!(options_of("/a"), serde_json::json!(["rbind", "rslave"]));
        assert_eq!(options_of("/b"), serde_json::json!(["rbind", "rshared"]));
        assert_eq!(json["linux"]["rootfsPropagation"], "shared");

        let host = build(&ContainerConfig {
            privileged: true,
            seccomp: Seccomp::RuntimeDefault,
            ..Default::default()
        })
        .unwrap();
        let json = serde_json::to_value(&host).unwrap();
        assert!(!json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network"));
        assert!(json["linux"]["seccomp"].is_null());
        assert_eq!(json["linux"]["maskedPaths"], serde_json::json!([]));
    }
}
