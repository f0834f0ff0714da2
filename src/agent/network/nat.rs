//! The node's NAT, in the nftables table `ip orch`, which is replaced whole in one `nft` transaction
//! whenever it changes (so applying it again leaves one copy of each rule, and a failure leaves the
//! previous table):
//! - pods' traffic to addresses off the cluster is forwarded (`net.ipv4.ip_forward`) and masqueraded
//!   behind the address of the interface it leaves by, as flannel's ipMasq does for k3s; traffic between
//!   pods and to the node itself keeps the pod's address;
//! - host ports, as the CNI portmap plugin maps them: traffic to one of the node's addresses (or to the
//!   port's hostIP) on a pod's hostPort is sent to the pod's IP and containerPort, from other machines
//!   (prerouting) and from the node itself (output). A pod reaching a host port of a pod on this node is
//!   masqueraded, so that the answer comes back through the node. 127.0.0.1 is not forwarded: that takes
//!   `route_localnet` on the bridge, which would also let pods reach the node's loopback-only services.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, NamedExpression, Payload, PayloadField, Prefix, CT,
};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{Ipv4Cidr, NetworkError};

/// The nftables table that holds orch's node rules.
pub const TABLE: &str = "orch";
/// nftables' `dstnat` and `srcnat` priorities, where NAT chains go.
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;
const HOST_PORTS: &str = "hostports";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const MULTICAST: &str = "224.0.0.0/4";

/// One `hostPort` of a pod's container.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
    /// The node address it is bound to; any of the node's own addresses when None.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
}

/// The node's NAT table and what it is made from. Changes are serialised.
pub(super) struct NodeNat {
    pod_cidr: Ipv4Cidr,
    cluster_cidr: Ipv4Cidr,
    /// By sandbox id: the pod's IP and its host ports.
    host_ports: tokio::sync::Mutex<BTreeMap<String, (Ipv4Addr, Vec<HostPort>)>>,
}

impl NodeNat {
    /// Turns forwarding on and writes the table, with no host ports yet, in the network namespace of the
    /// calling thread (`nft` is started from it).
    pub(super) async fn start(
        pod_cidr: Ipv4Cidr,
        cluster_cidr: Ipv4Cidr,
    ) -> Result<Self, NetworkError> {
        enable_forwarding(Path::new(IP_FORWARD))?;
        let nat = NodeNat {
            pod_cidr,
            cluster_cidr,
            host_ports: tokio::sync::Mutex::default(),
        };
        apply(&nat.ruleset(&BTreeMap::new())).await?;
        Ok(nat)
    }

    /// Maps `ports` to the pod at `ip`, replacing what sandbox `id` had (none: unmapped). The table is
    /// only written when the mapping changed; when writing fails, the previous mapping stays.
    pub(super) async fn set_host_ports(
        &self,
        id: &str,
        ip: Ipv4Addr,
        mut ports: Vec<HostPort>,
    ) -> Result<(), NetworkError> {
        ports.sort();
        let mut current = self.host_ports.lock().await;
        let wanted = (!ports.is_empty()).then_some((ip, ports));
        if current.get(id) == wanted.as_ref() {
            return Ok(());
        }
        let mut next = current.clone();
        match wanted {
            Some(mapping) => next.insert(id.to_string(), mapping),
            None => next.remove(id),
        };
        apply(&self.ruleset(&next)).await?;
        *current = next;
        Ok(())
    }

    /// The whole table, in one batch: created if missing, emptied, then filled.
    fn ruleset(
        &self,
        host_ports: &BTreeMap<String, (Ipv4Addr, Vec<HostPort>)>,
    ) -> Nftables<'static> {
        let table = Table {
            family: NfFamily::IP,
            name: TABLE.into(),
            handle: None,
        };
        let mut batch = Batch::new();
        batch.add(NfListObject::Table(table.clone()));
        batch.add_cmd(NfCmd::Flush(FlushObject::Table(table)));
        for (name, hook, priority) in [
            ("prerouting", Some(NfHook::Prerouting), DSTNAT),
            ("output", Some(NfHook::Output), DSTNAT),
            ("postrouting", Some(NfHook::Postrouting), SRCNAT),
            (HOST_PORTS, None, 0),
        ] {
            batch.add(NfListObject::Chain(Chain {
                family: NfFamily::IP,
                table: TABLE.into(),
                name: name.into(),
                _type: hook.map(|_| NfChainType::NAT),
                hook,
                prio: hook.map(|_| priority),
                policy: hook.map(|_| NfChainPolicy::Accept),
                ..Chain::default()
            }));
        }
        let rule = |chain: &'static str, expr: Vec<Statement<'static>>| {
            NfListObject::Rule(Rule {
                family: NfFamily::IP,
                table: TABLE.into(),
                chain: chain.into(),
                expr: Cow::Owned(expr),
                ..Rule::default()
            })
        };
        let jump = || {
            Statement::Jump(JumpTarget {
                target: HOST_PORTS.into(),
            })
        };
        batch.add(rule("prerouting", vec![jump()]));
        batch.add(rule("output", vec![jump()]));
        for (ip, ports) in host_ports.values() {
            for port in ports {
                let to_node = match port.host_ip {
                    Some(host_ip) => ip_match("daddr", Operator::EQ, host_ip, 32),
                    None => local_destination(),
                };
                batch.add(rule(
                    HOST_PORTS,
                    vec![
                        to_node,
                        Statement::Match(Match {
                            left: payload(port.protocol, "dport"),
                            right: Expression::Number(u32::from(port.host_port)),
                            op: Operator::EQ,
                        }),
                        Statement::DNAT(Some(NAT {
                            addr: Some(Expression::String(ip.to_string().into())),
                            family: Some(NATFamily::IP),
                            port: Some(Expression::Number(u32::from(port.container_port))),
                            flags: None,
                        })),
                    ],
                ));
            }
        }
        let pods = |field| {
            ip_match(
                field,
                Operator::EQ,
                self.pod_cidr.network(),
                self.pod_cidr.prefix_len(),
            )
        };
        batch.add(rule(
            "postrouting",
            vec![
                pods("saddr"),
                pods("daddr"),
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::CT(CT {
                        key: "status".into(),
                        family: None,
                        dir: None,
                    })),
                    right: Expression::String("dnat".into()),
                    op: Operator::IN,
                }),
                Statement::Masquerade(None),
            ],
        ));
        let multicast: Ipv4Cidr = MULTICAST.parse().expect("constant");
        batch.add(rule(
            "postrouting",
            vec![
                pods("saddr"),
                ip_match(
                    "daddr",
                    Operator::NEQ,
                    self.cluster_cidr.network(),
                    self.cluster_cidr.prefix_len(),
                ),
                ip_match(
                    "daddr",
                    Operator::NEQ,
                    multicast.network(),
                    multicast.prefix_len(),
                ),
                Statement::Masquerade(None),
            ],
        ));
        batch.to_nftables()
    }
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

