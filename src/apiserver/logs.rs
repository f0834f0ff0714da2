//! `GET /api/v1/namespaces/{ns}/pods/{name}/log`: picks the container and the run (current or
//! `previous`) from the pod, as kubelet's log endpoint does, and streams the text the node's log source
//! gives (`follow`, `tailLines`, `timestamps`, `sinceSeconds`, `limitBytes`). The node agent registers the
//! log source for its node; pods on nodes without one get a clear error.

use std::convert::Infallible;
use std::sync::Arc;

use futures_util::StreamExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::Pod;

pub use crate::api::logs::{LogOptions, LogStream, PodLogs};

use super::status::ApiError;
use super::{ApiServer, Body, Query};

fn number<T: std::str::FromStr>(q: &Query, key: &str) -> Result<Option<T>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid {key} {v:?}")))
        })
        .transpose()
}

/// The options for `pod` from the query, with kubelet's errors for a missing or unknown container.
pub fn options(pod: &Pod, q: &Query) -> Result<LogOptions, ApiError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let default = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .cloned();
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => match (default, names.as_slice()) {
            (Some(d), _) => d,
            (None, [only]) => only.to_string(),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )))
            }
        },
    };
    let status = pod.status.clone().unwrap_or_default();
    let all_statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    let known = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.name == container);
    if !known {
        return Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let restarts = all_statuses
        .clone()
        .find(|s| s.name == container)
        .map_or(0, |s| s.restart_count.max(0) as u32);
    let previous = q.get("previous") == Some("true");
    let attempt = if previous {
        restarts.checked_sub(1).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        })?
    } else {
        restarts
    };
    Ok(LogOptions {
        container,
        attempt,
        follow: q.get("follow") == Some("true"),
        timestamps: q.get("timestamps") == Some("true"),
        tail_lines: number(q, "tailLines")?,
        since_seconds: number(q, "sinceSeconds")?,
        limit_bytes: number(q, "limitBytes")?,
    })
}

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    namespace: &str,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let info = crate::api::resources::find("", "v1", "pods").expect("pods are served");
    let obj = server.registry().get(info, Some(namespace), name).await?;
    let pod: Pod = serde_json::from_value(obj).map_err(|e| ApiError::Internal(e.to_string()))?;
    let options = options(&pod, q)?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let source = server
        .pod_logs
        .get()
        .filter(|s| s.node_name() == node)
        .ok_or_else(|| {
            ApiError::BadRequest(if node.is_empty() {
                format!("pod {name} is not scheduled to a node yet")
            } else {
                format!("logs of pods on node {node:?} are not served by this server yet")
            })
        })?;
    let stream = source
        .stream(&pod, options)
        .map_err(ApiError::BadRequest)?
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}
