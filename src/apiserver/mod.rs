//! The HTTP face of the control plane: authentication, discovery, OpenAPI, and the generic verbs on every
//! resource (get, list, watch, create, update, patch, delete, deletecollection, status/scale/binding
//! subresources), with JSON, YAML and protobuf request bodies and JSON or Table responses. Transport
//! (TLS, sockets) lives in `listener`; this module only maps requests to responses.

pub mod auth;
pub mod body;
pub mod discovery;
mod exec;
mod handlers;
pub mod kubelet;
pub mod listener;
pub mod logs;
mod metrics;
pub mod openapi;
pub mod patch;
mod portforward;
pub mod protobuf;
pub mod request;
pub mod status;
pub mod table;
mod watch;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited};
use serde_json::{json, Value};

use crate::registry::Registry;

pub use auth::{Authenticator, User};
use request::Target;
use status::ApiError;

/// The Kubernetes minor version of the API types served (k8s-openapi's `v1_34`). kubectl's dispatcher on
/// these machines picks its client from this number.
pub const KUBERNETES_MINOR: u32 = 34;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

pub struct ApiServer {
    registry: Arc<Registry>,
    auth: Authenticator,
    openapi: openapi::OpenApi,
    server_address: String,
    ca_bundle: Option<String>,
    /// The embedded node agent's container logs, once it runs.
    pod_logs: std::sync::OnceLock<Arc<dyn logs::PodLogs>>,
    pod_exec: std::sync::OnceLock<Arc<dyn crate::streaming::exec::PodExec>>,
    pod_port_forward: std::sync::OnceLock<Arc<dyn crate::streaming::portforward::PodPortForward>>,
    /// The embedded node agent's resource usage, once it runs.
    node_summary: std::sync::OnceLock<Arc<dyn crate::api::stats::SummaryProvider>>,
    kubelet_credentials: Option<Arc<dyn kubelet::KubeletCredentials>>,
}

/// Parsed query parameters; Go clients encode spaces as `+`.
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Query(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated key, in order.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1"))
    }
}

/// What every response helper needs from the request.
pub struct RequestContext {
    pub accept: String,
    pub user_agent: String,
    pub user: User,
}

impl ApiServer {
    pub fn new(registry: Arc<Registry>, auth: Authenticator, server_address: String) -> Self {
        ApiServer {
            registry,
            auth,
            openapi: openapi::OpenApi::default(),
            server_address,
            ca_bundle: None,
            pod_logs: std::sync::OnceLock::new(),
            pod_exec: std::sync::OnceLock::new(),
            pod_port_forward: std::sync::OnceLock::new(),
            node_summary: std::sync::OnceLock::new(),
            kubelet_credentials: None,
        }
    }

    /// Serves `pods/log` for the pods of the node `logs` belongs to.
    pub fn set_pod_logs(&self, logs: Arc<dyn logs::PodLogs>) {
        let _ = self.pod_logs.set(logs);
    }

    /// Serves `pods/exec` for the pods of the node `exec` belongs to.
    pub fn set_pod_exec(&self, exec: Arc<dyn crate::streaming::exec::PodExec>) {
        let _ = self.pod_exec.set(exec);
    }

    /// Serves `pods/portforward` for the pods of the node `forward` belongs to.
    pub fn set_pod_port_forward(
        &self,
        forward: Arc<dyn crate::streaming::portforward::PodPortForward>,
    ) {
        let _ = self.pod_port_forward.set(forward);
    }

    /// Serves `metrics.k8s.io` for the node `summary` belongs to.
    pub fn set_node_summary(&self, summary: Arc<dyn crate::api::stats::SummaryProvider>) {
        let _ = self.node_summary.set(summary);
    }

    /// The CA certificate served unauthenticated at `/cacerts`, which joining agents pin by its hash.
    pub fn with_ca_bundle(mut self, pem: String) -> Self {
        self.ca_bundle = Some(pem);
        self
    }

    /// Issues joining agents their kubelet serving certificates and dials their kubelet endpoints.
    pub fn with_kubelet_credentials(
        mut self,
        credentials: Arc<dyn kubelet::KubeletCredentials>,
    ) -> Self {
        self.kubelet_credentials = Some(credentials);
        self
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves one request. `identity` is what the transport proved about the caller (a client certificate),
    /// or a trusted in-process caller.
    pub async fn handle<B>(
        self: &Arc<Self>,
        req: Request<B>,
        identity: Option<User>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let started = std::time::Instant::now();
        let response = match self.route(req, identity).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        };
        tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
        response
    }