/// `ip <field> <op> <network>/<len>`.
fn ip_match(field: &'static str, op: Operator, network: Ipv4Addr, len: u8) -> Statement<'static> {
    Statement::Match(Match {
        left: payload("ip", field),
        right: Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(network.to_string().into())),
            len: u32::from(len),
        })),
        op,
    })
}

/// `fib daddr type local`: the packet is for one of the node's own addresses.
fn local_destination() -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        right: Expression::String("local".into()),
        op: Operator::EQ,
    })
}

async fn apply(ruleset: &Nftables<'_>) -> Result<(), NetworkError> {
    nftables::helper::apply_ruleset_async(ruleset)
        .await
        .map_err(|e| NetworkError::Nat(nft_failure(e)))
}

/// Writes `1` unless it is there already: writing the switch resets per-interface forwarding settings.
fn enable_forwarding(switch: &Path) -> Result<(), NetworkError> {
    let current = std::fs::read_to_string(switch).map_err(NetworkError::io("reading", switch))?;
    if current.trim() == "1" {
        return Ok(());
    }
    std::fs::write(switch, "1").map_err(NetworkError::io("turning on IP forwarding in", switch))
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

    fn nat() -> NodeNat {
        NodeNat {
            pod_cidr: "10.42.3.0/24".parse().unwrap(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            host_ports: tokio::sync::Mutex::default(),
        }
    }

    /// `verb kind` of each command, and each rule as `chain: statement kinds and operands`.
    fn outline(ruleset: Nftables<'_>) -> Vec<String> {
        let json = serde_json::to_value(ruleset).unwrap();
        json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|command| {
                let (verb, object) = command.as_object().unwrap().iter().next().unwrap();
                let (kind, body) = object.as_object().unwrap().iter().next().unwrap();
                match kind.as_str() {
                    "rule" => format!(
                        "{verb} rule {}: {}",
                        body["chain"].as_str().unwrap(),
                        body["expr"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    "chain" => format!(
                        "{verb} chain {} {}",
                        body["name"].as_str().unwrap(),
                        body.get("hook")
                            .map_or("-".into(), |h| format!("{h}@{}", body["prio"]))
                    ),
                    _ => format!("{verb} {kind}"),
                }
            })
            .collect()
    }

    #[test]
    fn the_table_is_replaced_whole_with_masquerade_and_host_ports() {
        let nat = nat();
        let mut ports = BTreeMap::new();
        ports.insert(
            "pod-a".to_string(),
            (
                Ipv4Addr::new(10, 42, 3, 7),
                vec![
                    HostPort {
                        protocol: "tcp",
                        host_ip: None,
                        host_port: 8080,
                        container_port: 80,
                    },
                    HostPort {
                        protocol: "udp",
                        host_ip: Some(Ipv4Addr::new(192, 168, 1, 5)),
                        host_port: 5353,
                        container_port: 53,
                    },
                ],
            ),
        );
        let outline = outline(nat.ruleset(&ports));
        let expected = [
            "add table",
            "flush table",
            r#"add chain prerouting "prerouting"@-100"#,
            r#"add chain output "output"@-100"#,
            r#"add chain postrouting "postrouting"@100"#,
            "add chain hostports -",
            r#"add rule prerouting: {"jump":{"target":"hostports"}}"#,
            r#"add rule output: {"jump":{"target":"hostports"}}"#,
            r#"add rule hostports: {"match":{"left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local","op":"=="}} {"match":{"left":{"payload":{"protocol":"tcp","field":"dport"}},"right":8080,"op":"=="}} {"dnat":{"addr":"10.42.3.7","family":"ip","port":80}}"#,
            r#"add rule hostports: {"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"192.168.1.5","len":32}},"op":"=="}} {"match":{"left":{"payload":{"protocol":"udp","field":"dport"}},"right":5353,"op":"=="}} {"dnat":{"addr":"10.42.3.7","family":"ip","port":53}}"#,
            r#"add rule postrouting: {"match":{"left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.42.3.0","len":24}},"op":"=="}} {"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.42.3.0","len":24}},"op":"=="}} {"match":{"left":{"ct":{"key":"status"}},"right":"dnat","op":"in"}} {"masquerade":null}"#,
            r#"add rule postrouting: {"match":{"left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.42.3.0","len":24}},"op":"=="}} {"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.42.0.0","len":16}},"op":"!="}} {"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"224.0.0.0","len":4}},"op":"!="}} {"masquerade":null}"#,
        ];
        assert_eq!(outline, expected);
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
