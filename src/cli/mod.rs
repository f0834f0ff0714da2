//! The `orch` command line: one file per command. `kubectl` (as a subcommand, or when the binary is
//! invoked through a `kubectl` symlink) runs kubectl against this server's kubeconfig.

pub mod agent;
pub mod config_file;
pub mod images;
pub mod kubectl;
pub mod node_args;
pub mod server;

use clap::{Parser, Subcommand};

use crate::util::rlimit::{raise_open_files_limit, OpenFilesLimit};

#[derive(Parser, Debug)]
#[command(
    name = "orch",
    version,
    about = "A single-binary, k3s-like edge orchestrator",
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane (API server on SQLite, controllers).
    Server(Box<server::ServerArgs>),
    /// Join a server as a node and run its pods (or hollow nodes, with --hollow).
    Agent(Box<agent::AgentArgs>),
    /// Forks the per-container supervisors the agent asks for on its stdin (internal).
    #[command(hide = true)]
    ShimLauncher,
    /// Runs a command inside a running container (internal: probes and hooks).
    #[command(hide = true)]
    ShimExec(crate::shim::exec::ShimExecArgs),
    /// Holds the PID namespace a pod's containers share (internal).
    #[command(hide = true)]
    Pause,
    /// Manage this node's images: import tarballs, list, pull, remove.
    Images(Box<images::ImagesArgs>),
    /// Run kubectl against this machine's cluster (KUBECONFIG defaults to the server's kubeconfig).
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// How long an idle thread of the blocking pool waits for work before it ends.
const BLOCKING_THREAD_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// What a long-running command needs: logging to stderr with a tracing EnvFilter (`--log`), the open-files
/// limit raised (see util/rlimit.rs) and the async runtime. Also returns the open-files limit the process
/// started with, which its containers get.
fn start_runtime(log: &str) -> anyhow::Result<(tokio::runtime::Runtime, Option<OpenFilesLimit>)> {
    use anyhow::Context;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    let open_files = raise_open_files_limit()
        .inspect_err(|e| tracing::warn!("raising the open-files limit: {e}"))
        .ok();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A burst of blocking work (a pod start writes bundles, the API server reads the store) starts
        // tens of pool threads. The longest idle one is woken for the next task, so at tokio's default
        // 10 s every thread of a burst kept getting work in turn and none ever ended: 25 idle threads
        // after start-up, 80 more after 50 pods started, each with its stack and allocator pages.
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .build()
        .context("starting the async runtime")?;
    Ok((runtime, open_files))
}

/// Turns `shutdown` true on SIGINT or SIGTERM.
fn stop_on_signal(shutdown: tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = shutdown.send(true);
    });
}

pub fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if invoked_as == "kubectl" {
        return kubectl::run(args.split_off(1));
    }
    if matches!(
        args.get(1).map(String::as_str),
        Some("shim-launcher" | "shim-exec" | "pause")
    ) {
        // The shim launcher (once per node), exec shims (once per probe) and pause processes (once per
        // pod sharing its PID namespace) read no config file, only their own flags.
        match Cli::parse_from(&args).command {
            Command::ShimLauncher => std::process::exit(crate::shim::launcher::run()),
            Command::ShimExec(a) => std::process::exit(crate::shim::exec::run(a)),
            Command::Pause => std::process::exit(crate::shim::pause::run()),
            _ => {}
        }
    }
    let args = config_file::with_config_file(args)?;
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Server(a) => server::run(*a),
        Command::Agent(a) => agent::run(*a),
        Command::Images(a) => images::run(*a),
        Command::Kubectl { args } => kubectl::run(args),
        Command::ShimLauncher => std::process::exit(crate::shim::launcher::run()),
        Command::ShimExec(a) => std::process::exit(crate::shim::exec::run(a)),
        Command::Pause => std::process::exit(crate::shim::pause::run()),
    }
}
