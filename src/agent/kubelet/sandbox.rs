//! What a pod has on the node besides its containers: on the run dir's tmpfs, `<run-dir>/pods/<uid>` with
//! the generated /etc/hosts, /etc/resolv.conf and /etc/hostname its containers mount and the tmpfs they
//! share as /dev/shm, and the IPC and UTS namespaces they share (`<run-dir>/{ipcns,utsns}/<uid>`, named
//! after the pod, with the pod's IPC sysctls: what Kubernetes keeps in a pod's pause container), and
//! with shareProcessNamespace their PID namespace (`<run-dir>/pidns/<uid>`, held by an `orch pause`
//! process); on disk, its directory `<data-dir>/agent/pods/<uid>` (made for volumes only) and, under
//! the node's log root (`/var/log`), its log directory
//! `pods/<namespace>_<name>_<uid>/<container>/<restart>.log`, linked from
//! `containers/<name>_<namespace>_<container>-<id>.log`: kubelet's layout, where log collectors look.
//! The log directory is removed with the pod. Its cgroup is `pod_cgroup`'s.
//!
//! Its host ports are mapped to its address by the node's NAT (`network`), from the list kubelet hands
//! the CNI portmap plugin ([`host_ports`]).
//!
//! The etc files are on the tmpfs because a reboot ends every container that mounts them, and the pod's
//! next sync writes them again; on disk, each file cost an inode allocation per pod.
//!
//! A sandbox this node cannot make as asked (a RuntimeClass, a user namespace) is refused
//! ([`unsupported`]) rather than made otherwise.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use nix::sched::CloneFlags;

use super::sysctls::{self, SysctlNamespace};
use crate::agent::network::{netns, HostPort};
use crate::agent::runtime::{BindAccess, MountKind, MountPropagation, MountSpec, SharedNamespace};
use crate::shim::InitProcess;

/// The size of a pod's /dev/shm, as containerd and Docker make it.
const SHM_SIZE: &str = "size=65536k";

/// The host ports of the pod's app containers (not init containers), as kubelet collects them for the
/// sandbox: protocol defaulted to TCP, hostIP "" or 0.0.0.0 meaning any of the node's addresses. IPv6
/// host IPs are left out: the pod network is IPv4.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
    let mut ports: Vec<HostPort> = containers
        .unwrap_or_default()
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|&port| port > 0)?;
            let host_ip = match p.host_ip.as_deref().unwrap_or_default() {
                "" | "0.0.0.0" => None,
                ip => Some(ip.parse().ok()?),
            };
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => "udp",
                Some("SCTP") => "sctp",
                _ => "tcp",
            };
            Some(HostPort {
                protocol,
                host_ip,
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

pub fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    pods_dir(data_dir).join(uid)
}

/// Where every pod's directory is.
pub fn pods_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent/pods")
}

/// The pod's directory on the run dir's tmpfs: its etc files and /dev/shm.
pub fn run_pod_dir(run_dir: &Path, uid: &str) -> PathBuf {
    run_dir.join("pods").join(uid)
}

pub fn log_dir(log_root: &Path, pod: &Pod) -> PathBuf {
    let meta = &pod.metadata;
    log_root.join("pods").join(format!(
        "{}_{}_{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    ))
}

/// The pods' log directories, by the uid that ends their names (namespaces and pod names have no `_`),
/// under the log root and where orch kept them before (`<data-dir>/agent/logs`). The log root is
/// shared with other software: a directory whose name does not end in a UUID is not a pod's.
pub fn log_dirs(log_root: &Path, data_dir: &Path) -> Vec<(String, PathBuf)> {
    let roots = [log_root.join("pods"), data_dir.join("agent/logs")];
    let entries = roots
        .iter()
        .flat_map(|root| std::fs::read_dir(root).into_iter().flatten().flatten());
    entries
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let (_, uid) = name.rsplit_once('_')?;
            uuid::Uuid::try_parse(uid).ok()?;
            Some((uid.to_string(), entry.path()))
        })
        .collect()
}

pub fn log_path(log_root: &Path, pod: &Pod, container: &str, attempt: u32) -> PathBuf {
    log_dir(log_root, pod)
        .join(container)
        .join(format!("{attempt}.log"))
}

