//! The I/O of the streaming requests, exec, attach and port-forward, once their connection is upgraded:
//! the sessions a node agent runs and the API server relays. Their protocols (paths, queries, stream
//! numbering, Status) are `api`'s; the transports (WebSocket, SPDY/3.1, the upgrade itself) are
//! `util`'s. Both the API server and the node agent use this module.

pub mod exec;
pub mod portforward;
