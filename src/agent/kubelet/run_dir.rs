//! `--run-dir` holds what a reboot must clear: the pods' namespace files, the containers' bundles and
//! runtime state, and the shims' sockets. It is on tmpfs where `/run` is (as on systemd hosts); where it
//! is on disk, the agent mounts a tmpfs on it before anything is created there. That keeps the promise on
//! hosts that keep `/run` on disk, and spares the disk the files every container start creates and every
//! stop deletes (measured costly on an ext4 without a journal, which scans recently freed inodes on every
//! creation).

use std::path::Path;

use nix::mount::{mount, MsFlags};

use crate::agent::AgentError;

/// What became of the run dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunDir {
    /// It is on tmpfs already: its own, or one it is inside of.
    Volatile,
    /// A tmpfs was mounted on it.
    Mounted,
    /// It is on disk and already holds something (state of containers still running, from before this
    /// was done), so it is left as it is: a mount over it would hide that state from the agent.
    KeptOnDisk,
}

/// Makes `dir` volatile if it can be without hiding anything; see [`RunDir`].
pub fn ensure_volatile(dir: &Path) -> Result<RunDir, AgentError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        AgentError::Config(format!("{what} the run dir {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| failed("creating", &e))?;
    let fs = nix::sys::statfs::statfs(dir).map_err(|e| failed("inspecting", &e))?;
    if fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC {
        return Ok(RunDir::Volatile);
    }
    let holds_something = std::fs::read_dir(dir)
        .map_err(|e| failed("listing", &e))?
        .next()
        .is_some();
    if holds_something {
        return Ok(RunDir::KeptOnDisk);
    }
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|e| failed("mounting a tmpfs on", &e))?;
    Ok(RunDir::Mounted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::network::netns::enter_scratch_namespaces;
    use nix::sched::CloneFlags;

    /// Runs `test` on a thread of its own in a private mount namespace, so that its mounts never reach the
    /// host and vanish with the thread.
    fn in_private_mounts(test: impl FnOnce() + Send + 'static) {
        let outcome = std::thread::spawn(move || {
            enter_scratch_namespaces(CloneFlags::empty());
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(test))
        })
        .join()
        .expect("test thread");
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// A directory on the disk the checkout is on, as /run is on hosts that keep it there.
    fn on_disk() -> tempfile::TempDir {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::create_dir_all(&target).unwrap();
        let dir = tempfile::tempdir_in(target).unwrap();
        assert!(
            !is_tmpfs(dir.path()),
            "the run dir tests need the checkout on a disk, not on tmpfs"
        );
        dir
    }

    fn is_tmpfs(dir: &Path) -> bool {
        nix::sys::statfs::statfs(dir).unwrap().filesystem_type() == nix::sys::statfs::TMPFS_MAGIC
    }

    #[test]
    fn an_empty_run_dir_on_disk_gets_a_tmpfs_once() {
        in_private_mounts(|| {
            let base = on_disk();
            let run = base.path().join("run");
            assert_eq!(ensure_volatile(&run).unwrap(), RunDir::Mounted);
            assert!(is_tmpfs(&run));
            std::fs::write(run.join("state"), b"kept").unwrap();
            // An agent started again finds its tmpfs and what is on it.
            assert_eq!(ensure_volatile(&run).unwrap(), RunDir::Volatile);
            assert_eq!(std::fs::read(run.join("state")).unwrap(), b"kept");
            nix::mount::umount2(&run, nix::mount::MntFlags::MNT_DETACH).unwrap();
        });
    }

    #[test]
    fn a_run_dir_on_disk_that_holds_state_is_left_as_it_is() {
        in_private_mounts(|| {
            let base = on_disk();
            let run = base.path().join("run");
            std::fs::create_dir_all(run.join("containers/abc")).unwrap();
            assert_eq!(ensure_volatile(&run).unwrap(), RunDir::KeptOnDisk);
            assert!(!is_tmpfs(&run));
            assert!(run.join("containers/abc").is_dir(), "nothing is hidden");
        });
    }
}
