//! The netlink requests the pod network is made of, each one idempotent or telling "already so" apart from
//! failure, and each failing when its answer does not come: links by name, the bridge, veth pairs,
//! addresses and routes; the node's connection; running requests inside a pod's network namespace.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use futures_util::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteScope, RouteType,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::proto::Connection;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::{netns, Ipv4Cidr, NetworkError};

/// Metric of the unreachable routes. Not 0, so that they can never replace the kernel's connected route of
/// the bridge even when the podCIDR equals the cluster CIDR (a route replace matches on prefix and metric);
/// a more specific prefix wins whatever its metric.
const UNREACHABLE_METRIC: u32 = 4242;

/// How long a request waits for its answer. The kernel answers at once, but an answer can be lost
/// (dropped from a full receive buffer), and a request waiting for it forever would hold its sandbox's
/// lock for good; failing instead lets the caller's retry do the work again. (The connection keeps its
/// entry for an answer that never comes: a few bytes per lost answer.) Long enough for a node busy with
/// a thousand pods' requests on one socket.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The receive buffer of the node's netlink socket, for the answers to every pod's requests. Its
/// connection sends a queued request each time it is woken but reads answers only once the runtime has
/// seen the socket readable, so on a busy node answers pile up: after 1,000 pods were deleted at once,
/// the default buffer (about 208 KiB) overflowed and the kernel dropped answers. Memory is only taken
/// for answers waiting in it.
pub(super) const NODE_RECEIVE_BUFFER: usize = 8 << 20;

/// The node's netlink connection, with a receive buffer of [`NODE_RECEIVE_BUFFER`] where the node lets
/// it have one (root may pass `net.core.rmem_max`); to be spawned on the runtime that awaits `Handle`.
pub(super) fn node_connection() -> Result<(Connection<RouteNetlinkMessage>, Handle), NetworkError> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    let (mut conn, handle, _) = rtnetlink::new_connection().map_err(NetworkError::NetlinkSocket)?;
    let socket = conn.socket_mut().socket_ref();
    // Without CAP_NET_ADMIN, SO_RCVBUF is silently capped at net.core.rmem_max.
    if setsockopt(socket, sockopt::RcvBufForce, &NODE_RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &NODE_RECEIVE_BUFFER);
    }
    // The kernel doubles what it was given, for its own bookkeeping.
    match getsockopt(socket, sockopt::RcvBuf) {
        Ok(size) if size >= NODE_RECEIVE_BUFFER => {}
        got => tracing::warn!(
            ?got,
            wanted = NODE_RECEIVE_BUFFER,
            "the node's netlink receive buffer could not be enlarged (raise net.core.rmem_max): \
             answers to many pods' requests at once may be lost and retried"
        ),
    }
    Ok((conn, handle))
}

/// `request`'s outcome, or [`NetworkError::Unanswered`] when it takes longer than [`ANSWER_TIMEOUT`].
async fn answered<T>(
    request: impl Future<Output = T>,
    what: impl FnOnce() -> String,
) -> Result<T, NetworkError> {
    tokio::time::timeout(ANSWER_TIMEOUT, request)
        .await
        .map_err(|_| NetworkError::Unanswered(what()))
}

pub(super) fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

pub(super) async fn link_by_name(
    h: &Handle,
    name: &str,
) -> Result<Option<LinkMessage>, NetworkError> {
    let what = || format!("looking up link {name}");
    let mut links = h.link().get().match_name(name).execute();
    match answered(links.try_next(), what).await? {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(NetworkError::netlink(what())(e)),
    }
}

/// The ifindex of a veth's peer (in the peer's namespace).
pub(super) fn peer_index(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}

pub(super) async fn delete_link(h: &Handle, index: u32) -> Result<(), NetworkError> {
    let what = || format!("deleting link #{index}");
    match answered(h.link().del(index).execute(), what).await? {
        Err(e) if errno(&e) != Some(Errno::ENODEV) => Err(NetworkError::netlink(what())(e)),
        _ => Ok(()),
    }
}

pub(super) async fn set_up(
    h: &Handle,
    index: u32,
    controller: Option<u32>,
) -> Result<(), NetworkError> {
    let mut msg = LinkUnspec::new_with_index(index).up();
    if let Some(c) = controller {
        msg = msg.controller(c);
    }
    let what = || format!("setting link #{index} up");
    answered(h.link().set(msg.build()).execute(), what)
        .await?
        .map_err(NetworkError::netlink(what()))
}

