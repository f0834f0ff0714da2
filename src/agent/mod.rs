//! The node agent: what every agent does for its Node — registration, status and the Lease heartbeat
//! (`node.rs`); the kubelet that runs the node's pods (`kubelet/`) on the container runtime (`runtime/`,
//! one shim per container, forked by `orch shim-launcher`), the pod network (`network/`) and images
//! (`image/`); and the hollow mode that registers many nodes and pretends to run their pods, like
//! Kubernetes' kubemark (`hollow.rs`).

pub mod hollow;
pub mod image;
pub mod kubelet;
pub mod network;
pub mod node;
pub mod runtime;

use crate::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Config(String),
}
