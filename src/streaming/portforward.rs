//! Port-forward sessions (`kubectl port-forward`) on an upgraded connection: each pair of streams kubectl
//! opens (`api::portforward` has the protocol) becomes a connection to the pod's port, reached through
//! the [`Dialer`] a node agent's [`PodPortForward`] gives. The API server runs the embedded agent's
//! sessions in-process and relays a joined node's to its kubelet endpoint.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::util::spdy::{self, Frame, Headers, SpdyError};
use crate::util::upgrade::Pipe;

/// How long bytes from the client may still reach the pod after the pod closed its side (containerd's
/// grace).
const UPSTREAM_GRACE: Duration = Duration::from_secs(1);
/// Frames queued for the client before forwarding waits.
const QUEUED_FRAMES: usize = 64;
/// Chunks from the client queued for one pod connection before the session waits for the pod to read.
const QUEUED_CHUNKS: usize = 16;

pub type Dial = Pin<Box<dyn Future<Output = Result<TcpStream, String>> + Send>>;
/// Connects to a port of one pod as the pod itself sees it (its own loopback); the error says why not.
pub type Dialer = Arc<dyn Fn(u16) -> Dial + Send + Sync>;

/// Reaching the ports of the pods of one node.
pub trait PodPortForward: Send + Sync {
    fn node_name(&self) -> &str;
    /// How to reach `pod`'s ports, checked before the connection is upgraded so that a refusal is an
    /// HTTP error kubectl prints.
    fn locate(&self, pod: &Pod) -> Result<Dialer, String>;
}

/// Serves one port-forward session on `pipe` until the client closes it, reaching the pod (`pod` names
/// it in error messages) through `dial`.
pub async fn serve(dial: Dialer, pod: String, pipe: Pipe) {
    let Pipe { incoming, outgoing } = pipe;
    let (frames, writer) = spdy::frame_writer(outgoing, QUEUED_FRAMES);
    let session = Session {
        dial,
        pod: pod.into(),
        frames,
        pairs: HashMap::new(),
        to_pod: HashMap::new(),
        forwards: JoinSet::new(),
        resets: HashMap::new(),
    };
    // The writer ends once the session and every forward it started have dropped their senders.
    tokio::join!(session.run(spdy::read_frames(incoming)), writer);
}

/// The streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, String, mpsc::Receiver<Bytes>)>,
}

struct Session {
    dial: Dialer,
    pod: Arc<str>,
    frames: mpsc::Sender<Frame>,
    /// Pairs still waiting for a stream, by request id.
    pairs: HashMap<String, Pair>,
    /// Where the client's bytes on a data stream go, until the client closes that stream.
    to_pod: HashMap<u32, mpsc::Sender<Bytes>>,
    forwards: JoinSet<()>,
    /// What stops a forward, by either of its streams, for a client's RST_STREAM.
    resets: HashMap<u32, Arc<Notify>>,
}

