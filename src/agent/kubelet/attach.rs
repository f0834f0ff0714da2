//! The node's side of `kubectl attach`: the session joins the container's own process through the attach
//! socket its shim serves, passing output from the shim and stdin, stdin's close and terminal resizes to
//! it, until the container exits (the shim closes the socket) or the client leaves.

use std::path::Path;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::api::exec::{self, ClientMessage, ExecOptions};
use crate::shim::attach;

/// Runs the session; the Status to end it with.
pub(super) async fn run(
    socket: &Path,
    options: &ExecOptions,
    incoming: &mut mpsc::Receiver<Bytes>,
    out: &mpsc::Sender<Bytes>,
) -> serde_json::Value {
    let connection = match UnixStream::connect(socket).await {
        Ok(connection) => connection,
        Err(e) => {
            return exec::failure_status(&format!(
                "attaching to container {}: {e}",
                options.container
            ))
        }
    };
    let (mut from_shim, mut to_shim) = connection.into_split();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    let mut stdin_open = options.stdin;
    loop {
        tokio::select! {
            read = from_shim.read(&mut buf) => match read {
                // The container exited.
                Ok(0) | Err(_) => return exec::exit_status(0),
                Ok(n) => {
                    received.extend_from_slice(&buf[..n]);
                    while let Some((kind, payload)) = attach::decode(&mut received) {
                        let stream = match kind {
                            attach::STDOUT if options.stdout => exec::STDOUT,
                            attach::STDERR if options.stderr => exec::STDERR,
                            _ => continue,
                        };
                        if out.send(Bytes::from(exec::encode(stream, &payload))).await.is_err() {
                            return exec::failure_status("the client went away");
                        }
                    }
                }
            },
            message = incoming.recv() => {
                let to_send = match message {
                    Some(data) => match exec::decode(&data) {
                        ClientMessage::Stdin(bytes) if stdin_open => attach::encode(attach::STDIN, &bytes),
                        ClientMessage::StdinClosed if stdin_open => {
                            stdin_open = false;
                            attach::encode(attach::CLOSE, &[])
                        }
                        ClientMessage::Resize { width, height } => {
                            let size = [width.to_be_bytes(), height.to_be_bytes()].concat();
                            attach::encode(attach::RESIZE, &size)
                        }
                        _ => continue,
                    },
                    // The session that had stdin is over: a `stdinOnce` container's stdin closes.
                    None => {
                        if stdin_open {
                            let _ = to_shim.write_all(&attach::encode(attach::CLOSE, &[])).await;
                        }
                        return exec::failure_status("the client went away");
                    }
                };
                if to_shim.write_all(&to_send).await.is_err() {
                    return exec::exit_status(0);
                }
            }
        }
    }
}
