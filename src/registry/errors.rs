//! What the registry can answer instead of an object. The API server turns each into a `metav1.Status`.

use crate::api::validation::FieldError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {reason}")]
    Conflict {
        resource: String,
        name: String,
        reason: String,
    },
    #[error("{kind} \"{name}\" is invalid: {}", causes.iter().map(FieldError::message).collect::<Vec<_>>().join(", "))]
    Invalid {
        kind: String,
        name: String,
        group: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("too old resource version: {requested} ({current})")]
    Expired { requested: i64, current: i64 },
    #[error("{0}")]
    Internal(String),
}

impl RegistryError {
    pub fn from_store(e: StoreError, resource: &str, name: &str) -> Self {
        match e {
            StoreError::AlreadyExists(_) => {
                RegistryError::AlreadyExists { resource: resource.to_string(), name: name.to_string() }
            }
            StoreError::NotFound(_) => RegistryError::NotFound { resource: resource.to_string(), name: name.to_string() },
            StoreError::Conflict { .. } => RegistryError::Conflict {
                resource: resource.to_string(),
                name: name.to_string(),
                reason: "the object has been modified; please apply your changes to the latest version and try again"
                    .to_string(),
            },
            StoreError::Compacted { requested, compacted } => RegistryError::Expired { requested, current: compacted },
            other => RegistryError::Internal(other.to_string()),
        }
    }
}
