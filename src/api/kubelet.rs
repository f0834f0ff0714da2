//! The contract between the API server and the HTTPS endpoint of a joined node's kubelet: the exchange in
//! which a joining agent gets the certificate that endpoint serves with, and the kubelet paths the server
//! dials. Types only.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// kubelet's default `--port`, which a node publishes in `status.daemonEndpoints.kubeletEndpoint.Port`.
pub const DEFAULT_PORT: u16 = 10250;

/// Where an authenticated agent asks the server for its serving certificate.
pub const SERVING_CERTIFICATE_PATH: &str = "/v1-orch/kubelet-serving-certificate";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServingCertificateRequest {
    pub node_name: String,
    /// The addresses the server will dial the endpoint at (the node's InternalIP).
    pub addresses: Vec<IpAddr>,
}

/// A certificate for the node's name and addresses, signed by the cluster CA, and its private key (PEM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingCertificate {
    pub certificate: String,
    pub key: String,
}

/// kubelet's path for one container's log; the query carries `pods/log`'s options unchanged.
pub fn container_logs_path(namespace: &str, pod: &str, container: &str) -> String {
    format!("/containerLogs/{namespace}/{pod}/{container}")
}
