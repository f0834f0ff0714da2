//! Openings for pod traffic in the host's iptables firewall. A host firewall that drops forwarded traffic
//! by default drops pods' traffic too: Docker sets the FORWARD policy to DROP and loads `br_netfilter`, so
//! that even traffic between two pods on the bridge passes FORWARD; ufw drops there as well. An accept in
//! orch's own nftables table cannot overrule a drop in another table's chain, so, as flannel does for k3s,
//! the chain `ORCH-FORWARD` accepts traffic from and to the cluster CIDR and is jumped to first in the
//! filter table's FORWARD chain. Only on a host whose FORWARD chain could drop something (a policy other
//! than ACCEPT, or any rule): a host without a firewall gets no rules. The node checks it again
//! periodically, since Docker started later, or a firewall reloaded, puts its own rules first. A repair
//! is one `iptables-restore` transaction, so that pods' traffic is never without its accept meanwhile.
//!
//! Both iptables backends are opened, since a packet must pass each: the nf_tables one, and the legacy
//! one when its filter table is in use (a Docker or a ufw that runs `iptables-legacy`, whichever one
//! the host's `iptables` names). A host whose iptables has no `-nft`/`-legacy` twins is opened through
//! `iptables`. Firewalls written in nftables directly (firewalld, `/etc/nftables.conf`) cannot be opened
//! this way.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::{Ipv4Cidr, NetworkError};

/// The chain of accept rules for pod traffic.
const CHAIN: &str = "ORCH-FORWARD";
/// The legacy backend's tables in use in the calling thread's network namespace (`/proc/net` would be
/// the main thread's), one name per line; missing while the kernel has no legacy iptables loaded.
const LEGACY_TABLES: &str = "/proc/thread-self/net/ip_tables_names";

/// An iptables backend, by its commands.
#[derive(Clone, Copy)]
struct Backend {
    iptables: &'static str,
    restore: &'static str,
}

const NFT: Backend = Backend {
    iptables: "iptables-nft",
    restore: "iptables-nft-restore",
};
const LEGACY: Backend = Backend {
    iptables: "iptables-legacy",
    restore: "iptables-legacy-restore",
};
/// Whichever backend the host's `iptables` is, where it has no twins.
const DEFAULT: Backend = Backend {
    iptables: "iptables",
    restore: "iptables-restore",
};

/// Whether the legacy backend has a filter table here: when it has none, nothing of it can drop, and
/// listing it would load it.
fn legacy_filter_in_use() -> bool {
    std::fs::read_to_string(LEGACY_TABLES).is_ok_and(|names| names.lines().any(|n| n == "filter"))
}

/// The backends that could drop pod traffic here: the nf_tables one, the legacy one when its filter
/// table is in use, or, on a host without the twin commands, the one `iptables` is.
fn backends_in_use() -> Vec<Backend> {
    let (nft, legacy) = (
        command_exists(NFT.iptables),
        command_exists(LEGACY.iptables),
    );
    if !nft && !legacy {
        return vec![DEFAULT];
    }
    let legacy = legacy && legacy_filter_in_use();
    [(NFT, nft), (LEGACY, legacy)]
        .into_iter()
        .filter_map(|(backend, in_use)| in_use.then_some(backend))
        .collect()
}

/// Makes the host's FORWARD chains accept pod traffic first, where they could drop it; a host without
/// iptables has no iptables firewall to open. Every backend is tried; the first failure is returned.
pub(super) async fn open_forwarding(cluster_cidr: Ipv4Cidr) -> Result<(), NetworkError> {
    let mut outcome = Ok(());
    for backend in backends_in_use() {
        match open_in(backend, cluster_cidr).await {
            Err(e) if is_missing(&e) => {}
            opened => outcome = outcome.and(opened),
        }
    }
    outcome
}

/// [`open_forwarding`] in one backend.
async fn open_in(backend: Backend, cluster_cidr: Ipv4Cidr) -> Result<(), NetworkError> {
    let forward = iptables(backend, &["-S", "FORWARD"]).await?;
    if !could_drop(&rules_of(&forward)) {
        return Ok(());
    }
    // Listing a chain that does not exist fails; listing FORWARD succeeded, so that is what a failure
    // means here.
    let chain = iptables(backend, &["-S", CHAIN]).await.ok();
    match repair(&forward, chain.as_deref(), cluster_cidr) {
        Some(script) => iptables_restore(backend, &script).await,
        None => Ok(()),
    }
}

