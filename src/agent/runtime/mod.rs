//! The container runtime.

pub mod seccomp;
