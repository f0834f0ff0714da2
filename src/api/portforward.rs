//! The contract between the API server's `pods/portforward` and a node: kubectl opens a SPDY/3.1
//! session (tunneled in WebSocket binary messages under the subprotocol `SPDY/3.1+portforward.k8s.io`,
//! or on a connection upgraded to `SPDY/3.1`), and for every local connection it accepts, a pair of
//! streams with the same `requestid` header: `error`, on which the node reports a failure, and `data`,
//! the connection's bytes to and from the pod's `port`. No I/O: the sessions are
//! `streaming::portforward`'s. A joined node's kubelet endpoint serves them at
//! `/portForward/{namespace}/{pod}`.

use crate::util::upgrade::Protocols;

/// The WebSocket subprotocol kubectl 1.30+ offers: SPDY/3.1 bytes in binary messages.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The `X-Stream-Protocol-Version` of the SPDY upgrade kubectl falls back to.
pub const STREAM_PROTOCOL: &str = "portforward.k8s.io";

/// kubelet's path for port-forwarding to a pod.
pub fn portforward_path(namespace: &str, pod: &str) -> String {
    format!("/portForward/{namespace}/{pod}")
}

/// What a port-forward endpoint speaks.
pub const PROTOCOLS: Protocols = Protocols {
    websocket: &[WEBSOCKET_PROTOCOL],
    spdy: &[STREAM_PROTOCOL],
};
