//! Garbage collection by `metadata.ownerReferences`: objects whose owners are all gone are deleted
//! (Background propagation), an owner deleted with Foreground propagation waits for its dependents to go,
//! and an owner deleted with Orphan propagation releases its dependents first.
//!
//! A collection pass reads every stored resource and acts on the whole ownership graph. Passes run when a
//! watch shows a change a pass would act on ([`Triggers`]): an owner deleted, an owner marked for
//! deletion with the `orphan` or `foregroundDeletion` finalizer, a dependent of such an owner deleted,
//! an object naming an owner just deleted, or an object naming an owner no pass or event has shown
//! named before (which catches objects created with an owner that never existed); and otherwise every
//! 5 minutes as a safety net (every 30 s while an owner waits in the foreground, every second after a
//! failed pass). Before a dependent is deleted its owners are looked up by name and uid. Deleting
//! objects that own nothing, such as bare pods, and changes to dependents of known owners, such as pods'
//! status, cost no pass: a node's idle control plane reads no resource for the collector.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::api::meta;
use crate::api::resources::{self, ResourceInfo};
use crate::client::{Client, ClientError, WatchEventKind};

/// The longest stretch without a collection pass.
const RESYNC: Duration = Duration::from_secs(300);
/// The longest stretch while an owner waits in the foreground: a dependent that drops its reference to
/// the owner (rather than going) shows in no event the collector can tie to it.
const WAITING_RESYNC: Duration = Duration::from_secs(30);
/// Deletions that come in a burst are collected in one pass.
const COALESCE: Duration = Duration::from_millis(200);
const RETRY: Duration = Duration::from_secs(1);
/// How long a deleted uid is remembered: the watches of different resources deliver independently, so a
/// dependent may arrive after its owner's deletion.
const DELETED_MEMORY: Duration = Duration::from_secs(60);

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";

pub async fn run(client: Client, mut shutdown: watch::Receiver<bool>) {
    let dirty = Arc::new(Notify::new());
    let triggers = Arc::new(Mutex::new(Triggers::default()));
    let watchers: Vec<_> = resources::storage_resources()
        .map(|info| {
            tokio::spawn(watch_changes(
                client.clone(),
                info,
                triggers.clone(),
                dirty.clone(),
            ))
        })
        .collect();
    loop {
        let pass = triggers.lock().expect("lock").pass_begins();
        let next = match sync(&client).await {
            Ok(found) => {
                let next = if found.waiting.is_empty() {
                    RESYNC
                } else {
                    WAITING_RESYNC
                };
                triggers.lock().expect("lock").pass_found(pass, found);
                next
            }
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector sync failed");
                RETRY
            }
        };
        tokio::select! {
            _ = dirty.notified() => tokio::time::sleep(COALESCE).await,
            _ = tokio::time::sleep(next) => {}
            _ = shutdown.changed() => break,
        }
    }
    for watcher in watchers {
        watcher.abort();
    }
}

/// Feeds the events of `info` to `triggers`, signalling `dirty` when one calls for a pass.
async fn watch_changes(
    client: Client,
    info: &'static ResourceInfo,
    triggers: Arc<Mutex<Triggers>>,
    dirty: Arc<Notify>,
) {
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
            let due =
                triggers
                    .lock()
                    .expect("lock")
                    .observe(event.kind, &event.object, Instant::now());
            if due {
                dirty.notify_one();
            }
        }
    }
}

/// What a pass found that decides which later changes call for another one.
#[derive(Debug, Default)]
struct Found {
    /// Uids named as owner by some object.
    owners: HashSet<String>,
    /// Uids of owners waiting, under `foregroundDeletion`, for their dependents to go.
    waiting: HashSet<String>,
}

/// Decides from watch events whether a collection pass has work to do, so that deletions which cannot
/// affect any ownership (most of them) do not cost a read of every resource. What it knows comes from
/// the last pass plus the events since that pass began; a uid it wrongly keeps costs at most an idle
/// pass.
#[derive(Debug, Default)]
struct Triggers {
    pass: u64,
    /// Uid named as owner → the pass during (or after) which it was last seen named.
    owners: HashMap<String, u64>,
    /// Uid of an owner in foreground deletion → likewise.
    waiting: HashMap<String, u64>,
    deleted: VecDeque<(Instant, String)>,
    deleted_uids: HashSet<String>,
}

impl Triggers {
    /// Marks the start of a pass; its number goes to [`Triggers::pass_found`].
    fn pass_begins(&mut self) -> u64 {
        self.pass += 1;
        self.pass
    }

    /// Replaces what is known with what pass `pass` read, keeping what events showed while it ran.
    fn pass_found(&mut self, pass: u64, found: Found) {
        self.owners.retain(|_, seen| *seen >= pass);
        self.waiting.retain(|_, seen| *seen >= pass);
        self.owners
            .extend(found.owners.into_iter().map(|uid| (uid, pass)));
        self.waiting
            .extend(found.waiting.into_iter().map(|uid| (uid, pass)));
    }

