//! Kubernetes' `RuntimeDefault` seccomp profile, as containerd generates it (`contrib/seccomp`,
//! `DefaultProfile`): deny with EPERM by default, allow the syscalls an ordinary container uses, allow the
//! privileged ones only when the container holds the capability they need, and keep `clone` from creating
//! namespaces without CAP_SYS_ADMIN. The result is the OCI `linux.seccomp` section; libcontainer compiles it
//! with libseccomp when it starts the container.

use std::collections::HashSet;
use std::sync::OnceLock;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// Allowed for every container. Names the native ABI lacks (the `*32` and `*_time64` variants on 64-bit
/// hosts, say) stay, as in containerd: libseccomp applies them to the 32-bit ABIs in the architectures
/// list that have them, and libcontainer skips any name libseccomp does not know at all.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
    "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
    "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
    "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr",
    "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64",
    "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait",
    "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
    "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32",
    "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
    "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr",
    "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "map_shadow_stack", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify",
    "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
    "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
    "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
    "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop", "semtimedop",
    "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid",
    "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid", "setsockopt",
    "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl", "shmdt",
    "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall",
    "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime",
    "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// `personality(2)` personas a container may switch to: PER_LINUX, UNAME26, PER_LINUX32,
/// PER_LINUX32|UNAME26, and 0xffffffff, which only queries the current persona.
const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Before Linux 4.8 seccomp could be bypassed with ptrace, so these are allowed to everyone only on newer
/// kernels (and otherwise only with CAP_SYS_PTRACE).
const PTRACE_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// Syscalls only this architecture has, allowed to everyone.
#[cfg(target_arch = "x86_64")]
const ARCH_ALLOWED: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ARCH_ALLOWED: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_ALLOWED: &[&str] = &[];

/// The seccomp architectures a container on this host may use: the native one and the compat ABIs the
/// kernel also runs (containerd lists none for architectures it does not know, and neither do we).
#[cfg(target_arch = "x86_64")]
const ARCHITECTURES: &[Arch] = &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
#[cfg(target_arch = "aarch64")]
const ARCHITECTURES: &[Arch] = &[Arch::ScmpArchArm, Arch::ScmpArchAarch64];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHITECTURES: &[Arch] = &[];

/// Syscalls allowed only when the container holds the capability the kernel would check for them anyway;
/// denying them up front shrinks the kernel surface an unprivileged container can reach. In containerd's
/// order, so the generated profile lists them the same way.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// The `clone(2)` flags that create namespaces; without CAP_SYS_ADMIN clone is allowed only with none set.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// s390 passes clone's flags second (its first two arguments are swapped).
const CLONE_FLAGS_ARG: usize = if cfg!(target_arch = "s390x") { 1 } else { 0 };

/// The `RuntimeDefault` profile for a container holding `capabilities` (containerd keys on the bounding
/// set; the CRI gives every set the same list). Syscalls not listed fail with EPERM; `clone3` fails with
/// ENOSYS instead unless CAP_SYS_ADMIN is held, because its flags live in memory seccomp cannot inspect and
/// ENOSYS makes glibc fall back to `clone`, whose flags the profile can check.
pub fn runtime_default(capabilities: &HashSet<Capability>) -> LinuxSeccomp {
    static PTRACE_IS_SAFE: OnceLock<bool> = OnceLock::new();
    let ptrace_is_safe = *PTRACE_IS_SAFE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|release| release_at_least(&release, (4, 8)))
            .unwrap_or(false)
    });
    profile(capabilities, ptrace_is_safe)
}

