//! The server side of a WebSocket upgrade on hyper (RFC 6455): checks the client's handshake, picks a
//! subprotocol it offered, answers `101 Switching Protocols`, and hands the upgraded connection over as a
//! tungstenite stream once hyper has switched it.

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

pub type ServerSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// An accepted handshake: the answer to send, then the connection it upgrades.
pub struct Handshake {
    pub protocol: &'static str,
    accept_key: String,
    upgrade: OnUpgrade,
}

/// Whether the request asks to become a WebSocket.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Accepts the handshake of `req` if it is a valid WebSocket upgrade offering a protocol `negotiate`
/// takes; the error says what is wrong with it.
pub fn handshake<B>(
    req: &mut Request<B>,
    negotiate: impl Fn(&str) -> Option<&'static str>,
) -> Result<Handshake, String> {
    if !is_websocket(req) {
        return Err("not a WebSocket upgrade request".into());
    }
    let headers = req.headers();
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("unsupported WebSocket version: only 13 is supported".into());
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    let accept_key = derive_accept_key(key.as_bytes());
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let protocol = negotiate(offered)
        .ok_or_else(|| format!("none of the offered subprotocols is supported: {offered:?}"))?;
    let upgrade = req
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or("this connection cannot be upgraded")?;
    Ok(Handshake {
        protocol,
        accept_key,
        upgrade,
    })
}

impl Handshake {
    /// The `101 Switching Protocols` answer; the connection switches once it is sent.
    pub fn response<T: Default>(&self) -> Response<T> {
        let mut resp = Response::new(T::default());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&self.accept_key).expect("base64 is a valid header value"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(self.protocol),
        );
        resp
    }

    /// The connection as a WebSocket, once the answer went out.
    pub async fn socket(self) -> Result<ServerSocket, hyper::Error> {
        let upgraded = self.upgrade.await?;
        Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::get("/exec");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap()
    }

    const VALID: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "v5.channel.k8s.io"),
    ];

    fn v5(offered: &str) -> Option<&'static str> {
        offered
            .split(',')
            .any(|p| p.trim() == "v5.channel.k8s.io")
            .then_some("v5.channel.k8s.io")
    }

    #[test]
    fn the_handshake_is_checked_before_anything_is_upgraded() {
        assert!(is_websocket(&request(VALID)));
        assert!(!is_websocket(&request(&[("upgrade", "SPDY/3.1")])));
        let err = |headers: &[(&str, &str)]| handshake(&mut request(headers), v5).err().unwrap();
        assert_eq!(
            err(&VALID[..2]),
            "unsupported WebSocket version: only 13 is supported"
        );
        assert_eq!(err(&VALID[..3]), "missing Sec-WebSocket-Key");
        assert_eq!(
            err(&VALID[..4]),
            "none of the offered subprotocols is supported: \"\""
        );
        // A request that did not come through a hyper connection has nothing to upgrade.
        assert_eq!(err(VALID), "this connection cannot be upgraded");
    }
}
