//! `pods/portforward`: `kubectl port-forward`. The client's SPDY/3.1 session arrives tunneled in a
//! WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl 1.30+) or, as kubectl falls back to, on a connection
//! upgraded to SPDY/3.1 itself. The pod and its node are checked before the upgrade, so that a refusal is
//! an HTTP error kubectl prints; then the session runs in-process for the embedded agent's pods, or its
//! bytes are relayed to the kubelet endpoint of the pod's node.

use std::sync::Arc;

use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::status::ApiError;
use super::{ApiServer, Body};
use crate::api::portforward::{self, Pipe, STREAM_PROTOCOL, WEBSOCKET_PROTOCOL};
use crate::util::websocket::{self, Handshake};

const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

pub(super) async fn serve<B>(
    server: &Arc<ApiServer>,
    namespace: &str,
    name: &str,
    mut req: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let (pod, node) = super::logs::scheduled_pod(server, namespace, name).await?;
    let upgrade = ClientUpgrade::accept(&mut req).map_err(ApiError::BadRequest)?;
    if let Some(local) = server
        .pod_port_forward
        .get()
        .filter(|f| f.node_name() == node)
    {
        let dial = local.locate(&pod).map_err(ApiError::BadRequest)?;
        let pod = format!("{namespace}/{name}");
        let response = upgrade.response();
        tokio::spawn(async move {
            if let Some(pipe) = upgrade.pipe().await {
                portforward::serve(dial, pod, pipe).await;
            }
        });
        return Ok(response);
    }
    let path = portforward::portforward_path(namespace, name);
    // Boxed: the dial (TLS, WebSocket handshake) would otherwise swell every request's future.
    let upstream = Box::pin(super::kubelet::websocket(
        server,
        &node,
        &path,
        WEBSOCKET_PROTOCOL,
    ))
    .await?;
    let response = upgrade.response();
    tokio::spawn(async move {
        if let Some(pipe) = upgrade.pipe().await {
            relay(pipe, Pipe::websocket(upstream)).await;
        }
    });
    Ok(response)
}

/// How the client asked to switch protocols.
enum ClientUpgrade {
    WebSocket(Handshake),
    Spdy(OnUpgrade),
}

impl ClientUpgrade {
    fn accept<B>(req: &mut Request<B>) -> Result<ClientUpgrade, String> {
        if req.method() == Method::GET && websocket::is_websocket(req) {
            return websocket::handshake(req, portforward::negotiate).map(ClientUpgrade::WebSocket);
        }
        let upgrade = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if req.method() != Method::POST || !upgrade.eq_ignore_ascii_case("SPDY/3.1") {
            return Err(format!(
                "port-forward needs a WebSocket upgrade ({WEBSOCKET_PROTOCOL}) or a POST \
                 upgrading to SPDY/3.1"
            ));
        }
        let offered = req
            .headers()
            .get_all(STREAM_PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == STREAM_PROTOCOL);
        if !offered {
            return Err(format!(
                "unable to upgrade: the client offers no supported {STREAM_PROTOCOL_HEADER} \
                 (want {STREAM_PROTOCOL})"
            ));
        }
        req.extensions_mut()
            .remove::<OnUpgrade>()
            .map(ClientUpgrade::Spdy)
            .ok_or_else(|| "this connection cannot be upgraded".to_string())
    }

    /// The `101 Switching Protocols` answer.
    fn response(&self) -> Response<Body> {
        match self {
            ClientUpgrade::WebSocket(handshake) => handshake.response(),
            ClientUpgrade::Spdy(_) => {
                let mut resp = Response::new(Body::default());
                *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                let headers = resp.headers_mut();
                headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
                headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
                headers.insert(
                    STREAM_PROTOCOL_HEADER,
                    HeaderValue::from_static(STREAM_PROTOCOL),
                );
                resp
            }
        }
    }

    /// The switched connection's bytes, once the answer went out.
    async fn pipe(self) -> Option<Pipe> {
        match self {
            ClientUpgrade::WebSocket(handshake) => {
                handshake.socket().await.ok().map(Pipe::websocket)
            }
            ClientUpgrade::Spdy(upgrade) => {
                upgrade.await.ok().map(|io| Pipe::raw(TokioIo::new(io)))
            }
        }
    }
}

/// Passes the session's bytes between kubectl and the kubelet until either side closes.
async fn relay(client: Pipe, node: Pipe) {
    let Pipe {
        incoming: mut from_client,
        outgoing: to_client,
    } = client;
    let Pipe {
        incoming: mut from_node,
        outgoing: to_node,
    } = node;
    let up = async {
        while let Some(bytes) = from_client.next().await {
            if to_node.send(bytes).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        while let Some(bytes) = from_node.next().await {
            if to_client.send(bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
}
