//! Control loops that keep the cluster's objects consistent. Each reads and writes only through the API
//! client, so validation and admission always run; each is level-based, so a restart converges to the same
//! state.

pub mod garbage_collector;
pub mod namespace;
