//! orch: a single-binary, k3s-like edge orchestrator. See DESIGN.md for the map of modules.

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod cli;
pub mod client;
pub mod controllers;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod shim;
pub mod store;
pub mod streaming;
pub mod util;
