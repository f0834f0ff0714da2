//! The kubelet role of the agent.

pub mod backoff;
pub mod container;
pub mod env;
pub mod plan;
pub mod status;
pub mod volumes;