/// Keeps the link from getting an IPv6 link-local address when it comes up (IPv6 itself stays on). The pod
/// network is IPv4; the address would only start duplicate address detection and multicast listener
/// reports, which the bridge floods to every pod: per new pod, kernel work that grew with the pods on the
/// node (8 % of the CPU of 50 pods started at once). The link must be down: the kernel makes the address
/// when the link comes up and does not take it back here.
pub(super) async fn without_link_local(h: &Handle, index: u32) -> Result<(), NetworkError> {
    let mut msg = LinkUnspec::new_with_index(index).build();
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
    let what = || format!("turning off IPv6 link-local addressing of link #{index}");
    match answered(h.link().set(msg).execute(), what).await? {
        // A kernel without IPv6 makes no link-local address either.
        Err(e) if errno(&e) == Some(Errno::EAFNOSUPPORT) => Ok(()),
        result => result.map_err(NetworkError::netlink(what())),
    }
}

/// The bridge `name`, created (up, with `mac`) if missing; returns its index.
pub(super) async fn ensure_bridge(
    h: &Handle,
    name: &str,
    mac: [u8; 6],
) -> Result<u32, NetworkError> {
    if let Some(link) = link_by_name(h, name).await? {
        if !link_is_bridge(&link) {
            return Err(NetworkError::Config(format!(
                "link {name} exists and is not a bridge"
            )));
        }
        return Ok(link.header.index);
    }
    // A fixed address: otherwise the bridge takes the lowest address of its ports and changes it as pods
    // come and go, leaving stale gateway entries in the pods' ARP caches.
    let msg = LinkBridge::new(name).address(mac.to_vec()).build();
    let what = || format!("creating bridge {name}");
    match answered(h.link().add(msg).execute(), what).await? {
        Err(e) if errno(&e) != Some(Errno::EEXIST) => return Err(NetworkError::netlink(what())(e)),
        _ => {}
    }
    link_by_name(h, name)
        .await?
        .map(|l| l.header.index)
        .ok_or_else(|| NetworkError::LinkVanished(name.to_string()))
}

fn link_is_bridge(link: &LinkMessage) -> bool {
    link_kind(link) == Some(&InfoKind::Bridge)
}

fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            rtnetlink::packet_route::link::LinkInfo::Kind(kind) => Some(kind),
            _ => None,
        }),
        _ => None,
    })
}

/// A veth pair with both ends at `mtu`: `host_name` on the host, attached to `bridge` and up; its peer
/// created directly inside the namespace at `netns_path` under the name `pod_name`, so the pod-side name
/// never has to be free on the host.
pub(super) async fn create_veth(
    h: &Handle,
    host_name: &str,
    bridge: u32,
    netns_path: &Path,
    pod_name: &str,
    mtu: u32,
) -> Result<(), NetworkError> {
    let netns = std::fs::File::open(netns_path).map_err(NetworkError::io("opening", netns_path))?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(pod_name)
        .setns_by_fd(netns.as_raw_fd())
        .mtu(mtu)
        .build();
    // Down, so that no IPv6 link-local address is made before `without_link_local`.
    let msg = LinkMessageBuilder::<LinkVeth>::new(host_name, pod_name)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .controller(bridge)
        .mtu(mtu)
        .build();
    let what = || format!("creating veth {host_name}");
    let result = answered(h.link().add(msg).execute(), what).await;
    // The request carries the fd number, so the file must stay open until the kernel has answered.
    // Unanswered, the request may still be waiting to go out: a number closed (and reused) by then
    // would name another namespace, so the file is left open for good.
    if result.is_err() {
        std::mem::forget(netns);
    }
    match result? {
        Err(e) if errno(&e) == Some(Errno::EXFULL) => Err(NetworkError::BridgeFull),
        result => result.map_err(NetworkError::netlink(what())),
    }
}

/// The indexes and names of the veths attached to `bridge`.
pub(super) async fn veths_on(h: &Handle, bridge: u32) -> Result<Vec<(u32, String)>, NetworkError> {
    let mut request = h.link().get();
    // The kernel filters a dump by controller.
    request
        .message_mut()
        .attributes
        .push(LinkAttribute::Controller(bridge));
    let what = || format!("listing the links of bridge #{bridge}");
    let links = answered(request.execute().try_collect::<Vec<_>>(), what)
        .await?
        .map_err(NetworkError::netlink(what()))?;
    Ok(links
        .into_iter()
        .filter(|l| l.attributes.contains(&LinkAttribute::Controller(bridge)))
        .filter(|l| link_kind(l) == Some(&InfoKind::Veth))
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(name) => Some((l.header.index, name.clone())),
                _ => None,
            })
        })
        .collect())
}

