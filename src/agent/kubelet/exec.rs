//! The node's side of `kubectl exec` (and the session around `kubectl attach`, see `attach.rs`): finds
//! the running container, starts the command in it (with a terminal when asked) and speaks the
//! remote-command channel protocol, on whichever transport carries the [`Channel`], until the command has
//! exited and its output is out: stdin and terminal resizes in, stdout and stderr out, then the Status
//! with the exit code and a normal close, which is what kubectl waits for.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Pod;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::agent::runtime::{ContainerState, ExecProcess, ExecStreams, Runtime};
use crate::api::exec::{self, ClientMessage, ExecOptions, ERROR, STDERR, STDOUT};
use crate::streaming::exec::{Channel, PodExec, Session};

/// How long output may still arrive after the command exited (a background process can hold the pipes).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

pub struct NodeExec {
    pub node_name: String,
    pub runtime: Runtime,
}

impl PodExec for NodeExec {
    fn node_name(&self) -> &str {
        &self.node_name
    }

    fn locate(&self, pod: &Pod, options: &ExecOptions) -> Result<String, String> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.runtime
            .list_pod(uid)
            .into_iter()
            .filter(|m| m.container == options.container)
            .max_by_key(|m| m.attempt)
            .filter(|m| matches!(self.runtime.state(&m.id), Ok(ContainerState::Running(_))))
            .map(|m| m.id)
            .ok_or_else(|| {
                format!(
                    "unable to upgrade connection: container not found (\"{}\")",
                    options.container
                )
            })
    }

    fn run(&self, id: String, options: ExecOptions, channel: Channel) -> Session {
        let runtime = self.runtime.clone();
        Box::pin(async move { session(runtime, id, options, channel).await })
    }
}

/// The command's terminal, as the session reads and writes it.
struct Terminal(AsyncFd<OwnedFd>);

impl Terminal {
    fn new(master: OwnedFd) -> std::io::Result<Terminal> {
        nix::fcntl::fcntl(
            master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        // SAFETY: an OwnedFd's descriptor stays open, and the same, for as long as it is owned.
        let registered = unsafe { AsyncFd::register(master) };
        Ok(Terminal(registered.map_err(std::io::Error::from)?))
    }

    /// None once every process holding the terminal has gone (the kernel then answers EIO).
    async fn read(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let mut ready = self.0.readable().await.ok()?;
            match ready.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), buf).map_err(Into::into)) {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => return Some(n),
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.0.writable().await?;
            match ready.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(Into::into)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    fn resize(&self, width: u16, height: u16) {
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}

/// Forwards what `reader` yields as messages on `stream` until it ends or the client is gone.
async fn forward(mut reader: impl AsyncRead + Unpin, stream: u8, out: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 << 10];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0
            || out
                .send(Bytes::from(exec::encode(stream, &buf[..n])))
                .await
                .is_err()
        {
            return;
        }
    }
}

async fn session(runtime: Runtime, id: String, options: ExecOptions, channel: Channel) {
    let Channel {
        mut incoming,
        outgoing,
    } = channel;
    let streams = ExecStreams {
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
        tty: options.tty,
    };
    let status = if options.is_attach() {
        let socket = runtime.attach_socket(&id);
        super::attach::run(&socket, &options, &mut incoming, &outgoing).await
    } else {
        match runtime.exec_session(&id, &options.command, streams).await {
            Ok(process) => run(process, &mut incoming, &outgoing).await,
            Err(e) => exec::failure_status(&e.to_string()),
        }
    };
    // The channel closes normally once this last message is out.
    let _ = outgoing
        .send(Bytes::from(exec::encode(
            ERROR,
            status.to_string().as_bytes(),
        )))
        .await;
}

/// Pumps the streams of `process` until it exits; the Status to end the session with.
async fn run(
    mut process: ExecProcess,
    incoming: &mut mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<Bytes>,
) -> serde_json::Value {
    let terminal = match process.terminal.take().map(Terminal::new).transpose() {
        Ok(terminal) => terminal.map(std::sync::Arc::new),
        Err(e) => return exec::failure_status(&format!("exec terminal: {e}")),
    };
    let mut outputs = Vec::new();
    if let Some(stdout) = process.stdout.take() {
        outputs.push(tokio::spawn(forward(stdout, STDOUT, out.clone())));
    }
    if let Some(stderr) = process.stderr.take() {
        outputs.push(tokio::spawn(forward(stderr, STDERR, out.clone())));
    }
    if let Some(terminal) = terminal.clone() {
        let out = out.clone();
        outputs.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 << 10];
            while let Some(n) = terminal.read(&mut buf).await {
                let message = Bytes::from(exec::encode(STDOUT, &buf[..n]));
                if out.send(message).await.is_err() {
                    return;
                }
            }
        }));
    }
    let aborts: Vec<_> = outputs.iter().map(|o| o.abort_handle()).collect();
    let mut stdin = process.stdin.take();
    let exited = async {
        let status = process.child.wait().await;
        // Output written just before the exit is still in the pipes.
        let _ =
            tokio::time::timeout(DRAIN_AFTER_EXIT, futures_util::future::join_all(outputs)).await;
        status
    };
    tokio::pin!(exited);
    loop {
        tokio::select! {
            status = &mut exited => {
                // What a background process still holds open is not waited for.
                for output in &aborts {
                    output.abort();
                }
                return match status {
                    Ok(status) => exec::exit_status(status.code().unwrap_or(126)),
                    Err(e) => exec::failure_status(&format!("waiting for the command: {e}")),
                };
            }
            message = incoming.recv() => match message {
                Some(data) => match exec::decode(&data) {
                    ClientMessage::Stdin(bytes) => {
                        if let Some(terminal) = &terminal {
                            let _ = terminal.write_all(&bytes).await;
                        } else if let Some(pipe) = stdin.as_mut() {
                            if pipe.write_all(&bytes).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    // The command sees end of file on its stdin.
                    ClientMessage::StdinClosed => stdin = None,
                    ClientMessage::Resize { width, height } => {
                        if let Some(terminal) = &terminal {
                            terminal.resize(width, height);
                        }
                    }
                    ClientMessage::Other => {}
                },
                // The client is gone. As with containerd, a command on pipes goes on with its stdin
                // closed; one on a terminal gets the hangup of the terminal closing.
                None => {
                    for output in &aborts {
                        output.abort();
                    }
                    return exec::failure_status("the client went away");
                }
            },
        }
    }
}
