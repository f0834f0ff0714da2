//! Openings for pod traffic in the host's iptables firewall. A host firewall that drops forwarded traffic
//! by default drops pods' traffic too: Docker sets the FORWARD policy to DROP and loads `br_netfilter`, so
//! that even traffic between two pods on the bridge passes FORWARD; ufw drops there as well. An accept in
//! orch's own nftables table cannot overrule a drop in another table's chain, so, as flannel does for k3s,
//! the chain `ORCH-FORWARD` accepts traffic from and to the cluster CIDR and is jumped to first in the
//! filter table's FORWARD chain. Only on a host whose FORWARD chain could drop something (a policy other
//! than ACCEPT, or any rule): a host without a firewall is left without iptables state. The node checks
//! it again periodically, since Docker started later, or a firewall reloaded, puts its own rules first.
//!
//! Firewalls written in nftables directly (firewalld, `/etc/nftables.conf`) cannot be opened this way.

use super::{Ipv4Cidr, NetworkError};

/// The chain of accept rules for pod traffic.
pub const CHAIN: &str = "ORCH-FORWARD";

/// Makes the host's FORWARD chain accept pod traffic first, when it could drop it; a host without the
/// `iptables` command has no iptables firewall to open.
pub(super) async fn open_forwarding(cluster_cidr: Ipv4Cidr) -> Result<(), NetworkError> {
    let forward = match iptables(&["-S", "FORWARD"]).await {
        Err(NetworkError::Iptables {
            source: Some(e), ..
        }) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(());
        }
        listed => listed?,
    };
    if !could_drop(&lines(&forward)) {
        return Ok(());
    }
    // Listing a chain that does not exist fails; listing FORWARD succeeded, so that is what a failure
    // means here.
    let chain = iptables(&["-S", CHAIN]).await.ok();
    for change in changes(&forward, chain.as_deref(), cluster_cidr) {
        let args: Vec<&str> = change.iter().map(String::as_str).collect();
        iptables(&args).await?;
    }
    Ok(())
}

/// The iptables commands (without `iptables -t filter`) that make FORWARD, as `-S FORWARD` lists it,
/// jump to [`CHAIN`] first, and the chain (listed by `-S`, None when missing) accept the cluster's
/// traffic; none when FORWARD could not drop anything or is as wanted.
fn changes(forward: &str, chain: Option<&str>, cluster_cidr: Ipv4Cidr) -> Vec<Vec<String>> {
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let forward = lines(forward);
    if !could_drop(&forward) {
        return Vec::new();
    }
    let rules: Vec<&String> = forward.iter().filter(|l| l.starts_with("-A ")).collect();
    let cidr = cluster_cidr.to_string();
    let accepts = [
        owned(&["-A", CHAIN, "-s", &cidr, "-j", "ACCEPT"]),
        owned(&["-A", CHAIN, "-d", &cidr, "-j", "ACCEPT"]),
    ];
    let mut wanted_chain = vec![format!("-N {CHAIN}")];
    wanted_chain.extend(accepts.iter().map(|rule| rule.join(" ")));
    let mut out = Vec::new();
    match chain.map(lines) {
        Some(listed) if listed == wanted_chain => {}
        Some(_) => {
            out.push(owned(&["-F", CHAIN]));
            out.extend(accepts);
        }
        None => {
            out.push(owned(&["-N", CHAIN]));
            out.extend(accepts);
        }
    }
    let jump = format!("-A FORWARD -j {CHAIN}");
    let jumps = rules.iter().filter(|rule| ***rule == jump).count();
    if rules.first().map(|rule| rule.as_str()) != Some(jump.as_str()) || jumps > 1 {
        out.extend((0..jumps).map(|_| owned(&["-D", "FORWARD", "-j", CHAIN])));
        out.push(owned(&["-I", "FORWARD", "1", "-j", CHAIN]));
    }
    out
}