/// The IPv4 addresses of a link, with the messages that delete them.
pub(super) async fn ipv4_addresses(
    h: &Handle,
    index: u32,
) -> Result<Vec<(Ipv4Addr, u8, AddressMessage)>, NetworkError> {
    let what = || format!("listing addresses of link #{index}");
    let request = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect::<Vec<_>>();
    let mut out = Vec::new();
    for msg in answered(request, what)
        .await?
        .map_err(NetworkError::netlink(what()))?
    {
        // Without strict checking the kernel may answer a dump with every link's addresses.
        if msg.header.index != index {
            continue;
        }
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = local {
            out.push((ip, msg.header.prefix_len, msg));
        }
    }
    Ok(out)
}

/// Leaves `ip/prefix_len` as the only IPv4 address of the link: a stale one would keep a stale route
/// (from an earlier podCIDR of the node, say).
pub(super) async fn ensure_only_address(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), NetworkError> {
    let mut present = false;
    for (addr, len, msg) in ipv4_addresses(h, index).await? {
        if (addr, len) == (ip, prefix_len) {
            present = true;
            continue;
        }
        let what = || format!("removing {addr}/{len} from link #{index}");
        answered(h.address().del(msg).execute(), what)
            .await?
            .map_err(NetworkError::netlink(what()))?;
    }
    if !present {
        let what = || format!("adding {ip}/{prefix_len} to link #{index}");
        let request = h.address().add(index, IpAddr::V4(ip), prefix_len).execute();
        match answered(request, what).await? {
            Err(e) if errno(&e) != Some(Errno::EEXIST) => {
                return Err(NetworkError::netlink(what())(e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The smallest MTU of the links the main table's IPv4 default routes leave by (the node's uplink); None
/// without a default route through one link.
pub(super) async fn uplink_mtu(h: &Handle) -> Result<Option<u32>, NetworkError> {
    let request = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect::<Vec<RouteMessage>>();
    let routes = answered(request, || "listing routes".into())
        .await?
        .map_err(NetworkError::netlink("listing routes".into()))?;
    let mut mtu = None;
    for route in routes {
        let header = &route.header;
        if header.destination_prefix_length != 0
            || header.kind != RouteType::Unicast
            || header.table != RouteHeader::RT_TABLE_MAIN
        {
            continue;
        }
        let Some(index) = route.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(index) => Some(*index),
            _ => None,
        }) else {
            continue;
        };
        let mut links = h.link().get().match_index(index).execute();
        let link = answered(links.try_next(), || format!("looking up link #{index}")).await?;
        let link_mtu = link.ok().flatten().and_then(|link| {
            link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            })
        });
        if let Some(link_mtu) = link_mtu {
            mtu = Some(mtu.map_or(link_mtu, |m: u32| m.min(link_mtu)));
        }
    }
    Ok(mtu)
}

/// An unreachable route for `cidr`: locally sent packets fail at once with EHOSTUNREACH, forwarded ones are
/// answered with ICMP host unreachable, and none of them leaves by the default route.
pub(super) fn unreachable_route(cidr: Ipv4Cidr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr.network(), cidr.prefix_len())
        .kind(RouteType::Unreachable)
        .scope(RouteScope::Universe)
        .priority(UNREACHABLE_METRIC)
        .build()
}

pub(super) fn default_route(gateway: Ipv4Addr, index: u32) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build()
}

pub(super) async fn replace_route(
    h: &Handle,
    route: RouteMessage,
    what: &str,
) -> Result<(), NetworkError> {
    let installing = || format!("installing {what}");
    answered(h.route().add(route).replace().execute(), installing)
        .await?
        .map_err(NetworkError::netlink(installing()))
}

/// Runs `f` with a netlink handle bound to the network namespace at `path`, on a thread of its own with a
/// runtime of its own (see `netns::run_in`).
pub(super) async fn in_netns<T, F, Fut>(path: &Path, f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetworkError>>,
{
    let target = path.to_path_buf();
    netns::run_in(path, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(NetworkError::io("starting a netlink runtime for", &target))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(NetworkError::io("opening a netlink socket in", &target))?;
            // Dropped with the runtime when `f` is done.
            tokio::spawn(conn);
            f(handle).await
        })
    })
    .await
}