/// The profile, with the host-kernel question answered by the caller so tests can ask both ways.
fn profile(capabilities: &HashSet<Capability>, ptrace_is_safe: bool) -> LinuxSeccomp {
    let mut syscalls = vec![allow(ALLOWED)];

    // socket(2) for every address family but AF_ALG (the kernel crypto API) and AF_VSOCK (host–guest
    // sockets), as three single-comparison ranges: libcontainer, like runc, turns several comparisons of
    // one argument into separate rules that OR, so "!= AF_ALG && != AF_VSOCK" cannot be one rule. On
    // socketcall ABIs (32-bit x86) socket() goes through socketcall, which is allowed unconditionally.
    let (alg, vsock) = (libc::AF_ALG as u64, libc::AF_VSOCK as u64);
    syscalls.push(allow_if(
        "socket",
        arg(0, LinuxSeccompOperator::ScmpCmpLt, alg),
    ));
    syscalls.push(allow_if(
        "socket",
        arg(0, LinuxSeccompOperator::ScmpCmpEq, alg + 1),
    ));
    syscalls.push(allow_if(
        "socket",
        arg(0, LinuxSeccompOperator::ScmpCmpGt, vsock),
    ));

    for &persona in PERSONALITIES {
        syscalls.push(allow_if(
            "personality",
            arg(0, LinuxSeccompOperator::ScmpCmpEq, persona),
        ));
    }

    if ptrace_is_safe {
        syscalls.push(allow(PTRACE_SINCE_4_8));
    }
    if !ARCH_ALLOWED.is_empty() {
        syscalls.push(allow(ARCH_ALLOWED));
    }

    for (capability, names) in BY_CAPABILITY {
        if capabilities.contains(capability) {
            syscalls.push(allow(names));
        }
    }

    if !capabilities.contains(&Capability::SysAdmin) {
        // (flags & CLONE_NAMESPACE_FLAGS) == 0
        let no_namespaces = LinuxSeccompArgBuilder::default()
            .index(CLONE_FLAGS_ARG)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .value(CLONE_NAMESPACE_FLAGS)
            .value_two(0u64)
            .build()
            .expect("a seccomp argument with every field set");
        syscalls.push(allow_if("clone", no_namespaces));

        let mut clone3 = LinuxSyscall::default();
        clone3
            .set_names(vec!["clone3".to_owned()])
            .set_action(LinuxSeccompAction::ScmpActErrno)
            .set_errno_ret(Some(libc::ENOSYS as u32));
        syscalls.push(clone3);
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(libc::EPERM as u32))
        .set_architectures(Some(ARCHITECTURES.to_vec()))
        .set_syscalls(Some(syscalls));
    seccomp
}

fn allow(names: &[&str]) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall
        .set_names(names.iter().map(|&name| name.to_owned()).collect())
        .set_action(LinuxSeccompAction::ScmpActAllow);
    syscall
}

fn allow_if(name: &str, condition: LinuxSeccompArg) -> LinuxSyscall {
    let mut syscall = allow(&[name]);
    syscall.set_args(Some(vec![condition]));
    syscall
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .build()
        .expect("a seccomp argument with every field set")
}

