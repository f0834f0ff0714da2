//! The pod network of one node: the bridge (`orch0`) holding the gateway address of the node's podCIDR, the
//! unreachable routes that keep packets for unknown pod and service IPs off the default route, and per pod
//! a sandbox — a network namespace bound at `<netns_dir>/<id>`, a veth pair whose pod end is `eth0` (at the
//! MTU of the node's uplink), an IP from the podCIDR and a default route via the gateway. The network is
//! IPv4: neither end of a veth gets an IPv6 link-local address. `nat.rs` is the node's NAT: pods' traffic
//! off the cluster leaves from the node's address, and pods' host ports are mapped (on 127.0.0.1 too,
//! with the bridge's `route_localnet` and its guard); `firewall.rs` opens a host firewall's FORWARD
//! chain to pod traffic. Cross-node routing and Services are not here.
//!
//! `ipam.rs` is the persistent address allocator, `netns.rs` creates and enters namespaces (on dedicated
//! threads, never by forking), `netlink.rs` the link, address and route requests. Sandboxes of different
//! pods are made side by side; changes to one sandbox are serialised.

mod firewall;
mod ipam;
mod nat;
mod netlink;
pub mod netns;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::util::cidr::CidrError;
pub use crate::util::cidr::Ipv4Cidr;
use ipam::Ipam;
pub use nat::HostPort;
use nat::NodeNat;

pub const DEFAULT_BRIDGE: &str = "orch0";
pub const DEFAULT_NETNS_DIR: &str = "/run/orch/netns";
/// The name of the pod end of its veth pair.
pub const POD_INTERFACE: &str = "eth0";
/// The pods' MTU on a node without a default route.
const DEFAULT_MTU: u32 = 1500;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    InvalidCidr(#[from] CidrError),
    #[error("invalid pod network configuration: {0}")]
    Config(String),
    #[error(
        "invalid sandbox id {0:?}: want 1 to 253 characters of [A-Za-z0-9_.-], not starting with '.'"
    )]
    InvalidId(String),
    #[error("no free IP address left in {0}")]
    Exhausted(Ipv4Cidr),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Netlink {
        context: String,
        source: rtnetlink::Error,
    },
    #[error("opening a netlink socket: {0}")]
    NetlinkSocket(#[source] std::io::Error),
    #[error("{0}: no answer from the kernel within {timeout:?}", timeout = netlink::ANSWER_TIMEOUT)]
    Unanswered(String),
    #[error(
        "the pod bridge holds the most ports a Linux bridge can (1,023): the node takes no more pods \
         that are not on the host network"
    )]
    BridgeFull,
    #[error("link {0} vanished while being set up")]
    LinkVanished(String),
    #[error("the thread working in network namespace {0} panicked")]
    ThreadPanicked(PathBuf),
    #[error("the thread allocating a pod IP address panicked")]
    AllocatorPanicked,
    #[error("the nft command is missing: install nftables (apt-get install nftables)")]
    NftMissing,
    #[error("nft refused the node's NAT rules: {0}")]
    NftFailed(String),
    #[error("running nft: {0}")]
    Nft(#[source] nftables::helper::NftablesError),
    #[error("running {command}: {source}")]
    IptablesRun {
        command: String,
        source: std::io::Error,
    },
    #[error("{command}: {stderr}")]
    IptablesFailed { command: String, stderr: String },
    #[error("sandbox {0} is gone")]
    SandboxGone(String),
    #[error("setting sysctl {name} to {value:?}: {source}")]
    Sysctl {
        name: String,
        value: String,
        source: std::io::Error,
    },
    #[error("setting the hostname {0:?}: {1}")]
    Hostname(String, nix::errno::Errno),
}

impl NetworkError {
    fn io(context: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| NetworkError::Io {
            context,
            path,
            source,
        }
    }

    fn sys(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(nix::errno::Errno) -> Self {
        let io = Self::io(context, path);
        move |errno| io(errno.into())
    }

    fn netlink(context: String) -> impl FnOnce(rtnetlink::Error) -> Self {
        move |source| NetworkError::Netlink { context, source }
    }
}

#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Name of the bridge the pods' veths are attached to, [`DEFAULT_BRIDGE`] in production.
    pub bridge: String,
    /// This node's podCIDR (`Node.spec.podCIDR`); its first address is the gateway.
    pub pod_cidr: Ipv4Cidr,
    pub cluster_cidr: Ipv4Cidr,
    pub service_cidr: Ipv4Cidr,
    /// `<data-dir>/agent/network`: IP allocations, which survive agent restarts.
    pub state_dir: PathBuf,
    /// Where pod network namespaces are bind-mounted, [`DEFAULT_NETNS_DIR`] in production.
    pub netns_dir: PathBuf,
}