/// kubelet's link to the log of container `id` (`/var/log/containers/…`), whose name tells collectors
/// the pod, namespace, container and id; kept within a file name's 255 bytes as kubelet keeps it.
pub fn log_link(log_root: &Path, pod: &Pod, container: &str, id: &str) -> PathBuf {
    let meta = &pod.metadata;
    let mut name = format!(
        "{}_{}_{container}-{id}",
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    name.truncate(255 - ".log".len());
    log_root.join("containers").join(name + ".log")
}

pub struct Network<'a> {
    pub pod_ip: Option<IpAddr>,
    pub cluster_dns: IpAddr,
    pub cluster_domain: &'a str,
}

fn hosts_file(pod: &Pod, net: &Network) -> String {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let Some(ip) = net.pod_ip {
        let hostname = spec
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| name.to_string());
        match spec.and_then(|s| s.subdomain.as_deref()) {
            Some(sub) if !sub.is_empty() => text.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{namespace}.svc.{}\t{hostname}\n",
                net.cluster_domain
            )),
            _ => text.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    for alias in spec
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default()
    {
        text.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.unwrap_or_default().join("\t")
        ));
    }
    text
}

fn resolv_conf(pod: &Pod, net: &Network) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let cluster = match policy {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    };
    let mut nameservers: Vec<String> = Vec::new();
    let mut searches: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    if cluster {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        nameservers.push(net.cluster_dns.to_string());
        searches.extend([
            format!("{namespace}.svc.{}", net.cluster_domain),
            format!("svc.{}", net.cluster_domain),
            net.cluster_domain.to_string(),
        ]);
        options.push("ndots:5".into());
    } else if policy != "None" {
        for line in host.lines() {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("nameserver") => nameservers.extend(parts.map(str::to_string)),
                Some("search") => searches.extend(parts.map(str::to_string)),
                Some("options") => options.extend(parts.map(str::to_string)),
                _ => {}
            }
        }
    }
    if let Some(config) = spec.and_then(|s| s.dns_config.as_ref()) {
        nameservers.extend(config.nameservers.clone().unwrap_or_default());
        searches.extend(config.searches.clone().unwrap_or_default());
        for o in config.options.clone().unwrap_or_default() {
            let name = o.name.unwrap_or_default();
            options.retain(|existing| existing.split(':').next() != Some(name.as_str()));
            options.push(match o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    let mut text = String::new();
    if !searches.is_empty() {
        text.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for ns in nameservers.iter().take(3) {
        text.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        text.push_str(&format!("options {}\n", options.join(" ")));
    }
    text
}

/// The pod's hostname as kubelet derives it: `spec.hostname` or the pod's name, cut to 63 characters
/// without a trailing '-' or '.'; the node's own for hostNetwork pods, which share its UTS namespace.
/// With `setHostnameAsFQDN` and a subdomain, the fully qualified
/// `<hostname>.<subdomain>.<namespace>.svc.<cluster domain>`, which must fit the kernel's 64 characters.
pub fn hostname(pod: &Pod, cluster_domain: &str) -> Result<String, String> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return Ok(nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default());
    }
    let name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let cut: String = name.chars().take(63).collect();
    let hostname = cut.trim_end_matches(['-', '.']).to_string();
    let subdomain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty());
    match subdomain {
        Some(subdomain) if spec.and_then(|s| s.set_hostname_as_fqdn) == Some(true) => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let fqdn = format!("{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}");
            if fqdn.len() > FQDN_MAX_LENGTH {
                return Err(format!(
                    "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is \
                     too long ({FQDN_MAX_LENGTH} characters is the max, {} characters requested)",
                    fqdn.len()
                ));
            }
            Ok(fqdn)
        }
        _ => Ok(hostname),
    }
}

/// The kernel's nodename field holds 64 characters and its terminating NUL.
const FQDN_MAX_LENGTH: usize = 64;

/// What of the pod's sandbox this node cannot make: a RuntimeClass (the node has one runtime, and the
/// cluster no RuntimeClass objects, so kubelet's lookup of any fails) or a user namespace (`hostUsers:
/// false`). Running such a pod with the default runtime, or as the node's root, would not be what it
/// asked for.
pub fn unsupported(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(class) = spec.runtime_class_name.as_deref().filter(|c| !c.is_empty()) {
        return Some(format!("runtimeclass.node.k8s.io \"{class}\" not found"));
    }
    if spec.host_users == Some(false) {
        return Some(
            "the node's runtime does not support user namespaces (spec.hostUsers: false)".into(),
        );
    }
    None
}

