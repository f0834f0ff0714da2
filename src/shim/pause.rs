//! `orch pause`: the process that holds the PID namespace a pod's containers share
//! (`shareProcessNamespace`), as the pause container does on Kubernetes. The agent starts one per such pod.
//! It leaves the agent's session (so that the agent's end does not end it), enters a new PID namespace and
//! forks the process that is PID 1 there: the parent prints that process's pid (as the agent's namespace
//! sees it) and exits; PID 1 confines itself (an empty root, user nobody, no capabilities: the pod's
//! containers can see it) and only reaps the orphans the pod's processes leave, until SIGTERM or SIGINT,
//! or the SIGKILL of the pod's release, which ends every process of the namespace with it.

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Runs the holder; returns the exit code of the process that started it.
pub fn run() -> i32 {
    let _ = nix::unistd::setsid();
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWPID) {
        eprintln!("pause: entering a new PID namespace: {e}");
        return 1;
    }
    // Blocked before the fork, so that PID 1 waits for them: a PID namespace's init gets no signal it
    // has no handler for, unless the signal is blocked and waited for.
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(signal);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("pause: blocking signals: {e}");
        return 1;
    }
    // SAFETY: this process is single-threaded (`orch pause` starts no runtime), so the child may run
    // anything.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            println!("{child}");
            0
        }
        Ok(ForkResult::Child) => {
            // Opened before the root goes.
            let null = std::fs::File::options()
                .read(true)
                .write(true)
                .open("/dev/null");
            if let Err(e) = confine() {
                eprintln!("pause: {e}");
                std::process::exit(1);
            }
            // Nothing to say any more, and the agent reads until the end of the output.
            if let Ok(null) = null {
                use std::os::fd::AsRawFd;
                for fd in 0..=2 {
                    let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
                }
            }
            reap(&signals)
        }
        Err(e) => {
            eprintln!("pause: forking the namespace's init: {e}");
            1
        }
    }
}

/// The user PID 1 becomes: nobody's, as the pause container runs.
const NOBODY: u32 = 65535;

/// Leaves PID 1 nothing a container of the pod could use through it (`/proc/1/root`, `/proc/1/environ`,
/// ptrace): an empty root of its own (a read-only tmpfs in a mount namespace of its own), no user or group
/// of the node's, no capability, and no core dumps or ptrace by its namespace.
fn confine() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let step = |what: &'static str| move |e: nix::Error| format!("{what}: {e}");
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(step("a mount namespace"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("private mounts"))?;
    // Any directory does as the mount point: the tmpfs covers it in this namespace only.
    let root = "/tmp";
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=4k,mode=555"),
    )
    .map_err(step("an empty root"))?;
    nix::unistd::chroot(root).map_err(step("chroot"))?;
    nix::unistd::chdir("/").map_err(step("chdir"))?;
    for capability in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number; numbers the kernel lacks fail with EINVAL.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0) };
    }
    nix::unistd::setgroups(&[]).map_err(step("setgroups"))?;
    let (gid, uid) = (
        nix::unistd::Gid::from_raw(NOBODY),
        nix::unistd::Uid::from_raw(NOBODY),
    );
    nix::unistd::setresgid(gid, gid, gid).map_err(step("setresgid"))?;
    // With every uid not 0, the kernel clears the permitted and effective capabilities.
    nix::unistd::setresuid(uid, uid, uid).map_err(step("setresuid"))?;
    nix::sys::prctl::set_no_new_privs().map_err(step("no_new_privs"))?;
    nix::sys::prctl::set_dumpable(false).map_err(step("not dumpable"))?;
    Ok(())
}

/// PID 1's life: reaps every child that ends, and ends on SIGTERM or SIGINT.
fn reap(signals: &SigSet) -> ! {
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            },
            Ok(_) => std::process::exit(0),
            Err(_) => {}
        }
    }
}
