//! One container's runtime config from the pod, as Kubernetes and containerd merge it with the image:
//! `command`/`args` against ENTRYPOINT/CMD, the image's Env under the container's, the working directory,
//! the user (securityContext first, then the image's USER, resolved through the image's /etc/passwd) and
//! its supplementary groups (with those the image's /etc/group gives it, unless the policy is Strict),
//! HOME/HOSTNAME/PATH defaults, resources to cgroup limits, and the security context with its seccomp
//! profile (RuntimeDefault unless Unconfined, or a Localhost file of the node's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, EphemeralContainer, Pod, PodSpec};
use oci_spec::image::ImageConfiguration;

use crate::agent::runtime::{ContainerConfig, MountSpec, Resources, Seccomp, SharedNamespace};
use crate::api::quantity;
use crate::util::rlimit::OpenFilesLimit;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The CFS period kubelet uses with quotas.
const CPU_PERIOD: u64 = 100_000;
/// The smallest CFS quota the kernel accepts.
const MIN_QUOTA: i64 = 1_000;
/// Shares of a container without a CPU request (kubelet's MinShares).
const MIN_SHARES: u64 = 2;

/// What the pod worker settled before building the config.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    /// The pod's hostname (`sandbox::hostname`), the container's HOSTNAME.
    pub hostname: String,
    pub container: &'a Container,
    pub image: &'a ImageConfiguration,
    /// The image's unpacked layers, lowest first: /etc/passwd and /etc/group are read from them.
    pub layers: &'a [PathBuf],
    pub env: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    /// The groups the pod's persistent volumes name (`pv.beta.kubernetes.io/gid`), which its processes
    /// join as kubelet adds them.
    pub volume_groups: Vec<u32>,
    pub namespaces: PodNamespaces,
    pub cgroup_path: String,
    pub open_files: Option<OpenFilesLimit>,
    /// The node's memory, for the oom_score_adj of Burstable containers.
    pub node_memory: i64,
    /// The lowest oom_score_adj the runtime can give (its own, when it may not lower it).
    pub min_oom_score_adj: i32,
    /// Where Localhost seccomp profiles are (kubelet's `<root-dir>/seccomp`).
    pub seccomp_profile_root: &'a Path,
}

/// The pod's container `name` — init, regular or ephemeral — and for an ephemeral one, the container
/// whose processes it is to see.
pub fn in_spec(spec: &PodSpec, name: &str) -> Option<(Container, Option<String>)> {
    if let Some(c) = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == name)
    {
        return Some((c.clone(), None));
    }
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .find(|c| c.name == name)?;
    Some((
        as_container(ephemeral),
        ephemeral.target_container_name.clone(),
    ))
}

/// Every container of the pod: init, regular, then the ephemeral ones as the containers they run as.
pub fn all(spec: &PodSpec) -> Vec<Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .cloned()
        .chain(spec.ephemeral_containers.iter().flatten().map(as_container))
        .collect()
}

/// An ephemeral container as the container it runs as: the same fields, less its target.
fn as_container(ephemeral: &EphemeralContainer) -> Container {
    let mut fields = serde_json::to_value(ephemeral).unwrap_or_default();
    if let Some(fields) = fields.as_object_mut() {
        fields.remove("targetContainerName");
    }
    serde_json::from_value(fields).unwrap_or_else(|_| Container {
        name: ephemeral.name.clone(),
        image: ephemeral.image.clone(),
        ..Default::default()
    })
}

/// The namespaces the containers of a pod share.
#[derive(Debug, Clone, Default)]
pub struct PodNamespaces {
    /// None: the host's (hostNetwork).
    pub netns: Option<PathBuf>,
    /// Each container's own, or the host's (hostPID).
    pub pid: SharedNamespace,
    pub ipc: SharedNamespace,
    pub uts: SharedNamespace,
}

/// Kubernetes' rule: `command` replaces ENTRYPOINT and drops CMD; `args` alone replaces CMD.
pub fn argv(
    container: &Container,
    image: &ImageConfiguration,
    env: &[(String, String)],
) -> Vec<String> {
    let config = image.config().clone().unwrap_or_default();
    let entrypoint = config.entrypoint().clone().unwrap_or_default();
    let cmd = config.cmd().clone().unwrap_or_default();
    let vars = env.iter().cloned().collect();
    let expand = |list: &Vec<String>| -> Vec<String> {
        list.iter().map(|a| super::env::expand(a, &vars)).collect()
    };
    match (&container.command, &container.args) {
        (Some(command), args) if !command.is_empty() => {
            let mut out = expand(command);
            out.extend(args.as_ref().map(expand).unwrap_or_default());
            out
        }
        (_, Some(args)) if !args.is_empty() => {
            let mut out = entrypoint;
            out.extend(expand(args));
            out
        }
        _ => {
            let mut out = entrypoint;
            out.extend(cmd);
            out
        }
    }
}

