//! The node's NAT and the guard that goes with it, in the nftables table `ip orch`, which is replaced
//! whole in one `nft` transaction whenever it changes (so applying it again leaves one copy of each rule,
//! a failure leaves the previous table, and a table of an older layout is replaced too):
//! - pods' traffic to addresses off the cluster is forwarded (`net.ipv4.ip_forward`) and masqueraded
//!   behind the address of the interface it leaves by, as flannel's ipMasq does for k3s; traffic between
//!   pods and to the node itself keeps the pod's address;
//! - host ports, as the CNI portmap plugin maps them: traffic to one of the node's addresses (or to the
//!   port's hostIP) on a pod's hostPort is sent to the pod's IP and containerPort, from other machines
//!   (prerouting) and from the node itself (output), 127.0.0.1 included. A pod reaching a host port of a
//!   pod on this node is masqueraded, so that the answer comes back through the node; so is the node
//!   reaching one from 127.0.0.0/8, which may only leave by the bridge, and be answered through it,
//!   because the bridge has `route_localnet` on (this module's switch too);
//! - the guard that switch needs (CVE-2020-8558): without the kernel's martian checks on the bridge,
//!   pods could reach the node's loopback-only services or pass for the node's loopback, so packets
//!   from the bridge to or from 127.0.0.0/8 are dropped before NAT sees them (where the answers to the
//!   node's own connections still bear the bridge's address). Where the table cannot be written, the
//!   switch is turned off: host ports on 127.0.0.1 stop answering rather than pods passing unguarded.
//!
//! Each host-port rule's comment records its mapping, so that a restarted agent keeps the mappings of
//! the pods it has not synced yet instead of dropping them until then.
//!
//! When a UDP host port's translation changes, the conntrack entries of its flows are deleted (with the
//! `conntrack` tool), as kubelet has them deleted.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::Path;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, CT,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{JumpTarget, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{Ipv4Cidr, NetworkError};

/// The nftables table that holds orch's node rules.
pub const TABLE: &str = "orch";
/// nftables' `dstnat` and `srcnat` priorities, and `mangle`'s, which comes before `dstnat`.
const DSTNAT: i32 = -100;
const SRCNAT: i32 = 100;
const MANGLE: i32 = -150;
const HOST_PORTS: &str = "hostports";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const MULTICAST: &str = "224.0.0.0/4";
const LOOPBACK: &str = "127.0.0.0/8";

/// Host ports by sandbox id: the pod's IP and its ports.
type Mappings = BTreeMap<String, (Ipv4Addr, Vec<HostPort>)>;

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

impl HostPort {
    /// The mapping as its rule's comment records it: `<sandbox> <pod ip> <protocol> <host ip or *>
    /// <host port> <container port>` (at most 113 characters for a pod UID, within nft's 128).
    fn comment(&self, id: &str, ip: Ipv4Addr) -> String {
        let host_ip = self.host_ip.map_or("*".to_string(), |ip| ip.to_string());
        format!(
            "{id} {ip} {} {host_ip} {} {}",
            self.protocol, self.host_port, self.container_port
        )
    }

    /// The mapping a rule's comment records, or None for a comment of another form.
    fn from_comment(comment: &str) -> Option<(String, Ipv4Addr, HostPort)> {
        let [id, ip, protocol, host_ip, host_port, container_port]: [&str; 6] =
            comment.split(' ').collect::<Vec<_>>().try_into().ok()?;
        let protocol = ["tcp", "udp", "sctp"]
            .into_iter()
            .find(|p| *p == protocol)?;
        let host_ip = match host_ip {
            "*" => None,
            ip => Some(ip.parse().ok()?),
        };
        let port = HostPort {
            protocol,
            host_ip,
            host_port: host_port.parse().ok()?,
            container_port: container_port.parse().ok()?,
        };
        Some((id.to_string(), ip.parse().ok()?, port))
    }
}