    /// Takes in one watch event; true when a pass may now have something to do.
    fn observe(&mut self, kind: WatchEventKind, obj: &Value, now: Instant) -> bool {
        while let Some((at, uid)) = self.deleted.front() {
            if now.duration_since(*at) < DELETED_MEMORY {
                break;
            }
            self.deleted_uids.remove(uid);
            self.deleted.pop_front();
        }
        let uid = meta::uid(obj).unwrap_or_default();
        let owners = owner_uids(obj);
        match kind {
            WatchEventKind::Added | WatchEventKind::Modified => {
                let mut names_new_owner = false;
                for owner in &owners {
                    names_new_owner |= self.owners.insert(owner.clone(), self.pass).is_none();
                }
                let finalizers = meta::finalizers(obj);
                let deleting = meta::is_deleting(obj);
                if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
                    self.waiting.insert(uid.to_string(), self.pass);
                }
                let releasing =
                    deleting && finalizers.iter().any(|f| f == ORPHAN || f == FOREGROUND);
                // A dependent already on its way out needs nothing more.
                let orphaned = !deleting && owners.iter().any(|o| self.deleted_uids.contains(o));
                // The owner may never have existed; a pass looks it up.
                releasing || orphaned || (names_new_owner && !deleting)
            }
            WatchEventKind::Deleted => {
                if self.deleted_uids.insert(uid.to_string()) {
                    self.deleted.push_back((now, uid.to_string()));
                }
                let waited = self.waiting.remove(uid).is_some();
                let owned_something = self.owners.remove(uid).is_some();
                waited || owned_something || owners.iter().any(|o| self.waiting.contains_key(o))
            }
            WatchEventKind::Bookmark | WatchEventKind::Error => false,
        }
    }
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str().map(str::to_string))
        .collect()
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
}

/// One collection pass over every stored object.
async fn sync(client: &Client) -> Result<Found, ClientError> {
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
        for owner in owner_uids(&n.obj) {
            dependents.entry(owner).or_default().push(i);
        }
    }
    // An owner missing from the lists is not remembered as known: if it never existed, the next object
    // naming it must call for a pass of its own.
    let mut found = Found {
        owners: dependents
            .keys()
            .filter(|owner| uids.contains(*owner))
            .cloned()
            .collect(),
        waiting: HashSet::new(),
    };
    for node in &nodes {
        let uid = meta::uid(&node.obj).unwrap_or_default().to_string();
        let finalizers = meta::finalizers(&node.obj);
        let mine = dependents.get(&uid).cloned().unwrap_or_default();
        if meta::is_deleting(&node.obj) && finalizers.iter().any(|f| f == ORPHAN) {
            for &d in &mine {
                release(client, &nodes[d], &uid).await?;
            }
            remove_finalizer(client, node, ORPHAN).await?;
        } else if meta::is_deleting(&node.obj) && finalizers.iter().any(|f| f == FOREGROUND) {
            // The owner goes only after every dependent is gone, not merely marked for deletion.
            if mine.is_empty() {
                remove_finalizer(client, node, FOREGROUND).await?;
            } else {
                found.waiting.insert(uid.clone());
            }
            for &d in mine.iter().filter(|&&d| !meta::is_deleting(&nodes[d].obj)) {
                delete(client, &nodes[d], "Foreground").await?;
            }
        }
        let owners = owner_uids(&node.obj);
        if !owners.is_empty()
            && owners.iter().all(|o| !uids.contains(o))
            && !meta::is_deleting(&node.obj)
            && all_owners_gone(client, &node.obj).await
        {
            delete(client, node, "Background").await?;
        }
    }
    Ok(found)
}

/// Whether every owner the object names is gone, asked of the API now, as Kubernetes' collector checks
/// before it deletes a dependent: a pass lists kinds one after another, so an owner created after its
/// kind was listed (a new Deployment's ReplicaSet listed a moment later) is missing from the pass but
/// not from the store.
///
/// An owner that cannot be looked up counts as present: the dependent waits for a later pass, and the
/// rest of this pass goes on, as Kubernetes' collector retries only that item.
async fn all_owners_gone(client: &Client, obj: &Value) -> bool {
    for reference in obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match owner_gone(client, meta::namespace(obj), reference).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::debug!(owner = %reference, error = %e, "garbage collector cannot look up an owner");
                return false;
            }
        }
    }
    true
}

