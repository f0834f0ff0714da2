//! API types without I/O: the resource table, typed decoding, metadata accessors, selectors, field sets,
//! defaults, validation, quantities, pod resource sums and version conversion.

pub mod conversion;
pub mod defaults;
pub mod exec;
pub mod fieldset;
pub mod kubelet;
pub mod logs;
pub mod meta;
pub mod pod_resources;
pub mod portforward;
pub mod quantity;
pub mod quota;
pub mod resources;
pub mod selector;
pub mod stats;
pub mod typed;
pub mod validation;
