//! The generic verbs over the store for any resource: metadata on create, optimistic concurrency with
//! retries, graceful deletion and finalizers, selector-filtered lists and watches.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::api::meta;
use crate::api::resources::{self, ResourceInfo};
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::store::{Backend, EventKind, StoreError};
use crate::util::Clock;

use super::errors::RegistryError;
use super::services::ServiceAllocator;
use super::strategy::{GenericStrategy, Strategy};
use super::watch_objects::{RecentObjects, WatchObject};
use super::{jobs, namespaces, pods, secrets, services};

/// How many times an update re-reads and retries after losing a compare-and-swap race.
const MAX_CAS_RETRIES: usize = 16;

/// How long a watch from a revision newer than the store's waits for it.
const TOO_LARGE_RV_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `None` for the main resource, `Some("status")` for the status subresource.
    pub subresource: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: usize,
    pub continue_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: i64,
    pub continue_token: Option<String>,
}

#[derive(Debug)]
pub enum DeleteOutcome {
    /// The object is gone; this is its last state.
    Deleted(Value),
    /// The object is being deleted (grace period or finalizers); this is its current state.
    Pending(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEventType {
    Added,
    Modified,
    Deleted,
}

impl WatchEventType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchEventType::Added => "ADDED",
            WatchEventType::Modified => "MODIFIED",
            WatchEventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub event_type: WatchEventType,
    /// Shared with the other watches that deliver the same change.
    pub object: Arc<WatchObject>,
    pub revision: i64,
}

#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    /// `None` or 0: start with the current objects as ADDED events; otherwise replay after this revision.
    pub resource_version: Option<i64>,
}

pub struct Registry {
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    services: ServiceAllocator,
    recent_watch_objects: RecentObjects,
}

fn strategy(info: &ResourceInfo) -> &'static dyn Strategy {
    match (info.group, info.kind) {
        ("", "Pod") => &pods::PodStrategy,
        ("", "Namespace") => &namespaces::NamespaceStrategy,
        ("", "Service") => &services::ServiceStrategy,
        ("", "Secret") => &secrets::SecretStrategy,
        ("batch", "Job") => &jobs::JobStrategy,
        _ => &GenericStrategy,
    }
}

impl Registry {
    pub fn new(
        backend: Arc<dyn Backend>,
        clock: Arc<dyn Clock>,
        services: ServiceAllocator,
    ) -> Self {
        Registry {
            backend,
            clock,
            services,
            recent_watch_objects: RecentObjects::default(),
        }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    fn decode(
        &self,
        info: &ResourceInfo,
        bytes: &[u8],
        revision: i64,
    ) -> Result<Value, RegistryError> {
        let mut obj: Value = serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::Internal(format!("corrupt stored object: {e}")))?;
        meta::set_meta(&mut obj, "resourceVersion", revision.to_string());
        if !info.is_storage_version() {
            obj = crate::api::conversion::convert(&obj, info.group, info.version)
                .map_err(|e| RegistryError::Internal(e.to_string()))?;
        }
        Ok(obj)
    }

    fn encode(&self, obj: &Value) -> Result<Vec<u8>, RegistryError> {
        let mut stored = obj.clone();
        meta::remove_meta(&mut stored, "resourceVersion");
        serde_json::to_vec(&stored).map_err(|e| RegistryError::Internal(e.to_string()))
    }

    /// Brings a request object in this resource's version to the version it is stored in.
    fn to_storage(&self, info: &ResourceInfo, obj: Value) -> Result<Value, RegistryError> {
        if info.is_storage_version() {
            return Ok(obj);
        }
        let storage = resources::RESOURCES
            .iter()
            .find(|r| {
                r.group == info.storage_group
                    && r.plural == info.storage_plural
                    && r.is_storage_version()
            })
            .ok_or_else(|| {
                RegistryError::Internal(format!("no storage version for {}", info.qualified_name()))
            })?;
        crate::api::conversion::convert(&obj, storage.group, storage.version)
            .map_err(|e| RegistryError::BadRequest(e.to_string()))
    }

