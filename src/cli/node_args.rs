//! The flags every node agent takes, whether it runs inside `orch server` or as `orch agent`, and the
//! kubelet configuration they make.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::agent::image::registries::Registries;
use crate::agent::kubelet::sysctls::Allowlist;
use crate::agent::kubelet::KubeletConfig;
use crate::agent::node::{parse_label, parse_taint, Taint};

#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Node name; defaults to the hostname.
    #[arg(long, env = "ORCH_NODE_NAME")]
    pub node_name: Option<String>,
    /// The node's address; defaults to the address of the interface with the default route.
    #[arg(long, env = "ORCH_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Labels for the node, key=value; repeatable.
    #[arg(long, env = "ORCH_NODE_LABEL", value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// Taints for the node, key=value:Effect; repeatable.
    #[arg(long, env = "ORCH_NODE_TAINT", value_delimiter = ',')]
    pub node_taint: Vec<String>,
    /// Mirrors and credentials for image registries (k3s' registries.yaml format).
    #[arg(
        long,
        env = "ORCH_PRIVATE_REGISTRY",
        default_value = "/etc/orch/registries.yaml"
    )]
    pub private_registry: PathBuf,
    /// Pods this node accepts.
    #[arg(long, env = "ORCH_MAX_PODS", default_value_t = 110)]
    pub max_pods: u32,
    /// Runtime state that a reboot clears: container bundles and state, and pod network namespaces. Where
    /// it is on disk and empty, the agent mounts a tmpfs on it.
    #[arg(long, env = "ORCH_RUN_DIR", default_value = "/run/orch")]
    pub run_dir: PathBuf,
    /// Where containers' logs are kept, as kubelet keeps them, for log collectors (Fluent Bit, Promtail,
    /// Vector) that read them there: `<root>/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`,
    /// linked from `<root>/containers/<pod>_<namespace>_<container>-<id>.log`.
    #[arg(long, env = "ORCH_CONTAINER_LOG_ROOT", default_value = "/var/log")]
    pub container_log_root: PathBuf,
    /// kubelet's hard eviction thresholds: below them the node reports MemoryPressure, DiskPressure or
    /// PIDPressure (and is tainted so that no new pod lands on it).
    #[arg(long, env = "ORCH_EVICTION_HARD",
          default_value = crate::agent::kubelet::housekeeping::DEFAULT_EVICTION_HARD)]
    pub eviction_hard: String,
    /// Flags for the kubelet as k3s passes them, `name=value` (e.g. `--kubelet-arg=max-pods=250`);
    /// repeatable. orch's kubelet takes `port`, `max-pods`, `eviction-hard`, `container-log-max-size` and
    /// `container-log-max-files`, over the flags above.
    #[arg(
        long = "kubelet-arg",
        env = "ORCH_KUBELET_ARG",
        allow_hyphen_values = true
    )]
    pub kubelet_arg: Vec<String>,
}

/// The kubelet flags `--kubelet-arg` may set.
const KUBELET_ARGS: &[&str] = &[
    "port",
    "max-pods",
    "eviction-hard",
    "container-log-max-size",
    "container-log-max-files",
    "allowed-unsafe-sysctls",
];
/// kubelet's defaults for containerLogMaxSize and containerLogMaxFiles.
const CONTAINER_LOG_MAX_BYTES: u64 = 10 << 20;
const CONTAINER_LOG_MAX_FILES: u32 = 5;

