//! The remote-command protocol on SPDY/3.1: kubectl's fallback for exec and attach when the WebSocket
//! upgrade is refused or disabled (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`), and the only way every
//! kubectl before 1.30 speaks. The client opens one stream per channel, named by its `streamtype` header
//! (`error`, `stdin`, `stdout`, `stderr`, `resize`), and the channels' data travels on them: stdin's end
//! is the end of the stdin stream, resizes are JSON lines on the resize stream, and the session ends with
//! the Status on the error stream, every stream finished and a GOAWAY. [`channel`] turns such a connection
//! into the same [`Channel`] a WebSocket gives, so sessions do not know which one carries them.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{Channel, CLOSE_WAIT, QUEUED_MESSAGES};
use crate::api::exec::{self, CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};
use crate::util::spdy::{self, Frame, SpdyError};
use crate::util::upgrade::Pipe;

/// Frames queued for the client before the session's output waits.
const QUEUED_FRAMES: usize = 64;
/// Output kept for channels whose stream the client has not opened yet (it opens them right after the
/// upgrade, while the command may already write); beyond it the session's output waits.
const MAX_PENDING: usize = 1 << 20;
/// How long output for an unopened stream may wait once the session is over.
const STREAMS_WAIT: Duration = Duration::from_secs(5);

/// The channel of the remote-command session on `pipe`, a connection switched to SPDY/3.1.
pub fn channel(pipe: Pipe) -> Channel {
    let (to_session, incoming) = mpsc::channel(QUEUED_MESSAGES);
    let (outgoing, from_session) = mpsc::channel(QUEUED_MESSAGES);
    tokio::spawn(serve(pipe, to_session, from_session));
    Channel { incoming, outgoing }
}

/// The channel a stream carries, by its `streamtype`.
fn channel_of(stream_type: &str) -> Option<u8> {
    Some(match stream_type {
        "error" => ERROR,
        "stdin" => STDIN,
        "stdout" => STDOUT,
        "stderr" => STDERR,
        "resize" => RESIZE,
        _ => return None,
    })
}

async fn serve(pipe: Pipe, to_session: mpsc::Sender<Bytes>, from_session: mpsc::Receiver<Bytes>) {
    let Pipe { incoming, outgoing } = pipe;
    let (frames, writer) = spdy::frame_writer(outgoing, QUEUED_FRAMES);
    // Driven on its own, so that the connection's write side closes once every frame is out.
    tokio::spawn(writer);
    let (opened, streams) = mpsc::unbounded_channel();
    let read = read(
        spdy::read_frames(incoming),
        frames.clone(),
        opened,
        to_session,
    );
    let write = write(from_session, streams, frames);
    tokio::pin!(read, write);
    tokio::select! {
        // The session is over and its streams are finished: the client closes the connection.
        _ = &mut write => {
            let _ = tokio::time::timeout(CLOSE_WAIT, read).await;
        }
        // The client is gone: the session learns it from its channel's end.
        _ = &mut read => write.await,
    }
}

/// Handles the client's frames until it is gone: replies to the streams it opens (telling `opened`
/// which channel each carries), and passes stdin, its end and resizes to the session.
async fn read(
    mut incoming: BoxStream<'static, Result<Frame, SpdyError>>,
    frames: mpsc::Sender<Frame>,
    opened: mpsc::UnboundedSender<(u8, u32)>,
    to_session: mpsc::Sender<Bytes>,
) {
    let mut kinds: HashMap<u32, u8> = HashMap::new();
    let mut resizes = BytesMut::new();
    // A session that is over no longer takes messages; the client's frames are handled all the same.
    let deliver = |message: Vec<u8>| {
        let to_session = to_session.clone();
        async move {
            let _ = to_session.send(Bytes::from(message)).await;
        }
    };
    while let Some(frame) = incoming.next().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(error = %e, "exec: ending a SPDY session on a bad frame");
                return;
            }
        };
        match frame {
            Frame::SynStream {
                stream,
                headers,
                fin,
            } => {
                let stream_type = spdy::header(&headers, "streamtype").unwrap_or_default();
                let Some(kind) = channel_of(stream_type) else {
                    tracing::debug!(
                        stream,
                        stream_type,
                        "exec: refusing a stream of unknown type"
                    );
                    let reset = Frame::RstStream {
                        stream,
                        status: spdy::PROTOCOL_ERROR,
                    };
                    let _ = frames.send(reset).await;
                    continue;
                };
                let reply = Frame::SynReply {
                    stream,
                    headers: Vec::new(),
                };
                if frames.send(reply).await.is_err() {
                    return;
                }
                let _ = opened.send((kind, stream));
                if kind == STDIN && fin {
                    deliver(vec![CLOSE, STDIN]).await;
                } else {
                    kinds.insert(stream, kind);
                }
            }
            Frame::Data { stream, data, fin } => match kinds.get(&stream) {
                Some(&STDIN) => {
                    if !data.is_empty() {
                        deliver(exec::encode(STDIN, &data)).await;
                    }
                    if fin {
                        kinds.remove(&stream);
                        deliver(vec![CLOSE, STDIN]).await;
                    }
                }
                Some(&RESIZE) => {
                    // client-go writes each size as a line of JSON; a frame need not end on one.
                    resizes.extend_from_slice(&data);
                    while let Some(end) = resizes.iter().position(|b| *b == b'\n') {
                        let line = resizes.split_to(end + 1);
                        deliver(exec::encode(RESIZE, &line[..end])).await;
                    }
                }
                _ => {}
            },
            Frame::RstStream { stream, .. } if kinds.get(&stream) == Some(&STDIN) => {
                kinds.remove(&stream);
                deliver(vec![CLOSE, STDIN]).await;
            }
            Frame::Ping { id } => {
                let _ = frames.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => return,
            _ => {}
        }
    }
}

