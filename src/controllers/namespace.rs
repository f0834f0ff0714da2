//! Namespace lifecycle: a namespace being deleted has everything in it deleted, and once it is empty its
//! `kubernetes` finalizer is removed through the finalize subresource, which lets the registry remove it.
//! It acts on the namespaces informer's changes, and looks again at a deleting namespace for as long as
//! something is left in it; a node with no namespace being deleted costs it nothing.

use std::time::Duration;

use serde_json::json;

use super::{run_workers, Context};
use crate::api::meta;
use crate::api::resources;
use crate::client::{Change, Client, ClientError, WorkQueue};

/// How soon a deleting namespace that still holds objects is looked at again: what is left is being
/// deleted, and nothing about the namespace itself changes when the last of it goes.
const RECHECK: Duration = Duration::from_millis(500);

pub fn start(ctx: &Context) -> Vec<tokio::task::JoinHandle<()>> {
    let queue = WorkQueue::new();
    {
        let queue = queue.clone();
        ctx.informers.namespaces.on_change(move |change| {
            let ns = change.object();
            if ns.metadata.deletion_timestamp.is_some() && !matches!(change, Change::Deleted(_)) {
                queue.add(ns.metadata.name.as_deref().unwrap_or_default());
            }
        });
    }
    let client = ctx.client.clone();
    run_workers("namespace", queue, 1, ctx.shutdown.clone(), move |name| {
        let client = client.clone();
        async move { Ok(sync(&client, &name).await?) }
    })
}

/// Deletes the namespace's content; finalizes the namespace when nothing is left, and otherwise says
/// when to look again.
async fn sync(client: &Client, name: &str) -> Result<Option<Duration>, ClientError> {
    let ns = match client.get(&format!("/api/v1/namespaces/{name}")).await {
        Ok(ns) => ns,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    if !meta::is_deleting(&ns) {
        return Ok(None);
    }
    let mut remaining = 0;
    for info in resources::storage_resources().filter(|r| r.namespaced) {
        let path = info.path(Some(name), None);
        let items = client.get(&path).await?;
        let items = items["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            continue;
        }
        remaining += items.len();
        for item in items.iter().filter(|i| !meta::is_deleting(i)) {
            let item_path = info.path(Some(name), meta::name(item));
            match client
                .delete(&item_path, &json!({"propagationPolicy": "Background"}))
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        return Ok(Some(RECHECK));
    }
    let mut finalized = ns;
    finalized["spec"]["finalizers"] = json!([]);
    match client
        .update(&format!("/api/v1/namespaces/{name}/finalize"), &finalized)
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) if e.is_conflict() => Ok(Some(RECHECK)),
        Err(e) => Err(e),
    }
}
