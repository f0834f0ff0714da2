//! The node's mount table as this process sees it (`/proc/self/mountinfo`): where things are mounted
//! and how they propagate; and making a directory a shared mount point.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};

/// A mount, as mountinfo lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    /// In a peer group (`shared:N`): mounts and unmounts under it reach its peers.
    pub shared: bool,
    /// A slave of a peer group (`master:N`): its master's mounts and unmounts reach it.
    pub slave: bool,
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

/// The mounts of a mountinfo text, in its order (mounts made later come later).
pub fn parse(mountinfo: &str) -> Vec<MountInfo> {
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
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(mount_point)),
                shared,
                slave,
            })
        })
        .collect()
}

/// The mounts of this process's mount namespace.
pub fn read() -> std::io::Result<Vec<MountInfo>> {
    std::fs::read_to_string("/proc/self/mountinfo").map(|text| parse(&text))
}

/// The mount points at or under `dir`, deepest first: the order to unmount them in.
pub fn under(mounts: &[MountInfo], dir: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .map(|m| m.mount_point.clone())
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Makes `dir` a shared mount point (binding it onto itself first when it is not one), with what is
/// mounted under it: mounts made there later reach every mount namespace copied from this one.
pub fn make_rshared(dir: &Path) -> nix::Result<()> {
    let make_shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            make_shared()
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_gives_mount_points_and_their_propagation() {
        let mounts = parse(
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
             40 27 0:39 / /srv rw,relatime shared:1 - tmpfs t rw\n\
             41 27 0:40 / /mnt/with\\040space rw,relatime master:3 - tmpfs t rw\n\
             42 40 0:41 / /srv/a/b rw,relatime - tmpfs t rw\n",
        );
        assert_eq!(mounts.len(), 4);
        assert!(mounts[1].shared && !mounts[1].slave);
        assert_eq!(mounts[2].mount_point, Path::new("/mnt/with space"));
        assert!(mounts[2].slave);
        assert_eq!(
            under(&mounts, Path::new("/srv")),
            [PathBuf::from("/srv/a/b"), PathBuf::from("/srv")]
        );
        assert!(under(&mounts, Path::new("/sr")).is_empty());
    }
}
