//! The DefaultStorageClass admission plugin: a claim created without `storageClassName` gets the class
//! annotated `storageclass.kubernetes.io/is-default-class: "true"` (the newest one if several are).

use serde_json::Value;

use crate::api::resources;
use crate::registry::errors::RegistryError;
use crate::registry::store::{ListOptions, Registry};

const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

pub async fn admit_claim(registry: &Registry, claim: &mut Value) -> Result<(), RegistryError> {
    if claim["spec"].get("storageClassName").is_some() {
        return Ok(());
    }
    let info = resources::find("storage.k8s.io", "v1", "storageclasses").expect("served");
    let classes = registry
        .list(info, None, &ListOptions::default())
        .await?
        .items;
    let default = classes
        .iter()
        .filter(|c| c["metadata"]["annotations"][DEFAULT_ANNOTATION] == "true")
        .max_by(|a, b| {
            let created = |c: &Value| {
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            };
            created(a).cmp(&created(b))
        });
    if let (Some(class), Some(spec)) = (default, claim["spec"].as_object_mut()) {
        spec.insert("storageClassName".into(), class["metadata"]["name"].clone());
    }
    Ok(())
}