/// What a pod's containers need to join its network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// For the OCI config: `{"type": "network", "path": <netns_path>}`.
    pub netns_path: PathBuf,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// The node's pod network; sandbox operations are safe to call concurrently and idempotent.
pub struct PodNetwork {
    config: NetworkConfig,
    gateway: Ipv4Addr,
    /// The MTU of the node's uplink, which pods' veths get: a pod sending larger packets would depend on
    /// path MTU discovery for every connection off the node, and its SYNs would promise a larger MSS
    /// than the node's link carries.
    pod_mtu: u32,
    handle: rtnetlink::Handle,
    ipam: Ipam,
    /// The bridge's index when the node part was last converged, which the next sandbox checks it against.
    node: tokio::sync::Mutex<Option<u32>>,
    nat: NodeNat,
    // Serialise the changes to one sandbox, so that "what exists" of it can be answered by looking at the
    // kernel and the state directory; different sandboxes are made side by side.
    sandbox_locks: SandboxLocks,
    /// The indexes of the veths on the bridge that belonged to no sandbox at the last
    /// [`PodNetwork::remove_stray_veths`].
    strays: std::sync::Mutex<HashSet<u32>>,
}

// The pod workers share one PodNetwork.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<PodNetwork>();
};

impl fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodNetwork")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PodNetwork {
    /// Idempotent node setup: the bridge up with the gateway address, unreachable routes for the cluster
    /// and service CIDRs (the node's own podCIDR stays reachable through the more specific bridge route),
    /// and the node's NAT (forwarding, masquerade off the cluster, and the host ports its table already
    /// maps). Must be called inside a tokio runtime, which then drives the node's netlink connection.
    pub async fn setup(config: NetworkConfig) -> Result<Self, NetworkError> {
        validate(&config)?;
        let gateway = config.pod_cidr.nth(1).expect("validated: /30 or larger");
        let ipam = Ipam::open(&config.state_dir, config.pod_cidr, gateway)?;
        netns::prepare_dir(&config.netns_dir)?;
        let (conn, handle) = netlink::node_connection()?;
        tokio::spawn(conn);
        let pod_mtu = netlink::uplink_mtu(&handle).await?.unwrap_or(DEFAULT_MTU);
        let allocated: HashMap<String, Ipv4Addr> = ipam
            .allocations()?
            .into_iter()
            .map(|(ip, id)| (id, ip))
            .collect();
        let nat = NodeNat::start(
            &config.bridge,
            config.pod_cidr,
            config.cluster_cidr,
            |id, ip| allocated.get(id) == Some(&ip),
        )
        .await?;
        let network = PodNetwork {
            config,
            gateway,
            pod_mtu,
            handle,
            ipam,
            node: tokio::sync::Mutex::new(None),
            nat,
            sandbox_locks: SandboxLocks::default(),
            strays: Default::default(),
        };
        network.ensure_node().await?;
        if let Err(e) = firewall::open_forwarding(network.config.cluster_cidr).await {
            tracing::warn!(error = %e, "opening the host firewall's FORWARD chain to pod traffic");
        }
        Ok(network)
    }

    /// Puts the node's rules in the host's tables back as setup made them, for what changes them from
    /// outside: the NAT table is written again when something removed or changed it (a firewall reload
    /// flushes the whole ruleset), and the host firewall's FORWARD chain is opened to pod traffic again
    /// when a firewall started or reloaded since. Called periodically.
    pub async fn converge_host_rules(&self) -> Result<(), NetworkError> {
        // Each on its own: an nft failure must not keep the firewall closed, nor the reverse.
        let nat = self.nat.converge().await;
        let firewall = firewall::open_forwarding(self.config.cluster_cidr).await;
        nat.and(firewall)
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The node part (the bridge with its address and `route_localnet`, the unreachable routes),
    /// converged when the bridge is not the one converged last (at start, or deleted by hand since),
    /// returning the bridge's index; checked before every sandbox.
    async fn ensure_node(&self) -> Result<u32, NetworkError> {
        let mut converged = self.node.lock().await;
        let c = &self.config;
        if let Some(index) = *converged {
            let current = netlink::link_by_name(&self.handle, &c.bridge).await?;
            if current.is_some_and(|link| link.header.index == index) {
                return Ok(index);
            }
        }
        *converged = None;
        let bridge = netlink::ensure_bridge(&self.handle, &c.bridge, bridge_mac(&c.bridge)).await?;
        netlink::ensure_only_address(&self.handle, bridge, self.gateway, c.pod_cidr.prefix_len())
            .await?;
        netlink::set_up(&self.handle, bridge, None).await?;
        nat::set_route_localnet(&c.bridge, true)?;
        for (cidr, what) in [
            (c.cluster_cidr, "the cluster CIDR"),
            (c.service_cidr, "the service CIDR"),
        ] {
            let what = format!("the unreachable route for {what} {cidr}");
            netlink::replace_route(&self.handle, netlink::unreachable_route(cidr), &what).await?;
        }
        *converged = Some(bridge);
        Ok(bridge)
    }

    /// Idempotent: the sandbox of `id` — created, completed after an interrupted attempt, or as it is. A
    /// failure can leave parts behind; calling this again or [`PodNetwork::remove_sandbox`] cleans up.
    /// `sysctls` are set once `eth0` is there (a sysctl may name it): unless `sysctls_set` says a
    /// successful call already set them, and again whenever this call makes `eth0` anew.
    pub async fn create_sandbox(
        &self,
        id: &str,
        sysctls: &[netns::Sysctl],
        sysctls_set: bool,
    ) -> Result<Sandbox, NetworkError> {
        validate_id(id)?;
        let _change = self.sandbox_locks.lock(id).await;
        let bridge = self.ensure_node().await?;
        // The allocation flushes its owner file: a disk wait for a blocking thread, not an async worker.
        let (ipam, owner) = (self.ipam.clone(), id.to_string());
        let ip = tokio::task::spawn_blocking(move || ipam.allocate(&owner))
            .await
            .map_err(|_| NetworkError::AllocatorPanicked)??;
        let netns_path = self.config.netns_dir.join(id);
        netns::ensure(&netns_path).await?;
        let sysctls = sysctls.to_vec();
        let sandbox = Sandbox {
            netns_path,
            ip,
            prefix_len: self.config.pod_cidr.prefix_len(),
            gateway: self.gateway,
        };
        // One thread in the pod's namespace does the work of both sides: the node's handle is served by
        // the connection task on the agent's runtime, wherever it is awaited.
        let node = self.handle.clone();
        let host_name = veth_name(id);
        let s = sandbox.clone();
        let mtu = self.pod_mtu;
        netlink::in_netns(&sandbox.netns_path, move |pod| async move {
            let new_pair = connect_pod(&node, &pod, &host_name, bridge, &s, mtu).await?;
            configure_pod(&pod, &s).await?;
            if new_pair || !sysctls_set {
                netns::set_sysctls(&sysctls)?;
            }
            Ok(())
        })
        .await?;
        Ok(sandbox)
    }

    /// Whether the sandbox's network namespace is there (a reboot clears them).
    pub fn has_sandbox(&self, id: &str) -> bool {
        validate_id(id).is_ok() && self.config.netns_dir.join(id).exists()
    }

    /// Maps the host ports of sandbox `id`'s pod (at `ip`) to it, replacing what it had; none unmaps.
    /// Under the sandbox's lock, and only while it exists: a mapping made after the sandbox was removed
    /// would send traffic to an address another pod may get.
    pub async fn set_host_ports(
        &self,
        id: &str,
        ip: Ipv4Addr,
        ports: Vec<HostPort>,
    ) -> Result<(), NetworkError> {
        validate_id(id)?;
        let _change = self.sandbox_locks.lock(id).await;
        if !ports.is_empty() && !self.has_sandbox(id) {
            return Err(NetworkError::SandboxGone(id.to_string()));
        }
        self.nat.set_host_ports(id, ip, ports).await
    }

    /// Idempotent teardown: the host ports unmapped, the namespace unmounted and its file removed, the IP
    /// released. The kernel frees the namespace once nothing is in it any more, and the veth pair with
    /// it: freed namespaces are cleaned up in batches, where deleting a pair by request holds the
    /// kernel's one network configuration lock for about 15 ms, so that a thousand pods deleted at once
    /// waited 15 s in line. A veth whose namespace is no longer bound here (unmounted from outside while
    /// something still holds it) is deleted by request; the pair of a namespace something holds past its
    /// removal goes with [`PodNetwork::remove_stray_veths`].
    pub async fn remove_sandbox(&self, id: &str) -> Result<(), NetworkError> {
        validate_id(id)?;
        let _change = self.sandbox_locks.lock(id).await;
        self.nat
            .set_host_ports(id, Ipv4Addr::UNSPECIFIED, Vec::new())
            .await?;
        let netns_path = self.config.netns_dir.join(id);
        if !netns::exists(&netns_path)? {
            if let Some(host) = netlink::link_by_name(&self.handle, &veth_name(id)).await? {
                netlink::delete_link(&self.handle, host.header.index).await?;
            }
        }
        netns::remove(&netns_path)?;
        self.ipam.release(id)
    }

    /// Deletes the veths on the bridge that belong to no sandbox and were there at the previous call
    /// already, returning how many: the pairs of namespaces something still holds after their sandbox
    /// was removed (a process that escaped its pod's stop, a port-forward's socket, an admin's
    /// `nsenter`), which would keep a bridge port and answer for an address the node may give another
    /// pod. The pairs of namespaces the kernel is still freeing are gone by the next call. Called
    /// periodically.
    pub async fn remove_stray_veths(&self) -> Result<usize, NetworkError> {
        let Some(bridge) = *self.node.lock().await else {
            return Ok(0);
        };
        // Listed before the namespace files: a sandbox made in between has its file before its pair.
        // (The files, not the IP allocations: a directory listing instead of a read per pod.)
        let veths = netlink::veths_on(&self.handle, bridge).await?;
        let ours: HashSet<String> = self
            .namespace_ids()?
            .iter()
            .map(|id| veth_name(id))
            .collect();
        let strays: HashSet<u32> = veths
            .into_iter()
            .filter(|(_, name)| !ours.contains(name))
            .map(|(index, _)| index)
            .collect();
        let seen_before =
            std::mem::replace(&mut *self.strays.lock().expect("strays"), strays.clone());
        let mut removed = 0;
        for index in strays.intersection(&seen_before) {
            netlink::delete_link(&self.handle, *index).await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Ids of the sandboxes that exist in part or whole (a namespace file or an IP allocation), sorted: after
    /// a restart, those of pods no longer on the node are for [`PodNetwork::remove_sandbox`].
    pub fn sandboxes(&self) -> Result<Vec<String>, NetworkError> {
        let mut ids: Vec<String> = self
            .ipam
            .allocations()?
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        ids.extend(self.namespace_ids()?);
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Ids of the sandboxes with a namespace file (bound, or left by a crash before the bind).
    fn namespace_ids(&self) -> Result<Vec<String>, NetworkError> {
        let dir = &self.config.netns_dir;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(NetworkError::io("listing", dir))? {
            let entry = entry.map_err(NetworkError::io("listing", dir))?;
            if let Some(name) = entry.file_name().to_str() {
                if validate_id(name).is_ok() {
                    ids.push(name.to_string());
                }
            }
        }
        Ok(ids)
    }

    /// Where the namespace of sandbox `id` is (or would be) bound.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.config.netns_dir.join(id)
    }
}

/// Removes what agents leave in the host's tables — the NAT table and the opening of the host firewall
/// — as uninstalling the node does, after `bridge` stops letting 127.0.0.0/8 through, which the table
/// guarded; tests and benchmarks use it to leave the host as they found it. Best effort: what is not
/// there, or cannot be removed, is left.
pub fn remove_host_rules(bridge: &str) {
    let _ = nat::set_route_localnet(bridge, false);
    nat::delete_table();
    firewall::close_forwarding();
}

/// The veth pair of the sandbox: `host_name` on the node (`node`), attached to the bridge and up, and
/// `eth0` in the pod's namespace (`pod`), neither with an IPv6 link-local address, both at `mtu` when
/// made. A pair left half made, or the ends of two different pairs, after a crash, is made again;
/// whether it was.
async fn connect_pod(
    node: &rtnetlink::Handle,
    pod: &rtnetlink::Handle,
    host_name: &str,
    bridge: u32,
    sandbox: &Sandbox,
    mtu: u32,
) -> Result<bool, NetworkError> {
    let host = netlink::link_by_name(node, host_name).await?;
    let inside = netlink::link_by_name(pod, POD_INTERFACE).await?;
    let paired = match (&host, &inside) {
        (Some(host), Some(inside)) => {
            netlink::peer_index(host) == Some(inside.header.index)
                && netlink::peer_index(inside) == Some(host.header.index)
        }
        _ => false,
    };
    if !paired {
        if let Some(host) = &host {
            netlink::delete_link(node, host.header.index).await?;
        }
        if let Some(inside) = &inside {
            netlink::delete_link(pod, inside.header.index).await?;
        }
        netlink::create_veth(
            node,
            host_name,
            bridge,
            &sandbox.netns_path,
            POD_INTERFACE,
            mtu,
        )
        .await?;
        // Both ends are still down, so neither has made an IPv6 link-local address yet.
        for (h, name) in [(node, host_name), (pod, POD_INTERFACE)] {
            let link = netlink::link_by_name(h, name)
                .await?
                .ok_or_else(|| NetworkError::LinkVanished(name.to_string()))?;
            netlink::without_link_local(h, link.header.index).await?;
        }
    }
    let host = netlink::link_by_name(node, host_name)
        .await?
        .ok_or_else(|| NetworkError::LinkVanished(host_name.to_string()))?;
    // A pair that survived a bridge re-creation is no longer attached.
    netlink::set_up(node, host.header.index, Some(bridge)).await?;
    Ok(!paired)
}

/// Inside the pod's namespace: `lo` up, the address on `eth0`, `eth0` up, default route via the gateway.
async fn configure_pod(h: &rtnetlink::Handle, sandbox: &Sandbox) -> Result<(), NetworkError> {
    let lo = netlink::link_by_name(h, "lo")
        .await?
        .ok_or_else(|| NetworkError::LinkVanished("lo".into()))?;
    netlink::set_up(h, lo.header.index, None).await?;
    let eth0 = netlink::link_by_name(h, POD_INTERFACE)
        .await?
        .ok_or_else(|| NetworkError::LinkVanished(POD_INTERFACE.into()))?
        .header
        .index;
    netlink::ensure_only_address(h, eth0, sandbox.ip, sandbox.prefix_len).await?;
    netlink::set_up(h, eth0, None).await?;
    netlink::replace_route(
        h,
        netlink::default_route(sandbox.gateway, eth0),
        "the pod's default route",
    )
    .await
}

fn validate(c: &NetworkConfig) -> Result<(), NetworkError> {
    if c.pod_cidr.prefix_len() > 30 {
        return Err(NetworkError::Config(format!(
            "podCIDR {} leaves no address for pods besides the gateway",
            c.pod_cidr
        )));
    }
    let bridge_ok = !c.bridge.is_empty()
        && c.bridge.len() <= 15
        && c.bridge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !bridge_ok {
        return Err(NetworkError::Config(format!(
            "bridge name {:?} is not a valid interface name (at most 15 characters of [A-Za-z0-9_.-])",
            c.bridge
        )));
    }
    if c.pod_cidr.overlaps(&c.service_cidr) {
        return Err(NetworkError::Config(format!(
            "podCIDR {} overlaps the service CIDR {}",
            c.pod_cidr, c.service_cidr
        )));
    }
    Ok(())
}

/// Ids name files (the namespace, the IP owner), so nothing that could leave the directory.
fn validate_id(id: &str) -> Result<(), NetworkError> {
    let ok = !id.is_empty()
        && id.len() <= 253
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetworkError::InvalidId(id.to_string()))
    }
}

/// The host end of a sandbox's veth: stable across restarts (so it can be found again), unique enough for
/// the pods of a node, and within the kernel's 15-character limit.
fn veth_name(id: &str) -> String {
    let digest = hex::encode(Sha256::digest(id.as_bytes()));
    format!("veth{}", &digest[..11])
}

/// A locally administered unicast MAC derived from the bridge name: stable across restarts.
fn bridge_mac(bridge: &str) -> [u8; 6] {
    let digest = Sha256::digest(format!("orch bridge {bridge}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// One lock per sandbox id. The map keeps those someone holds or waits for; the rest are dropped on the
/// next call, which keeps this correct when a wait is cancelled.
#[derive(Default)]
struct SandboxLocks(std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl SandboxLocks {
    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().expect("sandbox locks");
            // Clones are only taken here, under the map's lock: one the map alone holds is unused.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            locks.entry(id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests;
