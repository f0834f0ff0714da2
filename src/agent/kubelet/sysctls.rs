//! A pod's sysctls (`spec.securityContext.sysctls`) as kubelet allows them: only sysctls the kernel keeps
//! per namespace (`net.*` per network namespace; `kernel.shm*`, `kernel.msg*`, `kernel.sem` and
//! `fs.mqueue.*` per IPC namespace), and of those only kubelet's safe set plus what the node's
//! `--kubelet-arg allowed-unsafe-sysctls=…` allows (names, or prefixes ending in `*`). A pod asking for
//! another, or for one of a namespace it shares with the host, is rejected at admission
//! (`SysctlForbidden`). The allowed ones are written when the pod's namespaces are made, before any of its
//! containers starts, as the runtime sets them on the pod's sandbox.
//!
//! Names may use `/` as the separator (`net/ipv4/conf/eth0.100/rp_filter`, for an interface name with a
//! dot); they are compared in their dotted form, where such a name's dots and slashes swap places.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::agent::network::netns::{self, Sysctl};

/// Kubelet's safe sysctls: namespaced, and with no effect on other pods or the node (Kubernetes 1.34),
/// each with the kernel release that made it per namespace, below which kubelet leaves it out.
const SAFE: &[(&str, (u32, u32))] = &[
    ("kernel.shm_rmid_forced", (0, 0)),
    ("net.ipv4.ip_local_port_range", (0, 0)),
    ("net.ipv4.tcp_syncookies", (0, 0)),
    ("net.ipv4.ping_group_range", (0, 0)),
    ("net.ipv4.ip_unprivileged_port_start", (0, 0)),
    ("net.ipv4.ip_local_reserved_ports", (3, 16)),
    ("net.ipv4.tcp_keepalive_time", (4, 5)),
    ("net.ipv4.tcp_fin_timeout", (4, 6)),
    ("net.ipv4.tcp_keepalive_intvl", (4, 5)),
    ("net.ipv4.tcp_keepalive_probes", (4, 5)),
    ("net.ipv4.tcp_rmem", (4, 15)),
    ("net.ipv4.tcp_wmem", (4, 15)),
];

/// The longest sysctl name or pattern the API takes.
const MAX_LENGTH: usize = 253;

/// The kernel namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysctlNamespace {
    Ipc,
    Net,
}

impl SysctlNamespace {
    /// Kubelet's name for it in its messages.
    fn kubelet_name(self) -> &'static str {
        match self {
            SysctlNamespace::Ipc => "IPC",
            SysctlNamespace::Net => "Net",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysctlError {
    #[error(
        "sysctl {0:?} must have at most 253 characters and be dot- or slash-separated segments of \
         [-_a-z0-9], each starting and ending with a letter or digit, the last one possibly ending in *"
    )]
    InvalidPattern(String),
    #[error(
        "the sysctl {0:?} is not known to be namespaced (only kernel.shm*, kernel.msg*, kernel.sem, \
         fs.mqueue.* and net.* are), so a pod cannot have its own"
    )]
    NotNamespaced(String),
}

/// The kernel namespace of sysctl `name` (dotted, or a pattern's prefix before its `*`), if kubelet knows
/// it to be namespaced.
fn namespace_of(name: &str) -> Option<SysctlNamespace> {
    const IPC_NAMES: &[&str] = &[
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.shm",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.msg",
    ];
    if IPC_NAMES.contains(&name) || name.starts_with("fs.mqueue.") {
        Some(SysctlNamespace::Ipc)
    } else if name.starts_with("net.") {
        Some(SysctlNamespace::Net)
    } else {
        None
    }
}

/// `name` in its dotted form: a name whose first separator is a slash has its slashes and dots swapped.
fn dotted(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => netns::swap_separators(name),
        _ => name.to_string(),
    }
}

/// Whether `pattern` is a sysctl name, or a name's beginning followed by `*`.
fn is_pattern(pattern: &str) -> bool {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if body.contains('*') {
        return false;
    }
    let segment = |seg: &str| {
        let b = seg.as_bytes();
        let inner =
            |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_';
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        match b {
            [] => false,
            [last] => edge(last) || *last == b'*',
            [first, middle @ .., last] => {
                edge(first) && middle.iter().all(inner) && (edge(last) || *last == b'*')
            }
        }
    };
    let segments: Vec<&str> = pattern.split(['.', '/']).collect();
    let last = segments.len() - 1;
    pattern.len() <= MAX_LENGTH
        && segments
            .iter()
            .enumerate()
            .all(|(i, seg)| segment(seg) && (i == last || !seg.ends_with('*')))
}

