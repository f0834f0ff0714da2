//! The one client for everything that is not the API server itself: controllers, the scheduler, agents and
//! tests. In-process it calls the API server's request handler directly (no socket), so controllers get the
//! same validation and admission as users; remotely it speaks HTTP/2 over TLS to `https://server:6443`.
//! On top: typed access (`Api<K>`), watch streams, informers and a work queue.

pub mod api;
pub mod events;
pub mod informer;
pub mod leader;
pub mod remote;
pub mod shared;
pub mod workqueue;

use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use serde_json::Value;

use crate::apiserver::{ApiServer, User};

pub use api::Api;
pub use informer::{Change, Informer};
pub use remote::{RemoteAuth, RemoteConfig};
pub use shared::SharedInformers;
pub use workqueue::WorkQueue;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API server's `metav1.Status`; it reads as its message alone, as client-go's StatusError does,
    /// since controllers put it into events users read (`Error creating: pods "x" is forbidden: …`).
    #[error("{message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("invalid response: {0}")]
    Decode(String),
    #[error("cannot reach the API server: {0}")]
    Transport(String),
    #[error("client configuration: {0}")]
    Config(String),
}

impl ClientError {
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }
}

pub type ResponseBody = UnsyncBoxBody<Bytes, ClientError>;

#[derive(Clone)]
enum Transport {
    InProcess { server: Arc<ApiServer>, user: User },
    Remote(Arc<remote::Remote>),
}

#[derive(Clone)]
pub struct Client {
    transport: Transport,
    user_agent: String,
}

/// One event of a watch stream.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: WatchEventKind,
    pub object: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventKind {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl Client {
    pub fn in_process(server: Arc<ApiServer>, user: User) -> Self {
        Client {
            transport: Transport::InProcess { server, user },
            user_agent: "orch-controller/v1".into(),
        }
    }

    pub fn remote(config: RemoteConfig) -> Result<Self, ClientError> {
        Ok(Client {
            transport: Transport::Remote(Arc::new(remote::Remote::new(config)?)),
            user_agent: "orch/v1".into(),
        })
    }

    pub fn with_user_agent(mut self, user_agent: &str) -> Self {
        self.user_agent = user_agent.to_string();
        self
    }

    /// Sends a request and returns the response with its body still streaming.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, self.user_agent.as_str())
            .body(Full::new(body))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        match &self.transport {
            Transport::InProcess { server, user } => {
                let resp = server.handle(req, Some(user.clone())).await;
                Ok(resp.map(|b| b.map_err(|never| match never {}).boxed_unsync()))
            }
            Transport::Remote(remote) => remote.send(req).await,
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<Value, ClientError> {
        let bytes = match body {
            Some(b) => {
                Bytes::from(serde_json::to_vec(b).map_err(|e| ClientError::Decode(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let resp = self.send(method, path, bytes, content_type).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Decode(format!("{status} {e}: {}", String::from_utf8_lossy(&body)))
        })?;
        if status.is_success() {
            return Ok(value);
        }
        Err(ClientError::Api {
            code: status.as_u16(),
            reason: value["reason"].as_str().unwrap_or_default().to_string(),
            message: value["message"]
                .as_str()
                .unwrap_or(status.canonical_reason().unwrap_or(""))
                .to_string(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, None, "application/json")
            .await
    }

    pub async fn create(&self, path: &str, obj: &Value) -> Result<Value, ClientError> {
        self.request(Method::POST, path, Some(obj), "application/json")
            .await
    }

    pub async fn update(&self, path: &str, obj: &Value) -> Result<Value, ClientError> {
        self.request(Method::PUT, path, Some(obj), "application/json")
            .await
    }

    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ClientError> {
        self.request(
            Method::PATCH,
            path,
            Some(patch),
            "application/merge-patch+json",
        )
        .await
    }

    pub async fn delete(&self, path: &str, options: &Value) -> Result<Value, ClientError> {
        self.request(Method::DELETE, path, Some(options), "application/json")
            .await
    }

    /// Creates the object unless one of its name exists.
    pub async fn ensure(&self, collection: &str, obj: &Value) -> Result<(), ClientError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        match self.get(&format!("{collection}/{name}")).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        match self.create(collection, obj).await {
            Ok(_) => Ok(()),
            Err(ClientError::Api { code, .. }) if code == StatusCode::CONFLICT.as_u16() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens a watch; `path` carries the query (`?watch=1&resourceVersion=…`).
    pub async fn watch(&self, path: &str) -> Result<WatchStream, ClientError> {
        let resp = self
            .send(Method::GET, path, Bytes::new(), "application/json")
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.into_body().collect().await?.to_bytes();
            let value: Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ClientError::Api {
                code: status.as_u16(),
                reason: value["reason"].as_str().unwrap_or_default().to_string(),
                message: value["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(WatchStream {
            body: resp.into_body(),
            buffer: Vec::new(),
        })
    }
}

/// Newline-delimited watch events read from a streaming response body.
pub struct WatchStream {
    body: ResponseBody,
    buffer: Vec<u8>,
}

impl WatchStream {
    /// The next event; `None` when the server ended the watch.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, ClientError>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(parse_event(&line));
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buffer.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}

fn parse_event(line: &[u8]) -> Result<WatchEvent, ClientError> {
    let mut value: Value =
        serde_json::from_slice(line).map_err(|e| ClientError::Decode(e.to_string()))?;
    let kind = match value["type"].as_str() {
        Some("ADDED") => WatchEventKind::Added,
        Some("MODIFIED") => WatchEventKind::Modified,
        Some("DELETED") => WatchEventKind::Deleted,
        Some("BOOKMARK") => WatchEventKind::Bookmark,
        Some("ERROR") => WatchEventKind::Error,
        other => {
            return Err(ClientError::Decode(format!(
                "unknown watch event type {other:?}"
            )))
        }
    };
    Ok(WatchEvent {
        kind,
        object: value["object"].take(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines_parse_into_events() {
        let e = parse_event(br#"{"type":"MODIFIED","object":{"kind":"Pod"}}"#).unwrap();
        assert_eq!(e.kind, WatchEventKind::Modified);
        assert_eq!(e.object["kind"], "Pod");
        assert!(parse_event(br#"{"type":"WHAT","object":{}}"#).is_err());
    }

    #[test]
    fn api_errors_read_as_the_servers_message() {
        let forbidden = ClientError::Api {
            code: 403,
            reason: "Forbidden".into(),
            message: "pods \"p\" is forbidden: exceeded quota: q".into(),
        };
        assert_eq!(
            format!("Error creating: {forbidden}"),
            "Error creating: pods \"p\" is forbidden: exceeded quota: q"
        );
        assert_eq!(forbidden.code(), Some(403));
    }
}