/// Reads `relative` from the topmost layer that has it.
fn read_from_layers(layers: &[PathBuf], relative: &str) -> Option<String> {
    layers
        .iter()
        .rev()
        .find_map(|l| std::fs::read_to_string(l.join(relative)).ok())
}

/// The fields of the passwd or group line whose first field (the name) is `name`.
fn entry_named<'t>(text: &'t str, name: &str) -> Option<Vec<&'t str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
}

/// The fields of the passwd line of `uid`.
fn passwd_entry(passwd: &str, uid: u32) -> Option<Vec<&str>> {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(uid))
}

fn field<T: std::str::FromStr>(entry: &[&str], index: usize) -> Option<T> {
    entry.get(index)?.trim().parse().ok()
}

/// The (uid, gid, home) of a user of the image as containerd's WithUser finds it from a uid or a name
/// alone: the group and home of its passwd entry, and for a uid without one, group 0.
fn image_user(user: &str, passwd: &str) -> Result<(u32, u32, Option<String>), String> {
    let home = |entry: &[&str]| entry.get(5).map(|h| h.to_string());
    match user.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd_entry(passwd, uid);
            Ok((
                uid,
                entry.as_deref().and_then(|e| field(e, 3)).unwrap_or(0),
                entry.as_deref().and_then(home),
            ))
        }
        Err(_) => {
            let entry = entry_named(passwd, user).ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?;
            Ok((
                field(&entry, 2).unwrap_or(0),
                field(&entry, 3).unwrap_or(0),
                home(&entry),
            ))
        }
    }
}

/// Why a container's config cannot be made, by what refuses it in Kubernetes: kubelet, while it makes the
/// config (`CreateContainerConfigError`), or the runtime, which resolves the image's user itself
/// (`CreateContainerError`).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

/// The identity a container's first process starts with, as containerd's CRI plugin gives it.
#[derive(Debug, PartialEq)]
struct Identity {
    uid: u32,
    gid: u32,
    home: Option<String>,
    /// The primary group, (policy Merge) the groups the image's /etc/group lists the user in, fsGroup,
    /// supplementalGroups and the volumes' groups: sorted, each once, as containerd merges them.
    additional_gids: Vec<u32>,
}

/// The container's identity: runAsUser and runAsGroup (the container's over the pod's) over the image's
/// USER, checked against runAsNonRoot as kubelet checks it. As kubelet passes the image's user on, only
/// its user part counts: a `:group` in it is dropped, and the group comes from the user's passwd entry.
fn identity(
    pod: &Pod,
    container: &Container,
    image_user_field: &str,
    layers: &[PathBuf],
    volume_groups: &[u32],
) -> Result<Identity, BuildError> {
    let sc = container.security_context.as_ref();
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|p| p.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|p| p.run_as_group));
    let run_as_non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|p| p.run_as_non_root))
        == Some(true);
    let image_user_part = image_user_field.split(':').next().unwrap_or_default();
    if run_as_non_root {
        verify_run_as_non_root(pod, container, run_as_user, image_user_part)
            .map_err(BuildError::Config)?;
    }
    let passwd = read_from_layers(layers, "etc/passwd").unwrap_or_default();
    // The user containerd is given: runAsUser, else the image's, else root.
    let user = match run_as_user {
        Some(uid) => uid.to_string(),
        None if image_user_part.is_empty() => "0".into(),
        None => image_user_part.to_string(),
    };
    let (uid, mut gid, home) = image_user(&user, &passwd).map_err(BuildError::Runtime)?;
    if let Some(g) = run_as_group {
        gid = g as u32;
    }

    let mut groups = vec![gid];
    let strict = pod_sc.and_then(|p| p.supplemental_groups_policy.as_deref()) == Some("Strict");
    if !strict {
        // containerd looks the user's groups up by its name.
        let name = match user.parse::<u32>() {
            Ok(uid) => passwd_entry(&passwd, uid).and_then(|e| e.first().map(|n| n.to_string())),
            Err(_) => Some(user),
        };
        if let Some(name) = name {
            let group = read_from_layers(layers, "etc/group").unwrap_or_default();
            groups.extend(member_groups(&group, &name));
        }
    }
    groups.extend(pod_sc.and_then(|p| p.fs_group).map(|g| g as u32));
    groups.extend(
        pod_sc
            .and_then(|p| p.supplemental_groups.as_ref())
            .into_iter()
            .flatten()
            .map(|g| *g as u32),
    );
    groups.extend(volume_groups);
    groups.sort_unstable();
    groups.dedup();
    Ok(Identity {
        uid,
        gid,
        home,
        additional_gids: groups,
    })
}

