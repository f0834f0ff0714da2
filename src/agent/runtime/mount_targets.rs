//! The mount targets and working directory a container's init would make in its root filesystem, made
//! by the agent before the container starts.
//!
//! Why the agent: what the init makes in the overlay's upper directory (`/etc/hosts` and its siblings when
//! the image has none, a volume's directory) is written by a process in the container's memory cgroup, so
//! the filesystem's metadata pages are charged to that cgroup. They stay cached after the container is
//! removed and keep its cgroup, and the pod's above it, alive in the kernel as "dying" memory cgroups
//! until memory pressure reclaims them: two more with every pod a node removes, and each new cgroup gets
//! slower to create. Made here, the pages are charged to the agent's cgroup, which lives on.
//!
//! The targets are made exactly as the init makes them (libcontainer's [`InRoot`]: the image's symlinks
//! are followed inside the root, never out of it). A target below an earlier mount's destination
//! (`/dev/shm` under `/dev`'s tmpfs, a subPath inside a volume) is left to the init, which makes it in
//! that mount. So is anything that fails here: the init meets the same error and reports it with the
//! container.

use std::path::Path;

use libcontainer::rootfs::in_root::InRoot;
use libcontainer::rootfs::utils::is_bind;
use nix::sys::stat::Mode;
use oci_spec::runtime::Mount;

/// Makes the targets of `mounts` and the working directory `cwd` in `rootfs` where they are missing.
pub fn prepare(rootfs: &Path, mounts: &[Mount], cwd: &Path) {
    let Ok(root) = InRoot::open(rootfs) else {
        return;
    };
    let directory_mode = Mode::from_bits_truncate(0o755);
    for (i, mount) in mounts.iter().enumerate() {
        let target = mount.destination();
        if mounts[..i]
            .iter()
            .any(|earlier| target.starts_with(earlier.destination()))
        {
            continue;
        }
        let source_is_file = is_bind(mount)
            && mount
                .source()
                .as_ref()
                .and_then(|source| std::fs::metadata(source).ok())
                .is_some_and(|m| !m.is_dir());
        let _ = if source_is_file {
            root.create_file(target, Mode::from_bits_truncate(0o644))
        } else {
            root.mkdir_all(target, directory_mode).map(drop)
        };
    }
    // The init makes a missing working directory after pivot_root, with the same mode.
    if mounts.iter().all(|m| !cwd.starts_with(m.destination())) {
        let _ = root.mkdir_all(cwd, directory_mode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn mount(destination: &str, typ: &str, source: &Path) -> Mount {
        let options = if typ == "bind" {
            vec!["rbind".to_string()]
        } else {
            Vec::new()
        };
        MountBuilder::default()
            .destination(destination)
            .typ(typ)
            .source(source)
            .options(options)
            .build()
            .unwrap()
    }

    #[test]
    fn makes_what_the_init_would_inside_the_root_and_leaves_what_other_mounts_hold() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(rootfs.join("real-run")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        // An image's absolute symlink means its own /real-run, not the host's.
        std::os::unix::fs::symlink("/real-run", rootfs.join("run")).unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("escape")).unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "127.0.0.1 localhost\n").unwrap();
        std::fs::write(rootfs.join("existing"), "kept").unwrap();
        let tmpfs = Path::new("tmpfs");

        let mounts = [
            mount("/dev", "tmpfs", tmpfs),
            mount("/dev/termination-log", "bind", &file),
            mount("/etc/hosts", "bind", &file),
            mount("/data", "bind", dir.path()),
            mount("/data/sub", "bind", dir.path()),
            mount("/run/secrets/token", "bind", dir.path()),
            mount("/escape/x", "bind", dir.path()),
            mount("/existing", "bind", &file),
        ];
        prepare(&rootfs, &mounts, Path::new("/work/dir"));

        assert!(rootfs.join("dev").is_dir());
        assert!(
            !rootfs.join("dev/termination-log").exists(),
            "below /dev's tmpfs the init makes it"
        );
        let hosts = std::fs::symlink_metadata(rootfs.join("etc/hosts")).unwrap();
        assert!(
            hosts.is_file() && hosts.len() == 0,
            "an empty file for a file's bind mount"
        );
        assert!(rootfs.join("data").is_dir());
        assert!(!rootfs.join("data/sub").exists(), "inside the /data volume");
        assert!(rootfs.join("real-run/secrets/token").is_dir());
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing is made outside the root"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join("existing")).unwrap(),
            "kept"
        );
        assert!(rootfs.join("work/dir").is_dir(), "the working directory");
    }
}