fn namespace_file(run_dir: &Path, kind: &str, uid: &str) -> PathBuf {
    run_dir.join(format!("{kind}ns")).join(uid)
}

/// Makes the directories of the pods' IPC, UTS and PID namespace files shared mount points (see
/// `netns::prepare_dir`); once, when the kubelet starts.
pub fn prepare_namespace_dirs(run_dir: &Path) -> Result<(), String> {
    for kind in ["ipc", "uts", "pid"] {
        let dir = run_dir.join(format!("{kind}ns"));
        netns::prepare_dir(&dir).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The pod's IPC namespace with the pod's IPC sysctls (the host's with hostIPC) and UTS namespace named
/// after the pod (the host's with hostNetwork), created on the pod's first sync and kept until it is
/// released.
pub async fn ensure_namespaces(
    run_dir: &Path,
    uid: &str,
    pod: &Pod,
    cluster_domain: &str,
) -> Result<(SharedNamespace, SharedNamespace), String> {
    let spec = pod.spec.as_ref();
    let ipc = if spec.and_then(|s| s.host_ipc).unwrap_or(false) {
        SharedNamespace::Host
    } else {
        let path = namespace_file(run_dir, "ipc", uid);
        let sysctls = sysctls::of_namespace(pod, SysctlNamespace::Ipc);
        netns::ensure_namespace(&path, CloneFlags::CLONE_NEWIPC, move || {
            netns::set_sysctls(&sysctls)
        })
        .await
        .map_err(|e| e.to_string())?;
        SharedNamespace::Pod(path)
    };
    let uts = if spec.and_then(|s| s.host_network).unwrap_or(false) {
        SharedNamespace::Host
    } else {
        let path = namespace_file(run_dir, "uts", uid);
        let name = hostname(pod, cluster_domain)?;
        netns::ensure_namespace(&path, CloneFlags::CLONE_NEWUTS, move || {
            netns::set_hostname(&name)
        })
        .await
        .map_err(|e| e.to_string())?;
        SharedNamespace::Pod(path)
    };
    Ok((ipc, uts))
}

/// Where the pod's pause process is recorded: in its run directory, which goes with the pod.
const PAUSE_RECORD: &str = "pause.json";

fn pause_holder(run_dir: &Path, uid: &str) -> Option<InitProcess> {
    let bytes = std::fs::read(run_pod_dir(run_dir, uid).join(PAUSE_RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The PID namespace the pod's containers share (shareProcessNamespace), bound at `<run-dir>/pidns/<uid>`.
/// An `orch pause` process (`orch` is the executable) holds it as its PID 1, as the pause container does
/// on Kubernetes; a namespace whose holder ended is dead (no process can enter it) and is made again.
pub async fn ensure_pid_namespace(
    run_dir: &Path,
    uid: &str,
    orch: &Path,
) -> Result<PathBuf, String> {
    let path = namespace_file(run_dir, "pid", uid);
    let held = pause_holder(run_dir, uid).is_some_and(|h| h.is_alive());
    if held && netns::exists(&path).map_err(|e| e.to_string())? {
        return Ok(path);
    }
    end_pid_namespace(run_dir, uid);
    // Nothing of the agent's: no environment, and the root as working directory.
    let output = tokio::process::Command::new(orch)
        .arg("pause")
        .env_clear()
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("starting {} pause: {e}", orch.display()))?;
    let said = String::from_utf8_lossy(&output.stderr);
    let pid: i32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("the pod's pause process did not start: {}", said.trim()))?;
    let holder = InitProcess {
        pid,
        start_ticks: crate::shim::start_ticks(pid)
            .ok_or_else(|| format!("the pod's pause process ended at once: {}", said.trim()))?,
        started_at_unix: jiff::Timestamp::now().as_second(),
    };
    let held = record_and_bind(run_dir, uid, &holder, &path);
    if held.is_err() {
        kill(&holder);
    }
    held.map(|()| path)
}

/// Records the pod's pause process and binds its PID namespace at `path`.
fn record_and_bind(
    run_dir: &Path,
    uid: &str,
    holder: &InitProcess,
    path: &Path,
) -> Result<(), String> {
    let dir = run_pod_dir(run_dir, uid);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let record = serde_json::to_vec(holder).expect("serialisable");
    std::fs::write(dir.join(PAUSE_RECORD), record)
        .map_err(|e| format!("recording the pod's pause process: {e}"))?;
    std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    nix::mount::mount(
        Some(format!("/proc/{}/ns/pid", holder.pid).as_str()),
        path,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "bind-mounting the pod's PID namespace on {}: {e}",
            path.display()
        )
    })
}

fn kill(holder: &InitProcess) {
    if holder.is_alive() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(holder.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Ends the pod's shared PID namespace, if it has one: its pause process (and with it every process
/// still in the namespace) and its namespace file.
pub fn end_pid_namespace(run_dir: &Path, uid: &str) {
    if let Some(holder) = pause_holder(run_dir, uid) {
        kill(&holder);
        let _ = std::fs::remove_file(run_pod_dir(run_dir, uid).join(PAUSE_RECORD));
    }
    if let Err(e) = netns::remove(&namespace_file(run_dir, "pid", uid)) {
        tracing::warn!(pod = %uid, error = %e, "removing the pod's PID namespace");
    }
}

/// Pods that still have namespace files or a pod directory here (to find what a pod that vanished left
/// behind).
pub fn sandbox_owners(run_dir: &Path) -> Vec<String> {
    ["ipcns", "utsns", "pidns", "pods"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(run_dir.join(dir)).ok())
        .flat_map(|entries| entries.flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Undoes what the pod's sandbox holds outside its containers: the namespace files, the /dev/shm tmpfs
/// and the etc files (the pod directory on disk is removed with its volumes).
pub fn release(run_dir: &Path, uid: &str) {
    end_pid_namespace(run_dir, uid);
    for kind in ["ipc", "uts"] {
        let path = namespace_file(run_dir, kind, uid);
        if let Err(e) = netns::remove(&path) {
            tracing::warn!(pod = %uid, error = %e, "removing a pod namespace");
        }
    }
    let dir = run_pod_dir(run_dir, uid);
    let shm = dir.join("shm");
    if is_mount_point(&shm) {
        if let Err(e) = nix::mount::umount2(&shm, nix::mount::MntFlags::MNT_DETACH) {
            // Removing the directory now would empty the pod's /dev/shm under its containers.
            tracing::warn!(pod = %uid, error = %e, "unmounting the pod's /dev/shm");
            return;
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(pod = %uid, error = %e, "removing the pod's run directory");
        }
    }
}

/// Whether `path` is the root of a mount other than its parent's.
fn is_mount_point(path: &Path) -> bool {
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(own), Some(Ok(parent))) => own.dev() != parent.dev(),
        _ => false,
    }
}

/// The pod's /dev/shm: a tmpfs in the pod's run directory that all its containers mount, or the host's
/// with hostIPC.
fn shm(run_pod_dir: &Path, host_ipc: bool) -> Result<PathBuf, String> {
    if host_ipc {
        return Ok(PathBuf::from("/dev/shm"));
    }
    let dir = run_pod_dir.join("shm");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if !is_mount_point(&dir) {
        nix::mount::mount(
            Some("shm"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID
                | nix::mount::MsFlags::MS_NODEV
                | nix::mount::MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,{SHM_SIZE}").as_str()),
        )
        .map_err(|e| format!("mounting the pod's /dev/shm on {}: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// Writes the pod's etc files and mounts its /dev/shm in `run_pod_dir` ([`run_pod_dir`]), and returns
/// the mounts every container of the pod gets.
pub fn prepare(run_pod_dir: &Path, pod: &Pod, net: &Network) -> Result<Vec<MountSpec>, String> {
    std::fs::create_dir_all(run_pod_dir)
        .map_err(|e| format!("creating {}: {e}", run_pod_dir.display()))?;
    let hostname = hostname(pod, net.cluster_domain)?;
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let hosts = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        hosts_file(pod, net)
    };
    let files = [
        ("etc-hosts", "/etc/hosts", hosts),
        ("resolv.conf", "/etc/resolv.conf", resolv_conf(pod, net)),
        ("hostname", "/etc/hostname", format!("{hostname}\n")),
    ];
    let mut mounts = Vec::new();
    for (file, destination, content) in files {
        let path = run_pod_dir.join(file);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            std::fs::write(&path, content)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        mounts.push(MountSpec {
            destination: destination.into(),
            kind: MountKind::Bind {
                source: path,
                access: BindAccess::ReadWrite,
                propagation: MountPropagation::Private,
            },
        });
    }
    let host_ipc = pod.spec.as_ref().and_then(|s| s.host_ipc).unwrap_or(false);
    mounts.push(MountSpec {
        destination: "/dev/shm".into(),
        kind: MountKind::Bind {
            source: shm(run_pod_dir, host_ipc)?,
            access: BindAccess::ReadWrite,
            propagation: MountPropagation::Private,
        },
    });
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn net() -> Network<'static> {
        Network {
            pod_ip: Some("10.42.0.9".parse().unwrap()),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            cluster_domain: "cluster.local",
        }
    }

    #[test]
    fn host_ports_are_those_of_app_containers_with_kubelets_defaults() {
        use k8s_openapi::api::core::v1::{Container, ContainerPort};
        let port = |container_port, host_port, protocol: Option<&str>, host_ip: Option<&str>| {
            ContainerPort {
                container_port,
                host_port,
                protocol: protocol.map(str::to_string),
                host_ip: host_ip.map(str::to_string),
                ..Default::default()
            }
        };
        let container = |ports| Container {
            ports: Some(ports),
            ..Default::default()
        };
        let p = pod(PodSpec {
            containers: vec![
                container(vec![
                    port(80, Some(8080), None, None),
                    port(53, Some(5353), Some("UDP"), Some("192.168.1.5")),
                    port(9090, None, None, None),
                    port(443, Some(8443), Some("TCP"), Some("0.0.0.0")),
                    port(444, Some(8444), None, Some("::1")),
                ]),
                container(vec![port(80, Some(8080), None, None)]),
            ],
            init_containers: Some(vec![container(vec![port(1, Some(1111), None, None)])]),
            ..Default::default()
        });
        let tcp = |host_port, container_port| HostPort {
            protocol: "tcp",
            host_ip: None,
            host_port,
            container_port,
        };
        assert_eq!(
            host_ports(&p),
            [
                tcp(8080, 80),
                tcp(8443, 443),
                HostPort {
                    protocol: "udp",
                    host_ip: Some("192.168.1.5".parse().unwrap()),
                    host_port: 5353,
                    container_port: 53,
                },
            ]
        );
    }

    #[test]
    fn cluster_first_resolv_conf_and_hosts_with_subdomain_and_aliases() {
        let p = pod(PodSpec {
            subdomain: Some("web".into()),
            host_aliases: Some(vec![HostAlias {
                ip: "10.1.2.3".into(),
                hostnames: Some(vec!["db".into(), "db.local".into()]),
            }]),
            dns_config: Some(PodDNSConfig {
                searches: Some(vec!["example.com".into()]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let resolv = resolv_conf(&p, &net());
        assert_eq!(
            resolv,
            "search shop.svc.cluster.local svc.cluster.local cluster.local example.com\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
        let hosts = hosts_file(&p, &net());
        assert!(
            hosts.contains("10.42.0.9\tweb-0.web.shop.svc.cluster.local\tweb-0\n"),
            "{hosts}"
        );
        assert!(hosts.contains("10.1.2.3\tdb\tdb.local\n"));
    }

    #[test]
    fn runtime_classes_and_user_namespaces_are_refused() {
        assert_eq!(unsupported(&pod(PodSpec::default())), None);
        let gpu = pod(PodSpec {
            runtime_class_name: Some("nvidia".into()),
            ..Default::default()
        });
        assert_eq!(
            unsupported(&gpu).unwrap(),
            r#"runtimeclass.node.k8s.io "nvidia" not found"#
        );
        let userns = pod(PodSpec {
            host_users: Some(false),
            ..Default::default()
        });
        assert!(unsupported(&userns).unwrap().contains("user namespaces"));
        let host_users = pod(PodSpec {
            host_users: Some(true),
            ..Default::default()
        });
        assert_eq!(unsupported(&host_users), None);
    }

    #[test]
    fn hostnames_as_kubelet_derives_them() {
        assert_eq!(
            hostname(&pod(PodSpec::default()), "cluster.local").unwrap(),
            "web-0"
        );
        let named = pod(PodSpec {
            hostname: Some("db".into()),
            ..Default::default()
        });
        assert_eq!(hostname(&named, "cluster.local").unwrap(), "db");
        let mut long = pod(PodSpec::default());
        long.metadata.name = Some(format!("{}-x", "a".repeat(62)));
        assert_eq!(
            hostname(&long, "cluster.local").unwrap(),
            "a".repeat(62),
            "cut to 63, without the trailing '-'"
        );
        let host = pod(PodSpec {
            host_network: Some(true),
            ..Default::default()
        });
        assert_eq!(
            hostname(&host, "cluster.local").unwrap(),
            nix::unistd::gethostname().unwrap().to_string_lossy()
        );
        let mut fqdn = pod(PodSpec {
            subdomain: Some("db".into()),
            set_hostname_as_fqdn: Some(true),
            ..Default::default()
        });
        fqdn.metadata.namespace = Some("shop".into());
        assert_eq!(
            hostname(&fqdn, "cluster.local").unwrap(),
            "web-0.db.shop.svc.cluster.local"
        );
        let err = hostname(&fqdn, "a-very-long-cluster-domain.edge-sites.example.org").unwrap_err();
        assert!(
            err.contains("is too long (64 characters is the max, 67 characters requested)"),
            "{err}"
        );
        fqdn.spec.as_mut().unwrap().subdomain = None;
        assert_eq!(
            hostname(&fqdn, "cluster.local").unwrap(),
            "web-0",
            "no domain without a subdomain"
        );
    }

    #[test]
    fn prepare_writes_the_files_containers_mount_and_release_removes_them() {
        let run_dir = tempfile::tempdir().unwrap();
        let dir = run_pod_dir(run_dir.path(), "u-1");
        let p = pod(PodSpec::default());
        let mounts = prepare(&dir, &p, &net()).unwrap();
        let destinations: Vec<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(
            destinations,
            [
                "/etc/hosts",
                "/etc/resolv.conf",
                "/etc/hostname",
                "/dev/shm"
            ]
        );
        assert!(
            is_mount_point(&dir.join("shm")),
            "the pod's /dev/shm is a tmpfs of its own"
        );
        // A second sync finds it mounted.
        prepare(&dir, &p, &net()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("hostname")).unwrap(),
            "web-0\n"
        );
        assert_eq!(sandbox_owners(run_dir.path()), ["u-1"]);
        let shm = dir.join("shm");
        release(run_dir.path(), "u-1");
        assert!(!is_mount_point(&shm));
        assert!(!dir.exists());
        assert!(sandbox_owners(run_dir.path()).is_empty());
        assert!(
            log_path(Path::new("/var/log"), &p, "c", 2)
                == Path::new("/var/log/pods/shop_web-0_u-1/c/2.log")
        );
        assert_eq!(
            log_link(Path::new("/var/log"), &p, "c", "abc"),
            Path::new("/var/log/containers/web-0_shop_c-abc.log")
        );
        let long = "x".repeat(300);
        let link = log_link(Path::new("/var/log"), &p, "c", &long);
        let name = link.file_name().unwrap().to_str().unwrap();
        assert_eq!(name.len(), 255);
        assert!(name.starts_with("web-0_shop_c-xxx") && name.ends_with("x.log"));
    }

    #[test]
    fn log_directories_are_found_by_the_uid_ending_their_names() {
        let log_root = tempfile::tempdir().unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        assert!(log_dirs(log_root.path(), data_dir.path()).is_empty());
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("kube-system".into());
        pod.metadata.name = Some("web-0".into());
        pod.metadata.uid = Some("0f3c2a8e-1b7d-4c55-9a0e-2d6f1e9b7c41".into());
        let dir = log_dir(log_root.path(), &pod);
        std::fs::create_dir_all(dir.join("app")).unwrap();
        // Another program's directories in the shared root, which must never be taken for a pod's
        // (an empty or `..` uid would name the directory of every pod).
        for other in ["foo_", "x_..", "journal", "a_b_not-a-uid"] {
            std::fs::create_dir_all(log_root.path().join("pods").join(other)).unwrap();
        }
        // Where orch kept logs before the log root.
        let legacy = data_dir
            .path()
            .join("agent/logs/default_old_6a1b9f6e-3c2d-4e5f-8a7b-9c0d1e2f3a4b");
        std::fs::create_dir_all(&legacy).unwrap();
        let mut found = log_dirs(log_root.path(), data_dir.path());
        found.sort();
        assert_eq!(
            found,
            [
                ("0f3c2a8e-1b7d-4c55-9a0e-2d6f1e9b7c41".to_string(), dir),
                ("6a1b9f6e-3c2d-4e5f-8a7b-9c0d1e2f3a4b".to_string(), legacy)
            ]
        );
    }
}
