//! `pods/exec` and `pods/attach`: `kubectl exec` and `kubectl attach`, over WebSocket
//! (`v5.channel.k8s.io`) or kubectl's SPDY/3.1 fallback. The pod, its node and the options are checked
//! first, so that a refusal is an HTTP error kubectl prints; then the connection is upgraded and the
//! session runs in the embedded agent, or is relayed message by message to the kubelet endpoint of the
//! pod's node, which this server always reaches over WebSocket.

use std::sync::Arc;

use http::{Request, Response};

use super::status::ApiError;
use super::{ApiServer, Body, Query};
use crate::api::exec::{self, ExecOptions};
use crate::streaming::exec::{self as session, Channel};
use crate::util::upgrade::Upgrade;

pub(super) async fn serve<B>(
    server: &Arc<ApiServer>,
    namespace: &str,
    name: &str,
    q: &Query,
    attach: bool,
    mut req: Request<B>,
) -> Result<Response<Body>, ApiError> {
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
    let upgrade = Upgrade::accept(&mut req, exec::PROTOCOLS).map_err(ApiError::BadRequest)?;
    if let Some(local) = server.pod_exec.get().filter(|e| e.node_name() == node) {
        return session::start(local.clone(), &pod, options, upgrade).map_err(ApiError::BadRequest);
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
        exec::V5_PROTOCOL,
    ))
    .await?;
    let response = upgrade.response();
    tokio::spawn(async move {
        if let Some(client) = upgrade.connection().await {
            Channel::accept(client)
                .relay(Channel::websocket(upstream))
                .await;
        }
    });
    Ok(response)
}
