//! The per-resource policy hooks the generic store calls. Most kinds use the generic strategy; kinds with
//! extra rules (pods, namespaces, services) have their own file.

use serde_json::Value;

use crate::api::resources::ResourceInfo;
use crate::api::validation::FieldError;

use super::generic;

pub trait Strategy: Send + Sync {
    /// Defaults and create-time resets (status cleared, generation 1).
    fn prepare_for_create(&self, info: &ResourceInfo, obj: &mut Value) {
        generic::prepare_for_create(info, obj);
    }

    /// Carries over what a main-resource update may not change (status) and bumps the generation.
    fn prepare_for_update(&self, info: &ResourceInfo, new: &mut Value, old: &Value) {
        generic::prepare_for_update(info, new, old);
    }

    /// A status update changes only the status.
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        generic::prepare_for_status_update(new, old);
    }

    fn validate_create(&self, info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
        crate::api::validation::validate_create(info.kind, obj, info.namespaced)
    }

    fn validate_update(&self, info: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
        crate::api::validation::validate_update(info.kind, new, old, info.namespaced)
    }

    /// The grace period a delete waits before the object goes, or `None` to delete at once.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }
}

pub struct GenericStrategy;

impl Strategy for GenericStrategy {}