/// Whether the object `reference` names is absent from the store, or is another object (another uid)
/// by now.
async fn owner_gone(
    client: &Client,
    namespace: Option<&str>,
    reference: &Value,
) -> Result<bool, ClientError> {
    let (group, version) =
        resources::split_api_version(reference["apiVersion"].as_str().unwrap_or_default());
    let kind = reference["kind"].as_str().unwrap_or_default();
    let Some(info) = resources::find_kind(group, version, kind) else {
        // An owner of a kind this server does not serve cannot be looked up; Kubernetes' collector leaves
        // its dependents alone too.
        return Ok(false);
    };
    let Some(name) = reference["name"].as_str().filter(|n| !n.is_empty()) else {
        return Ok(true);
    };
    let namespace = namespace.filter(|_| info.namespaced);
    match client.get(&info.path(namespace, Some(name))).await {
        Ok(owner) => Ok(meta::uid(&owner) != reference["uid"].as_str()),
        Err(e) if e.is_not_found() => Ok(true),
        Err(e) => Err(e),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str, owners: &[&str]) -> Value {
        let refs: Vec<Value> = owners.iter().map(|o| json!({"uid": o})).collect();
        json!({"metadata": {"uid": uid, "ownerReferences": refs}})
    }

    fn deleting(uid: &str, owners: &[&str], finalizers: &[&str]) -> Value {
        let mut obj = object(uid, owners);
        obj["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:00:00Z");
        obj["metadata"]["finalizers"] = json!(finalizers);
        obj
    }

    /// Triggers after a pass that found `found`.
    fn after_pass(owners: &[&str], waiting: &[&str]) -> Triggers {
        let mut t = Triggers::default();
        let pass = t.pass_begins();
        let set = |uids: &[&str]| uids.iter().map(|u| u.to_string()).collect();
        t.pass_found(
            pass,
            Found {
                owners: set(owners),
                waiting: set(waiting),
            },
        );
        t
    }

    #[test]
    fn deleting_what_owns_nothing_calls_for_no_pass() {
        let mut t = after_pass(&["rs"], &[]);
        let now = Instant::now();
        let pod = object("pod", &[]);
        assert!(!t.observe(WatchEventKind::Added, &pod, now));
        assert!(!t.observe(WatchEventKind::Modified, &deleting("pod", &[], &[]), now));
        assert!(!t.observe(WatchEventKind::Deleted, &pod, now));
        // An owned pod going away leaves its owner in place: nothing to collect.
        assert!(!t.observe(WatchEventKind::Deleted, &object("p2", &["rs"]), now));
    }

    #[test]
    fn deleting_an_owner_calls_for_a_pass_whether_a_pass_or_an_event_showed_it_owning() {
        let now = Instant::now();
        let mut t = after_pass(&["rs"], &[]);
        assert!(t.observe(WatchEventKind::Deleted, &object("rs", &["deploy"]), now));

        let mut t = Triggers::default();
        t.observe(WatchEventKind::Added, &object("pod", &["job"]), now);
        assert!(t.observe(WatchEventKind::Deleted, &object("job", &[]), now));
    }

    #[test]
    fn an_object_naming_an_owner_never_named_before_calls_for_one_pass() {
        let now = Instant::now();
        let mut t = after_pass(&["rs"], &[]);
        // A pod of a known owner, and its status changes, cost no pass.
        assert!(!t.observe(WatchEventKind::Added, &object("pod", &["rs"]), now));
        assert!(!t.observe(WatchEventKind::Modified, &object("pod", &["rs"]), now));
        // An owner nobody named before may never have existed: one pass looks it up.
        assert!(t.observe(WatchEventKind::Added, &object("pod2", &["ghost"]), now));
        assert!(!t.observe(WatchEventKind::Added, &object("pod3", &["ghost"]), now));
        assert!(!t.observe(
            WatchEventKind::Modified,
            &deleting("pod4", &["other"], &[]),
            now
        ));
    }

    #[tokio::test]
    async fn a_pass_collects_a_dependent_of_an_owner_that_never_existed_and_forgets_that_owner() {
        let clock = std::sync::Arc::new(crate::util::clock::FakeClock::new(
            "2026-11-25T10:00:00Z".parse().unwrap(),
        ));
        let (_dir, client) = crate::server::testing::in_process(clock).await;
        let configmaps = "/api/v1/namespaces/default/configmaps";
        let owner = client
            .create(configmaps, &json!({"metadata": {"name": "owner"}}))
            .await
            .unwrap();
        let live = meta::uid(&owner).unwrap().to_string();
        for (name, owner, uid) in [
            ("kept", "owner", live.as_str()),
            ("dangling", "ghost", "ghost-uid"),
        ] {
            let reference =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid});
            client
                .create(
                    configmaps,
                    &json!({"metadata": {"name": name, "ownerReferences": [reference]}}),
                )
                .await
                .unwrap();
        }
        let found = sync(&client).await.unwrap();
        assert_eq!(found.owners, HashSet::from([live]));
        assert!(client.get(&format!("{configmaps}/kept")).await.is_ok());
        let gone = client
            .get(&format!("{configmaps}/dangling"))
            .await
            .unwrap_err();
        assert!(gone.is_not_found(), "{gone}");
    }

    #[tokio::test]
    async fn an_owner_is_gone_only_when_the_api_has_no_object_of_its_name_and_uid() {
        let clock = std::sync::Arc::new(crate::util::clock::FakeClock::new(
            "2026-11-25T10:00:00Z".parse().unwrap(),
        ));
        let (_dir, client) = crate::server::testing::in_process(clock).await;
        let owner = client
            .create(
                "/api/v1/namespaces/default/configmaps",
                &json!({"metadata": {"name": "owner"}}),
            )
            .await
            .unwrap();
        let uid = meta::uid(&owner).unwrap();
        let reference = |kind: &str, name: &str, uid: &str| json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": uid});
        let gone = |reference: Value| {
            let client = client.clone();
            async move {
                owner_gone(&client, Some("default"), &reference)
                    .await
                    .unwrap()
            }
        };
        assert!(!gone(reference("ConfigMap", "owner", uid)).await);
        assert!(gone(reference("ConfigMap", "owner", "another-uid")).await);
        assert!(gone(reference("ConfigMap", "missing", uid)).await);
        assert!(
            !gone(reference("Widget", "owner", uid)).await,
            "a kind the server does not serve cannot be looked up, so its dependents stay"
        );
        let mut dependent = json!({"metadata": {"namespace": "default", "ownerReferences": [
            reference("ConfigMap", "missing", "x"), reference("ConfigMap", "owner", uid)]}});
        assert!(!all_owners_gone(&client, &dependent).await);
        dependent["metadata"]["ownerReferences"][1]["uid"] = json!("stale");
        assert!(all_owners_gone(&client, &dependent).await);
        dependent["metadata"]["ownerReferences"][0]["name"] = json!("not a name");
        assert!(
            !all_owners_gone(&client, &dependent).await,
            "an owner that cannot be looked up keeps its dependent"
        );
    }

    #[test]
    fn orphan_and_foreground_finalizers_call_for_a_pass() {
        let now = Instant::now();
        let mut t = Triggers::default();
        for finalizer in [ORPHAN, FOREGROUND] {
            let owner = deleting("rs", &[], &[finalizer]);
            assert!(
                t.observe(WatchEventKind::Modified, &owner, now),
                "{finalizer}"
            );
        }
        assert!(!t.observe(
            WatchEventKind::Modified,
            &deleting("rs", &[], &["example.com/other"]),
            now
        ));
    }

    #[test]
    fn a_dependent_gone_calls_for_a_pass_while_its_owner_waits_in_the_foreground() {
        let now = Instant::now();
        let mut t = after_pass(&[], &["deploy"]);
        assert!(t.observe(WatchEventKind::Deleted, &object("rs", &["deploy"]), now));

        let mut t = Triggers::default();
        t.observe(
            WatchEventKind::Modified,
            &deleting("rs", &[], &[FOREGROUND]),
            now,
        );
        assert!(t.observe(WatchEventKind::Deleted, &object("pod", &["rs"]), now));
        assert!(t.observe(WatchEventKind::Deleted, &object("rs", &[]), now));
        assert!(
            !t.observe(WatchEventKind::Deleted, &object("pod2", &["rs"]), now),
            "the owner is gone, so it no longer waits"
        );
    }

    #[test]
    fn an_object_naming_an_owner_just_deleted_calls_for_a_pass_for_a_while() {
        let now = Instant::now();
        let mut t = Triggers::default();
        assert!(!t.observe(WatchEventKind::Deleted, &object("rs", &[]), now));
        // Its dependent's watch delivers after the owner's deletion.
        assert!(t.observe(WatchEventKind::Added, &object("pod", &["rs"]), now));
        assert!(
            !t.observe(
                WatchEventKind::Modified,
                &deleting("pod", &["rs"], &[]),
                now
            ),
            "a dependent already being deleted needs nothing"
        );
        let later = now + DELETED_MEMORY;
        assert!(!t.observe(WatchEventKind::Added, &object("pod2", &["rs"]), later));
    }

    #[test]
    fn a_pass_keeps_owners_named_while_it_ran_and_forgets_the_rest() {
        let now = Instant::now();
        let mut t = after_pass(&["old"], &[]);
        let pass = t.pass_begins();
        t.observe(WatchEventKind::Added, &object("pod", &["new"]), now);
        t.pass_found(pass, Found::default());
        assert!(t.observe(WatchEventKind::Deleted, &object("new", &[]), now));
        assert!(!t.observe(WatchEventKind::Deleted, &object("old", &[]), now));
    }
}