/// Whether running a command failed because it is not installed.
fn is_missing(e: &NetworkError) -> bool {
    matches!(e, NetworkError::IptablesRun { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn command_exists(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `iptables-restore --noflush` script that makes FORWARD (as `-S FORWARD` lists it) jump to
/// [`CHAIN`] first and once, and the chain (listed by `-S`, None when missing) accept the cluster's
/// traffic; None when FORWARD could not drop anything or is as wanted.
fn repair(forward: &str, chain: Option<&str>, cluster_cidr: Ipv4Cidr) -> Option<String> {
    let forward = rules_of(forward);
    if !could_drop(&forward) {
        return None;
    }
    let accepts = [
        format!("-A {CHAIN} -s {cluster_cidr} -j ACCEPT"),
        format!("-A {CHAIN} -d {cluster_cidr} -j ACCEPT"),
    ];
    let chain_rules: Option<Vec<String>> = chain.map(|listed| {
        rules_of(listed)
            .into_iter()
            .filter(|l| l.starts_with("-A "))
            .collect()
    });
    let jump = format!("-A FORWARD -j {CHAIN}");
    let appended: Vec<&String> = forward.iter().filter(|l| l.starts_with("-A ")).collect();
    let jumps = appended.iter().filter(|rule| ***rule == jump).count();
    let jump_first_once = appended.first() == Some(&&jump) && jumps == 1;
    if chain_rules.as_deref() == Some(&accepts[..]) && jump_first_once {
        return None;
    }
    // Declaring the chain creates it, or empties it when it exists.
    let mut script = format!("*filter\n:{CHAIN} - [0:0]\n");
    for rule in &accepts {
        script += &format!("{rule}\n");
    }
    for _ in 0..jumps {
        script += &format!("-D FORWARD -j {CHAIN}\n");
    }
    script += &format!("-I FORWARD 1 -j {CHAIN}\nCOMMIT\n");
    Some(script)
}

/// The policies, chains and rules of an `iptables -S` listing, without what else it may print (iptables-nft
/// warns on stdout of legacy tables) or the counters some versions put before a rule.
fn rules_of(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(str::trim)
        .map(|line| match line.strip_prefix('[') {
            Some(counted) => counted
                .split_once("] ")
                .map_or(line, |(_, rule)| rule.trim()),
            None => line,
        })
        .filter(|line| ["-P ", "-N ", "-A "].iter().any(|p| line.starts_with(p)))
        .map(str::to_string)
        .collect()
}

/// Whether a chain, as [`rules_of`] gives it, has a policy other than ACCEPT or any rule (which may drop).
fn could_drop(chain: &[String]) -> bool {
    chain
        .iter()
        .any(|l| l.starts_with("-A ") || (l.starts_with("-P ") && !l.ends_with(" ACCEPT")))
}

/// Removes the jumps to [`CHAIN`] and the chain, if there is one, from every backend.
pub(super) fn close_forwarding() {
    for backend in backends_in_use() {
        let iptables = |args: &[&str]| {
            std::process::Command::new(backend.iptables)
                .args(["-w", "5", "-t", "filter"])
                .args(args)
                .output()
                .ok()
                .filter(|out| out.status.success())
        };
        if iptables(&["-S", CHAIN]).is_none() {
            continue;
        }
        while iptables(&["-D", "FORWARD", "-j", CHAIN]).is_some() {}
        iptables(&["-F", CHAIN]);
        iptables(&["-X", CHAIN]);
    }
}

/// `<backend's iptables> -t filter <args>`, waiting for the xtables lock; its output.
async fn iptables(backend: Backend, args: &[&str]) -> Result<String, NetworkError> {
    let command = format!("{} -t filter {}", backend.iptables, args.join(" "));
    let out = tokio::process::Command::new(backend.iptables)
        .args(["-w", "5", "-t", "filter"])
        .args(args)
        .output()
        .await
        .map_err(|source| NetworkError::IptablesRun {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetworkError::IptablesFailed {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Applies `script` in one transaction of the backend, leaving what it does not name as it is.
async fn iptables_restore(backend: Backend, script: &str) -> Result<(), NetworkError> {
    let command = format!("{} -w 5 --noflush", backend.restore);
    let run = |source| NetworkError::IptablesRun {
        command: command.clone(),
        source,
    };
    let mut child = tokio::process::Command::new(backend.restore)
        .args(["-w", "5", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(run)?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(script.as_bytes()).await.map_err(run)?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(run)?;
    if !out.status.success() {
        return Err(NetworkError::IptablesFailed {
            command: format!("{command} of {script:?}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Ipv4Cidr {
        "10.42.0.0/16".parse().unwrap()
    }

    const OURS: &str = "-N ORCH-FORWARD\n\
                        -A ORCH-FORWARD -s 10.42.0.0/16 -j ACCEPT\n\
                        -A ORCH-FORWARD -d 10.42.0.0/16 -j ACCEPT\n";

    /// The script for `jumps` old jumps to delete.
    fn script(jumps: usize) -> String {
        "*filter\n\
         :ORCH-FORWARD - [0:0]\n\
         -A ORCH-FORWARD -s 10.42.0.0/16 -j ACCEPT\n\
         -A ORCH-FORWARD -d 10.42.0.0/16 -j ACCEPT\n"
            .to_string()
            + &"-D FORWARD -j ORCH-FORWARD\n".repeat(jumps)
            + "-I FORWARD 1 -j ORCH-FORWARD\nCOMMIT\n"
    }

    #[test]
    fn a_forward_chain_that_cannot_drop_is_left_alone() {
        assert_eq!(repair("-P FORWARD ACCEPT\n", None, cluster()), None);
        assert_eq!(repair("", None, cluster()), None);
        // What iptables-nft prints beside the rules is not a rule.
        let warned = "-P FORWARD ACCEPT\n# Warning: iptables-legacy tables present, use \
                      iptables-legacy to see them\n";
        assert_eq!(repair(warned, None, cluster()), None);
    }

    #[test]
    fn a_dropping_forward_chain_gets_the_accepts_first() {
        // Docker's FORWARD chain.
        let docker = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n";
        assert_eq!(repair(docker, None, cluster()), Some(script(0)));
        // A policy of ACCEPT with a rule that may drop.
        let rejecting = "-P FORWARD ACCEPT\n-A FORWARD -j REJECT\n";
        assert_eq!(repair(rejecting, Some(OURS), cluster()), Some(script(0)));
    }

    #[test]
    fn a_converged_chain_needs_nothing_and_a_displaced_or_edited_one_is_repaired() {
        let converged = "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n-A FORWARD -j DOCKER-USER\n";
        assert_eq!(repair(converged, Some(OURS), cluster()), None);
        // Listed with counters (iptables 1.8.0) and a warning: still converged.
        let counted = "# Warning: iptables-legacy tables present\n-P FORWARD DROP\n\
                       [0:0] -A FORWARD -j ORCH-FORWARD\n[5:300] -A FORWARD -j DOCKER-USER\n";
        let counted_chain = "-N ORCH-FORWARD\n\
                             [1:60] -A ORCH-FORWARD -s 10.42.0.0/16 -j ACCEPT\n\
                             [0:0] -A ORCH-FORWARD -d 10.42.0.0/16 -j ACCEPT\n";
        assert_eq!(repair(counted, Some(counted_chain), cluster()), None);
        // Another rule put before it (a firewall reloaded): moved back to the top.
        let displaced = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j ORCH-FORWARD\n";
        assert_eq!(repair(displaced, Some(OURS), cluster()), Some(script(1)));
        // Two jumps: one is left.
        let twice = "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n-A FORWARD -j ORCH-FORWARD\n";
        assert_eq!(repair(twice, Some(OURS), cluster()), Some(script(2)));
        // The chain of another cluster CIDR (or edited by hand) is written again.
        let other = "-N ORCH-FORWARD\n-A ORCH-FORWARD -s 10.52.0.0/16 -j ACCEPT\n";
        assert_eq!(repair(converged, Some(other), cluster()), Some(script(1)));
    }
}
