//! Placeholder until the RuntimeDefault profile lands from the seccomp branch.
use std::collections::HashSet;

use oci_spec::runtime::{Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder};

pub fn runtime_default(_capabilities: &HashSet<Capability>) -> LinuxSeccomp {
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .build()
        .expect("valid")
}
