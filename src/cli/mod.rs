//! The `orch` command line: one file per command. `kubectl` (as a subcommand, or when the binary is
//! invoked through a `kubectl` symlink) runs kubectl against this server's kubeconfig.

pub mod agent;
pub mod config_file;
pub mod kubectl;
pub mod server;

use clap::{Parser, Subcommand};

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
    /// Join a server as a node (so far: hollow nodes for tests and benchmarks).
    Agent(Box<agent::AgentArgs>),
    /// Run kubectl against this machine's cluster (KUBECONFIG defaults to the server's kubeconfig).
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
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
    let args = config_file::with_config_file(args)?;
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Server(a) => server::run(*a),
        Command::Agent(a) => agent::run(*a),
        Command::Kubectl { args } => kubectl::run(args),
    }
}