/// The groups of a group file that list `user` as a member, other than the one named after it.
fn member_groups(group_file: &str, user: &str) -> Vec<u32> {
    group_file
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.first() != Some(&user))
        .filter(|f| {
            f.get(3)
                .is_some_and(|members| members.split(',').any(|m| m == user))
        })
        .filter_map(|f| field(&f, 2))
        .collect()
}

/// kubelet's verifyRunAsNonRoot: runAsUser must not be 0, and without it the image's user must be a uid
/// other than 0 (a name cannot be checked).
fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    run_as_user: Option<i64>,
    image_user_part: &str,
) -> Result<(), String> {
    let which = format!(
        "(pod: \"{}\", container: {})",
        super::sync::pod_ref(pod),
        container.name
    );
    match run_as_user {
        Some(0) => Err(format!(
            "container's runAsUser breaks non-root policy {which}"
        )),
        Some(_) => Ok(()),
        // An image without a user runs as root.
        None if image_user_part.is_empty() || image_user_part.parse::<u32>() == Ok(0) => Err(
            format!("container has runAsNonRoot and image will run as root {which}"),
        ),
        None if image_user_part.parse::<u32>().is_ok() => Ok(()),
        None => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user_part}), cannot \
             verify user is non-root {which}"
        )),
    }
}

fn quantity_of(
    map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> Option<quantity::Quantity> {
    map.as_ref()?
        .get(name)
        .and_then(|q| quantity::parse_quantity(&q.0).ok())
}

/// What a container declares, in millicores and bytes: its CPU request (its CPU limit when it states
/// none) and its limits. A zero limit is no limit.
struct Declared {
    cpu_request: Option<i128>,
    cpu_limit: Option<i128>,
    memory_limit: Option<i128>,
}

fn declared(container: &Container) -> Declared {
    let r = container.resources.clone().unwrap_or_default();
    let cpu_limit = quantity_of(&r.limits, "cpu")
        .map(|q| q.to_millis())
        .filter(|m| *m > 0);
    Declared {
        cpu_request: quantity_of(&r.requests, "cpu")
            .map(|q| q.to_millis())
            .or(cpu_limit),
        cpu_limit,
        memory_limit: quantity_of(&r.limits, "memory")
            .map(|q| q.to_bytes())
            .filter(|b| *b > 0),
    }
}

/// Millicores and bytes as cgroup settings, as kubelet converts them (MilliCPUToShares,
/// MilliCPUToQuota).
fn cgroup_settings(
    cpu_request: Option<i128>,
    cpu_limit: Option<i128>,
    memory_limit: Option<i128>,
) -> Resources {
    Resources {
        memory_limit: memory_limit.map(|b| b as i64),
        cpu_shares: Some(
            cpu_request
                .map(|m| (m.max(0) as u64 * 1024 / 1000).max(MIN_SHARES))
                .unwrap_or(MIN_SHARES),
        ),
        cpu_quota: cpu_limit.map(|m| (m as i64 * CPU_PERIOD as i64 / 1000).max(MIN_QUOTA)),
        cpu_period: cpu_limit.map(|_| CPU_PERIOD),
        pids_limit: None,
    }
}

/// Limits and requests as cgroup settings, as kubelet converts them.
pub fn resources(container: &Container) -> Resources {
    let d = declared(container);
    cgroup_settings(d.cpu_request, d.cpu_limit, d.memory_limit)
}

/// The pod cgroup's limits, as kubelet's ResourceConfigForPod sets them: shares from the pod's CPU request,
/// and a CPU quota or memory limit only when every container (init ones too) declares that limit, so that
/// the pod as a whole can use no more than its containers together. Requests and limits of the pod are
/// the larger of the app containers' sum and any one init container's (init containers run alone), plus
/// `spec.overhead`; a restartable init container (a sidecar) runs beside the app containers and counts in
/// the sum. Pod-level resources (`spec.resources`) replace the containers' figure for each resource they
/// state, as kubelet's PodRequests and PodLimits let them: a pod-level limit holds however many
/// containers lack one of their own.
pub fn pod_resources(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let is_sidecar = |c: &&Container| c.restart_policy.as_deref() == Some("Always");
    let together: Vec<Declared> = spec
        .containers
        .iter()
        .chain(init.iter().filter(is_sidecar))
        .map(declared)
        .collect();
    let alone: Vec<Declared> = init
        .iter()
        .filter(|c| !is_sidecar(c))
        .map(declared)
        .collect();
    // The pod's amount of one resource; None when `declared_by_all` and some container lacks it.
    let pod_amount =
        |amount: fn(&Declared) -> Option<i128>, overhead: i128, declared_by_all: bool| {
            let of = |d: &Declared| amount(d).or((!declared_by_all).then_some(0));
            let sum = together.iter().map(of).sum::<Option<i128>>()?;
            let largest_init = alone
                .iter()
                .map(of)
                .try_fold(0, |max: i128, v| v.map(|v| max.max(v)))?;
            Some(sum.max(largest_init) + overhead)
        };
    let overhead_cpu = quantity_of(&spec.overhead, "cpu").map_or(0, |q| q.to_millis());
    let overhead_memory = quantity_of(&spec.overhead, "memory").map_or(0, |q| q.to_bytes());
    let pod_level = spec.resources.clone().unwrap_or_default();
    let pod_limit_cpu = quantity_of(&pod_level.limits, "cpu")
        .map(|q| q.to_millis())
        .filter(|m| *m > 0);
    let pod_request_cpu = quantity_of(&pod_level.requests, "cpu")
        .map(|q| q.to_millis())
        .or(pod_limit_cpu);
    let pod_limit_memory = quantity_of(&pod_level.limits, "memory")
        .map(|q| q.to_bytes())
        .filter(|b| *b > 0);
    cgroup_settings(
        pod_request_cpu
            .map(|m| m + overhead_cpu)
            .or_else(|| pod_amount(|d| d.cpu_request, overhead_cpu, false)),
        pod_limit_cpu
            .map(|m| m + overhead_cpu)
            .or_else(|| pod_amount(|d| d.cpu_limit, overhead_cpu, true)),
        pod_limit_memory
            .map(|b| b + overhead_memory)
            .or_else(|| pod_amount(|d| d.memory_limit, overhead_memory, true)),
    )
}

/// The priority from which a pod is critical to the node (system-cluster-critical and above).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// kubelet's GetContainerOOMScoreAdjust: Guaranteed (and critical) containers are killed last, BestEffort
/// first, and a Burstable one in between, less likely the more memory it requests of the node's.
pub fn oom_score_adj(pod: &Pod, container: &Container, node_memory: i64) -> i32 {
    const GUARANTEED: i32 = -997;
    const BEST_EFFORT: i32 = 1000;
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.priority).unwrap_or(0) >= SYSTEM_CRITICAL_PRIORITY {
        return GUARANTEED;
    }
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some("Guaranteed") => return GUARANTEED,
        Some("BestEffort") => return BEST_EFFORT,
        _ => {}
    }
    let request = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref()?.get("memory"))
        .and_then(|q| quantity::parse_quantity(&q.0).ok())
        .map_or(0, |q| q.to_bytes() as i64);
    let adj = 1000 - (1000 * i128::from(request) / i128::from(node_memory.max(1))) as i64;
    match adj {
        a if a < i64::from(1000 + GUARANTEED) => 1000 + GUARANTEED,
        a if a == i64::from(BEST_EFFORT) => BEST_EFFORT - 1,
        a => a as i32,
    }
}

