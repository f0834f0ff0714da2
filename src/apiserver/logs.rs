//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: picks the container and the run (current or
//! `previous`) from the pod, as kubelet's log endpoint does, and streams the text the node gives
//! (`follow`, `tailLines`, `timestamps`, `sinceSeconds`, `sinceTime`, `limitBytes`). The embedded agent's pods are read
//! in-process; a joined node's come from its kubelet endpoint, which gets the same query.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::Pod;

use crate::api::kubelet::container_logs_path;
pub use crate::api::logs::{LogOptions, LogStream, PodLogs};

use super::status::ApiError;
use super::{ApiServer, Body, Query};

/// The `pods/log` options a node's kubelet endpoint takes, as the client sent them.
fn forwarded_query(q: &Query) -> String {
    let mut forwarded = form_urlencoded::Serializer::new(String::new());
    for key in [
        "follow",
        "previous",
        "timestamps",
        "tailLines",
        "sinceSeconds",
        "sinceTime",
        "limitBytes",
    ] {
        if let Some(value) = q.get(key) {
            forwarded.append_pair(key, value);
        }
    }
    forwarded.finish()
}

/// The pod and the node it is on, which answers for it.
pub(super) async fn scheduled_pod(
    server: &ApiServer,
    namespace: &str,
    name: &str,
) -> Result<(Pod, String), ApiError> {
    let info = crate::api::resources::find("", "v1", "pods").expect("pods are served");
    let obj = server.registry().get(info, Some(namespace), name).await?;
    let pod: Pod = serde_json::from_value(obj).map_err(|e| ApiError::Internal(e.to_string()))?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok((pod, node))
}

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    namespace: &str,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let (pod, node) = scheduled_pod(server, namespace, name).await?;
    let options =
        LogOptions::resolve(&pod, None, |key| q.get(key)).map_err(ApiError::BadRequest)?;
    let local = server.pod_logs.get().filter(|s| s.node_name() == node);
    let stream = match local {
        Some(source) => source.stream(&pod, options).map_err(ApiError::BadRequest)?,
        None => {
            let path = format!(
                "{}?{}",
                container_logs_path(namespace, name, &options.container),
                forwarded_query(q)
            );
            // Boxed: the dial (TLS, HTTP handshake) would otherwise swell every request's future.
            Box::pin(super::kubelet::get(server, &node, &path)).await?
        }
    };
    let stream = stream.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}
