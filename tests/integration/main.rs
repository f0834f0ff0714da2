//! End-to-end tests: a real `orch server` process (embedded SQLite, HTTPS) driven by the real kubectl on
//! this machine. One test binary with modules, so the suite links once.

mod batch;
mod harness;
mod images;
mod kubectl_workflows;
mod leader;
mod persistence;
mod pods;
mod python_client;
mod registry;
mod runtime;
mod sets;
mod workloads;
