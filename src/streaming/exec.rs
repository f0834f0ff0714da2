//! Remote-command sessions (`kubectl exec` and `kubectl attach`) on an upgraded connection: the
//! [`Channel`] a session sees whichever transport carries it (a WebSocket, or SPDY/3.1: `spdy.rs`), the
//! relay the API server runs to a joined node's kubelet endpoint, and the trait a node agent implements
//! to run the command ([`start`] puts it on an upgraded connection). The API server runs the embedded
//! agent's sessions in-process. An attach session has no command: it joins the container's own process
//! through the container's shim.

pub mod spdy;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::api::exec::ExecOptions;
use crate::util::upgrade::{Connection, Upgrade};

/// Messages queued in either direction of a channel before the sender waits.
const QUEUED_MESSAGES: usize = 16;
/// How long the client has to answer the close once the session is over.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A session's messages, whichever transport carries them: each starts with the byte of its stream, as
/// on the WebSocket.
pub struct Channel {
    /// The client's messages; it ends when the client is gone.
    pub incoming: mpsc::Receiver<Bytes>,
    /// Messages to the client. Once every sender is dropped the session is over, and the transport
    /// closes normally.
    pub outgoing: mpsc::Sender<Bytes>,
}

impl Channel {
    /// The channel on a switched connection.
    pub fn accept(connection: Connection) -> Channel {
        match connection {
            Connection::WebSocket(socket) => Channel::websocket(*socket),
            Connection::Spdy(io) => spdy::channel(crate::util::upgrade::Pipe::raw(io)),
        }
    }

    /// The channel on a WebSocket (either role): binary messages in and out. When the session is over,
    /// the socket closes normally and the peer's messages are read until its close, so that nothing
    /// it sent is left unread when the connection is dropped: that would reset it, and could lose the
    /// last messages on their way out.
    pub fn websocket<S>(socket: WebSocketStream<S>) -> Channel
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (to_session, incoming) = mpsc::channel::<Bytes>(QUEUED_MESSAGES);
        let (outgoing, mut from_session) = mpsc::channel::<Bytes>(QUEUED_MESSAGES);
        let (mut sink, mut source) = socket.split();
        tokio::spawn(async move {
            let read = async move {
                while let Some(Ok(message)) = source.next().await {
                    match message {
                        // A session that is over no longer takes messages; they are read all the same.
                        Message::Binary(bytes) => {
                            let _ = to_session.send(bytes).await;
                        }
                        Message::Close(_) => return,
                        _ => {}
                    }
                }
            };
            let write = async move {
                while let Some(message) = from_session.recv().await {
                    if sink.send(Message::Binary(message)).await.is_err() {
                        return;
                    }
                }
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = sink.send(Message::Close(Some(close))).await;
            };
            tokio::pin!(read, write);
            tokio::select! {
                _ = &mut write => {
                    let _ = tokio::time::timeout(CLOSE_WAIT, read).await;
                }
                _ = &mut read => write.await,
            }
        });
        Channel { incoming, outgoing }
    }

    /// Passes messages between this channel and `other` until both ends are over.
    pub async fn relay(self, other: Channel) {
        let pass = |mut from: mpsc::Receiver<Bytes>, to: mpsc::Sender<Bytes>| async move {
            while let Some(message) = from.recv().await {
                if to.send(message).await.is_err() {
                    return;
                }
            }
        };
        tokio::join!(
            pass(self.incoming, other.outgoing),
            pass(other.incoming, self.outgoing)
        );
    }
}

pub type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts the session `options` ask for in the container `exec` locates, once `upgrade`'s connection is
/// switched; the `101` answer for it, or why there is no such running container.
pub fn start<T: Default>(
    exec: Arc<dyn PodExec>,
    pod: &Pod,
    options: ExecOptions,
    upgrade: Upgrade,
) -> Result<http::Response<T>, String> {
    let id = exec.locate(pod, &options)?;
    let response = upgrade.response();
    tokio::spawn(async move {
        if let Some(connection) = upgrade.connection().await {
            exec.run(id, options, Channel::accept(connection)).await;
        }
    });
    Ok(response)
}

/// Running commands in the containers of one node.
pub trait PodExec: Send + Sync {
    fn node_name(&self) -> &str;
    /// The running container the options name, checked before the connection is upgraded so that a
    /// refusal is an HTTP error kubectl prints; the id goes to [`PodExec::run`].
    fn locate(&self, pod: &Pod, options: &ExecOptions) -> Result<String, String>;
    /// Runs the command in container `id`, speaking the channel protocol on `channel` until it exits.
    fn run(&self, id: String, options: ExecOptions, channel: Channel) -> Session;
}
