//! Watch responses: a chunked stream of `{"type":…,"object":…}` lines (objects as Tables when kubectl asks
//! for them), with bookmarks, `timeoutSeconds`, and an ERROR event (410 Expired) when history is gone.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::resources::ResourceInfo;
use crate::api::selector::FieldSelector;
use crate::registry::WatchOptions;

use super::handlers::{list_options, table, TABLE_CONTENT_TYPE};
use super::status::ApiError;
use super::{ApiServer, Body, Query, RequestContext};

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

pub(super) async fn serve(
    server: &Arc<ApiServer>,
    info: &'static ResourceInfo,
    namespace: Option<&str>,
    name: Option<&str>,
    q: &Query,
    ctx: &RequestContext,
) -> Result<Response<Body>, ApiError> {
    let list = list_options(q)?;
    let mut field_selector = list.field_selector;
    if let Some(name) = name {
        // The deprecated `GET …/pods/<name>?watch=true` form is a watch on that one name.
        field_selector = FieldSelector::parse(&format!("metadata.name={name}"))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    }
    let resource_version = match q.get("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv}")))?,
        ),
    };
    let options = WatchOptions {
        label_selector: list.label_selector,
        field_selector,
        resource_version,
    };
    let as_table = ctx
        .accept
        .split(',')
        .next()
        .is_some_and(|a| a.contains("as=Table"));
    let bookmarks = q.flag("allowWatchBookmarks");
    let timeout = match q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        Some(t) => Duration::from_secs(t),
        // Like Kubernetes' default (min-request-timeout 1800 s, randomised up to twice that).
        None => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let registry = server.registry().clone();
    let start_revision = resource_version.unwrap_or_else(|| registry.backend().current_revision());
    let mut events = registry.watch(info, namespace, options).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let query = q.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last_revision = start_revision;
        let mut first = true;
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        loop {
            let line = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = bookmark.tick(), if bookmarks => {
                    line_bytes(&json!({"type": "BOOKMARK", "object": {"kind": info.kind, "apiVersion": info.api_version(),
                        "metadata": {"resourceVersion": last_revision.to_string()}}}))
                }
                next = events.recv() => match next {
                    None => return,
                    Some(Ok(event)) => {
                        last_revision = last_revision.max(event.revision);
                        if as_table {
                            let t = table(info, std::slice::from_ref(event.object.value()), event.revision, None, &query, jiff::Timestamp::now(), first);
                            first = false;
                            line_bytes(&json!({"type": event.event_type.as_str(), "object": t}))
                        } else {
                            event_line(event.event_type.as_str(), event.object.json())
                        }
                    }
                    Some(Err(e)) => {
                        let status = ApiError::from(e).status();
                        let _ = tx.send(line_bytes(&json!({"type": "ERROR", "object": status}))).await;
                        return;
                    }
                },
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
    *resp.status_mut() = StatusCode::OK;
    let content_type = if as_table {
        TABLE_CONTENT_TYPE
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

/// `{"type":…,"object":…}` and a newline around an object already serialized (once for all watches).
fn event_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + event_type.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn line_bytes(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_around_a_serialized_object_is_the_line_of_the_whole_event() {
        let object = json!({"kind": "Pod", "metadata": {"name": "a \"quoted\" name"}});
        let line = event_line("MODIFIED", &serde_json::to_vec(&object).unwrap());
        assert_eq!(line.last(), Some(&b'\n'));
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed, json!({"type": "MODIFIED", "object": object}));
        assert_eq!(
            line,
            line_bytes(&parsed),
            "the same bytes as serializing it whole"
        );
    }
}