    fn storage_info(info: &ResourceInfo) -> &'static ResourceInfo {
        resources::RESOURCES
            .iter()
            .find(|r| {
                r.group == info.storage_group
                    && r.plural == info.storage_plural
                    && r.is_storage_version()
            })
            .expect("every resource has a storage version")
    }

    pub async fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, RegistryError> {
        let key = info.key(namespace, name);
        match self
            .backend
            .get(&key)
            .await
            .map_err(|e| RegistryError::from_store(e, &info.qualified_name(), name))?
        {
            Some(kv) => self.decode(info, &kv.value, kv.mod_revision),
            None => Err(not_found(info, name)),
        }
    }

    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListResult, RegistryError> {
        let prefix = info.key_prefix(namespace);
        let mut start_after = match &options.continue_token {
            Some(token) => Some(decode_continue(token, &prefix)?),
            None => None,
        };
        // A name-pinned field selector (informers watching one object) needs one key, not a scan.
        if let (Some(name), Some(ns)) = (
            options.field_selector.exact_value("metadata.name"),
            namespace.or(Some("")),
        ) {
            if namespace.is_some() || !info.namespaced {
                let ns = if info.namespaced { Some(ns) } else { None };
                let revision = self.backend.current_revision();
                let items = match self.get(info, ns, name).await {
                    Ok(obj)
                        if object_matches(
                            &obj,
                            &options.label_selector,
                            &options.field_selector,
                        ) =>
                    {
                        vec![obj]
                    }
                    Ok(_) | Err(RegistryError::NotFound { .. }) => vec![],
                    Err(e) => return Err(e),
                };
                return Ok(ListResult {
                    items,
                    resource_version: revision,
                    continue_token: None,
                });
            }
        }
        let mut items = Vec::new();
        let mut revision = 0;
        loop {
            let want = if options.limit == 0 {
                0
            } else {
                options.limit - items.len()
            };
            let page = self
                .backend
                .list(&prefix, start_after.as_deref(), want)
                .await
                .map_err(|e| RegistryError::from_store(e, &info.qualified_name(), ""))?;
            if revision == 0 {
                revision = page.revision;
            }
            let last_key = page.items.last().map(|kv| kv.key.clone());
            for kv in &page.items {
                let obj = self.decode(info, &kv.value, kv.mod_revision)?;
                if object_matches(&obj, &options.label_selector, &options.field_selector) {
                    items.push(obj);
                }
            }
            if !page.more {
                return Ok(ListResult {
                    items,
                    resource_version: revision,
                    continue_token: None,
                });
            }
            if options.limit != 0 && items.len() >= options.limit {
                let token = last_key.map(|k| encode_continue(revision, &k[prefix.len()..]));
                return Ok(ListResult {
                    items,
                    resource_version: revision,
                    continue_token: token,
                });
            }
            start_after = last_key;
        }
    }

    /// A stream of changes. Errors on the stream (compaction, a slow consumer) end it.
    pub async fn watch(
        self: &Arc<Self>,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        options: WatchOptions,
    ) -> Result<mpsc::Receiver<Result<WatchEvent, RegistryError>>, RegistryError> {
        let (tx, rx) = mpsc::channel(256);
        let mut seen: HashSet<String> = HashSet::new();
        let filtering =
            !options.label_selector.is_everything() || !options.field_selector.is_everything();
        let start = match options.resource_version {
            Some(rv) if rv > 0 => rv,
            _ => {
                let list = self
                    .list(
                        info,
                        namespace,
                        &ListOptions {
                            label_selector: options.label_selector.clone(),
                            field_selector: options.field_selector.clone(),
                            ..Default::default()
                        },
                    )
                    .await?;
                for obj in list.items {
                    seen.insert(
                        meta::name(&obj).unwrap_or_default().to_string()
                            + "/"
                            + meta::namespace(&obj).unwrap_or(""),
                    );
                    let revision = resource_version_of(&obj);
                    let _ = tx.try_send(Ok(WatchEvent {
                        event_type: WatchEventType::Added,
                        object: Arc::new(WatchObject::new(obj)),
                        revision,
                    }));
                }
                list.resource_version
            }
        };
        // A list can read a commit a moment before the watch side has published it; like the watch
        // cache, wait up to three seconds for the store to catch up before refusing.
        let deadline = tokio::time::Instant::now() + TOO_LARGE_RV_WAIT;
        while start > self.backend.current_revision() {
            if tokio::time::Instant::now() >= deadline {
                return Err(RegistryError::BadRequest(format!(
                    "Timeout: Too large resource version: {start}, current: {}",
                    self.backend.current_revision()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let prefix = info.key_prefix(namespace);
        let mut events = self
            .backend
            .watch(&prefix, start)
            .map_err(|e| RegistryError::from_store(e, &info.qualified_name(), ""))?;
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(next) = events.recv().await {
                let event = match next {
                    Ok(event) => event,
                    Err(StoreError::Compacted {
                        requested,
                        compacted,
                    }) => {
                        let _ = tx
                            .send(Err(RegistryError::Expired {
                                requested,
                                current: compacted,
                            }))
                            .await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(RegistryError::Internal(e.to_string()))).await;
                        return;
                    }
                };
                let revision = event.kv.mod_revision;
                let shared = registry.recent_watch_objects.get_or_decode(
                    info,
                    revision,
                    event.kv.value.len(),
                    || registry.decode(info, &event.kv.value, revision),
                );
                let shared = match shared {
                    Ok(shared) => shared,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let obj = shared.value();
                let id = meta::name(obj).unwrap_or_default().to_string()
                    + "/"
                    + meta::namespace(obj).unwrap_or("");
                let matched = object_matches(obj, &options.label_selector, &options.field_selector);
                let event_type = match event.kind {
                    EventKind::Created if matched => Some(WatchEventType::Added),
                    EventKind::Updated if matched && (!filtering || seen.contains(&id)) => {
                        Some(WatchEventType::Modified)
                    }
                    EventKind::Updated if matched => Some(WatchEventType::Added),
                    EventKind::Updated if filtering && seen.contains(&id) => {
                        Some(WatchEventType::Deleted)
                    }
                    EventKind::Deleted if matched || seen.contains(&id) => {
                        Some(WatchEventType::Deleted)
                    }
                    _ => None,
                };
                match event_type {
                    Some(WatchEventType::Deleted) => {
                        seen.remove(&id);
                    }
                    Some(_) if filtering => {
                        seen.insert(id);
                    }
                    _ => {}
                }
                if let Some(event_type) = event_type {
                    let out = WatchEvent {
                        event_type,
                        object: shared,
                        revision,
                    };
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        obj: Value,
        options: &CreateOptions,
    ) -> Result<Value, RegistryError> {
        if !obj.is_object() {
            return Err(RegistryError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        }
        let mut obj = obj;
        set_type_meta(info, &mut obj);
        reconcile_namespace(info, namespace, &mut obj)?;
        if meta::name(&obj).is_none() {
            if let Some(prefix) = meta::meta_str(&obj, "generateName").map(str::to_string) {
                meta::set_meta(
                    &mut obj,
                    "name",
                    format!("{prefix}{}", crate::util::random_suffix(5)),
                );
            }
        }
        let storage_info = Self::storage_info(info);
        let mut obj = self.to_storage(info, obj)?;
        let strategy = strategy(storage_info);
        let requested_fields = crate::api::fieldset::fields_v1(&obj);
        let now = self.clock.now();
        // System fields come before the strategy, as in Kubernetes: a Job's generated selector uses
        // the UID.
        {
            let m = meta::metadata_mut(&mut obj);
            m.insert(
                "uid".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
            m.insert(
                "creationTimestamp".into(),
                Value::String(meta::format_time(now)),
            );
            for field in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "selfLink",
            ] {
                m.remove(field);
            }
        }
        strategy.prepare_for_create(storage_info, &mut obj);
        match (storage_info.group, storage_info.plural) {
            ("", "pods") => {
                super::admission::limit_ranger::admit_pod(self, info, &mut obj).await?;
                super::admission::priority::admit_pod(self, info, &mut obj).await?;
            }
            ("", "persistentvolumeclaims") => {
                super::admission::default_storage_class::admit_claim(self, &mut obj).await?
            }
            _ => {}
        }
        record_managed_fields(
            &mut obj,
            options.field_manager.as_deref(),
            info,
            now,
            None,
            requested_fields,
        );
        let causes = strategy.validate_create(storage_info, &obj);
        if !causes.is_empty() {
            return Err(invalid(info, &obj, causes));
        }
        if let Some(ns) = meta::namespace(&obj).filter(|_| info.namespaced) {
            self.check_namespace_accepts(ns).await?;
        }
        super::admission::resource_quota::admit(self, storage_info, &obj, None, options.dry_run)
            .await?;
        let name = meta::name(&obj).unwrap_or_default().to_string();
        let _guard = if storage_info.kind == "Service" && storage_info.group.is_empty() {
            let guard = self.services.lock().await;
            self.services
                .allocate(self, &mut obj, None)
                .await
                .map_err(|causes| invalid(info, &obj, causes))?;
            Some(guard)
        } else {
            None
        };
        if options.dry_run {
            return self.in_request_version(info, obj);
        }
        let key = storage_info.key(meta::namespace(&obj), &name);
        let bytes = self.encode(&obj)?;
        let revision = self
            .backend
            .create(&key, bytes)
            .await
            .map_err(|e| RegistryError::from_store(e, &info.qualified_name(), &name))?;
        meta::set_meta(&mut obj, "resourceVersion", revision.to_string());
        self.in_request_version(info, obj)
    }

    fn in_request_version(&self, info: &ResourceInfo, obj: Value) -> Result<Value, RegistryError> {
        if info.is_storage_version() {
            return Ok(obj);
        }
        crate::api::conversion::convert(&obj, info.group, info.version)
            .map_err(|e| RegistryError::Internal(e.to_string()))
    }

    async fn check_namespace_accepts(&self, ns: &str) -> Result<(), RegistryError> {
        let namespaces = resources::find("", "v1", "namespaces").expect("namespaces are served");
        match self.get(namespaces, None, ns).await {
            Ok(obj) if meta::is_deleting(&obj) => Err(RegistryError::Forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))),
            Ok(_) => Ok(()),
            Err(RegistryError::NotFound { .. }) => Err(RegistryError::NotFound {
                resource: "namespaces".into(),
                name: ns.into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// PUT semantics: replace the object; a non-empty `metadata.resourceVersion` in `obj` is a precondition.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        options: &UpdateOptions,
    ) -> Result<Value, RegistryError> {
        if !obj.is_object() {
            return Err(RegistryError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        }
        self.guaranteed_update(info, namespace, name, options, |_current| {
            Ok::<_, RegistryError>(obj.clone())
        })
        .await
    }

    /// Reads the current object, lets `update` compute the new one, and writes it with compare-and-swap,
    /// retrying on races. A `metadata.resourceVersion` in the computed object is a precondition.
    pub async fn guaranteed_update<E: From<RegistryError>>(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &UpdateOptions,
        mut update: impl FnMut(&Value) -> Result<Value, E>,
    ) -> Result<Value, E> {
        let storage_info = Self::storage_info(info);
        let strategy = strategy(storage_info);
        let key = storage_info.key(namespace, name);
        for _ in 0..MAX_CAS_RETRIES {
            let Some(kv) = self
                .backend
                .get(&key)
                .await
                .map_err(|e| RegistryError::from_store(e, &info.qualified_name(), name))?
            else {
                return Err(not_found(info, name).into());
            };
            let current_storage =
                self.decode(Self::storage_info(info), &kv.value, kv.mod_revision)?;
            let current = self.in_request_version(info, current_storage.clone())?;
            let mut new = update(&current)?;
            if !new.is_object() {
                return Err(RegistryError::BadRequest(
                    "the request body must be a JSON object".into(),
                )
                .into());
            }
            set_type_meta(info, &mut new);
            reconcile_namespace(info, namespace, &mut new)?;
            match meta::name(&new) {
                Some(n) if n != name => {
                    return Err(RegistryError::BadRequest(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    ))
                    .into())
                }
                None => meta::set_meta(&mut new, "name", name),
                _ => {}
            }
            if let Some(rv) = meta::resource_version(&new) {
                if rv != kv.mod_revision.to_string() {
                    return Err(conflict(info, name).into());
                }
            }
            if let Some(uid) = meta::uid(&new) {
                if Some(uid) != meta::uid(&current) {
                    return Err(RegistryError::Conflict {
                        resource: info.qualified_name(),
                        name: name.to_string(),
                        reason: format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta::uid(&current).unwrap_or("")),
                    }.into());
                }
            }
            let mut new = self.to_storage(info, new)?;
            match options.subresource.as_deref() {
                None => strategy.prepare_for_update(storage_info, &mut new, &current_storage),
                Some("status") => strategy.prepare_for_status_update(&mut new, &current_storage),
                // The caller computed the whole object from the current one (pods::bind).
                Some("binding") => {}
                Some("finalize") => namespaces::prepare_for_finalize(&mut new, &current_storage),
                Some("ephemeralcontainers") => {
                    pods::prepare_for_ephemeral_containers_update(&mut new, &current_storage)
                }
                Some("resize") => pods::prepare_for_resize_update(&mut new, &current_storage),
                Some(other) => {
                    return Err(RegistryError::MethodNotAllowed(format!(
                        "subresource {other} cannot be updated here"
                    ))
                    .into())
                }
            }
            preserve_system_metadata(&mut new, &current_storage);
            let causes = match options.subresource.as_deref() {
                Some("binding") => Vec::new(),
                Some("ephemeralcontainers") => {
                    crate::api::validation::validate_ephemeral_containers_update(
                        &new,
                        &current_storage,
                    )
                }
                Some("resize") => pods::validate_resize(&new, &current_storage),
                _ => strategy.validate_update(storage_info, &new, &current_storage),
            };
            if !causes.is_empty() {
                return Err(invalid(info, &new, causes).into());
            }
            if storage_info.kind == "Service"
                && storage_info.group.is_empty()
                && options.subresource.is_none()
            {
                let _guard = self.services.lock().await;
                self.services
                    .allocate(self, &mut new, Some(&current_storage))
                    .await
                    .map_err(|causes| invalid(info, &new, causes))?;
            }
            if semantically_equal(&new, &current_storage) {
                return Ok(self.in_request_version(info, current_storage)?);
            }
            if options.subresource.as_deref() == Some("resize") {
                // Boxed: charging a quota is itself an update.
                Box::pin(super::admission::resource_quota::admit(
                    self,
                    storage_info,
                    &new,
                    Some(&current_storage),
                    options.dry_run,
                ))
                .await?;
            }
            let now = self.clock.now();
            let changed = crate::api::fieldset::changed_fields(&current_storage, &new);
            record_managed_fields(
                &mut new,
                options.field_manager.as_deref(),
                info,
                now,
                options.subresource.as_deref(),
                changed,
            );
            if options.dry_run {
                return Ok(self.in_request_version(info, new)?);
            }
            // An object being deleted whose last finalizer this update takes away is removed, not
            // updated, once no grace period is pending (the API server's shouldDeleteDuringUpdate).
            // Any other update of an object being deleted is an update: a terminating pod's kubelet
            // writes its status until it deletes the pod itself.
            let had_finalizers = !meta::finalizers(&current_storage).is_empty()
                || namespaces::blocks_delete(storage_info, &current_storage);
            let no_grace_pending = current_storage["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_none_or(|g| g == 0);
            if meta::is_deleting(&new)
                && had_finalizers
                && no_grace_pending
                && meta::finalizers(&new).is_empty()
                && !namespaces::blocks_delete(storage_info, &new)
            {
                return match self.backend.delete(&key, kv.mod_revision).await {
                    Ok(kv) => Ok(self.in_request_version(
                        info,
                        self.decode(storage_info, &kv.value, kv.mod_revision)?,
                    )?),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => {
                        Err(RegistryError::from_store(e, &info.qualified_name(), name).into())
                    }
                };
            }
            let bytes = self.encode(&new)?;
            match self.backend.update(&key, bytes, kv.mod_revision).await {
                Ok(revision) => {
                    meta::set_meta(&mut new, "resourceVersion", revision.to_string());
                    return Ok(self.in_request_version(info, new)?);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    return Err(RegistryError::from_store(e, &info.qualified_name(), name).into())
                }
            }
        }
        Err(conflict(info, name).into())
    }

    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<DeleteOutcome, RegistryError> {
        let storage_info = Self::storage_info(info);
        let strategy = strategy(storage_info);
        if storage_info.kind == "Namespace" && namespaces::PROTECTED.contains(&name) {
            return Err(RegistryError::Forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let key = storage_info.key(namespace, name);
        for _ in 0..MAX_CAS_RETRIES {
            let Some(kv) = self
                .backend
                .get(&key)
                .await
                .map_err(|e| RegistryError::from_store(e, &info.qualified_name(), name))?
            else {
                return Err(not_found(info, name));
            };
            let current = self.decode(storage_info, &kv.value, kv.mod_revision)?;
            if let Some(uid) = &options.precondition_uid {
                if Some(uid.as_str()) != meta::uid(&current) {
                    return Err(RegistryError::Conflict {
                        resource: info.qualified_name(),
                        name: name.to_string(),
                        reason: format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta::uid(&current).unwrap_or("")
                        ),
                    });
                }
            }
            if let Some(rv) = &options.precondition_resource_version {
                if *rv != kv.mod_revision.to_string() {
                    return Err(RegistryError::Conflict {
                        resource: info.qualified_name(),
                        name: name.to_string(),
                        reason: format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            kv.mod_revision
                        ),
                    });
                }
            }
            let mut next = current.clone();
            let mut finalizers = meta::finalizers(&next);
            match options.propagation_policy.as_deref() {
                Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
                Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                    finalizers.push("foregroundDeletion".into())
                }
                None | Some("Background") | Some("Orphan") | Some("Foreground") => {}
                Some(other) => {
                    return Err(RegistryError::BadRequest(format!(
                        "DeleteOptions.propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                    )))
                }
            }
            meta::set_finalizers(&mut next, &finalizers);
            let grace = strategy.grace_period(&current, options.grace_period_seconds);
            let already_deleting = meta::is_deleting(&current);
            let now = self.clock.now();
            let pending = grace.is_some()
                || !finalizers.is_empty()
                || namespaces::blocks_delete(storage_info, &current);
            // A delete with no grace period left (the kubelet's, once a pod's containers stopped) of an
            // object a finalizer keeps records that none is left, so that the finalizer's removal ends it.
            let ends_grace = options.grace_period_seconds == Some(0)
                && meta::metadata(&current)
                    .and_then(|m| m.get("deletionGracePeriodSeconds"))
                    .and_then(Value::as_i64)
                    .is_some_and(|g| g > 0);
            if pending {
                if already_deleting
                    && grace.unwrap_or(0) == 0
                    && finalizers == meta::finalizers(&current)
                    && !ends_grace
                {
                    // Nothing to shorten or add.
                    if !(grace == Some(0) && finalizers.is_empty()) {
                        return Ok(DeleteOutcome::Pending(
                            self.in_request_version(info, current)?,
                        ));
                    }
                } else {
                    if !already_deleting || grace.is_some() || ends_grace {
                        let seconds = grace.unwrap_or(0);
                        let at = now
                            .checked_add(jiff::SignedDuration::from_secs(seconds))
                            .unwrap_or(now);
                        let keep_earlier = meta::meta_str(&current, "deletionTimestamp")
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .filter(|t| *t <= at);
                        meta::set_meta(
                            &mut next,
                            "deletionTimestamp",
                            meta::format_time(keep_earlier.unwrap_or(at)),
                        );
                        meta::set_meta(&mut next, "deletionGracePeriodSeconds", seconds);
                        if let Some(generation) = meta::metadata(&current)
                            .and_then(|m| m.get("generation"))
                            .and_then(Value::as_i64)
                        {
                            if !already_deleting {
                                meta::set_meta(&mut next, "generation", generation + 1);
                            }
                        }
                    }
                    namespaces::mark_terminating(storage_info, &mut next);
                    if options.dry_run {
                        return Ok(DeleteOutcome::Pending(self.in_request_version(info, next)?));
                    }
                    let bytes = self.encode(&next)?;
                    match self.backend.update(&key, bytes, kv.mod_revision).await {
                        Ok(revision) => {
                            meta::set_meta(&mut next, "resourceVersion", revision.to_string());
                            return Ok(DeleteOutcome::Pending(
                                self.in_request_version(info, next)?,
                            ));
                        }
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => {
                            return Err(RegistryError::from_store(e, &info.qualified_name(), name))
                        }
                    }
                }
            }
            if options.dry_run {
                return Ok(DeleteOutcome::Deleted(
                    self.in_request_version(info, current)?,
                ));
            }
            match self.backend.delete(&key, kv.mod_revision).await {
                Ok(deleted) => {
                    let obj = self.decode(storage_info, &deleted.value, deleted.mod_revision)?;
                    return Ok(DeleteOutcome::Deleted(self.in_request_version(info, obj)?));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(RegistryError::from_store(e, &info.qualified_name(), name)),
            }
        }
        Err(conflict(info, name))
    }
}

pub fn resource_version_of(obj: &Value) -> i64 {
    meta::resource_version(obj)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

fn set_type_meta(info: &ResourceInfo, obj: &mut Value) {
    if let Some(root) = obj.as_object_mut() {
        root.insert("apiVersion".into(), Value::String(info.api_version()));
        root.insert("kind".into(), Value::String(info.kind.to_string()));
    }
}

fn reconcile_namespace(
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj: &mut Value,
) -> Result<(), RegistryError> {
    if !info.namespaced {
        meta::remove_meta(obj, "namespace");
        return Ok(());
    }
    let Some(ns) = namespace else {
        return Err(RegistryError::BadRequest(format!(
            "{} must be created in a namespace",
            info.qualified_name()
        )));
    };
    match meta::namespace(obj) {
        Some(body_ns) if body_ns != ns => Err(RegistryError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => {
            meta::set_meta(obj, "namespace", ns);
            Ok(())
        }
    }
}

/// Fields a client cannot change through an update.
fn preserve_system_metadata(new: &mut Value, old: &Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match meta::metadata(old).and_then(|m| m.get(field)).cloned() {
            Some(v) => meta::set_meta(new, field, v),
            None => {
                meta::remove_meta(new, field);
            }
        }
    }
    if meta::metadata(new)
        .and_then(|m| m.get("managedFields"))
        .is_none()
    {
        if let Some(mf) = meta::metadata(old)
            .and_then(|m| m.get("managedFields"))
            .cloned()
        {
            meta::set_meta(new, "managedFields", mf);
        }
    }
    meta::remove_meta(new, "selfLink");
    if meta::metadata(new)
        .and_then(|m| m.get("generation"))
        .is_none()
    {
        if let Some(g) = meta::metadata(old)
            .and_then(|m| m.get("generation"))
            .cloned()
        {
            meta::set_meta(new, "generation", g);
        }
    }
}

/// Equal apart from the resourceVersion and managedFields bookkeeping: such an update writes nothing.
fn semantically_equal(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        meta::remove_meta(&mut v, "resourceVersion");
        meta::remove_meta(&mut v, "managedFields");
        v
    };
    strip(a) == strip(b)
}

/// Records that `manager` set `fields` with an Update operation, in `metadata.managedFields`; the fields join
/// what the manager owned before. Server-side apply keeps its own Apply entries.
fn record_managed_fields(
    obj: &mut Value,
    manager: Option<&str>,
    info: &ResourceInfo,
    now: jiff::Timestamp,
    subresource: Option<&str>,
    fields: Value,
) {
    let Some(manager) = manager.filter(|m| !m.is_empty()) else {
        return;
    };
    if fields.as_object().is_none_or(|f| f.is_empty()) {
        return;
    }
    let mut entries: Vec<Value> = meta::metadata(obj)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let same = |e: &Value| {
        e.get("manager").and_then(Value::as_str) == Some(manager)
            && e.get("operation").and_then(Value::as_str) == Some("Update")
            && e.get("subresource").and_then(Value::as_str) == subresource
    };
    let owned = entries
        .iter()
        .find(|e| same(e))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| json!({}));
    // A manager owns only fields the stored object still has (a Secret's stringData is folded into data).
    let union = crate::api::fieldset::union(&owned, &fields);
    let gone: Vec<_> = crate::api::fieldset::leaves(&union)
        .into_iter()
        .filter(|path| crate::api::fieldset::get(obj, path).is_none())
        .collect();
    let mut entry = json!({
        "manager": manager,
        "operation": "Update",
        "apiVersion": info.api_version(),
        "time": meta::format_time(now),
        "fieldsType": "FieldsV1",
        "fieldsV1": crate::api::fieldset::without(&union, &gone),
    });
    if let Some(sub) = subresource {
        entry["subresource"] = Value::String(sub.to_string());
    }
    entries.retain(|e| !same(e));
    entries.push(entry);
    meta::set_meta(obj, "managedFields", entries);
}

pub(crate) fn object_matches(obj: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    if !labels.is_everything() && !labels.matches(&meta::labels(obj)) {
        return false;
    }
    if fields.is_everything() {
        return true;
    }
    fields.matches(|field| meta::field_string(obj, field))
}

fn not_found(info: &ResourceInfo, name: &str) -> RegistryError {
    RegistryError::NotFound {
        resource: info.qualified_name(),
        name: name.to_string(),
    }
}

fn conflict(info: &ResourceInfo, name: &str) -> RegistryError {
    RegistryError::from_store(
        StoreError::Conflict {
            key: String::new(),
            expected: 0,
            actual: 0,
        },
        &info.qualified_name(),
        name,
    )
}

fn invalid(
    info: &ResourceInfo,
    obj: &Value,
    causes: Vec<crate::api::validation::FieldError>,
) -> RegistryError {
    RegistryError::Invalid {
        kind: info.kind.to_string(),
        group: info.group.to_string(),
        name: meta::name(obj).unwrap_or_default().to_string(),
        causes,
    }
}

fn encode_continue(revision: i64, after: &str) -> String {
    use base64::Engine;
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": after});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<String, RegistryError> {
    use base64::Engine;
    let bad = || RegistryError::BadRequest(format!("continue key is not valid: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let start = value.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    if start.contains("..") {
        return Err(bad());
    }
    Ok(format!("{prefix}{start}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::util::clock::FakeClock;

    #[tokio::test]
    async fn an_update_removes_an_object_being_deleted_only_when_it_takes_its_last_finalizer() {
        let clock = Arc::new(FakeClock::new("2026-11-24T10:00:00Z".parse().unwrap()));
        let (_dir, client) = crate::server::testing::in_process(clock).await;
        // A pod in its grace period takes its kubelet's status writes and stays.
        let pods = "/api/v1/namespaces/default/pods";
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]}});
        client.create(pods, &pod).await.unwrap();
        client
            .delete(&format!("{pods}/p"), &json!({}))
            .await
            .unwrap();
        client
            .merge_patch(
                &format!("{pods}/p/status"),
                &json!({"status": {"phase": "Failed"}}),
            )
            .await
            .unwrap();
        let kept = client.get(&format!("{pods}/p")).await.unwrap();
        assert_eq!(kept["status"]["phase"], "Failed");
        assert!(kept["metadata"]["deletionTimestamp"].is_string());

        // An object a finalizer keeps goes with the update that takes the finalizer, not before.
        let maps = "/api/v1/namespaces/default/configmaps";
        let map = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "finalizers": ["example.com/keep"]}});
        client.create(maps, &map).await.unwrap();
        client
            .delete(&format!("{maps}/c"), &json!({}))
            .await
            .unwrap();
        let labelled = json!({"metadata": {"labels": {"a": "b"}}});
        client
            .merge_patch(&format!("{maps}/c"), &labelled)
            .await
            .unwrap();
        assert!(client.get(&format!("{maps}/c")).await.is_ok());
        let released = json!({"metadata": {"finalizers": null}});
        client
            .merge_patch(&format!("{maps}/c"), &released)
            .await
            .unwrap();
        let gone = client.get(&format!("{maps}/c")).await.unwrap_err();
        assert!(gone.is_not_found(), "{gone}");

        // A pod's finalizer that goes during its grace period leaves it to its kubelet, whose delete
        // with no grace left ends it; a finalizer still there then keeps it until it goes.
        let kept = |name: &str| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "finalizers": ["example.com/keep"]},
                "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]}})
        };
        let now_gone = json!({"gracePeriodSeconds": 0});
        client.create(pods, &kept("early")).await.unwrap();
        client
            .delete(&format!("{pods}/early"), &json!({}))
            .await
            .unwrap();
        client
            .merge_patch(&format!("{pods}/early"), &released)
            .await
            .unwrap();
        assert!(client.get(&format!("{pods}/early")).await.is_ok());
        client
            .delete(&format!("{pods}/early"), &now_gone)
            .await
            .unwrap();
        assert!(client.get(&format!("{pods}/early")).await.is_err());

        client.create(pods, &kept("late")).await.unwrap();
        client
            .delete(&format!("{pods}/late"), &json!({}))
            .await
            .unwrap();
        client
            .delete(&format!("{pods}/late"), &now_gone)
            .await
            .unwrap();
        let waiting = client.get(&format!("{pods}/late")).await.unwrap();
        assert_eq!(waiting["metadata"]["deletionGracePeriodSeconds"], 0);
        client
            .merge_patch(&format!("{pods}/late"), &released)
            .await
            .unwrap();
        assert!(client.get(&format!("{pods}/late")).await.is_err());
    }
}
