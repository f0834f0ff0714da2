//! kubelet's HTTPS endpoint on a joined node (kubelet's `--port`, 10250 by default): what the API server can
//! only get from the node itself. It serves with a certificate the server issues at join, and accepts only
//! callers holding a client certificate from the cluster CA, as the API server does when it dials it. It
//! answers kubelet's `GET /containerLogs/{namespace}/{pod}/{container}` (`kubectl logs` for pods here,
//! with `pods/log`'s query), `/exec/{namespace}/{pod}/{container}` and `/attach/…` (exec and attach
//! sessions, which the API server relays from `pods/exec` and `pods/attach`),
//! `/portForward/{namespace}/{pod}` (port-forward sessions, relayed from `pods/portforward`) and
//! `GET /healthz`. Sessions come as a GET upgraded to a WebSocket, as the API server sends them, or as a
//! POST upgraded to SPDY/3.1, as kubelet also takes them. The server's embedded agent needs none of this: the API server
//! reads its logs and runs its exec, attach and port-forward sessions in-process.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::Pod;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use super::exec::NodeExec;
use super::logs::NodeLogs;
use super::portforward::NodePortForward;
use crate::agent::AgentError;
use crate::api::exec::{self, ExecOptions, PodExec};
use crate::api::kubelet::{
    ServingCertificate, ServingCertificateRequest, SERVING_CERTIFICATE_PATH,
};
use crate::api::logs::{LogOptions, PodLogs};
use crate::api::portforward::{self, PodPortForward};
use crate::client::{Api, Client};
use crate::util::upgrade::Upgrade;

type Body = UnsyncBoxBody<Bytes, Infallible>;

fn text(code: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(message.into()).boxed_unsync());
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What the endpoint answers from: the node's container logs, exec sessions and port-forwarding.
pub struct NodeStreams {
    pub logs: NodeLogs,
    pub exec: NodeExec,
    pub port_forward: NodePortForward,
}

/// Gets this node's serving certificate from the server, binds `port` on every address (as kubelet's
/// default `--address` does) and serves until `shutdown`. `ca_pem` is the cluster CA the agent pinned at
/// join; only client certificates it signed are let in.
pub async fn start(
    client: Client,
    streams: NodeStreams,
    node_ip: IpAddr,
    port: u16,
    ca_pem: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    let request = ServingCertificateRequest {
        node_name: streams.logs.node_name.clone(),
        addresses: vec![node_ip],
    };
    let answer = client
        .request(
            Method::POST,
            SERVING_CERTIFICATE_PATH,
            Some(&serde_json::to_value(&request).expect("a request serializes")),
            "application/json",
        )
        .await?;
    let issued: ServingCertificate = serde_json::from_value(answer)
        .map_err(|e| AgentError::Config(format!("the server's serving certificate: {e}")))?;
    let tls = tls_config(&issued, ca_pem).map_err(AgentError::Config)?;
    let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        AgentError::Config(format!("binding the kubelet endpoint on {address}: {e}"))
    })?;
    tracing::info!(%address, "kubelet endpoint is serving");
    let endpoint = Arc::new(Endpoint {
        client,
        logs: streams.logs,
        exec: Arc::new(streams.exec),
        port_forward: streams.port_forward,
    });
    let handle = move |req, _certificate| {
        let endpoint = endpoint.clone();
        async move { endpoint.handle(req).await }
    };
    Ok(tokio::spawn(crate::util::https::serve(
        listener,
        Arc::new(tls),
        handle,
        shutdown,
    )))
}

/// The issued certificate, and a verifier that demands a client certificate from the cluster CA.
fn tls_config(issued: &ServingCertificate, ca_pem: &str) -> Result<rustls::ServerConfig, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.certificate.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("serving certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key.as_bytes())
        .map_err(|e| format!("serving key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| format!("cluster CA: {e}"))?)
            .map_err(|e| format!("cluster CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("client verifier: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

struct Endpoint {
    client: Client,
    logs: NodeLogs,
    exec: Arc<dyn PodExec>,
    port_forward: NodePortForward,
}

impl Endpoint {
    async fn handle<B>(&self, mut req: Request<B>) -> Response<Body> {
        let path = req.uri().path().to_string();
        // Streaming sessions come as a GET upgraded to a WebSocket, or as a POST upgraded to SPDY.
        let streaming = ["/exec/", "/attach/", "/portForward/"]
            .iter()
            .any(|prefix| path.starts_with(prefix));
        if !(req.method() == Method::GET || streaming && req.method() == Method::POST) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed");
        }
        if path == "/healthz" {
            return text(StatusCode::OK, "ok");
        }
        let query: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let answer = match parts.as_slice() {
            ["containerLogs", namespace, pod, container] => {
                self.container_logs(namespace, pod, container, &query).await
            }
            [verb @ ("exec" | "attach"), namespace, pod, container] => {
                let attach = *verb == "attach";
                self.exec(namespace, pod, container, &query, attach, &mut req)
                    .await
            }
            ["portForward", namespace, pod] => self.port_forward(namespace, pod, &mut req).await,
            _ => Err((StatusCode::NOT_FOUND, "404 page not found".to_string())),
        };
        answer.unwrap_or_else(|(code, message)| text(code, message))
    }

    /// The pod, if it is on this node.
    async fn pod_here(&self, namespace: &str, name: &str) -> Result<Pod, (StatusCode, String)> {
        let pod: Pod = match Api::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
        {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("pod {namespace}/{name} not found"),
                ))
            }
            Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node != Some(self.logs.node_name.as_str()) {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "pod {namespace}/{name} is not on node {:?}",
                    self.logs.node_name
                ),
            ));
        }
        Ok(pod)
    }

    async fn exec<B>(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        query: &[(String, String)],
        attach: bool,
        req: &mut Request<B>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let pod = self.pod_here(namespace, name).await?;
        let values = |key: &str| {
            query
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let options = if attach {
            ExecOptions::resolve_attach(&pod, Some(container), values)
        } else {
            ExecOptions::resolve(&pod, Some(container), values)
        }
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let upgrade =
            Upgrade::accept(req, exec::PROTOCOLS).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        exec::start(self.exec.clone(), &pod, options, upgrade)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))
    }

    async fn port_forward<B>(
        &self,
        namespace: &str,
        name: &str,
        req: &mut Request<B>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let pod = self.pod_here(namespace, name).await?;
        let dial = self
            .port_forward
            .locate(&pod)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let upgrade = Upgrade::accept(req, portforward::PROTOCOLS)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let response = upgrade.response();
        let pod = format!("{namespace}/{name}");
        tokio::spawn(async move {
            if let Some(connection) = upgrade.connection().await {
                portforward::serve(dial, pod, connection.into_pipe()).await;
            }
        });
        Ok(response)
    }

    async fn container_logs(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        query: &[(String, String)],
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let pod = self.pod_here(namespace, name).await?;
        let lookup = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let options = LogOptions::resolve(&pod, Some(container), lookup)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let stream = self
            .logs
            .stream(&pod, options)
            .map_err(|e| (StatusCode::BAD_REQUEST, e))?
            .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
        let mut resp = Response::new(StreamBody::new(stream).boxed_unsync());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(resp)
    }
}