/// The node's table as `nft -j list table` gives it; None when there is none (a first start, after a
/// reboot, or after a firewall reload flushed the whole ruleset).
async fn listed_table() -> Result<Option<serde_json::Value>, String> {
    let listed = nftables::helper::get_current_ruleset_raw_async(
        None::<&str>,
        ["list", "table", "ip", TABLE],
    )
    .await;
    match listed {
        Err(nftables::helper::NftablesError::NftFailed { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// The rules of a listed table.
fn listed_rules(table: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    table["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|object| object.get("rule"))
}

/// The host ports the node's table maps now, from its rules' comments; none when there is no table or
/// it cannot be read (a hand-made rule the crate does not model), which only costs the mappings until
/// the pods' next sync.
async fn mapped_host_ports() -> Mappings {
    let table = match listed_table().await {
        Ok(Some(table)) => table,
        Ok(None) => return Mappings::new(),
        Err(e) => {
            tracing::warn!(error = %e, "reading the host ports the NAT table maps");
            return Mappings::new();
        }
    };
    let mut mappings = Mappings::new();
    let rules = listed_rules(&table).filter(|rule| rule["chain"] == HOST_PORTS);
    for rule in rules {
        let recorded = rule["comment"].as_str().and_then(HostPort::from_comment);
        if let Some((id, ip, port)) = recorded {
            let (_, ports) = mappings.entry(id).or_insert_with(|| (ip, Vec::new()));
            ports.push(port);
        }
    }
    for (_, ports) in mappings.values_mut() {
        ports.sort();
    }
    mappings
}

/// The node's NAT table and what it is made from. Changes are serialised.
pub(super) struct NodeNat {
    bridge: String,
    pod_cidr: Ipv4Cidr,
    cluster_cidr: Ipv4Cidr,
    host_ports: tokio::sync::Mutex<Mappings>,
}

impl NodeNat {
    /// Turns forwarding on and writes the table, keeping the host ports the table already maps (an agent
    /// restart) to sandboxes that still hold the address they were mapped to (`holds`), in the network
    /// namespace of the calling thread (`nft` is started from it). A mapping without its sandbox (another
    /// data dir, a reset one) would otherwise stay, for an address the next pod may get.
    pub(super) async fn start(
        bridge: &str,
        pod_cidr: Ipv4Cidr,
        cluster_cidr: Ipv4Cidr,
        holds: impl Fn(&str, Ipv4Addr) -> bool,
    ) -> Result<Self, NetworkError> {
        enable_forwarding(Path::new(IP_FORWARD))?;
        let mut mapped = mapped_host_ports().await;
        mapped.retain(|id, (ip, _)| holds(id, *ip));
        let nat = NodeNat {
            bridge: bridge.to_string(),
            pod_cidr,
            cluster_cidr,
            host_ports: tokio::sync::Mutex::new(mapped.clone()),
        };
        apply(&nat.ruleset(&mapped)).await?;
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
        let previous = match wanted.clone() {
            Some(mapping) => next.insert(id.to_string(), mapping),
            None => next.remove(id),
        };
        apply(&self.ruleset(&next)).await?;
        *current = next;
        drop(current);
        for host_port in changed_udp_ports(previous.as_ref(), wanted.as_ref()) {
            forget_udp_flows(host_port).await;
        }
        Ok(())
    }

    /// Writes the table again when it is missing or holds another number of rules than written (a
    /// firewall reload that flushed the whole ruleset, an edit by hand), and turns forwarding back on
    /// when something turned it off.
    pub(super) async fn converge(&self) -> Result<(), NetworkError> {
        enable_forwarding(Path::new(IP_FORWARD))?;
        let host_ports = self.host_ports.lock().await;
        let ruleset = self.ruleset(&host_ports);
        let written = ruleset
            .objects
            .iter()
            .filter(|o| matches!(o, NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(_)))))
            .count();
        let listed = listed_table()
            .await
            .map_err(NetworkError::NftFailed)?
            .map(|table| listed_rules(&table).count());
        if listed != Some(written) {
            tracing::info!(
                rules = ?listed,
                expected = written,
                "the node's NAT table was changed from outside: writing it again"
            );
            if let Err(e) = apply(&ruleset).await {
                // Without its guard, the bridge must not let 127.0.0.0/8 through.
                if let Err(off) = set_route_localnet(&self.bridge, false) {
                    tracing::warn!(error = %off, "the bridge lets 127.0.0.0/8 through unguarded");
                }
                return Err(e);
            }
        }
        // A bridge deleted by hand is made again, with the switch, for the next sandbox.
        match set_route_localnet(&self.bridge, true) {
            Err(NetworkError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(()),
            switched => switched,
        }
    }

    /// The whole table, in one batch: created if missing, deleted and made again, then filled.
    fn ruleset(&self, host_ports: &Mappings) -> Nftables<'static> {
        let table = Table {
            family: NfFamily::IP,
            name: TABLE.into(),
            handle: None,
        };
        let mut batch = Batch::new();
        // Added first so that deleting it cannot fail; deleted rather than flushed so that chains of an
        // older layout (another hook or priority) go too.
        batch.add(NfListObject::Table(table.clone()));
        batch.delete(NfListObject::Table(table.clone()));
        batch.add(NfListObject::Table(table));
        for (name, hook, priority, kind) in [
            (
                "prerouting",
                Some(NfHook::Prerouting),
                DSTNAT,
                NfChainType::NAT,
            ),
            ("output", Some(NfHook::Output), DSTNAT, NfChainType::NAT),
            (
                "postrouting",
                Some(NfHook::Postrouting),
                SRCNAT,
                NfChainType::NAT,
            ),
            (
                "guard",
                Some(NfHook::Prerouting),
                MANGLE,
                NfChainType::Filter,
            ),
            (HOST_PORTS, None, 0, NfChainType::NAT),
        ] {
            batch.add(NfListObject::Chain(Chain {
                family: NfFamily::IP,
                table: TABLE.into(),
                name: name.into(),
                _type: hook.map(|_| kind),
                hook,
                prio: hook.map(|_| priority),
                policy: hook.map(|_| NfChainPolicy::Accept),
                ..Chain::default()
            }));
        }
        let rule = |chain: &'static str, expr: Vec<Statement<'static>>| Rule {
            family: NfFamily::IP,
            table: TABLE.into(),
            chain: chain.into(),
            expr: Cow::Owned(expr),
            ..Rule::default()
        };
        let loopback: Ipv4Cidr = LOOPBACK.parse().expect("constant");
        let jump = || {
            Statement::Jump(JumpTarget {
                target: HOST_PORTS.into(),
            })
        };
        // From outside the node, 127.0.0.0/8 is never mapped; from the node, 127.0.0.1 is, but not the
        // rest of 127.0.0.0/8, where node services such as a stub resolver on 127.0.0.53 keep their
        // ports.
        let not_loopback = || ip_match("daddr", Operator::NEQ, loopback);
        let localhost = Ipv4Cidr::new(Ipv4Addr::LOCALHOST, 32).expect("a /32 is valid");
        batch.add(NfListObject::Rule(rule(
            "prerouting",
            vec![not_loopback(), jump()],
        )));
        batch.add(NfListObject::Rule(rule(
            "output",
            vec![not_loopback(), jump()],
        )));
        let to_localhost = ip_match("daddr", Operator::EQ, localhost);
        batch.add(NfListObject::Rule(rule(
            "output",
            vec![to_localhost, jump()],
        )));
        for (id, (ip, ports)) in host_ports {
            for port in ports {
                // Only ever the node's own addresses: a hostIP elsewhere must not capture traffic that
                // passes through the node.
                let mut expr = vec![local_destination()];
                if let Some(host_ip) = port.host_ip {
                    expr.push(ip_match(
                        "daddr",
                        Operator::EQ,
                        Ipv4Cidr::new(host_ip, 32).expect("a /32 is valid"),
                    ));
                }
                expr.push(Statement::Match(Match {
                    left: payload(port.protocol, "dport"),
                    right: Expression::Number(u32::from(port.host_port)),
                    op: Operator::EQ,
                }));
                expr.push(Statement::DNAT(Some(NAT {
                    addr: Some(Expression::String(ip.to_string().into())),
                    family: Some(NATFamily::IP),
                    port: Some(Expression::Number(u32::from(port.container_port))),
                    flags: None,
                })));
                batch.add(NfListObject::Rule(Rule {
                    comment: Some(port.comment(id, *ip).into()),
                    ..rule(HOST_PORTS, expr)
                }));
            }
        }
        let from_pods = ip_match("saddr", Operator::EQ, self.pod_cidr);
        // Pods' own connections through a host port, and the node's from 127.0.0.0/8, which a pod
        // could not answer.
        for from in [from_pods.clone(), ip_match("saddr", Operator::EQ, loopback)] {
            let through_host_port = vec![
                from,
                ip_match("daddr", Operator::EQ, self.pod_cidr),
                Statement::Match(Match {
                    left: conntrack("status"),
                    right: Expression::String("dnat".into()),
                    op: Operator::IN,
                }),
                Statement::Masquerade(None),
            ];
            batch.add(NfListObject::Rule(rule("postrouting", through_host_port)));
        }
        let multicast: Ipv4Cidr = MULTICAST.parse().expect("constant");
        let off_cluster = vec![
            from_pods,
            ip_match("daddr", Operator::NEQ, self.cluster_cidr),
            ip_match("daddr", Operator::NEQ, multicast),
            Statement::Masquerade(None),
        ];
        batch.add(NfListObject::Rule(rule("postrouting", off_cluster)));
        for field in ["saddr", "daddr"] {
            let from_bridge = Statement::Match(Match {
                left: Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::Iifname,
                })),
                right: Expression::String(self.bridge.clone().into()),
                op: Operator::EQ,
            });
            let loopback_end = ip_match(field, Operator::EQ, loopback);
            let guard = vec![from_bridge, loopback_end, Statement::Drop(None)];
            batch.add(NfListObject::Rule(rule("guard", guard)));
        }
        batch.to_nftables()
    }
}