/// The sysctls pods on this node may have.
#[derive(Debug, Clone)]
pub struct Allowlist {
    names: BTreeMap<String, SysctlNamespace>,
    prefixes: BTreeMap<String, SysctlNamespace>,
}

impl Default for Allowlist {
    fn default() -> Self {
        Allowlist::new(&[]).expect("the safe sysctls are namespaced")
    }
}

/// The running kernel's release as (major, minor); (0, 0) when it cannot be read.
fn kernel_release() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

impl Allowlist {
    /// The safe sysctls the running kernel has per namespace and `unsafe_patterns` (kubelet's
    /// `--allowed-unsafe-sysctls`), each of which must be namespaced.
    pub fn new(unsafe_patterns: &[String]) -> Result<Allowlist, SysctlError> {
        Allowlist::for_kernel(unsafe_patterns, kernel_release())
    }

    fn for_kernel(
        unsafe_patterns: &[String],
        kernel: (u32, u32),
    ) -> Result<Allowlist, SysctlError> {
        let mut allowlist = Allowlist {
            names: BTreeMap::new(),
            prefixes: BTreeMap::new(),
        };
        let patterns = SAFE
            .iter()
            .filter(|(_, since)| kernel >= *since)
            .map(|(name, _)| name.to_string());
        for pattern in patterns.chain(unsafe_patterns.iter().cloned()) {
            if !is_pattern(&pattern) {
                return Err(SysctlError::InvalidPattern(pattern));
            }
            let pattern = dotted(&pattern);
            let (name, wildcard) = match pattern.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (pattern.as_str(), false),
            };
            let namespace =
                namespace_of(name).ok_or_else(|| SysctlError::NotNamespaced(pattern.clone()))?;
            let table = if wildcard {
                &mut allowlist.prefixes
            } else {
                &mut allowlist.names
            };
            table.insert(name.to_string(), namespace);
        }
        Ok(allowlist)
    }

    /// Why `pod` may not have its sysctls here (kubelet's `SysctlForbidden` message), if it may not.
    pub fn forbidden(&self, pod: &Pod) -> Option<String> {
        let spec = pod.spec.as_ref()?;
        let host = |namespace| match namespace {
            SysctlNamespace::Ipc => spec.host_ipc == Some(true),
            SysctlNamespace::Net => spec.host_network == Some(true),
        };
        for sysctl in requested(pod) {
            let name = dotted(&sysctl.name);
            let allowed = self.names.get(&name).or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(prefix, _)| name.starts_with(prefix.as_str()))
                    .map(|(_, namespace)| namespace)
            });
            let why = match allowed {
                None => format!("{name:?} not allowlisted"),
                Some(&namespace) if host(namespace) => format!(
                    "{name:?} not allowed with host {} enabled",
                    namespace.kubelet_name()
                ),
                Some(_) => continue,
            };
            return Some(format!("forbidden sysctl: {why}"));
        }
        None
    }
}

fn requested(pod: &Pod) -> impl Iterator<Item = &k8s_openapi::api::core::v1::Sysctl> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
}

