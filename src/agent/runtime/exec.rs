//! Commands run inside a running container through `orch shim-exec`: to completion with their output
//! (exec probes and hooks), or as a session whose streams the caller drives (`kubectl exec`). A session
//! with a terminal gets it the way runc's callers do: the agent listens on a console socket, libcontainer
//! creates the pseudo-terminal inside the container (so it is the command's controlling terminal) and
//! sends its master end over that socket.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use super::{io_err, Runtime, RuntimeError};

/// How long a session may take to hand over its terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a command's output [`Runtime::exec`] keeps, stdout and stderr together: kubelet's exec
/// prober keeps 10 KiB, which bounds a probe's memory and its event however much the command prints.
const MAX_EXEC_OUTPUT: usize = 10 << 10;

/// A command running in a container. Waiting on `child` gives the command's exit code; the streams are
/// those asked for (a terminal replaces all three).
pub struct ExecProcess {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
    /// The master end of the command's terminal.
    pub terminal: Option<OwnedFd>,
}

/// The streams a session wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecStreams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Runtime {
    fn shim_exec(&self, id: &str) -> Command {
        let mut command = Command::new(&self.config.shim_executable);
        command
            .arg("shim-exec")
            .arg("--id")
            .arg(id)
            .arg("--state-root")
            .arg(&self.config.state_root)
            .kill_on_drop(true);
        command
    }

    /// Runs `command` inside the running container and returns its exit code and output (stdout, then
    /// stderr, at most [`MAX_EXEC_OUTPUT`] bytes of them); None when it did not finish within `timeout`
    /// (it is then killed).
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<Option<(i32, String)>, RuntimeError> {
        let mut child = self
            .shim_exec(id)
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("running", &self.config.shim_executable))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let run = async {
            let (stdout, stderr, status) = tokio::join!(
                read_capped(stdout, MAX_EXEC_OUTPUT),
                read_capped(stderr, MAX_EXEC_OUTPUT),
                child.wait()
            );
            let mut output = stdout?;
            output.extend_from_slice(&stderr?);
            output.truncate(MAX_EXEC_OUTPUT);
            Ok::<_, std::io::Error>((status?, output))
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Ok(None),
            Ok(Err(e)) => Err(io_err("running", &self.config.shim_executable)(e)),
            Ok(Ok((status, output))) => Ok(Some((
                status.code().unwrap_or(126),
                String::from_utf8_lossy(&output).into_owned(),
            ))),
        }
    }

    /// Starts `command` inside the running container with the streams asked for.
    pub async fn exec_session(
        &self,
        id: &str,
        command: &[String],
        streams: ExecStreams,
    ) -> Result<ExecProcess, RuntimeError> {
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        if !streams.tty {
            let mut shim = self.shim_exec(id);
            if streams.stdin {
                shim.arg("--stdin");
            }
            let mut child = shim
                .arg("--")
                .args(command)
                .stdin(piped(streams.stdin))
                .stdout(piped(streams.stdout))
                .stderr(piped(streams.stderr))
                .spawn()
                .map_err(io_err("running", &self.config.shim_executable))?;
            return Ok(ExecProcess {
                stdin: child.stdin.take(),
                stdout: child.stdout.take(),
                stderr: child.stderr.take(),
                child,
                terminal: None,
            });
        }
        let socket = self
            .config
            .state_root
            .join(format!("console-{}.sock", super::new_container_id()));
        let listener = UnixListener::bind(&socket).map_err(io_err("listening on", &socket))?;
        let spawned = self
            .shim_exec(id)
            .arg("--console-socket")
            .arg(&socket)
            .arg("--")
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("running", &self.config.shim_executable));
        let result = match spawned {
            Ok(child) => receive_terminal(id, &listener, child).await,
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&socket);
        let (child, terminal) = result?;
        Ok(ExecProcess {
            child,
            stdin: None,
            stdout: None,
            stderr: None,
            terminal: Some(terminal),
        })
    }
}

/// The terminal master libcontainer sends over the console socket, unless `child` fails first (its
/// stderr says why).
async fn receive_terminal(
    id: &str,
    listener: &UnixListener,
    mut child: Child,
) -> Result<(Child, OwnedFd), RuntimeError> {
    let failed = |message: String| RuntimeError::Start {
        id: id.to_string(),
        message,
    };
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(CONSOLE_TIMEOUT, listener.accept()) => accepted,
        _ = child.wait() => {
            let mut why = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut why).await;
            }
            return Err(failed(format!("exec with a terminal: {}", why.trim())));
        }
    };
    let (stream, _) = accepted
        .map_err(|_| failed("no terminal from the container in time".into()))?
        .map_err(|e| failed(format!("console socket: {e}")))?;
    let fd = receive_fd(&stream)
        .await
        .map_err(|e| failed(format!("receiving the terminal: {e}")))?;
    Ok((child, fd))
}

/// One file descriptor sent with SCM_RIGHTS.
async fn receive_fd(stream: &UnixStream) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || {
            crate::shim::receive_fds(stream.as_raw_fd())
        }) {
            Ok(fds) => {
                return fds.into_iter().next().ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "no descriptor sent")
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The first `cap` bytes of a stream, read to its end so that the writer never blocks on a full pipe.
async fn read_capped(
    stream: Option<impl tokio::io::AsyncRead + Unpin>,
    cap: usize,
) -> std::io::Result<Vec<u8>> {
    let Some(mut stream) = stream else {
        return Ok(Vec::new());
    };
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_past_the_cap_is_read_and_dropped() {
        let printed = vec![b'x'; 3 * MAX_EXEC_OUTPUT];
        let mut stream = &printed[..];
        let kept = read_capped(Some(&mut stream), MAX_EXEC_OUTPUT)
            .await
            .unwrap();
        assert_eq!(kept.len(), MAX_EXEC_OUTPUT);
        assert!(stream.is_empty(), "the writer is drained to its end");
        let quiet: Option<&[u8]> = None;
        assert!(read_capped(quiet, 10).await.unwrap().is_empty());
    }
}