/// The lines of an `iptables -S` listing.
fn lines(listing: &str) -> Vec<String> {
    listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether a chain, as `-S` lists it, has a policy other than ACCEPT or any rule (which may drop).
fn could_drop(chain: &[String]) -> bool {
    chain
        .iter()
        .any(|l| l.starts_with("-A ") || (l.starts_with("-P ") && !l.ends_with(" ACCEPT")))
}

/// `iptables -t filter <args>`, waiting for the xtables lock; its output.
async fn iptables(args: &[&str]) -> Result<String, NetworkError> {
    let command = format!("iptables -t filter {}", args.join(" "));
    let out = tokio::process::Command::new("iptables")
        .args(["-w", "5", "-t", "filter"])
        .args(args)
        .output()
        .await
        .map_err(|e| NetworkError::Iptables {
            command: command.clone(),
            message: e.to_string(),
            source: Some(e),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Iptables {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            source: None,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Ipv4Cidr {
        "10.42.0.0/16".parse().unwrap()
    }

    fn commands(forward: &str, chain: Option<&str>) -> Vec<String> {
        changes(forward, chain, cluster())
            .into_iter()
            .map(|c| c.join(" "))
            .collect()
    }

    const OURS: &str = "-N ORCH-FORWARD\n\
                        -A ORCH-FORWARD -s 10.42.0.0/16 -j ACCEPT\n\
                        -A ORCH-FORWARD -d 10.42.0.0/16 -j ACCEPT\n";

    #[test]
    fn a_forward_chain_that_cannot_drop_is_left_alone() {
        assert!(commands("-P FORWARD ACCEPT\n", None).is_empty());
        assert!(commands("", None).is_empty());
    }

    #[test]
    fn a_dropping_forward_chain_gets_the_accepts_first() {
        // Docker's FORWARD chain.
        let docker = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j DOCKER-FORWARD\n";
        assert_eq!(
            commands(docker, None),
            [
                "-N ORCH-FORWARD",
                "-A ORCH-FORWARD -s 10.42.0.0/16 -j ACCEPT",
                "-A ORCH-FORWARD -d 10.42.0.0/16 -j ACCEPT",
                "-I FORWARD 1 -j ORCH-FORWARD",
            ]
        );
        // A policy of ACCEPT with a rule that may drop.
        assert_eq!(
            commands("-P FORWARD ACCEPT\n-A FORWARD -j REJECT\n", Some(OURS)),
            ["-I FORWARD 1 -j ORCH-FORWARD"]
        );
    }

    #[test]
    fn a_converged_chain_needs_nothing_and_a_displaced_or_edited_one_is_repaired() {
        let converged = "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n-A FORWARD -j DOCKER-USER\n";
        assert!(commands(converged, Some(OURS)).is_empty());
        // Another rule put before it (a firewall reloaded): moved back to the top.
        let displaced = "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n-A FORWARD -j ORCH-FORWARD\n";
        assert_eq!(
            commands(displaced, Some(OURS)),
            ["-D FORWARD -j ORCH-FORWARD", "-I FORWARD 1 -j ORCH-FORWARD"]
        );
        // Two jumps: one is left.
        let twice = "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n-A FORWARD -j ORCH-FORWARD\n";
        assert_eq!(
            commands(twice, Some(OURS)),
            [
                "-D FORWARD -j ORCH-FORWARD",
                "-D FORWARD -j ORCH-FORWARD",
                "-I FORWARD 1 -j ORCH-FORWARD"
            ]
        );
        // The chain of another cluster CIDR (or edited by hand) is written again.
        let other = "-N ORCH-FORWARD\n-A ORCH-FORWARD -s 10.52.0.0/16 -j ACCEPT\n";
        assert_eq!(
            commands(converged, Some(other)),
            [
                "-F ORCH-FORWARD",
                "-A ORCH-FORWARD -s 10.42.0.0/16 -j ACCEPT",
                "-A ORCH-FORWARD -d 10.42.0.0/16 -j ACCEPT",
            ]
        );
    }
}