/// `--kubelet-arg` values applied over `config`; an unknown flag or a bad value is an error naming it.
fn apply_kubelet_args(args: &[String], config: &mut KubeletConfig) -> anyhow::Result<()> {
    // A list flag: each occurrence adds to it, as kubelet's does.
    let mut unsafe_sysctls: Vec<String> = Vec::new();
    for arg in args {
        let (name, value) = arg
            .trim_start_matches("--")
            .split_once('=')
            .with_context(|| format!("--kubelet-arg {arg:?}: expected name=value"))?;
        let number = |what: &str| {
            anyhow::anyhow!("--kubelet-arg {arg:?}: {what} must be a number, not {value:?}")
        };
        match name {
            "port" => {
                let port: u16 = value.parse().map_err(|_| number("port"))?;
                anyhow::ensure!(port != 0, "--kubelet-arg {arg:?}: port must not be 0");
                config.endpoint_port = Some(port);
            }
            "max-pods" => config.max_pods = value.parse().map_err(|_| number("max-pods"))?,
            "eviction-hard" => {
                crate::agent::kubelet::housekeeping::parse_thresholds(value)
                    .with_context(|| format!("--kubelet-arg {arg:?}"))?;
                config.eviction_hard = value.to_string();
            }
            "container-log-max-size" => {
                let bytes = crate::api::quantity::parse_quantity(value)
                    .map(|q| q.to_bytes())
                    .map_err(|e| anyhow::anyhow!("--kubelet-arg {arg:?}: {e}"))?;
                anyhow::ensure!(
                    bytes > 0,
                    "--kubelet-arg {arg:?}: container-log-max-size must be a positive quantity, \
                     such as 10Mi"
                );
                config.container_log_max_bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
            }
            "container-log-max-files" => {
                let files: u32 = value
                    .parse()
                    .map_err(|_| number("container-log-max-files"))?;
                anyhow::ensure!(
                    files >= 2,
                    "--kubelet-arg {arg:?}: container-log-max-files must be at least 2 (the log \
                     being written and one rotated part), as kubelet requires"
                );
                config.container_log_max_files = files;
            }
            "allowed-unsafe-sysctls" => {
                let patterns: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect();
                Allowlist::new(&patterns)
                    .map_err(|e| anyhow::anyhow!("--kubelet-arg {arg:?}: {e}"))?;
                unsafe_sysctls.extend(patterns);
            }
            _ => anyhow::bail!(
                "--kubelet-arg {arg:?}: orch's kubelet does not take {name:?} (it takes {})",
                KUBELET_ARGS.join(", ")
            ),
        }
    }
    if !unsafe_sysctls.is_empty() {
        config.sysctls = Allowlist::new(&unsafe_sysctls)?;
    }
    Ok(())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "orch".into())
}

/// The IPv4 address of the interface that holds the default route (the first one in /proc/net/route).
fn default_route_address() -> Option<IpAddr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let interface = routes.lines().skip(1).find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.get(1) == Some(&"00000000")).then(|| fields[0].to_string())
    })?;
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        if a.interface_name != interface {
            return None;
        }
        let ip = a.address?.as_sockaddr_in()?.ip();
        Some(IpAddr::V4(ip))
    })
}

/// The cluster's address ranges, which servers and agents both need.
#[derive(Args, Debug, Clone)]
pub struct ClusterNetworkArgs {
    /// The pod network; each node gets a /24 of it, and an unreachable route covers the rest.
    #[arg(long, env = "ORCH_CLUSTER_CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    #[arg(long, env = "ORCH_SERVICE_CIDR", default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    #[arg(long, env = "ORCH_CLUSTER_DNS", default_value = "10.43.0.10")]
    pub cluster_dns: IpAddr,
}

impl NodeArgs {
    pub fn name(&self) -> String {
        self.node_name.clone().unwrap_or_else(host_name)
    }

    pub fn labels_and_taints(&self) -> anyhow::Result<(BTreeMap<String, String>, Vec<Taint>)> {
        let labels = self
            .node_label
            .iter()
            .map(|l| parse_label(l))
            .collect::<Result<_, _>>()?;
        let taints = self
            .node_taint
            .iter()
            .map(|t| parse_taint(t))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((labels, taints))
    }

