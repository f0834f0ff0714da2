//! Pods' traffic to addresses off the cluster: the node forwards it (`net.ipv4.ip_forward`) and
//! masquerades it behind the address of the interface it leaves by, as flannel's ipMasq does for k3s. The
//! rule lives in the nftables table `ip orch` (chain `postrouting`, a NAT chain at the srcnat priority):
//! traffic from the node's podCIDR to anywhere outside the cluster CIDR and multicast. Traffic between
//! pods, to Services once they are translated, and to the node itself keeps the pod's address.
//!
//! The table is replaced as a whole in one `nft` transaction, so applying it again (each agent start)
//! leaves one copy of the rule, and a crash halfway leaves the previous table.

use std::borrow::Cow;
use std::path::Path;

use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{Ipv4Cidr, NetworkError};

/// The nftables table that holds orch's node rules.
pub const TABLE: &str = "orch";
const CHAIN: &str = "postrouting";
/// nftables' `srcnat` priority, where NAT chains at the postrouting hook go.
const SRCNAT: i32 = 100;
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const MULTICAST: &str = "224.0.0.0/4";

/// Turns forwarding on and replaces the masquerade rule, in the network namespace of the calling thread
/// (`nft` is started from it).
pub(super) async fn ensure(pod_cidr: Ipv4Cidr, cluster_cidr: Ipv4Cidr) -> Result<(), NetworkError> {
    enable_forwarding(Path::new(IP_FORWARD))?;
    nftables::helper::apply_ruleset_async(&ruleset(pod_cidr, cluster_cidr))
        .await
        .map_err(|e| NetworkError::Masquerade(nft_failure(e)))
}

/// Writes `1` unless it is there already: writing the switch resets per-interface forwarding settings.
fn enable_forwarding(switch: &Path) -> Result<(), NetworkError> {
    let current = std::fs::read_to_string(switch).map_err(NetworkError::io("reading", switch))?;
    if current.trim() == "1" {
        return Ok(());
    }
    std::fs::write(switch, "1").map_err(NetworkError::io("turning on IP forwarding in", switch))
}

/// The whole table, in one batch: created if missing, emptied, then filled.
fn ruleset(pod_cidr: Ipv4Cidr, cluster_cidr: Ipv4Cidr) -> Nftables<'static> {
    let table = Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    };
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table.clone()));
    batch.add_cmd(NfCmd::Flush(FlushObject::Table(table)));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(SRCNAT),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }));
    let multicast: Ipv4Cidr = MULTICAST.parse().expect("constant");
    batch.add(NfListObject::Rule(Rule {
        family: NfFamily::IP,
        table: TABLE.into(),
        chain: CHAIN.into(),
        expr: Cow::Owned(vec![
            address_match("saddr", Operator::EQ, pod_cidr),
            address_match("daddr", Operator::NEQ, cluster_cidr),
            address_match("daddr", Operator::NEQ, multicast),
            Statement::Masquerade(None),
        ]),
        comment: Some("pods to addresses off the cluster, from the node's address".into()),
        ..Rule::default()
    }));
    batch.to_nftables()
}

/// `ip <field> <op> <cidr>`.
fn address_match(field: &'static str, op: Operator, cidr: Ipv4Cidr) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
            PayloadField {
                protocol: "ip".into(),
                field: field.into(),
            },
        ))),
        right: Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(cidr.network().to_string().into())),
            len: u32::from(cidr.prefix_len()),
        })),
        op,
    })
}

/// What went wrong, with `nft`'s own complaint (the crate's error leaves it out) and what to install
/// when `nft` is missing.
fn nft_failure(e: nftables::helper::NftablesError) -> String {
    use nftables::helper::NftablesError;
    match e {
        NftablesError::NftExecution { inner, .. }
            if inner.kind() == std::io::ErrorKind::NotFound =>
        {
            "the nft command is missing: install nftables (apt-get install nftables)".into()
        }
        NftablesError::NftFailed { stderr, .. } => format!("nft failed: {}", stderr.trim()),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_replaced_whole_with_one_masquerade_rule() {
        let json = serde_json::to_value(ruleset(
            "10.42.3.0/24".parse().unwrap(),
            "10.42.0.0/16".parse().unwrap(),
        ))
        .unwrap();
        let commands = json["nftables"].as_array().unwrap();
        let verbs: Vec<String> = commands
            .iter()
            .map(|c| {
                let (verb, object) = c.as_object().unwrap().iter().next().unwrap();
                let (kind, _) = object.as_object().unwrap().iter().next().unwrap();
                format!("{verb} {kind}")
            })
            .collect();
        assert_eq!(verbs, ["add table", "flush table", "add chain", "add rule"]);
        let chain = &commands[2]["add"]["chain"];
        assert_eq!(
            (&chain["type"], &chain["hook"], &chain["prio"]),
            (&"nat".into(), &"postrouting".into(), &100.into())
        );
        let rule = &commands[3]["add"]["rule"]["expr"];
        let matched: Vec<String> = rule
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| {
                let m = s.get("match")?;
                Some(format!(
                    "{} {} {}/{}",
                    m["left"]["payload"]["field"].as_str()?,
                    m["op"].as_str()?,
                    m["right"]["prefix"]["addr"].as_str()?,
                    m["right"]["prefix"]["len"]
                ))
            })
            .collect();
        assert_eq!(
            matched,
            [
                "saddr == 10.42.3.0/24",
                "daddr != 10.42.0.0/16",
                "daddr != 224.0.0.0/4"
            ]
        );
        assert_eq!(rule[3], serde_json::json!({"masquerade": null}));
    }

    #[test]
    fn forwarding_is_switched_on_only_when_off() {
        let dir = tempfile::tempdir().unwrap();
        let switch = dir.path().join("ip_forward");
        std::fs::write(&switch, "0\n").unwrap();
        enable_forwarding(&switch).unwrap();
        assert_eq!(std::fs::read_to_string(&switch).unwrap(), "1");
        // Already on: left as it is (not rewritten).
        std::fs::write(&switch, "1\n").unwrap();
        enable_forwarding(&switch).unwrap();
        assert_eq!(std::fs::read_to_string(&switch).unwrap(), "1\n");
    }
}
