//! The open-files limit of a long-running orch process. A node holds descriptors for every container it
//! runs (a pidfd for each while it waits for the container's exit) and the API server one per client
//! connection, so 1,000 pods need more than the soft limit of 1,024 that a shell or a systemd unit
//! usually starts a process with. orch raises its soft limit to the hard one, as Go programs such as
//! k3s do; containers get the limit the process started with, as Go's os/exec gives its children.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// An RLIMIT_NOFILE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft open-files limit to the hard one (at most the kernel's `fs.nr_open`, above which no
/// limit can be set) and returns the limit from before.
pub fn raise_open_files_limit() -> nix::Result<OpenFilesLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let ceiling = if hard == RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(soft)
    } else {
        hard
    };
    if soft < ceiling {
        setrlimit(Resource::RLIMIT_NOFILE, ceiling, hard)?;
    }
    Ok(OpenFilesLimit { soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_hard_one_and_the_old_one_is_returned() {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // One below what it was, so that the other tests of this process are not short of descriptors.
        let lowered = soft.min(hard) - 1;
        setrlimit(Resource::RLIMIT_NOFILE, lowered, hard).unwrap();
        let before = raise_open_files_limit().unwrap();
        assert_eq!(
            before,
            OpenFilesLimit {
                soft: lowered,
                hard
            }
        );
        let (raised, still_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(still_hard, hard);
        assert!(raised > lowered, "soft limit {raised}");
        assert!(
            raised == hard || hard == RLIM_INFINITY,
            "soft limit {raised} of {hard}"
        );
    }
}
