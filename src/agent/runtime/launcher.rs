//! The agent's side of the node's shim launcher (src/shim/launcher.rs): it starts `orch shim-launcher`
//! on first use, sends it one message per container to start, and starts a new launcher when the old one
//! is gone.

use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};

use super::{io_err, RuntimeError};
use crate::shim::ShimArgs;

pub struct ShimLauncher {
    executable: PathBuf,
    running: Mutex<Option<Running>>,
}

struct Running {
    /// The agent's end of the socket pair whose other end is the launcher's stdin.
    socket: OwnedFd,
    /// Held so that the launcher is reaped when it ends; it ends by itself when `socket` closes.
    _process: tokio::process::Child,
}

impl ShimLauncher {
    pub fn new(executable: PathBuf) -> Self {
        ShimLauncher {
            executable,
            running: Mutex::new(None),
        }
    }

    /// Has a shim forked for `args`, with `report` as its stdout and `log` as its stderr. Returns once the
    /// launcher has the request; the shim reports on `report`.
    pub fn launch(
        &self,
        args: &ShimArgs,
        report: &OwnedFd,
        log: &File,
    ) -> Result<(), RuntimeError> {
        let request = serde_json::to_vec(args).expect("shim arguments serialize");
        let fds = [report.as_raw_fd(), log.as_raw_fd()];
        let mut running = self.running.lock().expect("shim launcher lock");
        if let Some(launcher) = running.as_ref() {
            match send(&launcher.socket, &request, &fds) {
                Ok(()) => return Ok(()),
                // The launcher is gone (killed, or it failed): a new one takes the request.
                Err(nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET) => {}
                Err(e) => return Err(self.error("sending a launch to")(e.into())),
            }
        }
        let launcher = running.insert(self.spawn()?);
        send(&launcher.socket, &request, &fds)
            .map_err(|e| self.error("sending a launch to")(e.into()))
    }

    fn spawn(&self) -> Result<Running, RuntimeError> {
        let (socket, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| self.error("creating the socket of")(e.into()))?;
        let process = tokio::process::Command::new(&self.executable)
            .arg("shim-launcher")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .spawn()
            .map_err(self.error("running"))?;
        Ok(Running {
            socket,
            _process: process,
        })
    }

    fn error(&self, context: &'static str) -> impl FnOnce(std::io::Error) -> RuntimeError {
        io_err(
            context,
            format!("the shim launcher {}", self.executable.display()),
        )
    }
}

fn send(socket: &OwnedFd, request: &[u8], fds: &[i32]) -> nix::Result<()> {
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(request)],
        &[ControlMessage::ScmRights(fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_pid(launcher: &ShimLauncher) -> Option<u32> {
        let running = launcher.running.lock().unwrap();
        running.as_ref().and_then(|r| r._process.id())
    }

    /// A stand-in launcher that discards launches until its socket closes: sends to it succeed until it
    /// dies.
    fn discarding_launcher(dir: &std::path::Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("launcher");
        std::fs::write(&path, "#!/bin/sh\nexec cat >/dev/null\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn args() -> ShimArgs {
        ShimArgs {
            id: "c1".into(),
            bundle: "/nonexistent/c1".into(),
            records: "/nonexistent/c1".into(),
            state_root: "/nonexistent/state".into(),
            log: "/nonexistent/c1.log".into(),
            log_max_bytes: 1024,
            log_max_files: 2,
            attach_socket: None,
            stdin: false,
            stdin_once: false,
        }
    }

    #[tokio::test]
    async fn a_launcher_that_died_is_replaced_by_the_next_launch() {
        let dir = tempfile::tempdir().unwrap();
        let launcher = ShimLauncher::new(discarding_launcher(dir.path()));
        let (report, _read) = nix::unistd::pipe().unwrap();
        let log = File::create(dir.path().join("shim.log")).unwrap();
        assert_eq!(
            running_pid(&launcher),
            None,
            "started before the first launch"
        );

        launcher.launch(&args(), &report, &log).unwrap();
        let first = running_pid(&launcher).expect("a launcher runs");
        launcher.launch(&args(), &report, &log).unwrap();
        assert_eq!(
            running_pid(&launcher),
            Some(first),
            "one launcher serves launches"
        );

        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // Its socket is closed once it is a zombie, or reaped.
        while std::fs::read_to_string(format!("/proc/{first}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        launcher.launch(&args(), &report, &log).unwrap();
        let second = running_pid(&launcher).expect("a new launcher runs");
        assert_ne!(second, first);
        // It runs the launcher: the script became `cat`.
        while std::fs::read_to_string(format!("/proc/{second}/comm")).unwrap() != "cat\n" {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_launcher_that_cannot_run_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-orch");
        let launcher = ShimLauncher::new(missing.clone());
        let (report, _read) = nix::unistd::pipe().unwrap();
        let log = File::create(dir.path().join("shim.log")).unwrap();
        let error = launcher
            .launch(&args(), &report, &log)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
    }
}
