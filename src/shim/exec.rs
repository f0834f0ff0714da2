//! `orch shim-exec`: runs a command inside a running container (exec probes, lifecycle hooks and
//! `kubectl exec`) through libcontainer's tenant builder, which joins the container's namespaces, cgroup
//! and seccomp profile, with the container's own process settings (user, working directory, env,
//! capabilities, rlimits) as runc's exec does. Like the shim it is its own single-threaded process,
//! because libcontainer's build forks without exec. Its exit code is the command's.
//!
//! The command's stdout and stderr are this process's; its stdin is /dev/null unless `--stdin`. With
//! `--console-socket` it gets a terminal instead, whose master end libcontainer sends to that socket.

use std::fs::File;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

#[derive(Debug, Clone, clap::Args)]
pub struct ShimExecArgs {
    /// The container to run in.
    #[arg(long)]
    pub id: String,
    /// libcontainer's state root, as given to the container's shim.
    #[arg(long)]
    pub state_root: PathBuf,
    /// Give the command this process's stdin rather than /dev/null.
    #[arg(long)]
    pub stdin: bool,
    /// Run the command on a new terminal and send its master end to this Unix socket.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the command; returns its exit code (128 + signal when it was killed), or 126 when it could not
/// be started, as a shell reports a command it cannot execute.
pub fn run(args: ShimExecArgs) -> i32 {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("PR_SET_CHILD_SUBREAPER: {e}");
        return 126;
    }
    let built = container_spec(&args).and_then(|spec| match &args.console_socket {
        Some(socket) => build_with_terminal(&args, &spec, socket),
        None => build(&args, &spec),
    });
    let pid = match built {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("exec in container {}: {e}", args.id);
            return 126;
        }
    };
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("waiting for the command: {e}");
                return 126;
            }
        }
    }
}

fn build(args: &ShimExecArgs, spec: &Spec) -> Result<Pid, String> {
    with_process_file(args, spec, false, |process_file| {
        let mut builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
            .with_executor(super::workload::DefaultSignalsExecutor)
            .with_root_path(&args.state_root)
            .map_err(|e| e.to_string())?;
        if !args.stdin {
            let null = File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;
            builder = builder.with_stdin(null);
        }
        builder
            .as_tenant()
            .with_process(Some(process_file))
            .with_detach(false)
            .build()
            .map_err(|e| super::workload::failure_message(&e))
    })
}

/// The running container's config.json, after handing its seccomp program (compiled once by the agent)
/// to libcontainer for the command.
fn container_spec(args: &ShimExecArgs) -> Result<Spec, String> {
    let container = Container::load(args.state_root.join(&args.id)).map_err(|e| e.to_string())?;
    let bundle = container.bundle();
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    if let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        super::register_seccomp_program(bundle, profile);
    }
    Ok(spec)
}

/// The command on a terminal, whose master end libcontainer sends to `socket`.
fn build_with_terminal(args: &ShimExecArgs, spec: &Spec, socket: &Path) -> Result<Pid, String> {
    with_process_file(args, spec, true, |process_file| {
        ContainerBuilder::new(args.id.clone(), SyscallType::default())
            .with_executor(super::workload::DefaultSignalsExecutor)
            .with_root_path(&args.state_root)
            .map_err(|e| e.to_string())?
            .with_console_socket(Some(socket))
            .as_tenant()
            .with_process(Some(process_file))
            // libcontainer takes a terminal only for a detached process; as this process is its
            // subreaper, it is still waited for below.
            .with_detach(true)
            .build()
            .map_err(|e| super::workload::failure_message(&e))
    })
}

/// Runs `build` with the container's own process settings (user, working directory, environment,
/// capabilities, rlimits), the command and `terminal` in a file for the tenant builder: runc's exec takes
/// them from the container's config too. libcontainer's own settings for a bare command are root in `/`
/// with 1,024 open files.
fn with_process_file(
    args: &ShimExecArgs,
    spec: &Spec,
    terminal: bool,
    build: impl FnOnce(&Path) -> Result<Pid, String>,
) -> Result<Pid, String> {
    let container_dir = args.state_root.join(&args.id);
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(terminal));
    process.set_console_size(None);
    // As containerd's exec on a terminal: programs that draw on it need to know what it is.
    let mut env = process.env().clone().unwrap_or_default();
    if terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
        process.set_env(Some(env));
    }
    let process_file = container_dir.join(format!("exec-{}.json", std::process::id()));
    let written = serde_json::to_vec(&process)
        .map_err(|e| e.to_string())
        .and_then(|json| {
            std::fs::write(&process_file, json)
                .map_err(|e| format!("{}: {e}", process_file.display()))
        });
    let built = written.and_then(|()| build(&process_file));
    let _ = std::fs::remove_file(&process_file);
    built
}
