//! `orch server`: flags with k3s's names and `ORCH_` environment twins, then the server until SIGINT/SIGTERM.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::controllers::ControllerConfig;
use crate::scheduler::{SchedulerProfile, ScoringStrategy};
use crate::server::{self, ServerConfig};

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Folder for state (database, certificates, token).
    #[arg(long, env = "ORCH_DATA_DIR", default_value = "/var/lib/orch")]
    pub data_dir: PathBuf,
    #[arg(long, env = "ORCH_HTTPS_LISTEN_PORT", default_value_t = 6443)]
    pub https_listen_port: u16,
    #[arg(long, env = "ORCH_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    #[arg(long, env = "ORCH_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,
    /// Extra names or IPs for the serving certificate.
    #[arg(long, env = "ORCH_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Shared secret for joining agents and bearer-token access.
    #[arg(long, env = "ORCH_TOKEN")]
    pub token: Option<String>,
    #[arg(long, env = "ORCH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[arg(
        long,
        env = "ORCH_KUBECONFIG_OUTPUT",
        default_value = "/etc/orch/orch.yaml"
    )]
    pub write_kubeconfig: PathBuf,
    /// File mode of the kubeconfig, in octal (e.g. 644).
    #[arg(long, env = "ORCH_KUBECONFIG_MODE")]
    pub write_kubeconfig_mode: Option<String>,
    #[command(flatten)]
    pub node: super::node_args::NodeArgs,
    #[command(flatten)]
    pub network: super::node_args::ClusterNetworkArgs,
    #[arg(
        long,
        env = "ORCH_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767"
    )]
    pub service_node_port_range: String,
    /// Where the state lives; only the embedded SQLite store exists so far.
    #[arg(long, env = "ORCH_DATASTORE_ENDPOINT")]
    pub datastore_endpoint: Option<String>,
    /// The prefix length of each node's podCIDR within --cluster-cidr: 24 gives a node 253 pod addresses.
    #[arg(long, env = "ORCH_NODE_CIDR_MASK_SIZE", default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    pub node_cidr_mask_size: u8,
    /// How long a node may go without renewing its Lease before it is marked unreachable (e.g. 40s, 1m).
    #[arg(long, env = "ORCH_NODE_MONITOR_GRACE_PERIOD", default_value = "40s")]
    pub node_monitor_grace_period: String,
    /// How the scheduler scores nodes: LeastAllocated spreads pods, MostAllocated packs them.
    #[arg(long, env = "ORCH_SCHEDULER_SCORING", default_value = "LeastAllocated", value_parser = ["LeastAllocated", "MostAllocated"])]
    pub scheduler_scoring: String,
    /// Seconds between compactions of the store's history.
    #[arg(long, env = "ORCH_DATASTORE_COMPACTION_INTERVAL", default_value_t = 60)]
    pub datastore_compaction_interval: u64,
    /// Revisions of history kept behind the newest; watches from older revisions get 410 Gone.
    #[arg(
        long,
        env = "ORCH_DATASTORE_COMPACTION_RETENTION",
        default_value_t = 1000
    )]
    pub datastore_compaction_retention: i64,
    /// Don't run the node agent in this process.
    #[arg(long, env = "ORCH_DISABLE_AGENT")]
    pub disable_agent: bool,
    /// Config file of flag names to values.
    #[arg(
        long,
        env = "ORCH_CONFIG_FILE",
        default_value = "/etc/orch/config.yaml"
    )]
    pub config: PathBuf,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `orch=debug`.
    #[arg(long, env = "ORCH_LOG", default_value = "info")]
    pub log: String,
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (lo, hi) = s
        .split_once('-')
        .with_context(|| format!("--service-node-port-range {s:?}: expected LOW-HIGH"))?;
    let (lo, hi): (u16, u16) = (lo.trim().parse()?, hi.trim().parse()?);
    if lo == 0 || lo > hi {
        bail!("--service-node-port-range {s:?}: LOW must be at least 1 and not above HIGH");
    }
    Ok((lo, hi))
}

/// Parses a Go-style duration such as `40s`, `1m30s` or `2h`.
fn parse_duration(flag: &str, s: &str) -> anyhow::Result<Duration> {
    let d: jiff::SignedDuration = s
        .parse()
        .with_context(|| format!("{flag} {s:?}: expected a duration such as 40s or 1m"))?;
    Duration::try_from(d).with_context(|| format!("{flag} {s:?} must not be negative"))
}

