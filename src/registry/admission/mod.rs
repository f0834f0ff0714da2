//! Admission that needs other stored objects, run inside the registry's create path because that is
//! where defaults are applied (Kubernetes defaults before admitting): LimitRanger fills in and bounds
//! container resources from the namespace's LimitRanges; ResourceQuota refuses a create that would exceed
//! a quota and charges the quota's `status.used` for it; DefaultStorageClass gives claims the default
//! StorageClass; Priority turns a pod's PriorityClass into its priority.

pub mod default_storage_class;
pub mod limit_ranger;
pub mod priority;
pub mod resource_quota;

use serde_json::Value;

use super::errors::RegistryError;
use super::store::{ListOptions, Registry};
use crate::api::resources::{self, ResourceInfo};

/// `<plural> "<name>" is forbidden: <message>`, as Kubernetes words admission refusals.
pub fn forbidden(info: &ResourceInfo, obj: &Value, message: &str) -> RegistryError {
    let name = crate::api::meta::name(obj).unwrap_or_default();
    RegistryError::Forbidden(format!(
        "{} \"{name}\" is forbidden: {message}",
        info.plural
    ))
}

/// The objects of a core/v1 resource in a namespace.
async fn list_core(
    registry: &Registry,
    plural: &str,
    namespace: &str,
) -> Result<Vec<Value>, RegistryError> {
    let info = resources::find("", "v1", plural).expect("core resource is served");
    Ok(registry
        .list(info, Some(namespace), &ListOptions::default())
        .await?
        .items)
}
