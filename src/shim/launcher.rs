//! `orch shim-launcher`: the process that forks a shim for every container, so that starting a container
//! costs a fork of this small single-threaded process instead of an exec of the whole `orch` binary (its
//! dynamic relocations, allocator start-up and page faults were a fifth of the CPU a pod start took) and
//! a fork of the multi-threaded agent. Each forked shim shares this process's already-relocated pages,
//! so it also holds less private memory than an exec'd one.
//!
//! The agent starts one launcher and keeps the other end of a SOCK_SEQPACKET socket pair that is the
//! launcher's stdin. Each message is one launch: the JSON of [`ShimArgs`] as payload and two descriptors,
//! the write end of the pipe the shim reports on (its stdout) and the shim's log (its stderr). The
//! launcher forks; the child takes those as stdout and stderr and runs [`super::run`], which detaches at
//! once (setsid + fork), so the launcher reaps its child right away and never owns a container. When the
//! agent's end closes (it exited, or was killed) the launcher exits; running shims are not its children
//! and carry on.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::wait::waitpid;
use nix::unistd::{dup2, fork, ForkResult};

use super::{receive_with_fds, ShimArgs};

/// The descriptor the launcher receives launches on.
const REQUESTS: RawFd = 0;
/// Far more than a launch's JSON (a few paths) takes.
const MAX_REQUEST: usize = 64 * 1024;

/// Serves launches until the agent closes its end. Returns the process exit code.
pub fn run() -> i32 {
    let mut payload = vec![0u8; MAX_REQUEST];
    loop {
        let (len, fds) = match receive_with_fds(REQUESTS, &mut payload) {
            Ok((0, _)) => return 0,
            Ok(message) => message,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("shim launcher: receiving a launch: {e}");
                return 1;
            }
        };
        let Ok::<[OwnedFd; 2], _>([report, log]) = fds.try_into() else {
            eprintln!("shim launcher: a launch came without its report pipe and log");
            continue;
        };
        match serde_json::from_slice::<ShimArgs>(&payload[..len]) {
            Ok(args) => launch(args, report, log),
            Err(e) => {
                let _ = writeln!(std::fs::File::from(report), "error invalid launch: {e}");
            }
        }
    }
}

/// Forks the shim for one container and reaps the fork, which exits as soon as the shim has detached.
fn launch(args: ShimArgs, report: OwnedFd, log: OwnedFd) {
    // SAFETY: this process is single-threaded, so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = match take_stdio(&report, &log) {
                Ok(()) => {
                    drop((report, log));
                    super::run(args)
                }
                Err(e) => {
                    let _ = writeln!(std::fs::File::from(report), "error shim stdio: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => {
            drop((report, log));
            while let Err(nix::errno::Errno::EINTR) = waitpid(child, None) {}
        }
        Err(e) => {
            let _ = writeln!(std::fs::File::from(report), "error fork: {e}");
        }
    }
}

/// The shim's stdin is /dev/null (which also closes the launcher's socket in it), its stdout the report
/// pipe and its stderr the log.
fn take_stdio(report: &OwnedFd, log: &OwnedFd) -> nix::Result<()> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    dup2(null, REQUESTS)?;
    nix::unistd::close(null)?;
    dup2(report.as_raw_fd(), 1)?;
    dup2(log.as_raw_fd(), 2)?;
    Ok(())
}
