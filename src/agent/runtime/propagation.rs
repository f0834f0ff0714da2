//! The node-side conditions of mount propagation, as containerd checks them before it makes a
//! container: a Bidirectional mount's source must sit on a shared mount of the node, a HostToContainer
//! one's on a shared or slave mount; otherwise nothing would ever propagate and the container is not
//! made.

use std::path::{Path, PathBuf};

use super::{MountKind, MountPropagation, MountSpec, RuntimeError};

/// A mount of the node, as `/proc/self/mountinfo` lists it.
#[derive(Debug, Clone, PartialEq)]
struct NodeMount {
    mount_point: PathBuf,
    shared: bool,
    slave: bool,
}

/// `\040`-style octal escapes of mountinfo's paths.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse(mountinfo: &str) -> Vec<NodeMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mount_point = fields.get(4)?;
            let optional = fields.get(6..)?.iter().take_while(|f| **f != "-");
            let (mut shared, mut slave) = (false, false);
            for tag in optional {
                shared |= tag.starts_with("shared:");
                slave |= tag.starts_with("master:");
            }
            Some(NodeMount {
                mount_point: PathBuf::from(unescape(mount_point)),
                shared,
                slave,
            })
        })
        .collect()
}

/// The mount `path` is on: the one whose mount point is its longest prefix, the last mounted there.
fn mount_of<'a>(mounts: &'a [NodeMount], path: &Path) -> Option<&'a NodeMount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count())
        .and_then(|deepest| {
            mounts
                .iter()
                .rev()
                .find(|m| m.mount_point == deepest.mount_point)
        })
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
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| RuntimeError::Io {
            context: "reading",
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    check_against(&parse(&mountinfo), &propagating)
}

fn check_against(
    node: &[NodeMount],
    propagating: &[(&PathBuf, MountPropagation)],
) -> Result<(), RuntimeError> {
    for (source, propagation) in propagating {
        let real = source
            .canonicalize()
            .unwrap_or_else(|_| source.to_path_buf());
        let Some(mount) = mount_of(node, &real) else {
            continue;
        };
        let (ok, wanted) = match propagation {
            MountPropagation::Bidirectional => (mount.shared, "shared"),
            _ => (mount.shared || mount.slave, "shared or slave"),
        };
        if !ok {
            return Err(RuntimeError::Propagation {
                path: real,
                mount_point: mount.mount_point.clone(),
                wanted,
            });
        }
    }
    Ok(())
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
        let node = parse(MOUNTINFO);
        let of = |p: &str| mount_of(&node, Path::new(p)).unwrap().clone();
        assert_eq!(of("/var/lib/x").mount_point, Path::new("/"));
        assert!(of("/srv/data").shared);
        assert!(of("/mnt/with space/x").slave, "escapes are read");
        assert!(
            of("/srv/private/x").shared,
            "the mount on top of another at the same point counts"
        );
        assert!(!of("/srvx").shared, "a prefix must end at a path component");
    }

    #[test]
    fn bidirectional_wants_a_shared_mount_and_host_to_container_a_shared_or_slave_one() {
        let node = parse(MOUNTINFO);
        let check = |path: &str, propagation| {
            let path = PathBuf::from(path);
            check_against(&node, &[(&path, propagation)]).map_err(|e| e.to_string())
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
