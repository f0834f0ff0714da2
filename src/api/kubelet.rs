//! The contract between the API server and the HTTPS endpoint of a joined node's kubelet: the exchange in
//! which a joining agent gets the certificate that endpoint serves with, the kubelet paths the server
//! dials, and which container of a pod a logs or exec request means. No I/O.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;
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

/// The container a logs or exec request means, with kubelet's errors: the one named (from the path or the
/// query), else the default-container annotation's, else the pod's only container.
pub fn resolve_container(pod: &Pod, requested: Option<&str>) -> Result<String, String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let default = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .cloned();
    let container = match requested.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => match (default, names.as_slice()) {
            (Some(d), _) => d,
            (None, [only]) => only.to_string(),
            _ => {
                return Err(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                ))
            }
        },
    };
    let known = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.name == container)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == container);
    if !known {
        return Err(format!("container {container} is not valid for pod {name}"));
    }
    Ok(container)
}