impl ServerArgs {
    pub fn to_config(&self) -> anyhow::Result<ServerConfig> {
        if let Some(endpoint) = &self.datastore_endpoint {
            if !endpoint.starts_with("sqlite://") && !endpoint.is_empty() {
                bail!("--datastore-endpoint {endpoint:?}: only the embedded SQLite store is supported");
            }
        }
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading --token-file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let mode = match &self.write_kubeconfig_mode {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .with_context(|| format!("--write-kubeconfig-mode {m:?} is not octal"))?,
            ),
            None => None,
        };
        let node_name = self.node.name();
        Ok(ServerConfig {
            data_dir: self.data_dir.clone(),
            https_listen_port: self.https_listen_port,
            bind_address: self.bind_address,
            advertise_address: self.advertise_address,
            tls_san: self.tls_san.clone(),
            token,
            write_kubeconfig: Some(self.write_kubeconfig.clone())
                .filter(|p| !p.as_os_str().is_empty()),
            write_kubeconfig_mode: mode,
            node_name,
            service_cidr: self.network.service_cidr.clone(),
            service_node_port_range: parse_port_range(&self.service_node_port_range)?,
            cluster_dns: self.network.cluster_dns,
            scheduler: SchedulerProfile {
                scoring: if self.scheduler_scoring == "MostAllocated" {
                    ScoringStrategy::MostAllocated
                } else {
                    ScoringStrategy::LeastAllocated
                },
            },
            controllers: ControllerConfig {
                cluster_cidr: self.network.cluster_cidr.clone(),
                node_monitor_grace_period: parse_duration(
                    "--node-monitor-grace-period",
                    &self.node_monitor_grace_period,
                )?,
                node_cidr_mask_size: self.node_cidr_mask_size,
                storage_dir: self.data_dir.join("storage"),
            },
            compaction_retention: self.datastore_compaction_retention,
            compaction_interval: Duration::from_secs(self.datastore_compaction_interval.max(1)),
        })
    }
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let (runtime, open_files) = super::start_runtime(&args.log)?;
    let config = args.to_config()?;
    let kubelet = if args.disable_agent {
        None
    } else {
        let mut config = args.node.kubelet_config(&args.data_dir, &args.network)?;
        // The API server reads the embedded agent's logs and runs its exec and port-forward sessions
        // in-process: no endpoint to serve or publish.
        config.endpoint_port = None;
        config.container_open_files = open_files;
        // As k3s labels a server's node: `kubectl get nodes` shows its ROLES as control-plane,master.
        // A --node-label of the same key wins.
        for role in ["control-plane", "master"] {
            config
                .labels
                .entry(format!("node-role.kubernetes.io/{role}"))
                .or_insert_with(|| "true".into());
        }
        Some(config)
    };
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        let running = server::start(config).await?;
        tracing::info!(address = %running.address, elapsed_ms = started.elapsed().as_millis() as u64, "orch server is ready");
        let shutdown = running.shutdown_handle();
        super::stop_on_signal(shutdown.clone());
        if let Some(kubelet) = kubelet {
            let containers = crate::agent::kubelet::open_runtime(&kubelet)?;
            running.api.set_pod_logs(std::sync::Arc::new(
                crate::agent::kubelet::pod_logs(&kubelet, containers.clone()),
            ));
            running.api.set_pod_exec(std::sync::Arc::new(
                crate::agent::kubelet::pod_exec(&kubelet, containers.clone()),
            ));
            running.api.set_pod_port_forward(std::sync::Arc::new(
                crate::agent::kubelet::pod_port_forward(&kubelet),
            ));
            running
                .api
                .set_node_summary(crate::agent::kubelet::node_summary(
                    &kubelet,
                    containers.clone(),
                    shutdown.subscribe(),
                ));
            let client = running.local_client();
            let stop = shutdown.subscribe();
            tokio::spawn(async move {
                let clock: std::sync::Arc<dyn crate::util::Clock> =
                    std::sync::Arc::new(crate::util::SystemClock);
                if let Err(e) =
                    crate::agent::kubelet::run(client, kubelet, containers, clock, stop).await
                {
                    tracing::error!(error = %e, "the node agent stopped");
                }
            });
        }
        running.wait().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
        assert!(parse_port_range("3-1").is_err());
        assert!(parse_port_range("abc").is_err());
    }

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("f", "40s").unwrap(), Duration::from_secs(40));
        assert_eq!(
            parse_duration("f", "1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert!(parse_duration("f", "soon")
            .unwrap_err()
            .to_string()
            .contains("f \"soon\""));
    }
}
