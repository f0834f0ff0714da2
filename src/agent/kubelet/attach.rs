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

/// Frames for the shim queued while it waits for the container to read its stdin.
const QUEUED_FRAMES: usize = 16;

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
    // The shim takes stdin only as fast as the container reads it, so writes to it wait on their own
    // task: the session keeps reading output meanwhile (a session that stops reading output is dropped).
    let (to_writer, mut queued) = mpsc::channel::<Vec<u8>>(QUEUED_FRAMES);
    tokio::spawn(async move {
        while let Some(frame) = queued.recv().await {
            if to_shim.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let mut received = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    let mut stdin_open = options.stdin;
    loop {
        let room = to_writer.capacity() > 0;
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
            // Wakes the loop once the shim took a frame, so that the client's next message is read.
            _ = to_writer.reserve(), if !room => {}
            message = incoming.recv(), if room => {
                let frame = match message {
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
                            let _ = to_writer.try_send(attach::encode(attach::CLOSE, &[]));
                        }
                        return exec::failure_status("the client went away");
                    }
                };
                // Only the writer's end (the shim closed the socket) refuses a frame there is room for.
                if to_writer.try_send(frame).is_err() {
                    return exec::exit_status(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::UnixListener;

    #[tokio::test]
    async fn output_keeps_flowing_while_the_container_does_not_read_its_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("c.attach");
        let listener = UnixListener::bind(&socket).unwrap();
        // A shim whose container never reads stdin: it writes output and never reads the socket.
        tokio::spawn(async move {
            let (mut connection, _) = listener.accept().await.unwrap();
            for i in 0.. {
                let line = format!("tick {i}\n");
                if connection
                    .write_all(&attach::encode(attach::STDOUT, line.as_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let options = ExecOptions {
            container: "app".into(),
            command: Vec::new(),
            stdin: true,
            stdout: true,
            stderr: false,
            tty: false,
        };
        let (to_session, mut incoming) = mpsc::channel(4);
        let (out, mut output) = mpsc::channel(4);
        let session =
            tokio::spawn(async move { run(&socket, &options, &mut incoming, &out).await });
        // Far more stdin than the socket buffers hold.
        tokio::spawn(async move {
            let chunk = exec::encode(exec::STDIN, &[b'x'; 64 << 10]);
            while to_session.send(Bytes::from(chunk.clone())).await.is_ok() {}
        });
        let mut ticks = 0;
        while ticks < 200 {
            let message = tokio::time::timeout(Duration::from_secs(5), output.recv())
                .await
                .expect("output keeps arriving while stdin waits")
                .expect("the session goes on");
            assert_eq!(message[0], exec::STDOUT);
            ticks += message.iter().filter(|b| **b == b'\n').count();
        }
        session.abort();
    }
}
