//! Namespace lifecycle: a namespace being deleted has everything in it deleted, and once it is empty its
//! `kubernetes` finalizer is removed through the finalize subresource, which lets the registry remove it.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::meta;
use crate::api::resources;
use crate::client::{Client, ClientError};

const RESYNC: Duration = Duration::from_millis(500);

pub async fn run(client: Client, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = sync_all(&client).await {
            tracing::warn!(error = %e, "namespace controller sync failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(RESYNC) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn sync_all(client: &Client) -> Result<(), ClientError> {
    let list = client.get("/api/v1/namespaces").await?;
    for ns in list["items"].as_array().into_iter().flatten() {
        if meta::is_deleting(ns) {
            sync(client, ns).await?;
        }
    }
    Ok(())
}

/// Deletes the namespace's content; finalizes the namespace when nothing is left.
pub async fn sync(client: &Client, ns: &Value) -> Result<(), ClientError> {
    let name = meta::name(ns).unwrap_or_default();
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
        return Ok(());
    }
    let mut finalized = ns.clone();
    finalized["spec"]["finalizers"] = json!([]);
    match client
        .update(&format!("/api/v1/namespaces/{name}/finalize"), &finalized)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}
