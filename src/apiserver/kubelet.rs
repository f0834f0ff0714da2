//! The API server's side of joined node agents: it issues each agent the certificate its kubelet endpoint
//! serves with (at join, to an authenticated caller), and dials that endpoint with mutual TLS for what only
//! the node can answer: the container logs of its pods, and exec sessions in them. The certificates
//! themselves come from the server's PKI through [`KubeletCredentials`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, BodyStream, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Node;
use rustls_pki_types::ServerName;
use tokio_tungstenite::tungstenite::{self, client::ClientRequestBuilder};
use tokio_tungstenite::WebSocketStream;

use super::status::ApiError;
use super::{json_response, ApiServer, Body};
use crate::api::kubelet::{ServingCertificate, ServingCertificateRequest};
use crate::api::logs::LogStream;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server's PKI provides for kubelet endpoints.
pub trait KubeletCredentials: Send + Sync {
    /// A serving certificate for `node` at `addresses`, signed by the cluster CA.
    fn issue_serving_certificate(
        &self,
        node: &str,
        addresses: &[IpAddr],
    ) -> Result<ServingCertificate, String>;
    /// TLS for dialing kubelets: the cluster CA as the only root, and the API server's client certificate.
    fn client_config(&self) -> Arc<rustls::ClientConfig>;
}

fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// `POST /v1-orch/kubelet-serving-certificate`.
pub(super) fn issue(server: &ApiServer, body: &[u8]) -> Result<http::Response<Body>, ApiError> {
    let credentials = server.kubelet_credentials.as_ref().ok_or_else(|| {
        ApiError::BadRequest("this server does not issue kubelet certificates".into())
    })?;
    let request: ServingCertificateRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("serving certificate request: {e}")))?;
    if !valid_node_name(&request.node_name) {
        return Err(ApiError::BadRequest(format!(
            "nodeName: Invalid value: {:?}: a node name must be a lowercase RFC 1123 subdomain",
            request.node_name
        )));
    }
    let issued = credentials
        .issue_serving_certificate(&request.node_name, &request.addresses)
        .map_err(ApiError::Internal)?;
    let value = serde_json::to_value(issued).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &value))
}

/// The address of `node`'s kubelet endpoint: its InternalIP and published port.
fn endpoint(node: &Node) -> Result<SocketAddr, String> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let status = node.status.clone().unwrap_or_default();
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map_or(0, |e| e.port);
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("node {name:?} does not serve a kubelet endpoint"))?;
    let ip = status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse::<IpAddr>().ok())
        .ok_or_else(|| format!("node {name:?} has no InternalIP address"))?;
    Ok(SocketAddr::new(ip, port))
}

type KubeletStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A mutual-TLS connection to `node`'s kubelet endpoint, and its address.
async fn dial(server: &ApiServer, node: &str) -> Result<(SocketAddr, KubeletStream), ApiError> {
    let credentials = server.kubelet_credentials.as_ref().ok_or_else(|| {
        ApiError::BadRequest(format!(
            "node {node:?} cannot be reached: this server has no kubelet credentials"
        ))
    })?;
    let info = crate::api::resources::find("", "v1", "nodes").expect("nodes are served");
    let node: Node = serde_json::from_value(server.registry().get(info, None, node).await?)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let address = endpoint(&node).map_err(ApiError::BadRequest)?;
    let failed = |e: &dyn std::fmt::Display| ApiError::Internal(format!("dial {address}: {e}"));
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| failed(&"dial timeout"))?
        .map_err(|e| failed(&e))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio_rustls::TlsConnector::from(credentials.client_config())
        .connect(ServerName::IpAddress(address.ip().into()), tcp)
        .await
        .map_err(|e| failed(&e))?;
    Ok((address, tls))
}

/// The kubelet's refusal: its text, as a client error when it blamed the request.
fn refusal(code: StatusCode, text: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(text).trim().to_string();
    if code.is_client_error() {
        ApiError::BadRequest(text)
    } else {
        ApiError::Internal(text)
    }
}

/// `GET path_and_query` on `node`'s kubelet; a 200 answer's body as it streams, anything else as the error
/// the kubelet wrote.
pub(super) async fn get(
    server: &ApiServer,
    node: &str,
    path_and_query: &str,
) -> Result<LogStream, ApiError> {
    let (address, tls) = dial(server, node).await?;
    let failed = |e: &dyn std::fmt::Display| {
        ApiError::Internal(format!("Get \"https://{address}{path_and_query}\": {e}"))
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(connection);
    let request = Request::get(path_and_query)
        .header(header::HOST, address.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| failed(&e))?;
    let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
    if response.status() != StatusCode::OK {
        let code = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(refusal(code, &text));
    }
    // An error mid-stream (the node went away) ends the answer: the caller already has a 200.
    let stream = BodyStream::new(response.into_body())
        .take_while(|frame| std::future::ready(frame.is_ok()))
        .filter_map(|frame| std::future::ready(frame.ok().and_then(|f| f.into_data().ok())));
    Ok(Box::pin(stream))
}

/// A WebSocket to `path_and_query` on `node`'s kubelet, speaking `protocol`; the kubelet's refusal as
/// the error it wrote.
pub(super) async fn websocket(
    server: &ApiServer,
    node: &str,
    path_and_query: &str,
    protocol: &str,
) -> Result<WebSocketStream<KubeletStream>, ApiError> {
    let (address, tls) = dial(server, node).await?;
    let url = format!("wss://{address}{path_and_query}");
    let failed = |e: &dyn std::fmt::Display| ApiError::Internal(format!("Get {url:?}: {e}"));
    let uri: http::Uri = url.parse().map_err(|e| failed(&e))?;
    let request = ClientRequestBuilder::new(uri).with_sub_protocol(protocol);
    match tokio_tungstenite::client_async(request, tls).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(refusal(
            response.status(),
            response.body().as_deref().unwrap_or_default(),
        )),
        Err(e) => Err(failed(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_names_must_be_subdomains() {
        assert!(valid_node_name("worker-1.edge"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("Worker"));
        assert!(!valid_node_name("-worker"));
        assert!(!valid_node_name("a..b"));
    }

    #[test]
    fn the_endpoint_is_the_internal_ip_and_the_published_port() {
        let node = |status: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "w"}, "status": status})).unwrap()
        };
        let served = node(json!({
            "addresses": [{"type": "Hostname", "address": "w"}, {"type": "InternalIP", "address": "10.0.0.7"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}},
        }));
        assert_eq!(
            endpoint(&served).unwrap(),
            "10.0.0.7:10251".parse().unwrap()
        );
        let embedded = node(json!({"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]}));
        assert_eq!(
            endpoint(&embedded).unwrap_err(),
            "node \"w\" does not serve a kubelet endpoint"
        );
        let no_ip = node(json!({"daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}));
        assert_eq!(
            endpoint(&no_ip).unwrap_err(),
            "node \"w\" has no InternalIP address"
        );
    }
}
