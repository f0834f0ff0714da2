//! `orch shim-launcher`: the process that forks a shim for every container, so that starting a container
//! costs a fork of this small single-threaded process instead of a fork of the multi-threaded agent and
//! an exec of the whole `orch` binary, whose dynamic relocations, allocator start-up and page faults were
//! a fifth of the CPU a pod start took. Each forked shim shares this process's already-relocated pages.
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

/// The descriptor the launcher receives launches on: its stdin.
const REQUESTS: RawFd = 0;
/// Far more than a launch's JSON (a few paths) takes.
const MAX_REQUEST: usize = 64 * 1024;
/// The process name `ps -e`, `top` and `pgrep` show for a shim, rather than the launcher's. (Its command
/// line stays the launcher's: moving it takes CAP_SYS_RESOURCE, which not every root has.)
pub const SHIM_PROCESS_NAME: &std::ffi::CStr = c"orch-shim";

/// Serves launches until the agent closes its end. Returns the process exit code.
pub fn run() -> i32 {
    serve(REQUESTS)
}

/// Serves the launches that arrive on `socket`.
fn serve(socket: RawFd) -> i32 {
    let mut payload = vec![0u8; MAX_REQUEST];
    loop {
        let (len, fds) = match receive_with_fds(socket, &mut payload) {
            Ok((0, _)) => return 0,
            Ok(message) => message,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Cut short (e.g. no descriptor left for what it carried): the agent sees its report pipe
            // close without a report, and the launcher serves the next one.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                eprintln!("shim launcher: dropped a launch: {e}");
                continue;
            }
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
            Ok(args) => launch(socket, args, report, log),
            Err(e) => {
                let _ = writeln!(std::fs::File::from(report), "error invalid launch: {e}");
            }
        }
    }
}

/// Forks the shim for one container and reaps the fork, which exits as soon as the shim has detached.
fn launch(socket: RawFd, args: ShimArgs, report: OwnedFd, log: OwnedFd) {
    // SAFETY: this process is single-threaded, so the child may run any code.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = match take_stdio(socket, &report, &log) {
                Ok(()) => {
                    drop((report, log));
                    let _ = nix::sys::prctl::set_name(SHIM_PROCESS_NAME);
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

/// The shim's stdin is /dev/null, its stdout the report pipe and its stderr the log; the launcher's socket
/// is not passed on.
fn take_stdio(socket: RawFd, report: &OwnedFd, log: &OwnedFd) -> nix::Result<()> {
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    if socket != 0 {
        nix::unistd::close(socket)?;
    }
    dup2(null, 0)?;
    nix::unistd::close(null)?;
    dup2(report.as_raw_fd(), 1)?;
    dup2(log.as_raw_fd(), 2)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{IoSlice, Read};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags};
    use nix::sys::socket::{SockFlag, SockType};

    fn send(socket: &OwnedFd, payload: &[u8], fds: &[RawFd]) {
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(payload)],
            cmsgs,
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    }

    /// Sends a launch that is not valid JSON and returns what the launcher reported on its pipe.
    fn invalid_launch(agent: &OwnedFd) -> String {
        let (report_r, report_w) = nix::unistd::pipe().unwrap();
        let log = tempfile::tempfile().unwrap();
        send(
            agent,
            b"{not json",
            &[report_w.as_raw_fd(), log.as_raw_fd()],
        );
        drop(report_w);
        let mut report = String::new();
        std::fs::File::from(report_r)
            .read_to_string(&mut report)
            .unwrap();
        report
    }

    #[test]
    fn bad_launches_are_answered_or_dropped_and_the_launcher_ends_with_the_agent() {
        let (agent, launcher) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let serving = std::thread::spawn(move || serve(launcher.as_raw_fd()));

        let report = invalid_launch(&agent);
        assert!(report.starts_with("error invalid launch: "), "{report}");
        // Without its descriptors a launch has nowhere to report: it is dropped, and the next is served.
        send(&agent, b"{}", &[]);
        let report = invalid_launch(&agent);
        assert!(report.starts_with("error invalid launch: "), "{report}");

        drop(agent);
        assert_eq!(serving.join().unwrap(), 0);
    }
}
