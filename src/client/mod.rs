//! The one client for everything that is not the API server itself. In-process it calls the API server's
//! request handler directly (no socket), so controllers get the same validation and admission as users.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::apiserver::{ApiServer, User};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{code}: {message}")]
    Api {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("invalid response: {0}")]
    Decode(String),
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { code: 404, .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, ClientError::Api { code: 409, .. })
    }
}

#[derive(Clone)]
pub struct Client {
    server: Arc<ApiServer>,
    user: User,
}

impl Client {
    pub fn in_process(server: Arc<ApiServer>, user: User) -> Self {
        Client { server, user }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<Value, ClientError> {
        let bytes = body
            .map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default()))
            .unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "orch-controller/v1")
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let resp = self.server.handle(req, Some(self.user.clone())).await;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Decode(format!("{e:?}")))?
            .to_bytes();
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))?;
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
}
