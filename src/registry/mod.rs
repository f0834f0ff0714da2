//! The registry: how each resource is stored. One `Strategy` per resource kind decides defaults,
//! validation and what an update may change; `ResourceStore` runs the generic verbs (get, list, watch,
//! create, update with compare-and-swap retries, graceful delete with finalizers) on top of the store.

mod admission;
mod errors;
mod generic;
mod jobs;
mod namespaces;
mod pods;
mod secrets;
mod services;
mod store;
mod strategy;
mod watch_objects;

pub use errors::RegistryError;
pub use pods::bind as bind_pod;
pub use services::ServiceAllocator;
pub use store::resource_version_of;
pub use store::{
    CreateOptions, DeleteOptions, DeleteOutcome, ListOptions, ListResult, Registry, UpdateOptions,
    WatchEvent, WatchEventType, WatchOptions,
};
pub use strategy::Strategy;
pub use watch_objects::WatchObject;
