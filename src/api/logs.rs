//! The contract between the API server's `pods/log` and a node's container logs: which run of which
//! container, and how much of it, and the trait a node agent implements to stream it. Types only; the API
//! server picks the options from the pod, the agent reads its files.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use k8s_openapi::api::core::v1::Pod;

pub type LogStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// What `kubectl logs` asks for, once the container and its run are settled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub container: String,
    /// Which run: the container's restart count for the current one, one less for `previous`.
    pub attempt: u32,
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since_seconds: Option<i64>,
    pub limit_bytes: Option<usize>,
}

/// The container logs of one node.
pub trait PodLogs: Send + Sync {
    fn node_name(&self) -> &str;
    fn stream(&self, pod: &Pod, options: LogOptions) -> Result<LogStream, String>;
}