    pub fn kubelet_config(
        &self,
        data_dir: &Path,
        network: &ClusterNetworkArgs,
    ) -> anyhow::Result<KubeletConfig> {
        let (labels, taints) = self.labels_and_taints()?;
        let registries = Registries::load(&self.private_registry)
            .with_context(|| format!("--private-registry {}", self.private_registry.display()))?;
        let mut config = KubeletConfig {
            node_name: self.name(),
            node_ip: self
                .node_ip
                .or_else(default_route_address)
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            labels,
            taints,
            max_pods: self.max_pods,
            data_dir: data_dir.to_path_buf(),
            run_dir: self.run_dir.clone(),
            // Absolute: the logs' links point at paths made from it.
            log_root: std::path::absolute(&self.container_log_root).with_context(|| {
                format!("--container-log-root {}", self.container_log_root.display())
            })?,
            container_log_max_bytes: CONTAINER_LOG_MAX_BYTES,
            container_log_max_files: CONTAINER_LOG_MAX_FILES,
            cluster_cidr: network.cluster_cidr.clone(),
            service_cidr: network.service_cidr.clone(),
            cluster_dns: network.cluster_dns,
            cluster_domain: "cluster.local".into(),
            registries,
            shim_executable: std::env::current_exe()
                .context("locating the orch executable for the shims")?,
            eviction_hard: self.eviction_hard.clone(),
            endpoint_port: Some(crate::api::kubelet::DEFAULT_PORT),
            container_open_files: None,
            sysctls: Allowlist::default(),
        };
        apply_kubelet_args(&self.kubelet_arg, &mut config)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        network: ClusterNetworkArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<KubeletConfig> {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("registries.yaml");
        let mut argv = vec!["orch", "--private-registry", missing.to_str().unwrap()];
        argv.extend_from_slice(args);
        let flags = Flags::try_parse_from(argv).unwrap();
        flags.node.kubelet_config(dir.path(), &flags.network)
    }

    #[test]
    fn kubelet_args_override_the_flags_as_k3s_passes_them() {
        let plain = config(&["--max-pods", "50"]).unwrap();
        assert_eq!(plain.endpoint_port, Some(10250));
        assert_eq!(plain.max_pods, 50);
        let set = config(&[
            "--max-pods",
            "50",
            "--kubelet-arg=max-pods=250",
            "--kubelet-arg",
            "--port=10251",
            "--kubelet-arg=eviction-hard=memory.available<1Gi,nodefs.available<5%",
        ])
        .unwrap();
        assert_eq!(set.max_pods, 250);
        assert_eq!(set.endpoint_port, Some(10251));
        assert_eq!(
            set.eviction_hard,
            "memory.available<1Gi,nodefs.available<5%"
        );
        assert_eq!(
            (plain.container_log_max_bytes, plain.container_log_max_files),
            (10 << 20, 5)
        );
        // What k3s users write to keep logs small on an edge box.
        let logs = config(&[
            "--kubelet-arg=container-log-max-size=50Mi",
            "--kubelet-arg=container-log-max-files=2",
        ])
        .unwrap();
        assert_eq!(
            (logs.container_log_max_bytes, logs.container_log_max_files),
            (50 << 20, 2)
        );
        // As k3s users let a database pod tune its own queues.
        let msg = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {"containers": [{"name": "db"}], "securityContext": {"sysctls": [
                {"name": "kernel.msgmax", "value": "65536"},
                {"name": "net.core.somaxconn", "value": "1024"}]}},
        }))
        .unwrap();
        assert!(plain.sysctls.forbidden(&msg).is_some());
        let sysctls = config(&[
            "--kubelet-arg=allowed-unsafe-sysctls=kernel.msg*",
            "--kubelet-arg=allowed-unsafe-sysctls=fs.mqueue.*, net.core.somaxconn",
        ])
        .unwrap();
        assert_eq!(sysctls.sysctls.forbidden(&msg), None, "both lists count");
    }

    #[test]
    fn bad_kubelet_args_name_the_problem() {
        let unknown = config(&["--kubelet-arg=cgroup-driver=systemd"]).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "--kubelet-arg \"cgroup-driver=systemd\": orch's kubelet does not take \"cgroup-driver\" \
             (it takes port, max-pods, eviction-hard, container-log-max-size, container-log-max-files, \
             allowed-unsafe-sysctls)"
        );
        for (arg, want) in [
            (
                "container-log-max-files=1",
                "container-log-max-files must be at least 2",
            ),
            (
                "container-log-max-files=many",
                "container-log-max-files must be a number",
            ),
            (
                "container-log-max-size=0",
                "container-log-max-size must be a positive quantity",
            ),
            ("container-log-max-size=ten", "quantities must match"),
            (
                "allowed-unsafe-sysctls=net.*,vm.swappiness",
                "the sysctl \"vm.swappiness\" is not known to be namespaced",
            ),
        ] {
            let err = config(&[&format!("--kubelet-arg={arg}")]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("--kubelet-arg {arg:?}: "))
                    && err.to_string().contains(want),
                "{err}"
            );
        }
        let port = config(&["--kubelet-arg=port=http"]).unwrap_err();
        assert_eq!(
            port.to_string(),
            "--kubelet-arg \"port=http\": port must be a number, not \"http\""
        );
        let threshold = config(&["--kubelet-arg=eviction-hard=memory.available>1Gi"]).unwrap_err();
        assert!(
            format!("{threshold:#}")
                .starts_with("--kubelet-arg \"eviction-hard=memory.available>1Gi\": "),
            "{threshold:#}"
        );
        assert!(config(&["--kubelet-arg=max-pods"]).is_err());
    }
}
