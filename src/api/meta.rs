//! Accessors for the `metadata` of objects held as JSON, so every layer reads and writes names, labels,
//! owners and timestamps the same way.

use serde_json::{Map, Value};

/// The annotation a provisioner sets on the PersistentVolumes it makes, and the value of k3s's local-path
/// provisioner (orch's, for the `local-path` StorageClass).
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const LOCAL_PATH_PROVISIONER: &str = "rancher.io/local-path";

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// The `metadata` map, created if absent or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = obj.as_object_mut().expect("API objects are JSON objects");
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion")
}

pub fn set_meta(obj: &mut Value, field: &str, value: impl Into<Value>) {
    metadata_mut(obj).insert(field.to_string(), value.into());
}

pub fn remove_meta(obj: &mut Value, field: &str) -> Option<Value> {
    metadata_mut(obj).remove(field)
}

pub fn labels(obj: &Value) -> Map<String, Value> {
    metadata(obj)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn set_finalizers(obj: &mut Value, finalizers: &[String]) {
    if finalizers.is_empty() {
        remove_meta(obj, "finalizers");
    } else {
        set_meta(
            obj,
            "finalizers",
            finalizers
                .iter()
                .map(|f| Value::String(f.clone()))
                .collect::<Vec<_>>(),
        );
    }
}

pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// Reads a dotted path (`spec.nodeName`) as a string, the way field selectors see values.
pub fn field_string(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// RFC 3339 with seconds precision, as Kubernetes serialises `metav1.Time`.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `metav1.MicroTime`: six fractional digits.
pub fn format_micro_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_treat_empty_strings_as_absent() {
        let obj = json!({"metadata":{"name":"a","namespace":""}});
        assert_eq!(name(&obj), Some("a"));
        assert_eq!(namespace(&obj), None);
    }

    #[test]
    fn field_string_reads_nested_scalars() {
        let obj = json!({"spec":{"nodeName":"n1","unschedulable":true,"replicas":3}});
        assert_eq!(field_string(&obj, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(
            field_string(&obj, "spec.unschedulable").as_deref(),
            Some("true")
        );
        assert_eq!(field_string(&obj, "spec.replicas").as_deref(), Some("3"));
        assert_eq!(field_string(&obj, "spec.missing"), None);
    }

    #[test]
    fn times_format_like_kubernetes() {
        let t: jiff::Timestamp = "2026-11-23T10:11:12.345678901Z".parse().unwrap();
        assert_eq!(format_time(t), "2026-11-23T10:11:12Z");
        assert_eq!(format_micro_time(t), "2026-11-23T10:11:12.345678Z");
    }
}