/// `ct <key>`.
fn conntrack(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

/// `ip <field> <op> <cidr>`.
fn ip_match(field: &'static str, op: Operator, cidr: Ipv4Cidr) -> Statement<'static> {
    Statement::Match(Match {
        left: payload("ip", field),
        right: Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(cidr.network().to_string().into())),
            len: u32::from(cidr.prefix_len()),
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

/// Deletes the node's table, if there is one.
pub(super) fn delete_table() {
    let _ = std::process::Command::new("nft")
        .args(["delete", "table", "ip", TABLE])
        .output();
}

async fn apply(ruleset: &Nftables<'_>) -> Result<(), NetworkError> {
    nftables::helper::apply_ruleset_async(ruleset)
        .await
        .map_err(NetworkError::from)
}

/// Writes `1` unless it is there already: writing the switch resets per-interface forwarding settings.
fn enable_forwarding(switch: &Path) -> Result<(), NetworkError> {
    switch_on(switch, "turning on IP forwarding in")
}

/// Lets the node's connections from 127.0.0.0/8 to a host port leave by `bridge` and their answers
/// come back (`on`), which the kernel otherwise drops as martians, or not; in the network namespace of
/// the calling thread. Only with the table's guard in place.
pub(super) fn set_route_localnet(bridge: &str, on: bool) -> Result<(), NetworkError> {
    let switch = Path::new("/proc/sys/net/ipv4/conf")
        .join(bridge)
        .join("route_localnet");
    match on {
        true => switch_on(&switch, "letting 127.0.0.0/8 cross the bridge in"),
        false => std::fs::write(&switch, "0").map_err(NetworkError::io(
            "keeping 127.0.0.0/8 off the bridge in",
            switch,
        )),
    }
}

/// Writes `1` to a sysctl unless it holds it already.
fn switch_on(switch: &Path, context: &'static str) -> Result<(), NetworkError> {
    let current = std::fs::read_to_string(switch).map_err(NetworkError::io("reading", switch))?;
    if current.trim() == "1" {
        return Ok(());
    }
    std::fs::write(switch, "1").map_err(NetworkError::io(context, switch))
}

/// The UDP host ports whose translation differs between two mappings of one pod.
fn changed_udp_ports(
    before: Option<&(Ipv4Addr, Vec<HostPort>)>,
    after: Option<&(Ipv4Addr, Vec<HostPort>)>,
) -> BTreeSet<u16> {
    let udp = |mapping: Option<&(Ipv4Addr, Vec<HostPort>)>| -> BTreeSet<(u16, Ipv4Addr, HostPort)> {
        mapping
            .into_iter()
            .flat_map(|(ip, ports)| ports.iter().map(move |p| (p.host_port, *ip, p.clone())))
            .filter(|(_, _, p)| p.protocol == "udp")
            .collect()
    };
    udp(before)
        .symmetric_difference(&udp(after))
        .map(|(host_port, _, _)| *host_port)
        .collect()
}

/// Deletes the conntrack entries of UDP traffic to `host_port`, as kubelet has them deleted when a UDP
/// host port changes: a UDP flow keeps the translation of its first packet, so a client that never
/// pauses (a VPN's keepalives) would keep reaching the pod it first reached. Done with the `conntrack`
/// tool; without it, or when it fails, only a warning: the mapping itself is in place.
async fn forget_udp_flows(host_port: u16) {
    let port = host_port.to_string();
    let deleted = tokio::process::Command::new("conntrack")
        .args(["-D", "-p", "udp", "--orig-port-dst", &port])
        .output()
        .await;
    match deleted {
        Ok(out) if out.status.success() => {}
        // conntrack's exit status when nothing matched.
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains(" 0 flow entries") => {}
        Ok(out) => tracing::warn!(
            host_port,
            error = %String::from_utf8_lossy(&out.stderr).trim(),
            "conntrack could not forget the UDP flows of a changed host port"
        ),
        Err(e) => tracing::warn!(
            host_port,
            error = %e,
            "UDP flows of a changed host port keep their old pod: running conntrack failed \
             (install conntrack)"
        ),
    }
}

impl From<nftables::helper::NftablesError> for NetworkError {
    /// With `nft`'s own complaint, which the crate's error leaves out, and what to install when `nft`
    /// is missing.
    fn from(e: nftables::helper::NftablesError) -> Self {
        use nftables::helper::NftablesError;
        match e {
            NftablesError::NftExecution { inner, .. }
                if inner.kind() == std::io::ErrorKind::NotFound =>
            {
                NetworkError::NftMissing
            }
            NftablesError::NftFailed { stderr, .. } => {
                NetworkError::NftFailed(stderr.trim().into())
            }
            e => NetworkError::Nft(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat() -> NodeNat {
        NodeNat {
            bridge: "orch0".to_string(),
            pod_cidr: "10.42.3.0/24".parse().unwrap(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            host_ports: tokio::sync::Mutex::default(),
        }
    }

    /// An operand in nft's own syntax.
    fn operand(v: &serde_json::Value) -> String {
        if let Some(p) = v.get("payload") {
            return format!(
                "{} {}",
                p["protocol"].as_str().unwrap(),
                p["field"].as_str().unwrap()
            );
        }
        if let Some(p) = v.get("prefix") {
            return format!("{}/{}", p["addr"].as_str().unwrap(), p["len"]);
        }
        if let Some(f) = v.get("fib") {
            return format!(
                "fib {} {}",
                f["flags"][0].as_str().unwrap(),
                f["result"].as_str().unwrap()
            );
        }
        if let Some(c) = v.get("ct") {
            return format!("ct {}", c["key"].as_str().unwrap());
        }
        if let Some(m) = v.get("meta") {
            return format!("meta {}", m["key"].as_str().unwrap());
        }
        v.as_str().map_or_else(|| v.to_string(), str::to_string)
    }

    /// The batch in nft's syntax, one command per line.
    fn outline(ruleset: Nftables<'_>) -> Vec<String> {
        let json = serde_json::to_value(ruleset).unwrap();
        json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|command| {
                let (verb, object) = command.as_object().unwrap().iter().next().unwrap();
                let (kind, body) = object.as_object().unwrap().iter().next().unwrap();
                let head = format!(
                    "{verb} {kind} {}",
                    body["name"].as_str().unwrap_or_default()
                );
                match kind.as_str() {
                    "chain" => match body.get("hook") {
                        Some(hook) => format!("{head} {} {}", hook.as_str().unwrap(), body["prio"]),
                        None => head,
                    },
                    "rule" => {
                        let statements = body["expr"].as_array().unwrap().iter().map(|s| {
                            let (verb, args) = s.as_object().unwrap().iter().next().unwrap();
                            match verb.as_str() {
                                "match" => format!(
                                    "{} {} {}",
                                    operand(&args["left"]),
                                    args["op"].as_str().unwrap(),
                                    operand(&args["right"])
                                ),
                                "jump" => format!("jump {}", args["target"].as_str().unwrap()),
                                "dnat" => format!(
                                    "dnat to {}:{}",
                                    args["addr"].as_str().unwrap(),
                                    args["port"]
                                ),
                                other => other.to_string(),
                            }
                        });
                        let mut line = format!(
                            "{verb} rule {}: {}",
                            body["chain"].as_str().unwrap(),
                            statements.collect::<Vec<_>>().join(", ")
                        );
                        if let Some(comment) = body.get("comment") {
                            line += &format!(" # {}", comment.as_str().unwrap());
                        }
                        line
                    }
                    _ => head,
                }
            })
            .collect()
    }

    #[test]
    fn the_table_is_replaced_whole_with_masquerade_and_host_ports() {
        let nat = nat();
        let mut ports = Mappings::new();
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
        assert_eq!(
            outline(nat.ruleset(&ports)),
            [
                "add table orch",
                "delete table orch",
                "add table orch",
                "add chain prerouting prerouting -100",
                "add chain output output -100",
                "add chain postrouting postrouting 100",
                "add chain guard prerouting -150",
                "add chain hostports",
                "add rule prerouting: ip daddr != 127.0.0.0/8, jump hostports",
                "add rule output: ip daddr != 127.0.0.0/8, jump hostports",
                "add rule output: ip daddr == 127.0.0.1/32, jump hostports",
                "add rule hostports: fib daddr type == local, tcp dport == 8080, dnat to 10.42.3.7:80 \
                 # pod-a 10.42.3.7 tcp * 8080 80",
                "add rule hostports: fib daddr type == local, ip daddr == 192.168.1.5/32, \
                 udp dport == 5353, dnat to 10.42.3.7:53 # pod-a 10.42.3.7 udp 192.168.1.5 5353 53",
                "add rule postrouting: ip saddr == 10.42.3.0/24, ip daddr == 10.42.3.0/24, \
                 ct status in dnat, masquerade",
                "add rule postrouting: ip saddr == 127.0.0.0/8, ip daddr == 10.42.3.0/24, \
                 ct status in dnat, masquerade",
                "add rule postrouting: ip saddr == 10.42.3.0/24, ip daddr != 10.42.0.0/16, \
                 ip daddr != 224.0.0.0/4, masquerade",
                "add rule guard: meta iifname == orch0, ip saddr == 127.0.0.0/8, drop",
                "add rule guard: meta iifname == orch0, ip daddr == 127.0.0.0/8, drop",
            ]
        );
    }

    #[test]
    fn a_rule_comment_gives_back_its_mapping() {
        let port = HostPort {
            protocol: "udp",
            host_ip: Some(Ipv4Addr::new(192, 168, 1, 5)),
            host_port: 5353,
            container_port: 53,
        };
        let uid = "0f3c2a8e-1b7d-4c55-9a0e-2d6f1e9b7c41";
        let ip = Ipv4Addr::new(10, 42, 3, 7);
        let comment = port.comment(uid, ip);
        assert!(comment.len() <= 128, "{comment}");
        assert_eq!(
            HostPort::from_comment(&comment),
            Some((uid.to_string(), ip, port.clone()))
        );
        let any = HostPort {
            host_ip: None,
            ..port
        };
        assert_eq!(
            HostPort::from_comment(&any.comment(uid, ip)).map(|(_, _, p)| p),
            Some(any)
        );
        for other in [
            "",
            "pods to addresses off the cluster",
            "a 10.0.0.1 icmp * 1 2",
            "a b tcp * 1 2",
        ] {
            assert_eq!(HostPort::from_comment(other), None, "{other}");
        }
    }

    #[test]
    fn udp_ports_count_as_changed_when_their_translation_does() {
        let port = |protocol, host_port, container_port| HostPort {
            protocol,
            host_ip: None,
            host_port,
            container_port,
        };
        let a = Ipv4Addr::new(10, 42, 3, 7);
        let before = (
            a,
            vec![
                port("udp", 53, 53),
                port("udp", 5353, 53),
                port("tcp", 80, 80),
            ],
        );
        // 5353 now reaches another container port, 6000 is new, TCP changes are not UDP's.
        let after = (
            a,
            vec![
                port("udp", 53, 53),
                port("udp", 5353, 54),
                port("udp", 6000, 60),
                port("tcp", 81, 80),
            ],
        );
        assert_eq!(
            changed_udp_ports(Some(&before), Some(&after)),
            BTreeSet::from([5353, 6000])
        );
        // Another pod address changes them all; removal too.
        let moved = (Ipv4Addr::new(10, 42, 3, 8), before.1.clone());
        assert_eq!(
            changed_udp_ports(Some(&before), Some(&moved)),
            BTreeSet::from([53, 5353])
        );
        assert_eq!(
            changed_udp_ports(Some(&before), None),
            BTreeSet::from([53, 5353])
        );
        assert_eq!(
            changed_udp_ports(Some(&before), Some(&before)),
            BTreeSet::new()
        );
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
