//! The server side of switching a request to a streaming protocol, both ways kubectl asks for it: a
//! WebSocket with a subprotocol (`websocket.rs`), or, as it falls back to (and as every kubectl before
//! 1.30 does), `Upgrade: SPDY/3.1` with the protocols it speaks in `X-Stream-Protocol-Version` headers.
//! An accepted upgrade answers `101 Switching Protocols` and then hands over the switched connection;
//! [`Pipe`] carries its bytes whichever way it was switched.

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::websocket::{self, Handshake, ServerSocket};

pub const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// Chunks queued for the connection before the sender waits.
const QUEUED_CHUNKS: usize = 64;
/// The most one read from a raw connection yields.
const READ_CHUNK: usize = 32 << 10;

/// The protocols one endpoint speaks, in its order of preference.
#[derive(Clone, Copy)]
pub struct Protocols {
    /// WebSocket subprotocols (`Sec-WebSocket-Protocol`).
    pub websocket: &'static [&'static str],
    /// Stream protocols on SPDY/3.1 (`X-Stream-Protocol-Version`).
    pub spdy: &'static [&'static str],
}

/// An accepted upgrade: the answer to send, then the connection it switches.
pub enum Upgrade {
    WebSocket(Handshake),
    Spdy {
        upgrade: OnUpgrade,
        protocol: &'static str,
    },
}

/// A switched connection.
pub enum Connection {
    WebSocket(Box<ServerSocket>),
    Spdy(TokioIo<hyper::upgrade::Upgraded>),
}

impl Upgrade {
    /// Accepts the upgrade `req` asks for if it offers one of `protocols`; the error says what is wrong
    /// with it.
    pub fn accept<B>(req: &mut Request<B>, protocols: Protocols) -> Result<Upgrade, String> {
        if websocket::is_websocket(req) {
            let negotiate = |offered: &str| {
                let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
                protocols
                    .websocket
                    .iter()
                    .copied()
                    .find(|p| offered.contains(p))
            };
            return websocket::handshake(req, negotiate).map(Upgrade::WebSocket);
        }
        let upgrade = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !upgrade.eq_ignore_ascii_case("SPDY/3.1") {
            return Err(format!(
                "this request must be upgraded: to a WebSocket ({}) or to SPDY/3.1 ({})",
                protocols.websocket.join(", "),
                protocols.spdy.join(", ")
            ));
        }
        let offered: Vec<&str> = req
            .headers()
            .get_all(STREAM_PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let protocol = protocols
            .spdy
            .iter()
            .copied()
            .find(|p| offered.contains(p))
            .ok_or_else(|| {
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, \
                     server accepts {:?}",
                    protocols.spdy
                )
            })?;
        let upgrade = req
            .extensions_mut()
            .remove::<OnUpgrade>()
            .ok_or("this connection cannot be upgraded")?;
        Ok(Upgrade::Spdy { upgrade, protocol })
    }

    /// The `101 Switching Protocols` answer; the connection switches once it is sent.
    pub fn response<T: Default>(&self) -> Response<T> {
        match self {
            Upgrade::WebSocket(handshake) => handshake.response(),
            Upgrade::Spdy { protocol, .. } => {
                let mut resp = Response::new(T::default());
                *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let headers = resp.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
                headers.insert(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(protocol));
                resp
            }
        }
    }

    /// The switched connection, once the answer went out.
    pub async fn connection(self) -> Option<Connection> {
        let connection = match self {
            Upgrade::WebSocket(handshake) => handshake
                .socket()
                .await
                .map(|socket| Connection::WebSocket(Box::new(socket))),
            Upgrade::Spdy { upgrade, .. } => {
                upgrade.await.map(|io| Connection::Spdy(TokioIo::new(io)))
            }
        };
        connection
            .inspect_err(|e| tracing::debug!(error = %e, "the connection was not upgraded"))
            .ok()
    }
}

impl Connection {
    /// The connection's bytes: a WebSocket's binary messages, or the raw connection's.
    pub fn into_pipe(self) -> Pipe {
        match self {
            Connection::WebSocket(socket) => Pipe::websocket(*socket),
            Connection::Spdy(io) => Pipe::raw(io),
        }
    }
}

