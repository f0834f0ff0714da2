//! The node agent (kubelet role). So far: what every agent does for its Node — registration, status and
//! the Lease heartbeat (`node.rs`) — and the hollow mode that registers many nodes and pretends to run their
//! pods, like Kubernetes' kubemark (`hollow.rs`). Running real containers comes with the runtime.

pub mod hollow;
pub mod image;
pub mod network;
pub mod node;

use crate::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Config(String),
}
