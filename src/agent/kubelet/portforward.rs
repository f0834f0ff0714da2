//! The node's side of `kubectl port-forward`: a pod's port as the pod itself sees it, on the loopback of
//! its network namespace (the host's for hostNetwork pods), which is where kubelet's CRI runtimes dial
//! too. A port bound to 127.0.0.1 inside the pod is reachable; nothing is exposed on the pod IP.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tokio::net::TcpStream;

use crate::agent::network::netns;
use crate::streaming::portforward::{Dialer, PodPortForward};

pub struct NodePortForward {
    pub node_name: String,
    /// Where the pods' network namespaces are bound, by pod uid.
    pub netns_dir: PathBuf,
}

impl PodPortForward for NodePortForward {
    fn node_name(&self) -> &str {
        &self.node_name
    }

    fn locate(&self, pod: &Pod) -> Result<Dialer, String> {
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
        {
            return Ok(Arc::new(|port| {
                Box::pin(async move {
                    TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                        .await
                        .map_err(|e| format!("failed to connect to localhost:{port}: {e}"))
                })
            }));
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let netns = self.netns_dir.join(uid);
        if uid.is_empty() || !netns.exists() {
            return Err(format!(
                "unable to upgrade connection: pod {} has no network namespace on node {:?} (it is not running)",
                pod.metadata.name.as_deref().unwrap_or_default(),
                self.node_name
            ));
        }
        Ok(Arc::new(move |port| {
            let netns = netns.clone();
            Box::pin(async move {
                let failed = |e: &dyn std::fmt::Display| {
                    format!(
                        "failed to connect to localhost:{port} inside the pod's network namespace: {e}"
                    )
                };
                let socket = netns::tcp_socket(&netns).await.map_err(|e| failed(&e))?;
                socket
                    .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
                    .await
                    .map_err(|e| failed(&e))
            })
        }))
    }
}