/// A connection as bytes in and bytes out, whatever carries them.
pub struct Pipe {
    pub incoming: BoxStream<'static, Bytes>,
    /// Closing it (dropping every sender) closes the connection.
    pub outgoing: mpsc::Sender<Bytes>,
}

impl Pipe {
    /// Bytes in the binary messages of a WebSocket (either role).
    pub fn websocket<S>(socket: WebSocketStream<S>) -> Pipe
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, stream) = socket.split();
        let (outgoing, mut queued) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        tokio::spawn(async move {
            while let Some(bytes) = queued.recv().await {
                if sink.send(Message::Binary(bytes)).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let incoming = stream
            .take_while(|m| std::future::ready(matches!(m, Ok(m) if !m.is_close())))
            .filter_map(|m| {
                std::future::ready(match m {
                    Ok(Message::Binary(bytes)) => Some(bytes),
                    _ => None,
                })
            })
            .boxed();
        Pipe { incoming, outgoing }
    }

    /// The bytes of a connection switched to a protocol of its own.
    pub fn raw<S>(io: S) -> Pipe
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, mut writer) = tokio::io::split(io);
        let (outgoing, mut queued) = mpsc::channel::<Bytes>(QUEUED_CHUNKS);
        tokio::spawn(async move {
            while let Some(bytes) = queued.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        let incoming = futures_util::stream::unfold(reader, |mut reader| async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(_) => Some((buf.freeze(), reader)),
            }
        })
        .boxed();
        Pipe { incoming, outgoing }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: Protocols = Protocols {
        websocket: &["v5.channel.k8s.io", "v4.channel.k8s.io"],
        spdy: &["v5.channel.k8s.io", "v4.channel.k8s.io"],
    };

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::post("/exec");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn spdy_upgrades_take_the_servers_preferred_protocol_the_client_offers() {
        let err = |headers: &[(&str, &str)]| {
            Upgrade::accept(&mut request(headers), EXEC)
                .err()
                .expect("refused")
        };
        assert_eq!(
            err(&[]),
            "this request must be upgraded: to a WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) \
             or to SPDY/3.1 (v5.channel.k8s.io, v4.channel.k8s.io)"
        );
        assert_eq!(
            err(&[("upgrade", "SPDY/3.1"), (STREAM_PROTOCOL_HEADER, "channel.k8s.io")]),
            "unable to upgrade: unable to negotiate protocol: client supports [\"channel.k8s.io\"], \
             server accepts [\"v5.channel.k8s.io\", \"v4.channel.k8s.io\"]"
        );
        // Negotiated, but a request that did not come through a hyper connection has nothing to upgrade.
        assert_eq!(
            err(&[
                ("upgrade", "SPDY/3.1"),
                (STREAM_PROTOCOL_HEADER, "v4.channel.k8s.io"),
                (STREAM_PROTOCOL_HEADER, "v5.channel.k8s.io"),
            ]),
            "this connection cannot be upgraded"
        );
        let accept = |offered: &[&str]| {
            let mut headers = vec![("upgrade", "spdy/3.1")];
            headers.extend(offered.iter().map(|p| (STREAM_PROTOCOL_HEADER, *p)));
            let mut req = request(&headers);
            req.extensions_mut()
                .insert(hyper::upgrade::on(Request::new(())));
            let resp: Response<()> = Upgrade::accept(&mut req, EXEC)
                .expect("accepted")
                .response();
            assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
            assert_eq!(resp.headers()[header::UPGRADE], "SPDY/3.1");
            resp.headers()[STREAM_PROTOCOL_HEADER].clone()
        };
        // kubectl sends one header per protocol, older clients one comma-separated list.
        assert_eq!(
            accept(&["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            "v5.channel.k8s.io"
        );
        assert_eq!(
            accept(&["v3.channel.k8s.io, v4.channel.k8s.io"]),
            "v4.channel.k8s.io"
        );
    }
}