/// Writes the session's messages as data on their channels' streams until the session is over; then
/// finishes every stream and goes away.
async fn write(
    mut from_session: mpsc::Receiver<Bytes>,
    mut opened: mpsc::UnboundedReceiver<(u8, u32)>,
    frames: mpsc::Sender<Frame>,
) {
    let mut output = Output {
        streams: HashMap::new(),
        pending: Vec::new(),
        frames,
    };
    let mut opening = true;
    loop {
        tokio::select! {
            stream = opened.recv(), if opening => match stream {
                Some((kind, stream)) => output.open(kind, stream).await,
                None => opening = false,
            },
            message = from_session.recv(), if output.pending_bytes() < MAX_PENDING => match message {
                Some(message) => output.send(message).await,
                None => break,
            },
        }
    }
    let _ = tokio::time::timeout(STREAMS_WAIT, async {
        while !output.pending.is_empty() {
            match opened.recv().await {
                Some((kind, stream)) => output.open(kind, stream).await,
                None => return,
            }
        }
    })
    .await;
    output.finish().await;
}

/// The streams the session's output goes to.
struct Output {
    /// Stream ids by channel, once the client opened them.
    streams: HashMap<u8, u32>,
    /// Messages for channels whose stream is not open yet, in order.
    pending: Vec<Bytes>,
    frames: mpsc::Sender<Frame>,
}

impl Output {
    fn pending_bytes(&self) -> usize {
        self.pending.iter().map(Bytes::len).sum()
    }