/// The pod's sysctls of `namespace`'s kind, to write into its namespace of that kind when it is made.
/// The pod was admitted, so each is a network one (`net.*`) or an IPC one.
pub fn of_namespace(pod: &Pod, namespace: SysctlNamespace) -> Vec<Sysctl> {
    requested(pod)
        .filter_map(|s| {
            let name = dotted(&s.name);
            let kind = if name.starts_with("net.") {
                SysctlNamespace::Net
            } else {
                SysctlNamespace::Ipc
            };
            (kind == namespace).then(|| Sysctl {
                name,
                value: s.value.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_with(sysctls: &[&str], host: serde_json::Value) -> Pod {
        let mut spec = json!({
            "containers": [{"name": "app"}],
            "securityContext": {"sysctls": sysctls.iter()
                .map(|n| json!({"name": n, "value": "1"})).collect::<Vec<_>>()},
        });
        if let (Some(spec), Some(host)) = (spec.as_object_mut(), host.as_object()) {
            spec.extend(host.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn only_safe_sysctls_pass_unless_the_node_allows_more() {
        let safe = Allowlist::default();
        let ok = pod_with(
            &[
                "kernel.shm_rmid_forced",
                "net/ipv4/ip_unprivileged_port_start",
            ],
            json!({}),
        );
        assert_eq!(safe.forbidden(&ok), None);
        let unsafe_ = pod_with(&["net.ipv4.tcp_syncookies", "kernel.msgmax"], json!({}));
        assert_eq!(
            safe.forbidden(&unsafe_).unwrap(),
            r#"forbidden sysctl: "kernel.msgmax" not allowlisted"#
        );
        let wider = Allowlist::new(&["kernel.msg*".into(), "net.core.somaxconn".into()]).unwrap();
        assert_eq!(wider.forbidden(&unsafe_), None);
        let slashed = pod_with(&["net/core/somaxconn"], json!({}));
        assert_eq!(wider.forbidden(&slashed), None);
        assert!(safe.forbidden(&slashed).is_some());
    }

    #[test]
    fn sysctls_of_a_namespace_shared_with_the_host_are_forbidden() {
        let safe = Allowlist::default();
        let host_net = pod_with(&["net.ipv4.ping_group_range"], json!({"hostNetwork": true}));
        assert_eq!(
            safe.forbidden(&host_net).unwrap(),
            r#"forbidden sysctl: "net.ipv4.ping_group_range" not allowed with host Net enabled"#
        );
        let host_ipc = pod_with(&["kernel.shm_rmid_forced"], json!({"hostIPC": true}));
        assert_eq!(
            safe.forbidden(&host_ipc).unwrap(),
            r#"forbidden sysctl: "kernel.shm_rmid_forced" not allowed with host IPC enabled"#
        );
        let own_net = pod_with(&["net.ipv4.tcp_keepalive_time"], json!({"hostIPC": true}));
        assert_eq!(safe.forbidden(&own_net), None);
    }

    #[test]
    fn the_node_may_allow_only_namespaced_sysctls() {
        assert_eq!(
            Allowlist::new(&["vm.swappiness".into()]).unwrap_err(),
            SysctlError::NotNamespaced("vm.swappiness".into())
        );
        assert_eq!(
            Allowlist::new(&["kernel.*".into()]).unwrap_err(),
            SysctlError::NotNamespaced("kernel.*".into())
        );
        assert_eq!(
            Allowlist::new(&["kernel.shm_*".into()]).unwrap_err(),
            SysctlError::NotNamespaced("kernel.shm_*".into()),
            "kubelet knows kernel.shm* and the kernel.shm names, not other beginnings"
        );
        for bad in [
            "Net.core.somaxconn",
            "net..core",
            "net.core.-x",
            "",
            "net.*.rp_filter",
        ] {
            assert_eq!(
                Allowlist::new(&[bad.into()]).unwrap_err(),
                SysctlError::InvalidPattern(bad.into()),
                "{bad:?}"
            );
        }
        assert!(
            Allowlist::new(&["fs.mqueue.*".into(), "kernel.sem".into(), "net.*".into()]).is_ok()
        );
    }

    #[test]
    fn safe_sysctls_the_kernel_does_not_have_per_namespace_are_left_out() {
        let keepalive = pod_with(&["net.ipv4.tcp_keepalive_time"], json!({}));
        let old = Allowlist::for_kernel(&[], (4, 4)).unwrap();
        assert!(old.forbidden(&keepalive).is_some());
        assert_eq!(
            old.forbidden(&pod_with(&["net.ipv4.tcp_syncookies"], json!({}))),
            None
        );
        let newer = Allowlist::for_kernel(&[], (4, 5)).unwrap();
        assert_eq!(newer.forbidden(&keepalive), None);
        assert!(newer
            .forbidden(&pod_with(&["net.ipv4.tcp_rmem"], json!({})))
            .is_some());
    }

    #[test]
    fn slash_separated_names_swap_their_dots() {
        assert_eq!(
            dotted("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
        assert_eq!(dotted("net.ipv4.tcp_rmem"), "net.ipv4.tcp_rmem");
        assert_eq!(dotted("kernel"), "kernel");
    }

    #[test]
    fn a_pods_sysctls_are_split_by_the_namespace_they_go_to() {
        let pod = pod_with(
            &[
                "net/ipv4/conf/eth0.100/rp_filter",
                "kernel.sem",
                "net.ipv4.tcp_rmem",
            ],
            json!({}),
        );
        let names =
            |ns| -> Vec<String> { of_namespace(&pod, ns).into_iter().map(|s| s.name).collect() };
        assert_eq!(
            names(SysctlNamespace::Net),
            ["net.ipv4.conf.eth0/100.rp_filter", "net.ipv4.tcp_rmem"]
        );
        assert_eq!(names(SysctlNamespace::Ipc), ["kernel.sem"]);
    }
}