    async fn route<B>(
        self: &Arc<Self>,
        req: Request<B>,
        identity: Option<User>,
    ) -> Result<Response<Body>, ApiError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/readyz") | (&Method::GET, "/livez") | (&Method::GET, "/healthz") => {
                return Ok(text_response(StatusCode::OK, "ok"));
            }
            (&Method::GET, "/version") => {
                return Ok(json_response(StatusCode::OK, &version_info()))
            }
            (&Method::GET, "/cacerts") => {
                if let Some(pem) = &self.ca_bundle {
                    let mut resp = Response::new(full_body(pem.clone()));
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/x-pem-file"),
                    );
                    return Ok(resp);
                }
            }
            _ => {}
        }
        let user = match identity {
            Some(user) => user,
            None => self
                .auth
                .authenticate(req.headers())
                .ok_or(ApiError::Unauthorized)?,
        };
        let header_str = |name: header::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let ctx = RequestContext {
            accept: header_str(header::ACCEPT),
            user_agent: header_str(header::USER_AGENT),
            user,
        };
        let query = Query::parse(req.uri().query());
        if path == crate::api::kubelet::SERVING_CERTIFICATE_PATH && req.method() == Method::POST {
            let body = read_body(req.into_body()).await?;
            return kubelet::issue(self, &body);
        }
        if path == "/openapi/v3" || path.starts_with("/openapi/v3/") {
            return self.serve_openapi(&path, &query);
        }
        if path == "/openapi/v2" {
            return Err(ApiError::not_found_path());
        }
        let target = request::parse_path(&path);
        match &target {
            Target::Discovery { .. } if req.method() == Method::GET => {
                self.serve_discovery(&target, &ctx)
            }
            Target::Resource { .. } => {
                let resource = request::resolve(req.method(), &target, query.flag("watch"))
                    .map_err(|e| match e {
                        request::RequestError::NotFound => ApiError::not_found_path(),
                        request::RequestError::MethodNotAllowed => {
                            ApiError::MethodNotAllowed(e.to_string())
                        }
                    })?;
                if crate::api::resources::is_node_reported(resource.info) {
                    return metrics::serve(self, &resource, &query, &ctx).await;
                }
                let namespace = resource.namespace.clone().unwrap_or_default();
                let name = resource.name.clone().unwrap_or_default();
                match resource.subresource.as_deref() {
                    Some(verb @ ("exec" | "attach")) => {
                        let attach = verb == "attach";
                        return exec::serve(self, &namespace, &name, &query, attach, req).await;
                    }
                    Some("portforward") => {
                        return portforward::serve(self, &namespace, &name, req).await
                    }
                    _ => {}
                }
                let content_type = req
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = read_body(req.into_body()).await?;
                handlers::serve(self, resource, &query, &ctx, content_type.as_deref(), body).await
            }
            _ => Err(ApiError::not_found_path()),
        }
    }

    fn serve_discovery(
        &self,
        target: &Target,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let Target::Discovery {
            group,
            version,
            legacy_root,
        } = target
        else {
            return Err(ApiError::not_found_path());
        };
        match (group, version) {
            (None, None) => {
                if let Some(content_type) = discovery::wants_aggregated(&ctx.accept) {
                    let api_version = if content_type == discovery::AGGREGATED_V2 {
                        "apidiscovery.k8s.io/v2"
                    } else {
                        "apidiscovery.k8s.io/v2beta1"
                    };
                    let doc = discovery::aggregated(*legacy_root, api_version);
                    return Ok(json_response_typed(StatusCode::OK, &doc, content_type));
                }
                let doc = if *legacy_root {
                    discovery::api_versions(&self.server_address)
                } else {
                    discovery::api_group_list()
                };
                Ok(json_response(StatusCode::OK, &doc))
            }
            (Some(g), None) => discovery::api_group_document(g)
                .map(|doc| json_response(StatusCode::OK, &doc))
                .ok_or_else(ApiError::not_found_path),
            (Some(g), Some(v)) => discovery::api_resource_list(g, v)
                .map(|doc| json_response(StatusCode::OK, &doc))
                .ok_or_else(ApiError::not_found_path),
            (None, Some(_)) => Err(ApiError::not_found_path()),
        }
    }

    fn serve_openapi(&self, path: &str, query: &Query) -> Result<Response<Body>, ApiError> {
        let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
        if rest.is_empty() {
            return Ok(json_response(StatusCode::OK, &self.openapi.index()));
        }
        let (doc, hash) = self
            .openapi
            .document(rest)
            .ok_or_else(ApiError::not_found_path)?;
        let mut resp = json_response(StatusCode::OK, doc);
        // The URL carries the content hash, so a client may cache the document for good (as Kubernetes does).
        if query.get("hash") == Some(hash.as_str()) {
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
        }
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
            resp.headers_mut().insert(header::ETAG, etag);
        }
        Ok(resp)
    }
}

async fn read_body<B>(body: B) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, body::MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::TooLarge)
        }
        Err(e) => Err(ApiError::BadRequest(format!(
            "error reading request body: {e}"
        ))),
    }
}

pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR.to_string(),
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0+orch-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

pub fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    json_response_typed(code, value, "application/json")
}

pub fn json_response_typed(
    code: StatusCode,
    value: &Value,
    content_type: &'static str,
) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(full_body(bytes));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn text_response(code: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(full_body(text));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code(), &e.status())
}
