//! The node-side conditions of mount propagation, as containerd checks them before it makes a
//! container, in the agent's own mount namespace (the node's): a Bidirectional mount's source must
//! sit on a shared mount, a HostToContainer one's on a shared or slave mount; otherwise nothing would
//! ever propagate, and the container is not made.

use std::path::{Path, PathBuf};

use super::{MountKind, MountPropagation, MountSpec, RuntimeError};
use crate::util::mounts::{self, MountInfo};

/// The mount `path` is on: the one whose mount point is its longest prefix, the last mounted there.
fn mount_of<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    let deepest = mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())?;
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == deepest.mount_point)
}

/// containerd's ensureShared and ensureSharedOrSlave for the mounts that propagate.
pub fn check(mounts: &[MountSpec]) -> Result<(), RuntimeError> {
    let propagating: Vec<(&PathBuf, MountPropagation)> = mounts
        .iter()
        .filter_map(|m| match &m.kind {
            MountKind::Bind {
                source,
                propagation,
                ..
            } if *propagation != MountPropagation::Private => Some((source, *propagation)),
            _ => None,
        })
        .collect();
    if propagating.is_empty() {
        return Ok(());
    }
    let node = mounts::read().map_err(|source| RuntimeError::Io {
        context: "reading",
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    for (source, propagation) in propagating {
        let real = source.canonicalize().map_err(|e| RuntimeError::Io {
            context: "resolving the mount source",
            path: source.clone(),
            source: e,
        })?;
        check_one(&node, &real, propagation)?;
    }
    Ok(())
}

fn check_one(
    node: &[MountInfo],
    source: &Path,
    propagation: MountPropagation,
) -> Result<(), RuntimeError> {
    let Some(mount) = mount_of(node, source) else {
        return Ok(());
    };
    let propagates = match propagation {
        MountPropagation::Bidirectional => mount.shared,
        _ => mount.shared || mount.slave,
    };
    if propagates {
        return Ok(());
    }
    Err(RuntimeError::Propagation {
        path: source.to_path_buf(),
        mount_point: mount.mount_point.clone(),
        propagation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:39 / /srv rw,relatime shared:1 - tmpfs t rw
41 27 0:40 / /mnt/with\\040space rw,relatime master:3 - tmpfs t rw
42 40 0:41 / /srv/private rw,relatime - tmpfs t rw
43 40 0:42 / /srv/private rw,relatime shared:7 - tmpfs t rw
";

    #[test]
    fn a_source_is_on_the_deepest_latest_mount_of_its_path() {
        let node = mounts::parse(MOUNTINFO);
        let of = |p: &str| mount_of(&node, Path::new(p)).unwrap().clone();
        assert_eq!(of("/var/lib/x").mount_point, Path::new("/"));
        assert!(of("/srv/data").shared);
        assert!(of("/mnt/with space/x").slave);
        assert!(
            of("/srv/private/x").shared,
            "the mount on top of another at the same point counts"
        );
        assert!(!of("/srvx").shared, "a prefix must end at a path component");
    }

    #[test]
    fn bidirectional_wants_a_shared_mount_and_host_to_container_a_shared_or_slave_one() {
        let node = mounts::parse(MOUNTINFO);
        let check = |path: &str, propagation| {
            check_one(&node, Path::new(path), propagation).map_err(|e| e.to_string())
        };
        assert_eq!(check("/srv/a", MountPropagation::Bidirectional), Ok(()));
        assert_eq!(
            check("/mnt/with space/a", MountPropagation::HostToContainer),
            Ok(())
        );
        assert_eq!(
            check("/mnt/with space/a", MountPropagation::Bidirectional),
            Err(r#"path "/mnt/with space/a" is mounted on "/mnt/with space" but it is not a shared mount"#.into())
        );
        assert_eq!(
            check("/var/a", MountPropagation::HostToContainer),
            Err(r#"path "/var/a" is mounted on "/" but it is not a shared or slave mount"#.into())
        );
    }
}
