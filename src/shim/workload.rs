//! What a container's process starts as: its command, exec'd by libcontainer's default executor, with
//! every signal at its default disposition. The shim, like any Rust program, ignores SIGPIPE (so that a
//! gone reader cannot kill it), libcontainer's processes inherit that from it, and an exec keeps ignored
//! signals ignored. runc's containers start with none ignored, and programs count on it: a shell loop
//! writing into a closed pipe ends by SIGPIPE, and with SIGPIPE ignored it writes on forever.

use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{signal, SigHandler, Signal};
use oci_spec::runtime::Spec;

#[derive(Clone)]
pub struct DefaultSignalsExecutor;

impl Executor for DefaultSignalsExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signal_dispositions();
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

fn reset_signal_dispositions() {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler; the exec that follows would drop any handler anyway.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
    // The real-time signals the C library leaves to programs.
    for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: as above.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
}
