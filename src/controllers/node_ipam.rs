//! Node IPAM: gives every node a pod CIDR (`spec.podCIDR`/`podCIDRs`) carved from the cluster CIDR, the
//! lowest one no other node holds, as kube-controller-manager's range allocator does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{run_workers, Context, ControllerError};
use crate::client::WorkQueue;
use crate::util::cidr::Ipv4Cidr;

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let cluster: Ipv4Cidr = match ctx.config.cluster_cidr.parse() {
        Ok(net) => net,
        Err(e) => {
            tracing::error!(error = %e, "node IPAM disabled: bad cluster CIDR");
            return Vec::new();
        }
    };
    let queue = WorkQueue::new();
    // Allocations this process made (node → CIDR), which the informer may not show yet; a deleted
    // node's range becomes free again.
    let allocated: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    {
        let queue = queue.clone();
        let allocated = allocated.clone();
        ctx.informers.nodes.on_change(move |change| {
            let node = change.object();
            let name = node.metadata.name.as_deref().unwrap_or_default();
            if let crate::client::Change::Deleted(_) = change {
                allocated.lock().expect("allocation lock").remove(name);
                return;
            }
            if node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_ref())
                .is_none()
            {
                queue.add(name);
            }
        });
    }
    let ctx = ctx.clone();
    // One worker: allocation reads every node's CIDR and must not race another allocation.
    run_workers("node-ipam", queue, 1, ctx.shutdown.clone(), move |name| {
        let ctx = ctx.clone();
        let allocated = allocated.clone();
        async move { sync(&ctx, cluster, &allocated, &name).await.map(|_| None) }
    })
}

async fn sync(
    ctx: &Context,
    cluster: Ipv4Cidr,
    allocated: &Mutex<HashMap<String, String>>,
    name: &str,
) -> Result<(), ControllerError> {
    let Some(node) = ctx.informers.nodes.get(name) else {
        return Ok(());
    };
    let assigned = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some();
    if assigned
        || allocated
            .lock()
            .expect("allocation lock")
            .contains_key(name)
    {
        return Ok(());
    }
    let mut used: HashSet<String> = ctx
        .informers
        .nodes
        .list()
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
        .collect();
    used.extend(allocated.lock().expect("allocation lock").values().cloned());
    let mask = ctx.config.node_cidr_mask_size;
    let free = (0..)
        .map_while(|i| cluster.subnet(mask, i))
        .map(|net| net.to_string())
        .find(|cidr| !used.contains(cidr))
        .ok_or_else(|| {
            ControllerError::Invalid(format!(
                "cluster CIDR {cluster} has no free /{mask} left for node {name}"
            ))
        })?;
    ctx.client
        .merge_patch(
            &format!("/api/v1/nodes/{name}"),
            &json!({"spec": {"podCIDR": free, "podCIDRs": [free]}}),
        )
        .await?;
    allocated
        .lock()
        .expect("allocation lock")
        .insert(name.to_string(), free.clone());
    tracing::info!(node = name, cidr = %free, "assigned pod CIDR");
    Ok(())
}
