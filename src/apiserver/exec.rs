//! `pods/exec` and `pods/attach`: `kubectl exec` and `kubectl attach` over WebSocket (`v5.channel.k8s.io`).
//! The pod, its node and the options are
//! checked first, so that a refusal is an HTTP error kubectl prints; then the connection is upgraded and
//! the session runs in the embedded agent, or is relayed message by message to the kubelet endpoint of
//! the pod's node. kubectl falls back to SPDY (a POST) only when the WebSocket upgrade is refused; this
//! server answers that with the reason instead.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response};
use tokio_tungstenite::tungstenite::Message;

use super::status::ApiError;
use super::{ApiServer, Body, Query};
use crate::api::exec::{self, ExecOptions};
use crate::util::websocket;

const CLOSE_WAIT: Duration = Duration::from_secs(2);

pub(super) async fn serve<B>(
    server: &Arc<ApiServer>,
    namespace: &str,
    name: &str,
    q: &Query,
    attach: bool,
    mut req: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let verb = if attach { "attach" } else { "exec" };
    if req.method() == Method::POST || !websocket::is_websocket(&req) {
        return Err(ApiError::BadRequest(format!(
            "{verb} is served over WebSocket (v5.channel.k8s.io) only; SPDY is not supported: \
             unset KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"
        )));
    }
    let (pod, node) = super::logs::scheduled_pod(server, namespace, name).await?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if let Some(phase @ ("Succeeded" | "Failed")) = phase {
        let what = if attach { "attach to" } else { "exec into" };
        return Err(ApiError::BadRequest(format!(
            "cannot {what} a container in a completed pod; current phase is {phase}"
        )));
    }
    let values = |key: &str| q.get_all(key);
    let options = if attach {
        ExecOptions::resolve_attach(&pod, None, values)
    } else {
        ExecOptions::resolve(&pod, None, values)
    }
    .map_err(ApiError::BadRequest)?;
    let handshake =
        websocket::handshake(&mut req, exec::negotiate).map_err(ApiError::BadRequest)?;
    if let Some(local) = server.pod_exec.get().filter(|e| e.node_name() == node) {
        return exec::start(local.clone(), &pod, options, handshake).map_err(ApiError::BadRequest);
    }
    let path = format!(
        "{}?{}",
        exec::exec_path(&options, namespace, name),
        options.to_query()
    );
    // Boxed: the dial (TLS, WebSocket handshake) would otherwise swell every request's future.
    let upstream = Box::pin(super::kubelet::websocket(
        server,
        &node,
        &path,
        handshake.protocol,
    ))
    .await?;
    let response = handshake.response();
    tokio::spawn(async move {
        if let Ok(client) = handshake.socket().await {
            relay(client, upstream).await;
        }
    });
    Ok(response)
}

/// Passes the session's messages between kubectl and the kubelet until both ends closed. Pings stay on
/// their own hop: each side's WebSocket answers them.
async fn relay<C, N>(client: C, node: N)
where
    C: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Send,
    N: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message>
        + Send,
{
    let (mut to_client, mut from_client) = client.split();
    let (mut to_node, mut from_node) = node.split();
    let forward = |message: &Message| {
        matches!(
            message,
            Message::Binary(_) | Message::Text(_) | Message::Close(_)
        )
    };
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            if forward(&message) && to_node.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_node.close().await;
    };
    let down = async {
        while let Some(Ok(message)) = from_node.next().await {
            if forward(&message) && to_client.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_client.close().await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut up => down.await,
        // The session is over: the client has a moment to answer the close.
        _ = &mut down => {
            let _ = tokio::time::timeout(CLOSE_WAIT, up).await;
        }
    }
}
