//! `orch agent`: joins a server with its URL and token and runs this machine's pods. `--hollow --count N`
//! registers N hollow nodes instead (kubemark-style, no containers) for scheduler and controller tests and
//! scale benchmarks.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use super::node_args::{host_name, ClusterNetworkArgs, NodeArgs};
use crate::agent::hollow::{self, HollowConfig};
use crate::agent::kubelet::KubeletConfig;
use crate::client::{Client, RemoteConfig};
use crate::util::{Clock, SystemClock};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "ORCH_URL")]
    pub server: String,
    /// The server's join token (`K10<ca hash>::server:<secret>`, from `<data-dir>/server/token`).
    #[arg(long, env = "ORCH_TOKEN")]
    pub token: Option<String>,
    #[arg(long, env = "ORCH_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    #[arg(long, env = "ORCH_DATA_DIR", default_value = "/var/lib/orch")]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub network: ClusterNetworkArgs,
    /// Register hollow nodes that report their pods running without running containers.
    #[arg(long)]
    pub hollow: bool,
    /// How many hollow nodes to register.
    #[arg(long, default_value_t = 1, requires = "hollow")]
    pub count: usize,
    #[arg(long, default_value = "4", requires = "hollow")]
    pub hollow_cpu: String,
    #[arg(long, default_value = "8Gi", requires = "hollow")]
    pub hollow_memory: String,
    #[arg(long, default_value_t = 110, requires = "hollow")]
    pub hollow_pods: u32,
    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "ORCH_LOG", default_value = "info")]
    pub log: String,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --token-file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!(
            "--token or --token-file is required to join {}",
            args.server
        ),
    };
    let kubelet = if args.hollow {
        None
    } else {
        Some(args.node.kubelet_config(&args.data_dir, &args.network)?)
    };
    let (runtime, open_files) = super::start_runtime(&args.log)?;
    let kubelet = kubelet.map(|config| KubeletConfig {
        container_open_files: open_files,
        ..config
    });
    runtime.block_on(async move {
        let remote = RemoteConfig::from_token(&args.server, &token)
            .await
            .with_context(|| format!("joining {}", args.server))?;
        let ca_pem = remote.ca_pem.clone();
        let client = Client::remote(remote)?
            .with_user_agent("orch-agent/v1");
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        super::stop_on_signal(shutdown);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        match kubelet {
            Some(config) => {
                tracing::info!(node = %config.node_name, "agent joining");
                let containers = crate::agent::kubelet::open_runtime(&config)?;
                if let Some(port) = config.endpoint_port {
                    crate::agent::kubelet::endpoint::start(
                        client.clone(),
                        crate::agent::kubelet::endpoint::NodeStreams {
                            logs: crate::agent::kubelet::pod_logs(&config, containers.clone()),
                            exec: crate::agent::kubelet::pod_exec(&config, containers.clone()),
                            port_forward: crate::agent::kubelet::pod_port_forward(&config),
                            summary: crate::agent::kubelet::node_summary(
                                &config,
                                containers.clone(),
                                shutdown_rx.clone(),
                            ),
                        },
                        config.node_ip,
                        port,
                        &ca_pem,
                        config.data_dir.join("agent/tls"),
                        shutdown_rx.clone(),
                    )
                    .await
                    .context("starting the kubelet endpoint")?;
                }
                crate::agent::kubelet::run(client, config, containers, clock, shutdown_rx)
                    .await?;
            }
            None => {
                let config = hollow_config(&args)?;
                tracing::info!(count = config.count, prefix = %config.name_prefix, "hollow nodes joining");
                hollow::run(client, config, clock, shutdown_rx).await?;
            }
        }
        Ok(())
    })
}

fn hollow_config(args: &AgentArgs) -> anyhow::Result<HollowConfig> {
    let (labels, taints) = args.node.labels_and_taints()?;
    Ok(HollowConfig {
        name_prefix: args
            .node
            .node_name
            .clone()
            .unwrap_or_else(|| format!("{}-hollow", host_name())),
        count: args.count,
        cpu: args.hollow_cpu.clone(),
        memory: args.hollow_memory.clone(),
        pods: args.hollow_pods,
        labels,
        taints,
    })
}
