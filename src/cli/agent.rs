//! `orch agent`: joins a server with its URL and token. `--hollow --count N` registers N hollow nodes
//! (kubemark-style, no containers) for scheduler and controller tests and scale benchmarks.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use crate::agent::hollow::{self, HollowConfig};
use crate::agent::node::{parse_label, parse_taint};
use crate::client::{Client, RemoteConfig};
use crate::util::SystemClock;

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
    /// Node name (hollow nodes: the name prefix); defaults to the hostname.
    #[arg(long, env = "ORCH_NODE_NAME")]
    pub node_name: Option<String>,
    #[arg(long, env = "ORCH_NODE_IP")]
    pub node_ip: Option<std::net::IpAddr>,
    /// Labels for the node, key=value; repeatable.
    #[arg(long, env = "ORCH_NODE_LABEL", value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// Taints for the node, key=value:Effect; repeatable.
    #[arg(long, env = "ORCH_NODE_TAINT", value_delimiter = ',')]
    pub node_taint: Vec<String>,
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
    if !args.hollow {
        bail!("orch agent can only run hollow nodes so far (--hollow); the container runtime is not built yet");
    }
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
    let labels: BTreeMap<String, String> = args
        .node_label
        .iter()
        .map(|l| parse_label(l))
        .collect::<Result<_, _>>()?;
    let taints = args
        .node_taint
        .iter()
        .map(|t| parse_taint(t))
        .collect::<Result<Vec<_>, _>>()?;
    let name_prefix = args.node_name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "orch".into());
        format!("{host}-hollow")
    });
    let config = HollowConfig {
        name_prefix,
        count: args.count,
        cpu: args.hollow_cpu.clone(),
        memory: args.hollow_memory.clone(),
        pods: args.hollow_pods,
        labels,
        taints,
    };
    let runtime = super::start_runtime(&args.log)?;
    runtime.block_on(async move {
        let remote = RemoteConfig::from_token(&args.server, &token)
            .await
            .with_context(|| format!("joining {}", args.server))?;
        let client = Client::remote(remote)
            .await?
            .with_user_agent("orch-agent/v1");
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        super::stop_on_signal(shutdown);
        tracing::info!(count = config.count, prefix = %config.name_prefix, "hollow nodes joining");
        hollow::run(client, config, Arc::new(SystemClock), shutdown_rx).await?;
        Ok(())
    })
}