    async fn open(&mut self, kind: u8, stream: u32) {
        self.streams.insert(kind, stream);
        let (ready, waiting) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|message| message[0] == kind);
        self.pending = waiting;
        for message in ready {
            self.send(message).await;
        }
    }

    async fn send(&mut self, message: Bytes) {
        let Some(&kind) = message.first() else { return };
        let Some(&stream) = self.streams.get(&kind) else {
            self.pending.push(message);
            return;
        };
        let mut data = message.slice(1..);
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(spdy::MAX_DATA));
            let frame = Frame::Data {
                stream,
                data: chunk,
                fin: false,
            };
            if self.frames.send(frame).await.is_err() {
                return;
            }
        }
    }

    /// Ends every stream, the error stream last (the client reads the Status once the output is done),
    /// then the connection.
    async fn finish(self) {
        let mut streams: Vec<(u8, u32)> = self.streams.into_iter().collect();
        streams.sort_by_key(|(kind, _)| *kind == ERROR);
        let last_good = streams.iter().map(|(_, stream)| *stream).max().unwrap_or(0);
        for (_, stream) in streams {
            let fin = Frame::Data {
                stream,
                data: Bytes::new(),
                fin: true,
            };
            let _ = self.frames.send(fin).await;
        }
        let _ = self.frames.send(Frame::GoAway { last_good }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::spdy::testing::Client;

    fn connect() -> (Client, Channel) {
        let (client, pipe) = Client::connect();
        (client, channel(pipe))
    }

    impl Client {
        async fn open_channel(&mut self, stream: u32, stream_type: &str) {
            self.open(stream, &[("streamtype", stream_type)]).await;
        }

        async fn data(&mut self, stream: u32, data: &[u8], fin: bool) {
            self.send(Frame::Data {
                stream,
                data: Bytes::copy_from_slice(data),
                fin,
            })
            .await;
        }

        /// The frames the server sends until it goes away.
        async fn until_goaway(&mut self) -> Vec<Frame> {
            let mut frames = Vec::new();
            loop {
                let frame = self.next().await;
                let done = matches!(frame, Frame::GoAway { .. });
                frames.push(frame);
                if done {
                    return frames;
                }
            }
        }
    }

    async fn next(channel: &mut Channel) -> Bytes {
        tokio::time::timeout(Duration::from_secs(5), channel.incoming.recv())
            .await
            .expect("a message arrives")
            .expect("the channel is open")
    }

    /// What arrived on `stream`, and whether it was finished.
    fn received(frames: &[Frame], stream: u32) -> (Vec<u8>, bool) {
        let mut bytes = Vec::new();
        let mut finished = false;
        for frame in frames {
            if let Frame::Data {
                stream: s,
                data,
                fin,
            } = frame
            {
                if *s == stream {
                    bytes.extend_from_slice(data);
                    finished |= fin;
                }
            }
        }
        (bytes, finished)
    }

    #[tokio::test]
    async fn streams_carry_the_channels_and_the_session_ends_with_the_status() {
        let (mut client, mut session) = connect();
        // Output written before the client opened its stream waits for it.
        session
            .outgoing
            .send(Bytes::from(super::exec::encode(STDOUT, b"early ")))
            .await
            .unwrap();
        client.open_channel(1, "error").await;
        client.open_channel(3, "stdin").await;
        client.open_channel(5, "stdout").await;
        client.open_channel(7, "resize").await;
        client.send(Frame::Ping { id: 1 }).await;
        client.data(3, b"typed", false).await;
        assert_eq!(next(&mut session).await, &b"\x00typed"[..]);
        client.data(7, br#"{"Width":100,"#, false).await;
        client
            .data(7, b"\"Height\":30}\n{\"Width\":80,\"Height\":24}\n", false)
            .await;
        assert_eq!(
            next(&mut session).await,
            &b"\x04{\"Width\":100,\"Height\":30}"[..]
        );
        assert_eq!(
            next(&mut session).await,
            &b"\x04{\"Width\":80,\"Height\":24}"[..]
        );
        client.data(3, b"", true).await;
        assert_eq!(next(&mut session).await, &[CLOSE, STDIN][..]);

        let output = Bytes::from(super::exec::encode(STDOUT, &vec![b'x'; 100_000]));
        session.outgoing.send(output).await.unwrap();
        let status = exec::exit_status(3).to_string();
        let status_message = super::exec::encode(ERROR, status.as_bytes());
        session
            .outgoing
            .send(Bytes::from(status_message))
            .await
            .unwrap();
        drop(session);

        let frames = client.until_goaway().await;
        for stream in [1, 3, 5, 7] {
            assert!(
                frames.contains(&Frame::SynReply {
                    stream,
                    headers: vec![]
                }),
                "stream {stream} is replied to"
            );
        }
        assert!(frames.contains(&Frame::Ping { id: 1 }));
        let (stdout, stdout_done) = received(&frames, 5);
        assert_eq!(stdout.len(), 6 + 100_000);
        assert!(stdout.starts_with(b"early xxx") && stdout_done);
        let (error, error_done) = received(&frames, 1);
        assert_eq!(String::from_utf8(error).unwrap(), status);
        assert!(error_done);
        assert_eq!(frames.last(), Some(&Frame::GoAway { last_good: 7 }));
    }

    #[tokio::test]
    async fn the_session_learns_when_the_client_is_gone() {
        let (mut client, mut session) = connect();
        client.open_channel(1, "error").await;
        client.open_channel(3, "bogus").await;
        client.send(Frame::GoAway { last_good: 0 }).await;
        let ended = tokio::time::timeout(Duration::from_secs(5), session.incoming.recv()).await;
        assert_eq!(ended.expect("the channel ends"), None);
        drop(session);
        let frames = client.until_goaway().await;
        assert!(frames.contains(&Frame::RstStream {
            stream: 3,
            status: spdy::PROTOCOL_ERROR
        }));
    }
}
