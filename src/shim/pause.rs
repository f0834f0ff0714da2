//! `orch pause`: the process that holds the PID namespace a pod's containers share
//! (`shareProcessNamespace`), as the pause container does on Kubernetes. The agent starts one per such pod.
//! It leaves the agent's session (so that the agent's end does not end it), enters a new PID namespace and
//! forks the process that is PID 1 there: the parent prints that process's pid (as the agent's namespace
//! sees it) and exits; PID 1 only reaps the orphans the pod's processes leave, until SIGTERM or SIGINT, or
//! the SIGKILL of the pod's release, which ends every process of the namespace with it.

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
        Ok(ForkResult::Child) => reap(&signals),
        Err(e) => {
            eprintln!("pause: forking the namespace's init: {e}");
            1
        }
    }
}

/// PID 1's life: reaps every child that ends, and ends on SIGTERM or SIGINT.
fn reap(signals: &SigSet) -> ! {
    // Nothing to say any more, and the agent reads until the end of the output.
    if let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
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