/// Whether a kernel release string ("6.1.0-18-amd64") is at least `(major, minor)`; `None` if it does not
/// start with a version.
fn release_at_least(release: &str, (major, minor): (u32, u32)) -> Option<bool> {
    let mut numbers = release.trim().split(|c: char| !c.is_ascii_digit());
    let release_major: u32 = numbers.next()?.parse().ok()?;
    let release_minor: u32 = numbers.next()?.parse().ok()?;
    Some((release_major, release_minor) >= (major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[Capability]) -> HashSet<Capability> {
        list.iter().copied().collect()
    }

    /// The rules naming `name`, in profile order.
    fn rules<'a>(profile: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|rule| rule.names().iter().any(|n| n == name))
            .collect()
    }

    /// Whether `name` is allowed whatever its arguments.
    fn allowed(profile: &LinuxSeccomp, name: &str) -> bool {
        rules(profile, name).iter().any(|rule| {
            rule.action() == LinuxSeccompAction::ScmpActAllow
                && rule.args().as_ref().is_none_or(|args| args.is_empty())
        })
    }

    #[test]
    fn serialises_to_the_config_json_shape() {
        let json = serde_json::to_value(runtime_default(&HashSet::new())).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        #[cfg(target_arch = "aarch64")]
        assert_eq!(
            json["architectures"],
            serde_json::json!(["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"])
        );

        let syscalls = json["syscalls"].as_array().unwrap();
        assert_eq!(syscalls[0]["action"], "SCMP_ACT_ALLOW");
        assert!(syscalls[0]["names"]
            .as_array()
            .unwrap()
            .contains(&"read".into()));
        assert!(syscalls[0].get("args").is_none());

        let clone = syscalls
            .iter()
            .find(|s| s["names"] == serde_json::json!(["clone"]))
            .unwrap();
        assert_eq!(
            clone["args"],
            serde_json::json!([{"index": 0, "value": 0x7e02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}])
        );
        let clone3 = syscalls
            .iter()
            .find(|s| s["names"] == serde_json::json!(["clone3"]))
            .unwrap();
        assert_eq!(clone3["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3["errnoRet"], 38);

        // And libcontainer reads it back unchanged from a config.json.
        let back: LinuxSeccomp = serde_json::from_value(json).unwrap();
        assert_eq!(back, runtime_default(&HashSet::new()));
    }

    #[test]
    fn ordinary_syscalls_are_allowed_to_everyone() {
        let profile = runtime_default(&HashSet::new());
        for name in [
            "read",
            "write",
            "execve",
            "exit_group",
            "epoll_wait",
            "futex",
            "openat",
            "getpid",
            "mmap",
            "rt_sigreturn",
            "name_to_handle_at",
        ] {
            assert!(allowed(&profile, name), "{name} should be allowed");
        }
        #[cfg(target_arch = "x86_64")]
        assert!(allowed(&profile, "arch_prctl"));
        // clone is allowed, but only without namespace flags.
        assert_eq!(rules(&profile, "clone").len(), 1);
        assert!(!allowed(&profile, "clone"));
    }

    #[test]
    fn privileged_syscalls_are_denied_without_their_capability() {
        let profile = runtime_default(&HashSet::new());
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "reboot",
            "init_module",
            "finit_module",
            "chroot",
            "bpf",
            "perf_event_open",
            "syslog",
            "clock_settime",
            "acct",
            "kcmp",
            "iopl",
            "vhangup",
            "mbind",
            "open_by_handle_at",
            "io_uring_setup",
            "userfaultfd",
        ] {
            assert!(!allowed(&profile, name), "{name} should be denied");
        }
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let profile = runtime_default(&caps(&[Capability::SysAdmin, Capability::SysBoot]));
        for name in [
            "mount", "umount2", "unshare", "setns", "clone", "clone3", "reboot",
        ] {
            assert!(allowed(&profile, name), "{name} should be allowed");
        }
        assert!(!allowed(&profile, "init_module"));
        assert!(!allowed(&profile, "chroot"));

        let profile = runtime_default(&caps(&[Capability::SysChroot, Capability::Bpf]));
        assert!(allowed(&profile, "chroot"));
        assert!(allowed(&profile, "bpf"));
        assert!(!allowed(&profile, "mount"));

        // Every capability-guarded group is reachable.
        let all: HashSet<Capability> = BY_CAPABILITY.iter().map(|(cap, _)| *cap).collect();
        let profile = runtime_default(&all);
        for (_, names) in BY_CAPABILITY {
            for name in *names {
                assert!(allowed(&profile, name), "{name} should be allowed");
            }
        }
    }

    #[test]
    fn clone_namespace_rule_only_without_sys_admin() {
        let masked = |profile: &LinuxSeccomp| {
            rules(profile, "clone").iter().any(|rule| {
                rule.args().as_ref().is_some_and(|args| {
                    args.iter().any(|arg| {
                        arg.op() == LinuxSeccompOperator::ScmpCmpMaskedEq
                            && arg.value() & libc::CLONE_NEWUSER as u64 != 0
                    })
                })
            })
        };
        let clone3_enosys = |profile: &LinuxSeccomp| {
            rules(profile, "clone3")
                .iter()
                .any(|rule| rule.errno_ret() == Some(libc::ENOSYS as u32))
        };

        let unprivileged = runtime_default(&caps(&[Capability::NetBindService]));
        assert!(masked(&unprivileged));
        assert!(clone3_enosys(&unprivileged));

        let admin = runtime_default(&caps(&[Capability::SysAdmin]));
        assert!(!masked(&admin));
        assert!(!clone3_enosys(&admin));
    }

    #[test]
    fn socket_allowed_except_af_alg_and_af_vsock() {
        let profile = runtime_default(&HashSet::new());
        let admits = |family: u64| {
            rules(&profile, "socket").iter().any(|rule| {
                let arg = &rule.args().as_ref().unwrap()[0];
                match arg.op() {
                    LinuxSeccompOperator::ScmpCmpLt => family < arg.value(),
                    LinuxSeccompOperator::ScmpCmpEq => family == arg.value(),
                    LinuxSeccompOperator::ScmpCmpGt => family > arg.value(),
                    op => panic!("unexpected socket comparison {op:?}"),
                }
            })
        };
        for family in [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
            39,
            41,
            45,
        ] {
            assert!(admits(family as u64), "family {family} should be allowed");
        }
        assert!(!admits(libc::AF_ALG as u64));
        assert!(!admits(libc::AF_VSOCK as u64));
    }

    #[test]
    fn ptrace_follows_the_kernel_version() {
        assert!(allowed(&profile(&HashSet::new(), true), "ptrace"));
        assert!(!allowed(&profile(&HashSet::new(), false), "ptrace"));
        assert!(allowed(
            &profile(&caps(&[Capability::SysPtrace]), false),
            "ptrace"
        ));

        assert_eq!(release_at_least("6.18.44-fc-v782", (4, 8)), Some(true));
        assert_eq!(release_at_least("4.8.0", (4, 8)), Some(true));
        assert_eq!(release_at_least("4.4.302-generic\n", (4, 8)), Some(false));
        assert_eq!(
            release_at_least("3.10.0-1160.el7.x86_64", (4, 8)),
            Some(false)
        );
        assert_eq!(release_at_least("garbage", (4, 8)), None);
    }

    /// Set in the re-invoked test binary to the capability mode `filtered_child` loads the profile with.
    const CHILD_ENV: &str = "ORCH_SECCOMP_TEST_CHILD";

    /// Runs `filtered_child` in a fresh copy of the test binary, so the filter (which cannot be removed
    /// once loaded) lands on a throwaway process rather than the test harness.
    fn run_filtered_child(mode: &str) {
        let test = format!(
            "{}::filtered_child",
            module_path!().split_once("::").unwrap().1
        );
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                test.as_str(),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "child ({mode}) failed: {}\n{stdout}\n{stderr}",
            output.status
        );
    }

    #[test]
    fn kernel_enforces_the_profile() {
        run_filtered_child("unprivileged");
        run_filtered_child("sys_admin");
        run_filtered_child("precompiled_sys_admin");
    }

    /// The errno of a raw syscall's result, or `None` if it succeeded.
    fn errno(result: libc::c_long) -> Option<i32> {
        (result == -1).then(|| std::io::Error::last_os_error().raw_os_error().unwrap())
    }

    #[test]
    #[ignore = "loads a seccomp filter into its own process; run through kernel_enforces_the_profile"]
    fn filtered_child() {
        let Ok(mode) = std::env::var(CHILD_ENV) else {
            return;
        };
        let capabilities = match mode.as_str() {
            "sys_admin" => caps(&[Capability::SysAdmin]),
            _ => HashSet::new(),
        };

        // no_new_privs lets a process without CAP_SYS_ADMIN install a filter, as in a real container.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
            0
        );
        let profile = runtime_default(&capabilities);
        if mode == "precompiled_sys_admin" {
            // A program registered for the profile is loaded instead of compiling the profile. Here it is
            // the program of the CAP_SYS_ADMIN profile, so the calls below get that profile's answers.
            let sys_admin = runtime_default(&caps(&[Capability::SysAdmin]));
            let program = libcontainer::seccomp::compile_seccomp(&sys_admin).unwrap();
            assert!(libcontainer::seccomp::register_precompiled(
                profile.clone(),
                program
            ));
        }
        libcontainer::seccomp::initialize_seccomp(&profile).unwrap();

        // Every call below is harmless if allowed; each is chosen so the kernel's own answer differs from
        // the filter's EPERM (invalid flags, bad fds), whatever privileges the test runs with.
        let bad_umount_flags: libc::c_long = 0x8000_0000;
        let path = c"/nonexistent-orch-seccomp-test".as_ptr();
        unsafe {
            assert!(libc::syscall(libc::SYS_getpid) > 0);
            // CLONE_NEWNS with CLONE_FS is invalid, so clone fails before creating anything.
            let clone = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWNS | libc::CLONE_FS | libc::SIGCHLD) as libc::c_long,
                0,
                0,
                0,
                0,
            );
            if clone == 0 {
                libc::_exit(0);
            }
            let clone3 = errno(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0));
            let setns = errno(libc::syscall(libc::SYS_setns, -1, 0));
            let umount = errno(libc::syscall(libc::SYS_umount2, path, bad_umount_flags));
            let unshare_nothing = errno(libc::syscall(libc::SYS_unshare, 0));

            if mode.ends_with("sys_admin") {
                assert_eq!(errno(clone), Some(libc::EINVAL));
                assert_eq!(clone3, Some(libc::EINVAL));
                assert_eq!(setns, Some(libc::EBADF));
                assert_eq!(umount, Some(libc::EINVAL));
                assert_eq!(unshare_nothing, None);
            } else {
                assert_eq!(errno(clone), Some(libc::EPERM));
                assert_eq!(clone3, Some(libc::ENOSYS));
                assert_eq!(setns, Some(libc::EPERM));
                assert_eq!(umount, Some(libc::EPERM));
                assert_eq!(unshare_nothing, Some(libc::EPERM));
                assert_eq!(
                    errno(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS)),
                    Some(libc::EPERM)
                );
                // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, create=0)
                assert_eq!(
                    errno(libc::syscall(libc::SYS_keyctl, 0, -3, 0)),
                    Some(libc::EPERM)
                );
                assert_eq!(
                    errno(libc::syscall(libc::SYS_personality, 0x0006)),
                    Some(libc::EPERM)
                );
            }

            // socket(2): ordinary families work, AF_VSOCK and AF_ALG do not.
            let unix = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            assert!(
                unix >= 0,
                "AF_UNIX socket: {}",
                std::io::Error::last_os_error()
            );
            libc::close(unix);
            for family in [libc::AF_VSOCK, libc::AF_ALG] {
                let fd = libc::socket(family, libc::SOCK_SEQPACKET, 0);
                assert_eq!(errno(fd.into()), Some(libc::EPERM), "family {family}");
            }
            assert!(libc::syscall(libc::SYS_personality, 0xffff_ffffu32) >= 0);
        }

        // Starting a process still works: glibc tries clone3, gets ENOSYS, and falls back to clone.
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(7));
    }
}