pub fn build(inputs: Inputs) -> Result<ContainerConfig, BuildError> {
    let Inputs {
        pod,
        hostname,
        container,
        image,
        layers,
        env,
        mounts,
        volume_groups,
        namespaces,
        cgroup_path,
        open_files,
        node_memory,
        min_oom_score_adj,
        seccomp_profile_root,
    } = inputs;
    let image_config = image.config().clone().unwrap_or_default();
    let sc = container.security_context.as_ref();
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());

    let Identity {
        uid,
        gid,
        home,
        additional_gids,
    } = identity(
        pod,
        container,
        image_config.user().as_deref().unwrap_or(""),
        layers,
        &volume_groups,
    )?;

    // Image env first, then the container's; a later name replaces an earlier one in place.
    let mut merged: Vec<(String, String)> = image_config
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e, String::new()),
        })
        .collect();
    for (k, v) in env.iter().cloned() {
        match merged.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => merged.push((k, v)),
        }
    }
    let mut defaults = vec![("HOSTNAME".to_string(), hostname.clone())];
    if !merged.iter().any(|(k, _)| k == "PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').expect("constant");
        defaults.push((k.into(), v.into()));
    }
    if !merged.iter().any(|(k, _)| k == "HOME") {
        defaults.push(("HOME".into(), home.unwrap_or_else(|| "/".into())));
    }
    // As containerd gives a container on a terminal: programs that draw on it need to know what it is.
    if container.tty == Some(true) {
        defaults.push(("TERM".into(), "xterm".into()));
    }
    defaults.retain(|(k, _)| !merged.iter().any(|(m, _)| m == k));
    let mut env_list: Vec<String> = defaults
        .into_iter()
        .chain(merged)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env_list.sort_by_key(|e| !e.starts_with("PATH="));

    let args = argv(container, image, &env);
    if args.is_empty() {
        return Err(BuildError::Config("no command specified".into()));
    }
    let cwd = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image_config.working_dir().clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let seccomp_profile = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod_sc.and_then(|p| p.seccomp_profile.as_ref()));
    let seccomp = match seccomp_profile.map(|p| (p.type_.as_str(), p.localhost_profile.as_deref()))
    {
        Some(("Unconfined", _)) => Seccomp::Unconfined,
        Some(("Localhost", Some(profile))) => {
            Seccomp::Localhost(seccomp_profile_root.join(profile))
        }
        // RuntimeDefault unless asked otherwise, as kubelet's --seccomp-default has it.
        _ => Seccomp::RuntimeDefault,
    };
    Ok(ContainerConfig {
        args,
        env: env_list,
        cwd,
        uid,
        gid,
        additional_gids,
        hostname,
        mounts,
        netns: namespaces.netns,
        pid: namespaces.pid,
        ipc: namespaces.ipc,
        uts: namespaces.uts,
        cgroup_path,
        resources: resources(container),
        privileged,
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        seccomp,
        terminal: container.tty.unwrap_or(false),
        open_files,
        oom_score_adj: Some(oom_score_adj(pod, container, node_memory).max(min_oom_score_adj)),
        termination_log: Some(
            container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Capabilities, PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile,
        SecurityContext,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn image(entrypoint: &[&str], cmd: &[&str], user: &str) -> ImageConfiguration {
        serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {
                "Entrypoint": entrypoint, "Cmd": cmd, "User": user,
                "Env": ["PATH=/custom/bin", "LANG=C"], "WorkingDir": "/srv"
            }
        }))
        .unwrap()
    }

    /// Pod `p` of namespace `ns` (uid `u1`) with the security context `sc`.
    fn pod_in_ns(sc: PodSecurityContext) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn strings(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn command_and_args_merge_with_entrypoint_and_cmd_like_kubernetes() {
        let img = image(&["/entry"], &["--default"], "");
        let c = |command: Option<Vec<String>>, args: Option<Vec<String>>| Container {
            command,
            args,
            ..Default::default()
        };
        let env = vec![("WHO".to_string(), "world".to_string())];
        assert_eq!(argv(&c(None, None), &img, &env), ["/entry", "--default"]);
        assert_eq!(
            argv(&c(None, strings(&["x", "$(WHO)"])), &img, &env),
            ["/entry", "x", "world"]
        );
        assert_eq!(
            argv(&c(strings(&["/bin/sh"]), None), &img, &env),
            ["/bin/sh"]
        );
        assert_eq!(
            argv(
                &c(strings(&["/bin/sh"]), strings(&["-c", "true"])),
                &img,
                &env
            ),
            ["/bin/sh", "-c", "true"]
        );
    }

    #[test]
    fn users_resolve_through_the_topmost_passwd_file_and_drop_the_images_group() {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("l0");
        let upper = dir.path().join("l1");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(
            upper.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(upper.join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = vec![lower, upper];
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let of = |image_user: &str, layers: &[PathBuf]| {
            identity(&Pod::default(), &c, image_user, layers, &[]).map(|i| (i.uid, i.gid, i.home))
        };
        assert_eq!(of("", &layers), Ok((0, 0, Some("/root".into()))));
        assert_eq!(of("", &[]), Ok((0, 0, None)));
        assert_eq!(
            of("app", &layers),
            Ok((1000, 1001, Some("/home/app".into())))
        );
        // kubelet hands containerd the user part alone: the image's group never counts.
        assert_eq!(
            of("app:staff", &layers),
            Ok((1000, 1001, Some("/home/app".into())))
        );
        assert_eq!(
            of("1000:7", &layers),
            Ok((1000, 1001, Some("/home/app".into())))
        );
        assert_eq!(of("1000:1000", &[]), Ok((1000, 0, None)));
        assert_eq!(
            of("nobody", &layers),
            Err(BuildError::Runtime(
                "unable to find user nobody: no matching entries in passwd file".into()
            ))
        );
    }

    #[test]
    fn groups_merge_from_the_image_unless_the_policy_is_strict() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().to_path_buf();
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::fs::write(
            layer.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            layer.join("etc/group"),
            "root:x:0:root\nwheel:x:10:root\napp:x:1000:app\nextra:x:50000:daemon,app\n\
             spaced:x:50001:daemon, app\n\
             other:x:60000:application\n",
        )
        .unwrap();
        let layers = [layer];
        let c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let of = |sc: PodSecurityContext, image_user: &str, volume_groups: &[u32]| {
            identity(&pod_in_ns(sc), &c, image_user, &layers, volume_groups)
        };
        let groups = |sc, image_user| of(sc, image_user, &[]).unwrap().additional_gids;

        // An image without a user runs as root, who is in wheel; the group named after it is its own.
        assert_eq!(
            of(PodSecurityContext::default(), "", &[]).unwrap(),
            Identity {
                uid: 0,
                gid: 0,
                home: Some("/root".into()),
                additional_gids: vec![0, 10],
            }
        );
        // The image's user by name or by uid (its group part dropped); a member's name is matched
        // whole, blanks included, as containerd reads the file.
        assert_eq!(groups(PodSecurityContext::default(), "app"), [1000, 50000]);
        assert_eq!(
            groups(PodSecurityContext::default(), "1000:7"),
            [1000, 50000]
        );
        // runAsUser alone takes its group from the image's passwd file, and its groups by its name.
        let as_app = PodSecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        };
        let app = of(as_app.clone(), "", &[]).unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, [1000, 50000]);
        // A uid the image does not know gets group 0 and nothing from the image.
        let stranger = of(
            PodSecurityContext {
                run_as_user: Some(4242),
                ..Default::default()
            },
            "app",
            &[],
        )
        .unwrap();
        assert_eq!((stranger.gid, stranger.additional_gids), (0, vec![0]));

        // runAsGroup, supplementalGroups, fsGroup and the volumes' groups join the image's, sorted…
        let full = PodSecurityContext {
            run_as_group: Some(3000),
            supplemental_groups: Some(vec![4000, 3000]),
            fs_group: Some(2000),
            ..as_app
        };
        assert_eq!(
            of(full.clone(), "", &[4000, 70]).unwrap().additional_gids,
            [70, 2000, 3000, 4000, 50000]
        );
        // … and Strict leaves the image's out.
        let strict = PodSecurityContext {
            supplemental_groups_policy: Some("Strict".into()),
            ..full
        };
        assert_eq!(groups(strict, ""), [2000, 3000, 4000]);
    }

    #[test]
    fn run_as_non_root_is_checked_as_kubelet_checks_it() {
        let pod = pod_in_ns(PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        });
        let c = |run_as_user: Option<i64>| Container {
            name: "c".into(),
            security_context: Some(SecurityContext {
                run_as_user,
                ..Default::default()
            }),
            ..Default::default()
        };
        let check = |run_as_user, image_user: &str| {
            identity(&pod, &c(run_as_user), image_user, &[], &[]).map(|i| i.uid)
        };
        let which = "(pod: \"p_ns(u1)\", container: c)";
        assert_eq!(
            check(None, "").unwrap_err(),
            BuildError::Config(format!(
                "container has runAsNonRoot and image will run as root {which}"
            ))
        );
        assert_eq!(
            check(None, "0:5").unwrap_err(),
            BuildError::Config(format!(
                "container has runAsNonRoot and image will run as root {which}"
            ))
        );
        // A name could be anyone, root included: kubelet cannot tell, so it refuses.
        assert_eq!(
            check(None, "app").unwrap_err(),
            BuildError::Config(format!(
                "container has runAsNonRoot and image has non-numeric user (app), cannot verify \
                 user is non-root {which}"
            ))
        );
        assert_eq!(check(None, "1000:1000"), Ok(1000));
        assert_eq!(
            check(Some(0), "1000").unwrap_err(),
            BuildError::Config(format!(
                "container's runAsUser breaks non-root policy {which}"
            ))
        );
        // runAsUser decides alone: the image's user is not even looked up.
        assert_eq!(check(Some(1000), "app"), Ok(1000));
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let c = Container {
            resources: Some(ResourceRequirements {
                limits: Some(
                    [
                        ("cpu".to_string(), Quantity("500m".into())),
                        ("memory".to_string(), Quantity("64Mi".into())),
                    ]
                    .into(),
                ),
                requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = resources(&c);
        assert_eq!(r.memory_limit, Some(64 << 20));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_period, Some(100_000));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(resources(&Container::default()).cpu_shares, Some(2));
    }

    fn limited(name: &str, request_cpu: Option<&str>, limits: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: request_cpu.map(|cpu| [("cpu".to_string(), Quantity(cpu.into()))].into()),
                limits: Some(
                    limits
                        .iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod_of(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: Some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_limits_add_up_containers_and_cover_the_largest_init_container() {
        let a = limited("a", Some("50m"), &[("cpu", "100m"), ("memory", "20Mi")]);
        let b = limited("b", Some("100m"), &[("cpu", "200m"), ("memory", "12Mi")]);
        let r = pod_resources(&pod_of(vec![a.clone(), b.clone()], vec![]));
        assert_eq!(r.memory_limit, Some(32 << 20));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(30_000), Some(100_000)));
        assert_eq!(r.cpu_shares, Some(153), "150m of requests");

        // An init container runs alone: the pod needs the larger of it and the app containers' sum. Its
        // request defaults to its limit.
        let init = limited("init", None, &[("cpu", "500m"), ("memory", "8Mi")]);
        let r = pod_resources(&pod_of(vec![a.clone(), b.clone()], vec![init.clone()]));
        assert_eq!(r.memory_limit, Some(32 << 20));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_shares, Some(512));

        // A sidecar runs beside them, so it adds up.
        let mut sidecar = init;
        sidecar.restart_policy = Some("Always".into());
        let r = pod_resources(&pod_of(vec![a.clone(), b.clone()], vec![sidecar]));
        assert_eq!(r.memory_limit, Some(40 << 20));
        assert_eq!(r.cpu_quota, Some(80_000));

        // Burstable: one container without a memory limit lifts the pod's; its CPU limit still holds.
        let no_memory = limited("c", Some("100m"), &[("cpu", "100m")]);
        let r = pod_resources(&pod_of(vec![a.clone(), no_memory], vec![]));
        assert_eq!(r.memory_limit, None);
        assert_eq!(r.cpu_quota, Some(20_000));

        // Overhead (from the RuntimeClass) is added on top.
        let mut pod = pod_of(vec![a.clone(), b], vec![]);
        pod.spec.as_mut().unwrap().overhead = Some(
            [
                ("cpu".to_string(), Quantity("10m".into())),
                ("memory".to_string(), Quantity("1Mi".into())),
            ]
            .into(),
        );
        let r = pod_resources(&pod);
        assert_eq!(r.memory_limit, Some(33 << 20));
        assert_eq!(r.cpu_quota, Some(31_000));
        assert_eq!(r.cpu_shares, Some(163));

        // Pod-level resources replace the containers' figures, even where a container has no limit,
        // and take the overhead too; a pod-level CPU limit is the request when none is stated.
        let mut shared = pod_of(vec![a.clone(), limited("c", None, &[])], vec![]);
        shared.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
            limits: Some(
                [
                    ("cpu".to_string(), Quantity("400m".into())),
                    ("memory".to_string(), Quantity("64Mi".into())),
                ]
                .into(),
            ),
            ..Default::default()
        });
        let r = pod_resources(&shared);
        assert_eq!(r.memory_limit, Some(64 << 20));
        assert_eq!(r.cpu_quota, Some(40_000));
        assert_eq!(r.cpu_shares, Some(409));
        shared.spec.as_mut().unwrap().overhead = pod.spec.as_ref().unwrap().overhead.clone();
        let r = pod_resources(&shared);
        assert_eq!(r.memory_limit, Some(65 << 20));
        assert_eq!(r.cpu_quota, Some(41_000));
        // A resource the pod level leaves out is the containers' (c has no memory limit: none).
        shared.spec.as_mut().unwrap().resources = Some(ResourceRequirements {
            requests: Some([("cpu".to_string(), Quantity("1".into()))].into()),
            ..Default::default()
        });
        let r = pod_resources(&shared);
        assert_eq!(r.cpu_shares, Some(1034), "1 CPU and 10m of overhead");
        assert_eq!((r.memory_limit, r.cpu_quota), (None, None));

        // BestEffort: the minimum shares and nothing else.
        let r = pod_resources(&pod_of(vec![Container::default()], vec![]));
        assert_eq!(
            r,
            Resources {
                cpu_shares: Some(2),
                ..Default::default()
            }
        );
    }

    #[test]
    fn config_merges_env_user_and_security_context() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(1000),
                    supplemental_groups: Some(vec![5]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = Container {
            name: "c".into(),
            security_context: Some(SecurityContext {
                run_as_group: Some(3000),
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    add: strings(&["NET_ADMIN"]),
                    drop: strings(&["ALL"]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let img = image(&["/entry"], &[], "");
        let config = build(Inputs {
            pod: &pod,
            hostname: "web".into(),
            container: &container,
            image: &img,
            layers: &[],
            env: vec![
                ("LANG".into(), "en_US".into()),
                ("EXTRA".into(), "1".into()),
            ],
            mounts: vec![],
            volume_groups: vec![],
            namespaces: PodNamespaces {
                netns: Some("/run/orch/netns/x".into()),
                ..Default::default()
            },
            cgroup_path: "/orch/podx/c".into(),
            open_files: Some(OpenFilesLimit {
                soft: 1024,
                hard: 4096,
            }),
            node_memory: 8 << 30,
            min_oom_score_adj: -999,
            seccomp_profile_root: Path::new("/var/lib/orch/agent/seccomp"),
        })
        .unwrap();
        assert_eq!((config.uid, config.gid), (1000, 3000));
        assert_eq!(
            config.open_files,
            Some(OpenFilesLimit {
                soft: 1024,
                hard: 4096
            })
        );
        // The primary group is among them, as containerd keeps it.
        assert_eq!(config.additional_gids, [5, 3000]);
        assert!(config.no_new_privileges);
        assert_eq!(config.capabilities_drop, ["ALL"]);
        assert_eq!(config.cwd, "/srv");
        assert_eq!(config.hostname, "web");
        assert_eq!(config.seccomp, Seccomp::RuntimeDefault);
        assert!(config.env.contains(&"PATH=/custom/bin".to_string()));
        assert!(config.env.contains(&"LANG=en_US".to_string()));
        assert!(config.env.contains(&"EXTRA=1".to_string()));
        assert!(config.env.contains(&"HOSTNAME=web".to_string()));
        assert!(config.env.contains(&"HOME=/".to_string()));
        assert!(!config.env.iter().any(|e| e == "LANG=C"));
        assert!(!config.env.iter().any(|e| e.starts_with("TERM=")));

        // With no mounts, namespaces or limits.
        let build_plain = |container: &Container, env| {
            build(Inputs {
                pod: &pod,
                hostname: "web".into(),
                container,
                image: &img,
                layers: &[],
                env,
                mounts: vec![],
                volume_groups: vec![],
                namespaces: PodNamespaces::default(),
                cgroup_path: String::new(),
                open_files: None,
                node_memory: 8 << 30,
                min_oom_score_adj: -999,
                seccomp_profile_root: Path::new("/var/lib/orch/agent/seccomp"),
            })
        };
        // On a terminal, TERM is xterm unless the image or the container says otherwise.
        let on_terminal = |env: Vec<(String, String)>| {
            let mut tty = container.clone();
            tty.tty = Some(true);
            build_plain(&tty, env)
                .unwrap()
                .env
                .into_iter()
                .filter(|e| e.starts_with("TERM="))
                .collect::<Vec<_>>()
        };
        assert_eq!(on_terminal(vec![]), ["TERM=xterm"]);
        assert_eq!(
            on_terminal(vec![("TERM".into(), "vt100".into())]),
            ["TERM=vt100"]
        );

        // The container's seccompProfile over the pod's; a Localhost one is a file of the node's.
        let seccomp_of = |profile: Option<(&str, Option<&str>)>| {
            let mut c = container.clone();
            c.security_context = Some(SecurityContext {
                seccomp_profile: profile.map(|(kind, file)| SeccompProfile {
                    type_: kind.into(),
                    localhost_profile: file.map(str::to_string),
                }),
                ..Default::default()
            });
            build_plain(&c, vec![]).unwrap().seccomp
        };
        assert_eq!(seccomp_of(Some(("Unconfined", None))), Seccomp::Unconfined);
        assert_eq!(
            seccomp_of(Some(("Localhost", Some("profiles/audit.json")))),
            Seccomp::Localhost("/var/lib/orch/agent/seccomp/profiles/audit.json".into())
        );
        assert_eq!(seccomp_of(None), Seccomp::RuntimeDefault);

        let mut non_root = container.clone();
        non_root.security_context = Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(0),
            ..Default::default()
        });
        let err = build_plain(&non_root, vec![]).unwrap_err();
        assert_eq!(
            err,
            BuildError::Config(
                "container's runAsUser breaks non-root policy (pod: \"web_()\", container: c)"
                    .into()
            )
        );
    }

    #[test]
    fn oom_score_adj_follows_kubelets_qos_policy() {
        let with = |qos: &str, priority: Option<i32>, memory_request: Option<&str>| {
            let pod = Pod {
                spec: Some(k8s_openapi::api::core::v1::PodSpec {
                    priority,
                    ..Default::default()
                }),
                status: Some(k8s_openapi::api::core::v1::PodStatus {
                    qos_class: Some(qos.into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let container = Container {
                resources: memory_request.map(|m| {
                    k8s_openapi::api::core::v1::ResourceRequirements {
                        requests: Some([("memory".to_string(), Quantity(m.into()))].into()),
                        ..Default::default()
                    }
                }),
                ..Default::default()
            };
            oom_score_adj(&pod, &container, 10 << 30)
        };
        assert_eq!(with("Guaranteed", None, Some("1Gi")), -997);
        assert_eq!(with("BestEffort", None, None), 1000);
        assert_eq!(with("BestEffort", Some(2_000_001_000), None), -997);
        // A tenth of the node's memory: 900; none requested: 999, below BestEffort; all of it: 3.
        assert_eq!(with("Burstable", None, Some("1Gi")), 900);
        assert_eq!(with("Burstable", None, None), 999);
        assert_eq!(with("Burstable", None, Some("20Gi")), 3);
    }
}
