//! `orch shim-exec`: runs a command inside a running container (exec probes and lifecycle hooks, later
//! `kubectl exec`) through libcontainer's tenant builder, which joins the container's namespaces, cgroup,
//! user, capabilities and seccomp profile. Like the shim it is its own single-threaded process, because
//! libcontainer's build forks without exec. Its exit code is the command's.

use std::fs::File;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};

#[derive(Debug, Clone, clap::Args)]
pub struct ShimExecArgs {
    /// The container to run in.
    #[arg(long)]
    pub id: String,
    /// libcontainer's state root, as given to the container's shim.
    #[arg(long)]
    pub state_root: PathBuf,
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
    let stdin = match File::open("/dev/null") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("opening /dev/null: {e}");
            return 126;
        }
    };
    let built = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.state_root)
        .map(|b| b.with_stdin(stdin))
        .and_then(|b| {
            b.as_tenant()
                .with_container_args(args.command.clone())
                .with_detach(false)
                .build()
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