impl Session {
    async fn run(mut self, mut frames: BoxStream<'static, Result<Frame, SpdyError>>) {
        while let Some(frame) = frames.next().await {
            match frame {
                Ok(Frame::GoAway { .. }) => return,
                Ok(frame) => self.handle(frame).await,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: ending a session on a bad frame");
                    let _ = self.frames.send(Frame::GoAway { last_good: 0 }).await;
                    return;
                }
            }
        }
        // Dropping the session aborts its forwards: the client is gone.
    }

    async fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => self.open(stream, &headers).await,
            Frame::Data { stream, data, fin } => {
                if let Some(to_pod) = self.to_pod.get(&stream) {
                    if !data.is_empty() && to_pod.send(data).await.is_err() {
                        self.to_pod.remove(&stream);
                    }
                }
                if fin {
                    self.to_pod.remove(&stream);
                }
            }
            Frame::RstStream { stream, .. } => {
                self.to_pod.remove(&stream);
                if let Some(reset) = self.resets.remove(&stream) {
                    reset.notify_one();
                }
            }
            Frame::Ping { id } => {
                let _ = self.frames.send(Frame::Ping { id }).await;
            }
            _ => {}
        }
    }

    async fn open(&mut self, stream: u32, headers: &Headers) {
        let kind = spdy::header(headers, "streamtype").unwrap_or_default();
        let request = match spdy::header(headers, "requestid") {
            Some(id) => id.to_string(),
            // Clients before requestid numbered a connection's streams error, data: kubelet's guess.
            None if kind == "data" => stream.saturating_sub(2).to_string(),
            None => stream.to_string(),
        };
        if kind != "error" && kind != "data" {
            tracing::debug!(
                stream,
                kind,
                "port-forward: refusing a stream of unknown type"
            );
            let _ = self
                .frames
                .send(Frame::RstStream {
                    stream,
                    status: spdy::PROTOCOL_ERROR,
                })
                .await;
            return;
        }
        let reply = Frame::SynReply {
            stream,
            headers: Vec::new(),
        };
        if self.frames.send(reply).await.is_err() {
            return;
        }
        let pair = self.pairs.entry(request.clone()).or_default();
        if kind == "error" {
            pair.error = Some(stream);
        } else {
            let (to_pod, from_client) = mpsc::channel(QUEUED_CHUNKS);
            self.to_pod.insert(stream, to_pod);
            let port = spdy::header(headers, "port")
                .unwrap_or_default()
                .to_string();
            pair.data = Some((stream, port, from_client));
        }
        if !(pair.error.is_some() && pair.data.is_some()) {
            return;
        }
        if let Some(Pair {
            error: Some(error),
            data: Some((data, port, from_client)),
        }) = self.pairs.remove(&request)
        {
            while self.forwards.try_join_next().is_some() {}
            // A finished forward has dropped its side.
            self.resets.retain(|_, reset| Arc::strong_count(reset) > 1);
            let reset = Arc::new(Notify::new());
            self.resets.insert(data, reset.clone());
            self.resets.insert(error, reset.clone());
            let forward = Forward {
                dial: self.dial.clone(),
                pod: self.pod.clone(),
                frames: self.frames.clone(),
                data,
                error,
                reset,
            };
            self.forwards.spawn(forward.run(port, from_client));
        }
    }
}

/// One forwarded connection: its streams and the way to the pod.
struct Forward {
    dial: Dialer,
    pod: Arc<str>,
    frames: mpsc::Sender<Frame>,
    data: u32,
    error: u32,
    /// Notified when the client resets a stream: kubectl resets the data stream once the pod's side is
    /// done, then waits for the error stream to close.
    reset: Arc<Notify>,
}

impl Forward {
    /// Forwards until the pod's side is done, then closes both streams; a failure is written on the error
    /// stream first, which ends kubectl's session.
    async fn run(self, port: String, from_client: mpsc::Receiver<Bytes>) {
        let result = match port.parse::<u16>() {
            Ok(port) if port > 0 => self
                .pump(port, from_client)
                .await
                .map_err(|e| format!("error forwarding port {port} to pod {}: {e}", self.pod)),
            _ => Err(format!("invalid port {port:?}: want 1 to 65535")),
        };
        let fin = |stream| Frame::Data {
            stream,
            data: Bytes::new(),
            fin: true,
        };
        if let Err(message) = result {
            let report = Frame::Data {
                stream: self.error,
                data: Bytes::from(message),
                fin: false,
            };
            let _ = self.frames.send(report).await;
            let _ = self.frames.send(fin(self.data)).await;
        }
        let _ = self.frames.send(fin(self.error)).await;
    }

