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
//! Only the backend the `iptables` command drives is opened (the one Docker and ufw use through the same
//! command). Firewalls written in nftables directly (firewalld, `/etc/nftables.conf`) cannot be opened
//! this way.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::{Ipv4Cidr, NetworkError};

/// The chain of accept rules for pod traffic.
const CHAIN: &str = "ORCH-FORWARD";

/// Makes the host's FORWARD chain accept pod traffic first, when it could drop it; a host without the
/// `iptables` command has no iptables firewall to open.
pub(super) async fn open_forwarding(cluster_cidr: Ipv4Cidr) -> Result<(), NetworkError> {
    let forward = match iptables(&["-S", "FORWARD"]).await {
        Err(NetworkError::IptablesRun { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(());
        }
        listed => listed?,
    };
    if !could_drop(&rules_of(&forward)) {
        return Ok(());
    }
    // Listing a chain that does not exist fails; listing FORWARD succeeded, so that is what a failure
    // means here.
    let chain = iptables(&["-S", CHAIN]).await.ok();
    match repair(&forward, chain.as_deref(), cluster_cidr) {
        Some(script) => iptables_restore(&script).await,
        None => Ok(()),
    }
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

/// Removes the jumps to [`CHAIN`] and the chain, if there is one.
pub(super) fn close_forwarding() {
    let iptables = |args: &[&str]| {
        std::process::Command::new("iptables")
            .args(["-w", "5", "-t", "filter"])
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
    };
    if iptables(&["-S", CHAIN]).is_none() {
        return;
    }
    while iptables(&["-D", "FORWARD", "-j", CHAIN]).is_some() {}
    iptables(&["-F", CHAIN]);
    iptables(&["-X", CHAIN]);
}

/// `iptables -t filter <args>`, waiting for the xtables lock; its output.
async fn iptables(args: &[&str]) -> Result<String, NetworkError> {
    let command = format!("iptables -t filter {}", args.join(" "));
    let out = tokio::process::Command::new("iptables")
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

/// Applies `script` in one transaction, leaving what it does not name as it is.
async fn iptables_restore(script: &str) -> Result<(), NetworkError> {
    let command = "iptables-restore -w 5 --noflush".to_string();
    let run = |source| NetworkError::IptablesRun {
        command: command.clone(),
        source,
    };
    let mut child = tokio::process::Command::new("iptables-restore")
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
