//! `pods/portforward`: `kubectl port-forward`. The client's SPDY/3.1 session arrives tunneled in a
//! WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl 1.30+) or, as kubectl falls back to, on a connection
//! upgraded to SPDY/3.1 itself. The pod and its node are checked before the upgrade, so that a refusal is
//! an HTTP error kubectl prints; then the session runs in-process for the embedded agent's pods, or its
//! bytes are relayed to the kubelet endpoint of the pod's node.

use std::sync::Arc;

use futures_util::StreamExt;
use http::{Request, Response};

use super::status::ApiError;
use super::{ApiServer, Body};
use crate::api::portforward::{self, WEBSOCKET_PROTOCOL};
use crate::streaming;
use crate::util::upgrade::{Pipe, Upgrade};

pub(super) async fn serve<B>(
    server: &Arc<ApiServer>,
    namespace: &str,
    name: &str,
    mut req: Request<B>,
) -> Result<Response<Body>, ApiError> {
    let (pod, node) = super::logs::scheduled_pod(server, namespace, name).await?;
    let upgrade =
        Upgrade::accept(&mut req, portforward::PROTOCOLS).map_err(ApiError::BadRequest)?;
    if let Some(local) = server
        .pod_port_forward
        .get()
        .filter(|f| f.node_name() == node)
    {
        let dial = local.locate(&pod).map_err(ApiError::BadRequest)?;
        let pod = format!("{namespace}/{name}");
        let response = upgrade.response();
        tokio::spawn(async move {
            if let Some(client) = upgrade.connection().await {
                streaming::portforward::serve(dial, pod, client.into_pipe()).await;
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
        if let Some(client) = upgrade.connection().await {
            relay(client.into_pipe(), Pipe::websocket(upstream)).await;
        }
    });
    Ok(response)
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
