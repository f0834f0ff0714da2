use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::OnceLock;

use nix::sys::statfs::{CGROUP_SUPER_MAGIC, statfs};
use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle};
use procfs::ProcError;
use procfs::process::MountInfo;

use super::ControllerType;
use crate::common::DEFAULT_CGROUP_ROOT;
use super::controller_type::CONTROLLERS;

#[derive(thiserror::Error, Debug)]
pub enum V1MountPointError {
    #[error("io error: {0}")]
    Io(#[from] std::io::Error),
    #[error("failed to get mountinfo: {0}")]
    MountInfo(ProcError),
    #[error("could not find mountpoint for {subsystem}")]
    NotFound { subsystem: ControllerType },
    #[error(transparent)]
    Pathrs(#[from] pathrs::error::Error),
}

/// The mount points of this process's cgroup v1 hierarchies, found once per process.
///
/// orch patch: upstream reads `/proc/self/mountinfo` again for every controller, and to the end of the
/// file for a controller the kernel lacks. Each read makes the kernel format every mount on the host, and on
/// a node with hundreds of container mounts that dominated container start. The hierarchies are looked up
/// once per process (runc made the same change: opencontainers/runc#2599), and without mountinfo where the
/// cgroup root holds them: its directories that are cgroup v1 mounts are the hierarchies, one `statfs`
/// each. Controllers are matched to mount points by name below, as upstream does, so this finds what
/// upstream finds under the cgroup root. Mountinfo is read only when the root holds no v1 hierarchy.
fn cgroup_mounts() -> Result<&'static [PathBuf], V1MountPointError> {
    static MOUNTS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    if let Some(mounts) = MOUNTS.get() {
        return Ok(mounts);
    }
    let mut mounts = mounts_under_cgroup_root();
    if mounts.is_empty() {
        mounts = mounts_from_mountinfo()?;
    }
    Ok(MOUNTS.get_or_init(|| mounts))
}

fn mounts_under_cgroup_root() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(DEFAULT_CGROUP_ROOT) else {
        return Vec::new();
    };
    entries
        .flatten()
        // Comounted controllers also appear as symlinks (`cpu` -> `cpu,cpuacct`): the directory is enough.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|path| statfs(path).is_ok_and(|s| s.filesystem_type() == CGROUP_SUPER_MAGIC))
        .collect()
}

fn mounts_from_mountinfo() -> Result<Vec<PathBuf>, V1MountPointError> {
    let reader = BufReader::new(ProcfsHandle::new()?.open(
        ProcfsBase::ProcSelf,
        "mountinfo",
        OpenFlags::O_RDONLY | OpenFlags::O_CLOEXEC,
    )?);
    let mut mounts = Vec::new();
    for line in reader.lines() {
        let mount = MountInfo::from_line(&line?).map_err(V1MountPointError::MountInfo)?;
        if mount.fs_type == "cgroup" {
            mounts.push(mount.mount_point);
        }
    }
    Ok(mounts)
}

/// List all cgroup v1 subsystem mount points on the system. This can include unsupported
/// subsystems, comounted controllers and named hierarchies.
pub fn list_subsystem_mount_points() -> Result<Vec<PathBuf>, V1MountPointError> {
    Ok(cgroup_mounts()?.to_vec())
}

/// List the mount points of all currently supported cgroup subsystems.
pub fn list_supported_mount_points() -> Result<HashMap<ControllerType, PathBuf>, V1MountPointError>
{
    let mut mount_paths = HashMap::with_capacity(CONTROLLERS.len());

    for controller in CONTROLLERS {
        if let Ok(mount_point) = get_subsystem_mount_point(controller) {
            mount_paths.insert(controller.to_owned(), mount_point);
        }
    }

    Ok(mount_paths)
}

pub fn get_subsystem_mount_point(subsystem: &ControllerType) -> Result<PathBuf, V1MountPointError> {
    let subsystem_name = subsystem.to_string();
    cgroup_mounts()?
        .iter()
        .find(|m| {
            // Some systems mount net_prio and net_cls in the same directory
            // other systems mount them in their own directories. This
            // should handle both cases.
            match subsystem_name.as_str() {
                "net_cls" => ["net_cls,net_prio", "net_prio,net_cls", "net_cls"]
                    .iter()
                    .any(|s| m.ends_with(s)),
                "net_prio" => ["net_cls,net_prio", "net_prio,net_cls", "net_prio"]
                    .iter()
                    .any(|s| m.ends_with(s)),
                "cpu" => ["cpu,cpuacct", "cpu"]
                    .iter()
                    .any(|s| m.ends_with(s)),
                "cpuacct" => ["cpu,cpuacct", "cpuacct"]
                    .iter()
                    .any(|s| m.ends_with(s)),
                _ => m.ends_with(&subsystem_name),
            }
        })
        .cloned()
        .ok_or(V1MountPointError::NotFound {
            subsystem: *subsystem,
        })
}
