//! Garbage collection by `metadata.ownerReferences`: objects whose owners are all gone are deleted
//! (Background propagation), an owner deleted with Foreground propagation waits for its dependents to go,
//! and an owner deleted with Orphan propagation releases its dependents first.
//!
//! A collection pass reads every stored resource and acts on the whole ownership graph. Passes run when a
//! watch shows something that can orphan or release dependents — an object deleted or marked for
//! deletion — and otherwise every 30 s (which also catches objects created with an owner that does not
//! exist); so a busy cluster that deletes nothing costs nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::api::meta;
use crate::api::resources::{self, ResourceInfo};
use crate::client::{Client, ClientError, WatchEventKind};

/// The longest stretch without a collection pass.
const RESYNC: Duration = Duration::from_secs(30);
/// Deletions that come in a burst are collected in one pass.
const COALESCE: Duration = Duration::from_millis(200);
const RETRY: Duration = Duration::from_secs(1);

pub async fn run(client: Client, mut shutdown: watch::Receiver<bool>) {
    let dirty = Arc::new(Notify::new());
    let watchers: Vec<_> = resources::storage_resources()
        .map(|info| tokio::spawn(watch_deletions(client.clone(), info, dirty.clone())))
        .collect();
    loop {
        if let Err(e) = sync(&client).await {
            tracing::warn!(error = %e, "garbage collector sync failed");
        }
        tokio::select! {
            _ = dirty.notified() => tokio::time::sleep(COALESCE).await,
            _ = tokio::time::sleep(RESYNC) => {}
            _ = shutdown.changed() => break,
        }
    }
    for watcher in watchers {
        watcher.abort();
    }
}

/// Signals `dirty` whenever an object of `info` is deleted or gets a deletion timestamp.
async fn watch_deletions(client: Client, info: &'static ResourceInfo, dirty: Arc<Notify>) {
    let collection = info.path(None, None);
    loop {
        let rv = match client.get(&format!("{collection}?limit=1")).await {
            Ok(list) => list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Err(e) => {
                tracing::debug!(resource = info.plural, error = %e, "garbage collector list failed");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let path = format!("{collection}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}");
        let mut stream = match client.watch(&path).await {
            Ok(stream) => stream,
            Err(_) => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        // Anything may have happened while the watch was down.
        dirty.notify_one();
        while let Some(Ok(event)) = stream.next().await {
            let deleting = event.kind == WatchEventKind::Deleted
                || (event.kind == WatchEventKind::Modified
                    && event.object["metadata"]["deletionTimestamp"].is_string());
            if deleting {
                dirty.notify_one();
            }
        }
    }
}

struct Node {
    info: &'static ResourceInfo,
    obj: Value,
}

impl Node {
    fn path(&self) -> String {
        self.info
            .path(meta::namespace(&self.obj), meta::name(&self.obj))
    }

    fn owner_uids(&self) -> Vec<String> {
        self.obj["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["uid"].as_str().map(str::to_string))
            .collect()
    }
}

pub async fn sync(client: &Client) -> Result<(), ClientError> {
    let mut nodes = Vec::new();
    for info in resources::storage_resources() {
        let list = client.get(&info.path(None, None)).await?;
        for obj in list["items"].as_array().cloned().unwrap_or_default() {
            nodes.push(Node { info, obj });
        }
    }
    let uids: HashSet<String> = nodes
        .iter()
        .filter_map(|n| meta::uid(&n.obj).map(str::to_string))
        .collect();
    let mut dependents: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for owner in n.owner_uids() {
            dependents.entry(owner).or_default().push(i);
        }
    }
    for node in &nodes {
        let uid = meta::uid(&node.obj).unwrap_or_default().to_string();
        let finalizers = meta::finalizers(&node.obj);
        let mine = dependents.get(&uid).cloned().unwrap_or_default();
        if meta::is_deleting(&node.obj) && finalizers.iter().any(|f| f == "orphan") {
            for &d in &mine {
                release(client, &nodes[d], &uid).await?;
            }
            remove_finalizer(client, node, "orphan").await?;
        } else if meta::is_deleting(&node.obj)
            && finalizers.iter().any(|f| f == "foregroundDeletion")
        {
            // The owner goes only after every dependent is gone, not merely marked for deletion.
            if mine.is_empty() {
                remove_finalizer(client, node, "foregroundDeletion").await?;
            }
            for &d in mine.iter().filter(|&&d| !meta::is_deleting(&nodes[d].obj)) {
                delete(client, &nodes[d], "Foreground").await?;
            }
        }
        let owners = node.owner_uids();
        if !owners.is_empty()
            && owners.iter().all(|o| !uids.contains(o))
            && !meta::is_deleting(&node.obj)
        {
            delete(client, node, "Background").await?;
        }
    }
    Ok(())
}

fn tolerate(result: Result<Value, ClientError>) -> Result<(), ClientError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete(client: &Client, node: &Node, propagation: &str) -> Result<(), ClientError> {
    let options =
        json!({"propagationPolicy": propagation, "preconditions": {"uid": meta::uid(&node.obj)}});
    tolerate(client.delete(&node.path(), &options).await)
}

async fn release(client: &Client, node: &Node, owner_uid: &str) -> Result<(), ClientError> {
    let kept: Vec<Value> = node.obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["uid"] != owner_uid)
        .cloned()
        .collect();
    let patch = json!({"metadata": {"resourceVersion": meta::resource_version(&node.obj),
        "ownerReferences": if kept.is_empty() { Value::Null } else { Value::Array(kept) }}});
    tolerate(client.merge_patch(&node.path(), &patch).await)
}

async fn remove_finalizer(
    client: &Client,
    node: &Node,
    finalizer: &str,
) -> Result<(), ClientError> {
    let kept: Vec<String> = meta::finalizers(&node.obj)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    let patch = json!({"metadata": {"resourceVersion": meta::resource_version(&node.obj),
        "finalizers": if kept.is_empty() { Value::Null } else { json!(kept) }}});
    tolerate(client.merge_patch(&node.path(), &patch).await)
}
