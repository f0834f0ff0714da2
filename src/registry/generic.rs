//! The behaviour every resource shares unless its strategy says otherwise: Kubernetes' defaults, cleared
//! status on create, status kept on spec updates, and `metadata.generation` following spec changes.

use serde_json::{Map, Value};

use crate::api::resources::ResourceInfo;

/// Kinds whose creator may set the status (the kubelet registers its Node with status filled in).
const STATUS_SET_ON_CREATE: &[&str] = &["Node", "Event"];

pub fn has_status_subresource(info: &ResourceInfo) -> bool {
    info.subresource("status").is_some()
}

pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    if has_status_subresource(info) && !STATUS_SET_ON_CREATE.contains(&info.kind) {
        if let Some(root) = obj.as_object_mut() {
            root.insert("status".into(), Value::Object(Map::new()));
        }
    }
    crate::api::defaults::apply_defaults(info.kind, obj);
    drop_empty_metadata(obj);
    if obj.get("spec").is_some() {
        crate::api::meta::set_meta(obj, "generation", 1);
    }
}

pub fn prepare_for_update(info: &ResourceInfo, new: &mut Value, old: &Value) {
    if has_status_subresource(info) {
        match (new.as_object_mut(), old.get("status")) {
            (Some(root), Some(status)) => {
                root.insert("status".into(), status.clone());
            }
            (Some(root), None) => {
                root.remove("status");
            }
            _ => {}
        }
    }
    crate::api::defaults::apply_defaults(info.kind, new);
    drop_empty_metadata(new);
    bump_generation(new, old);
}

/// Empty labels, annotations, owner references and finalizers are not stored: Kubernetes' ObjectMeta
/// omits them (`omitempty`), so a patch that empties `ownerReferences` leaves no field behind.
fn drop_empty_metadata(obj: &mut Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["labels", "annotations", "ownerReferences", "finalizers"] {
            let empty = match meta.get(field) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                meta.remove(field);
            }
        }
    }
}

pub fn prepare_for_status_update(new: &mut Value, old: &Value) {
    let status = new.get("status").cloned();
    let mut merged = old.clone();
    if let Some(root) = merged.as_object_mut() {
        match status {
            Some(s) => root.insert("status".into(), s),
            None => root.remove("status"),
        };
    }
    // Only the status moves; metadata the caller cannot change here keeps its stored value, but the
    // resourceVersion precondition the caller sent still applies.
    if let Some(rv) = crate::api::meta::resource_version(new).map(str::to_string) {
        crate::api::meta::set_meta(&mut merged, "resourceVersion", rv);
    }
    *new = merged;
}

/// A changed spec is a new generation (objects made without one keep none).
pub fn bump_generation(new: &mut Value, old: &Value) {
    let Some(old_generation) = crate::api::meta::metadata(old)
        .and_then(|m| m.get("generation"))
        .cloned()
    else {
        return;
    };
    let changed = new.get("spec") != old.get("spec");
    let generation = old_generation.as_i64().unwrap_or(0) + i64::from(changed);
    crate::api::meta::set_meta(new, "generation", generation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployments() -> &'static ResourceInfo {
        crate::api::resources::find("apps", "v1", "deployments").unwrap()
    }

    #[test]
    fn create_clears_status_and_starts_generation() {
        let mut obj = json!({"metadata":{"name":"d","generation":7},"spec":{"replicas":2},"status":{"replicas":9}});
        prepare_for_create(deployments(), &mut obj);
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj["status"].get("replicas").is_none());
    }

    #[test]
    fn update_keeps_status_and_bumps_generation_only_on_spec_change() {
        let mut old =
            json!({"metadata":{"generation":3},"spec":{"replicas":2},"status":{"replicas":2}});
        crate::api::defaults::apply_defaults("Deployment", &mut old);
        let mut same = json!({"metadata":{"generation":1,"labels":{"a":"b"}},"spec":{"replicas":2},"status":{}});
        prepare_for_update(deployments(), &mut same, &old);
        assert_eq!(same["metadata"]["generation"], 3);
        assert_eq!(same["status"], json!({"replicas":2}));
        let mut changed = json!({"metadata":{},"spec":{"replicas":5}});
        prepare_for_update(deployments(), &mut changed, &old);
        assert_eq!(changed["metadata"]["generation"], 4);
        assert_eq!(changed["status"], json!({"replicas":2}));
    }

    #[test]
    fn empty_metadata_lists_and_maps_are_not_stored() {
        let old = json!({"metadata":{"name":"d"},"spec":{"replicas":2}});
        let mut new = json!({"metadata":{"name":"d","ownerReferences":[],"finalizers":[],"labels":{},
            "annotations":{"a":"b"}},"spec":{"replicas":2}});
        prepare_for_update(deployments(), &mut new, &old);
        assert_eq!(new["metadata"], json!({"name":"d","annotations":{"a":"b"}}));
    }

    #[test]
    fn status_update_only_moves_status() {
        let old = json!({"metadata":{"name":"d","resourceVersion":"5"},"spec":{"replicas":2},"status":{}});
        let mut new = json!({"metadata":{"name":"d","resourceVersion":"5"},"spec":{"replicas":9},"status":{"replicas":1}});
        prepare_for_status_update(&mut new, &old);
        assert_eq!(new["spec"]["replicas"], 2);
        assert_eq!(new["status"]["replicas"], 1);
    }
}
