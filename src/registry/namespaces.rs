//! Namespace strategy: `spec.finalizers` (set to `kubernetes` on create) keep a deleted namespace in
//! phase Terminating until the namespace controller has emptied it and called `finalize`; the built-in
//! namespaces cannot be deleted.

use serde_json::{json, Value};

use crate::api::resources::ResourceInfo;

use super::generic;
use super::strategy::Strategy;

pub const PROTECTED: &[&str] = &["default", "kube-system", "kube-public"];

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn prepare_for_update(&self, info: &ResourceInfo, new: &mut Value, old: &Value) {
        generic::prepare_for_update(info, new, old);
        // spec.finalizers change only through the finalize subresource.
        new["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    }
}

fn is_namespace(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Namespace"
}

/// Whether `spec.finalizers` still hold the namespace after its deletion started.
pub fn blocks_delete(info: &ResourceInfo, obj: &Value) -> bool {
    is_namespace(info)
        && obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
}

pub fn mark_terminating(info: &ResourceInfo, obj: &mut Value) {
    if is_namespace(info) {
        obj["status"]["phase"] = Value::String("Terminating".into());
    }
}

/// The finalize subresource: only `spec.finalizers` moves.
pub fn prepare_for_finalize(new: &mut Value, old: &Value) {
    let finalizers = new["spec"]["finalizers"].clone();
    let mut out = old.clone();
    out["spec"]["finalizers"] = if finalizers.is_null() {
        json!([])
    } else {
        finalizers
    };
    *new = out;
}
