//! Informers: a reflector that lists a resource, then watches from the list's resourceVersion (relisting
//! after 410 Gone), keeps a local cache of typed objects, and tells registered handlers what changed.
//! Handlers run on the reflector task and should only enqueue keys.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::{api::collection_path, Client, ClientError, WatchEventKind};

/// How long one watch request lasts before the reflector renews it.
const WATCH_TIMEOUT_SECONDS: u32 = 300;
const RETRY_DELAY: Duration = Duration::from_millis(500);

pub enum Change<K> {
    Added(Arc<K>),
    Modified { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now, or as it was last seen before deletion.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Modified { new, .. } => new,
        }
    }
}

type Handler<K> = Arc<dyn Fn(&Change<K>) + Send + Sync>;

/// The cache key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key_of(meta: &ObjectMeta) -> String {
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a cache key into namespace (empty when cluster-scoped) and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

pub struct Informer<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    client: Client,
    list_path: String,
    cache: RwLock<HashMap<String, Arc<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static,
{
    /// Every object of the kind, in all namespaces.
    pub fn new(client: Client) -> Self {
        Self::with_query(client, "")
    }

    /// Only objects matching a list query, e.g. `fieldSelector=spec.nodeName%3Dnode-1`.
    pub fn with_query(client: Client, query: &str) -> Self {
        let mut list_path = collection_path::<K>(None);
        if !query.is_empty() {
            list_path.push('?');
            list_path.push_str(query);
        }
        Informer {
            inner: Arc::new(Inner {
                client,
                list_path,
                cache: RwLock::new(HashMap::new()),
                handlers: RwLock::new(Vec::new()),
                synced: watch::channel(false).0,
            }),
        }
    }

    /// Registers a handler; register before `run` to see the initial list as additions.
    pub fn on_change(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.inner
            .handlers
            .write()
            .expect("handlers lock")
            .push(Arc::new(handler));
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.inner
            .cache
            .read()
            .expect("cache lock")
            .get(key)
            .cloned()
    }

    pub fn get_in(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        if namespace.is_empty() {
            self.get(name)
        } else {
            self.get(&format!("{namespace}/{name}"))
        }
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner
            .cache
            .read()
            .expect("cache lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn list_in(&self, namespace: &str) -> Vec<Arc<K>> {
        self.inner
            .cache
            .read()
            .expect("cache lock")
            .values()
            .filter(|o| o.metadata().namespace.as_deref() == Some(namespace))
            .cloned()
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.inner
            .cache
            .read()
            .expect("cache lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn has_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until the first list has been loaded into the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// Runs the reflector until `shutdown` turns true.
    pub fn run(&self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let informer = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = informer.reflect() => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        })
    }

    async fn reflect(&self) {
        loop {
            let rv = match self.list_and_replace().await {
                Ok(rv) => rv,
                Err(e) => {
                    tracing::warn!(path = %self.inner.list_path, error = %e, "list failed");
                    tokio::time::sleep(RETRY_DELAY).await;
                    continue;
                }
            };
            self.inner.synced.send_replace(true);
            if let Err(e) = self.watch_from(rv).await {
                if !e.is_gone() {
                    tracing::warn!(path = %self.inner.list_path, error = %e, "watch failed");
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }

    async fn list_and_replace(&self) -> Result<String, ClientError> {
        let mut list = self.inner.client.get(&self.inner.list_path).await?;
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut fresh = HashMap::new();
        if let serde_json::Value::Array(items) = list["items"].take() {
            for item in items {
                match serde_json::from_value::<K>(item) {
                    Ok(obj) => {
                        fresh.insert(key_of(obj.metadata()), Arc::new(obj));
                    }
                    Err(e) => tracing::warn!(kind = K::KIND, error = %e, "undecodable object"),
                }
            }
        }
        let changes = {
            let mut cache = self.inner.cache.write().expect("cache lock");
            let mut changes = Vec::new();
            for (key, old) in cache.iter() {
                if !fresh.contains_key(key) {
                    changes.push(Change::Deleted(old.clone()));
                }
            }
            for (key, new) in &fresh {
                match cache.get(key) {
                    None => changes.push(Change::Added(new.clone())),
                    Some(old)
                        if old.metadata().resource_version != new.metadata().resource_version =>
                    {
                        changes.push(Change::Modified {
                            old: old.clone(),
                            new: new.clone(),
                        })
                    }
                    Some(_) => {}
                }
            }
            *cache = fresh;
            changes
        };
        self.notify(&changes);
        Ok(rv)
    }

    /// Watches until the server ends the stream (Ok, to be renewed) or an error occurs.
    async fn watch_from(&self, mut rv: String) -> Result<(), ClientError> {
        loop {
            let separator = if self.inner.list_path.contains('?') {
                '&'
            } else {
                '?'
            };
            let path = format!(
                "{}{separator}watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_TIMEOUT_SECONDS}&resourceVersion={rv}",
                self.inner.list_path
            );
            let mut stream = self.inner.client.watch(&path).await?;
            while let Some(event) = stream.next().await {
                let event = event?;
                if event.kind == WatchEventKind::Error {
                    let code = event.object["code"].as_u64().unwrap_or(500) as u16;
                    return Err(ClientError::Api {
                        code,
                        reason: event.object["reason"].as_str().unwrap_or("").into(),
                        message: event.object["message"].as_str().unwrap_or("").into(),
                    });
                }
                if let Some(v) = event.object["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
                if event.kind == WatchEventKind::Bookmark {
                    continue;
                }
                let obj = match serde_json::from_value::<K>(event.object) {
                    Ok(obj) => Arc::new(obj),
                    Err(e) => {
                        tracing::warn!(kind = K::KIND, error = %e, "undecodable object");
                        continue;
                    }
                };
                let key = key_of(obj.metadata());
                let change = {
                    let mut cache = self.inner.cache.write().expect("cache lock");
                    if event.kind == WatchEventKind::Deleted {
                        cache.remove(&key);
                        Change::Deleted(obj)
                    } else {
                        match cache.insert(key, obj.clone()) {
                            Some(old) => Change::Modified { old, new: obj },
                            None => Change::Added(obj),
                        }
                    }
                };
                self.notify(std::slice::from_ref(&change));
            }
        }
    }

    fn notify(&self, changes: &[Change<K>]) {
        let handlers = self.inner.handlers.read().expect("handlers lock").clone();
        for change in changes {
            for handler in &handlers {
                handler(change);
            }
        }
    }
}