    async fn pump(&self, port: u16, mut from_client: mpsc::Receiver<Bytes>) -> Result<(), String> {
        let connection = (self.dial)(port).await?;
        let (mut from_pod, mut to_pod) = connection.into_split();
        let upstream = async move {
            while let Some(bytes) = from_client.recv().await {
                if to_pod.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            // The client closed its side: the pod reads EOF and may still answer.
            let _ = to_pod.shutdown().await;
        };
        let downstream = async {
            let mut buf = vec![0u8; spdy::MAX_DATA];
            while let Ok(n @ 1..) = from_pod.read(&mut buf).await {
                let chunk = Frame::Data {
                    stream: self.data,
                    data: Bytes::copy_from_slice(&buf[..n]),
                    fin: false,
                };
                if self.frames.send(chunk).await.is_err() {
                    return;
                }
            }
            let fin = Frame::Data {
                stream: self.data,
                data: Bytes::new(),
                fin: true,
            };
            let _ = self.frames.send(fin).await;
        };
        let reset = self.reset.notified();
        tokio::pin!(upstream, downstream, reset);
        let mut upstream_done = false;
        loop {
            tokio::select! {
                _ = &mut upstream, if !upstream_done => upstream_done = true,
                _ = &mut downstream => break,
                _ = &mut reset => return Ok(()),
            }
        }
        if !upstream_done {
            tokio::select! {
                _ = tokio::time::timeout(UPSTREAM_GRACE, upstream) => {},
                _ = reset => {},
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::spdy::testing::Client;
    use tokio::net::TcpListener;

    fn start(dial: Dialer) -> Client {
        let (client, pipe) = Client::connect();
        tokio::spawn(serve(dial, "default/web".into(), pipe));
        client
    }

    impl Client {
        async fn open_pair_stream(&mut self, stream: u32, kind: &str, port: &str, request: &str) {
            let headers = [("streamtype", kind), ("port", port), ("requestid", request)];
            self.open(stream, &headers).await;
        }

        /// What arrives on `stream` until its FIN, with the other frames seen meanwhile.
        async fn read_stream(&mut self, stream: u32) -> (Vec<u8>, Vec<Frame>) {
            let (mut bytes, mut others) = (Vec::new(), Vec::new());
            loop {
                match self.next().await {
                    Frame::Data {
                        stream: s,
                        data,
                        fin,
                    } if s == stream => {
                        bytes.extend_from_slice(&data);
                        if fin {
                            return (bytes, others);
                        }
                    }
                    other => others.push(other),
                }
            }
        }
    }

    fn loopback_dialer(port_map: HashMap<u16, u16>) -> Dialer {
        Arc::new(move |port| {
            let target = port_map.get(&port).copied();
            Box::pin(async move {
                let target = target.ok_or("connection refused")?;
                TcpStream::connect(("127.0.0.1", target))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    }

    #[tokio::test]
    async fn a_connection_is_a_pair_of_streams_to_the_pods_port() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let real = listener.local_addr().unwrap().port();
        // An upper-casing echo that answers after the client closed its side.
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    conn.read_to_end(&mut request).await.unwrap();
                    conn.write_all(&request.to_ascii_uppercase()).await.unwrap();
                });
            }
        });
        let mut client = start(loopback_dialer(HashMap::from([(80, real)])));
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.next().await, Frame::Ping { id: 1 });
        for (request, error, data) in [("0", 1, 3), ("1", 5, 7)] {
            client.open_pair_stream(error, "error", "80", request).await;
            client.open_pair_stream(data, "data", "80", request).await;
            let payload = format!("hello {request} ").repeat(10_000);
            client
                .send(Frame::Data {
                    stream: data,
                    data: Bytes::from(payload.clone()),
                    fin: true,
                })
                .await;
            let (answer, seen) = client.read_stream(data).await;
            assert_eq!(answer, payload.to_uppercase().as_bytes());
            // Both streams were replied to before any data arrived on them.
            assert!(seen.contains(&Frame::SynReply {
                stream: error,
                headers: vec![]
            }));
            assert!(seen.contains(&Frame::SynReply {
                stream: data,
                headers: vec![]
            }));
            // kubectl 1.31+ resets the data stream once it has the answer, then waits for the error
            // stream to end.
            client
                .send(Frame::RstStream {
                    stream: data,
                    status: 5,
                })
                .await;
            let (report, _) = client.read_stream(error).await;
            assert!(report.is_empty(), "{}", String::from_utf8_lossy(&report));
        }
    }

    #[tokio::test]
    async fn a_failure_is_reported_on_the_error_stream() {
        let mut client = start(loopback_dialer(HashMap::new()));
        client.open_pair_stream(1, "error", "9999", "0").await;
        client.open_pair_stream(3, "data", "9999", "0").await;
        let (report, _) = client.read_stream(1).await;
        assert_eq!(
            String::from_utf8(report).unwrap(),
            "error forwarding port 9999 to pod default/web: connection refused"
        );
        client.open_pair_stream(5, "error", "http", "1").await;
        client.open_pair_stream(7, "data", "http", "1").await;
        let (report, _) = client.read_stream(5).await;
        assert_eq!(
            String::from_utf8(report).unwrap(),
            "invalid port \"http\": want 1 to 65535"
        );
        client.open_pair_stream(9, "bogus", "80", "2").await;
        assert!(matches!(
            client.next().await,
            Frame::RstStream {
                stream: 9,
                status: spdy::PROTOCOL_ERROR
            }
        ));
    }
}
