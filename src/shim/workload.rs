//! What a container's process starts as: its command, looked up and exec'd as runc does it, with every
//! signal at its default disposition. The shim, like any Rust program, ignores SIGPIPE (so that a
//! gone reader cannot kill it), libcontainer's processes inherit that from it, and an exec keeps ignored
//! signals ignored. runc's containers start with none ignored, and programs count on it: a shell loop
//! writing into a closed pipe ends by SIGPIPE, and with SIGPIPE ignored it writes on forever.
//!
//! The command is looked up as runc looks it up (Go's `exec.LookPath`), first when the container's init
//! is ready to run it, where a command that cannot be run is refused in runc's words (`exec: "x":
//! executable file not found in $PATH`), then to exec that very file (not the C library's `execvp`, which
//! would run a script without `#!` through /bin/sh). libcontainer's own check wrapped its words twice and
//! refused a program without the execute bit for others (mode 0700), which root runs under runc.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libcontainer::error::LibcontainerError;
use libcontainer::process::channel::ChannelError;
use libcontainer::process::container_main_process::ProcessError;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::errno::Errno;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::{execv, faccessat, AccessFlags};
use oci_spec::runtime::Spec;

use crate::util::go_errors::errno_text;

#[derive(Clone)]
pub struct DefaultSignalsExecutor;

impl Executor for DefaultSignalsExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signal_dispositions();
        let (args, path) = command_and_path(spec).ok_or(ExecutorError::InvalidArg)?;
        let program = look_path(&args[0], path).map_err(ExecutorError::Other)?;
        let c_string = |bytes: &[u8]| CString::new(bytes).map_err(|_| ExecutorError::InvalidArg);
        let argv = args
            .iter()
            .map(|a| c_string(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let Err(errno) = execv(&c_string(program.as_os_str().as_bytes())?, &argv);
        Err(ExecutorError::Other(format!(
            "exec {}: {}",
            program.display(),
            errno_text(&errno.into())
        )))
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let (args, path) = command_and_path(spec).ok_or_else(|| {
            ExecutorValidationError::ArgValidationError("no command to run".into())
        })?;
        look_path(&args[0], path)
            .map(drop)
            .map_err(ExecutorValidationError::ArgValidationError)
    }
}

/// The process's arguments (at least one) and its PATH, as the init's environment has it: the last of
/// duplicate variables wins.
fn command_and_path(spec: &Spec) -> Option<(&[String], &str)> {
    let process = spec.process().as_ref()?;
    let args = process.args().as_deref().filter(|a| !a.is_empty())?;
    let path = process
        .env()
        .iter()
        .flatten()
        .filter_map(|e| e.strip_prefix("PATH="))
        .next_back()
        .unwrap_or_default();
    Some((args, path))
}

/// Where `command` is, found as Go's `exec.LookPath` finds it: as given when it holds a `/`, else in
/// the first directory of `path` where it is executable, which must not be relative (an empty entry is
/// `.`: Go refuses what it finds there since 1.19). Errors are worded as Go's `exec.Error`.
fn look_path(command: &str, path: &str) -> Result<PathBuf, String> {
    let refused = |why: String| format!("exec: {command:?}: {why}");
    if command.contains('/') {
        return executable(Path::new(command))
            .map(|()| PathBuf::from(command))
            .map_err(refused);
    }
    if !path.is_empty() {
        for dir in path.split(':') {
            let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(command);
            if executable(&candidate).is_ok() {
                return if candidate.is_absolute() {
                    Ok(candidate)
                } else {
                    Err(refused(
                        "cannot run executable found relative to current directory".into(),
                    ))
                };
            }
        }
    }
    Err(refused("executable file not found in $PATH".into()))
}

/// Go's `findExecutable`: a file (not a directory) the effective user may execute, judged by its mode
/// bits when the kernel's check is not allowed (a seccomp profile refusing `faccessat2`) or missing.
fn executable(file: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(file)
        .map_err(|e| format!("stat {}: {}", file.display(), errno_text(&e)))?;
    if metadata.is_dir() {
        return Err("is a directory".into());
    }
    match faccessat(
        None,
        file,
        AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM | Errno::ENOSYS) if metadata.permissions().mode() & 0o111 != 0 => Ok(()),
        Err(Errno::EPERM | Errno::ENOSYS) => Err(errno_text(&Errno::EACCES.into())),
        Err(e) => Err(errno_text(&e.into())),
    }
}

/// A failed build or start in words for the pod's status: what the container's init reported (a command
/// that cannot be run as the executor refused it, `exec: "x": executable file not found in $PATH`, or
/// another failure of the init) without libcontainer's wrapping, and anything else as libcontainer says
/// it. An error of the cleanup after a failed creation is left out: the cause is what the user needs.
pub fn failure_message(e: &LibcontainerError) -> String {
    fn refusal(e: &LibcontainerError) -> Option<&str> {
        match e {
            LibcontainerError::CreateContainerError(create) => refusal(create.run_error()),
            LibcontainerError::MainProcess(ProcessError::Channel(ChannelError::ExecError(
                words,
            ))) => Some(words),
            _ => None,
        }
    }
    refusal(e).map_or_else(|| e.to_string(), str::to_string)
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn commands_are_found_and_refused_as_runc_does() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        std::fs::create_dir_all(&first).unwrap();
        std::fs::create_dir_all(&second).unwrap();
        file(&first, "tool", 0o644);
        let tool = file(&second, "tool", 0o700);
        let path = format!("{}:{}", first.display(), second.display());

        // The first executable match wins; one without any execute bit is passed over.
        assert_eq!(look_path("tool", &path), Ok(tool.clone()));
        assert_eq!(
            look_path("nosuch", &path),
            Err(r#"exec: "nosuch": executable file not found in $PATH"#.into())
        );
        assert_eq!(
            look_path("tool", ""),
            Err(r#"exec: "tool": executable file not found in $PATH"#.into())
        );
        // Found through a relative PATH entry: refused, as Go does since 1.19.
        let up = std::env::current_dir().unwrap().components().count() - 1;
        let relative = format!(
            "{}{}",
            "../".repeat(up),
            second.strip_prefix("/").unwrap().display()
        );
        assert_eq!(
            look_path("tool", &relative),
            Err(
                r#"exec: "tool": cannot run executable found relative to current directory"#.into()
            )
        );
        // With a slash, PATH plays no part.
        let tool = tool.to_str().unwrap();
        assert_eq!(look_path(tool, ""), Ok(PathBuf::from(tool)));
        let missing = format!("{}/nosuch", first.display());
        assert_eq!(
            look_path(&missing, &path),
            Err(format!(
                "exec: {missing:?}: stat {missing}: no such file or directory"
            ))
        );
        let plain = first.join("tool").display().to_string();
        assert_eq!(
            look_path(&plain, &path),
            Err(format!("exec: {plain:?}: permission denied"))
        );
        let dir_name = first.display().to_string();
        assert_eq!(
            look_path(&dir_name, &path),
            Err(format!("exec: {dir_name:?}: is a directory"))
        );
    }

    #[test]
    fn an_executor_refusal_is_reported_in_its_own_words() {
        let words = r#"exec: "nosuch": executable file not found in $PATH"#;
        let refused: LibcontainerError =
            ProcessError::Channel(ChannelError::ExecError(words.into())).into();
        assert_eq!(failure_message(&refused), words);
        let other = LibcontainerError::InvalidInput("bad spec".into());
        assert_eq!(failure_message(&other), other.to_string());
    }
}
