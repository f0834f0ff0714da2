//! Tests of the pod network against the real kernel. Each runs on a thread of its own inside fresh network
//! and mount namespaces (see `in_scratch_namespaces`), so the host's links, routes and mounts are never
//! touched and all traffic stays between namespaces the test created. They need root.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `test` in new network and mount namespaces on a thread of its own, with a current-thread runtime
/// and a config whose state and netns directories are in a temporary directory. Threads the code under test
/// spawns from there inherit both namespaces.
fn in_scratch_namespaces<F, Fut>(test: F)
where
    F: FnOnce(NetworkConfig) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let outcome = std::thread::spawn(move || {
        netns::enter_scratch_namespaces(CloneFlags::CLONE_NEWNET);
        let dir = tempfile::tempdir().unwrap();
        let config = test_config(dir.path());
        let netns_dir = config.netns_dir.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(test(config))));
        drop(rt);
        // The namespace files are mount points in this mount namespace: detach them before the directory
        // is removed. (The network namespaces die with the last mount and this thread.)
        let _ = umount2(&netns_dir, MntFlags::MNT_DETACH);
        drop(dir);
        outcome
    })
    .join()
    .expect("test thread");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn test_config(dir: &Path) -> NetworkConfig {
    NetworkConfig {
        bridge: DEFAULT_BRIDGE.to_string(),
        pod_cidr: "10.42.0.0/24".parse().unwrap(),
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        service_cidr: "10.43.0.0/16".parse().unwrap(),
        state_dir: dir.join("state"),
        netns_dir: dir.join("netns"),
    }
}

/// A netlink handle in the current thread's namespace (the test's scratch namespace).
fn handle() -> Handle {
    let (conn, handle, _) = rtnetlink::new_connection().unwrap();
    tokio::spawn(conn);
    handle
}

async fn link(h: &Handle, name: &str) -> Option<LinkMessage> {
    netlink::link_by_name(h, name).await.unwrap()
}

/// The kernel's route lookup for `ip`, as `ip route get` does it.
async fn route_get(h: &Handle, ip: Ipv4Addr) -> Result<RouteMessage, rtnetlink::Error> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .build();
    h.route()
        .get(msg)
        .execute()
        .try_next()
        .await
        .map(|r| r.expect("a route lookup answers"))
}

fn controller_index(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

async fn ipv4_addrs(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetworkError> {
    Ok(netlink::ipv4_addresses(h, index)
        .await?
        .into_iter()
        .map(|(ip, len, _)| (ip, len))
        .collect())
}

fn output_interface(route: &RouteMessage) -> Option<u32> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

async fn routes(h: &Handle) -> Vec<RouteMessage> {
    h.route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .unwrap()
}

fn is_route_to(route: &RouteMessage, cidr: Ipv4Cidr) -> bool {
    route.header.destination_prefix_length == cidr.prefix_len()
        && route
            .attributes
            .iter()
            .any(|a| *a == RouteAttribute::Destination(RouteAddress::Inet(cidr.network())))
}

/// Connects from inside the namespace at `client_ns` to `listener`, exchanges a few bytes, and returns the
/// address the connection came from.
async fn exchange(listener: &TcpListener, client_ns: &Path) -> IpAddr {
    exchange_through(listener, Some(client_ns), listener.local_addr().unwrap()).await
}

/// [`exchange`] with a connection to `addr` (translated to the listener's), from the namespace at
/// `client_ns` or, when None, from the test's own (the node's).
async fn exchange_through(
    listener: &TcpListener,
    client_ns: Option<&Path>,
    addr: SocketAddr,
) -> IpAddr {
    let mut client = match client_ns {
        Some(client_ns) => {
            let ns = client_ns.to_path_buf();
            netns::run_in(client_ns, move || {
                TcpStream::connect_timeout(&addr, TIMEOUT)
                    .map_err(NetworkError::io("connecting from", ns))
            })
            .await
        }
        None => TcpStream::connect_timeout(&addr, TIMEOUT)
            .map_err(NetworkError::io("connecting from", "the node")),
    }
    .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    // The connection is established, so it is in the accept queue of the listener it reached, which a
    // wrong translation makes another one.
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let (mut server, peer) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("the connection to {addr} did not reach {listener:?}: {e}"),
        }
    };
    server.set_nonblocking(false).unwrap();
    for s in [&client, &server] {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
    }
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    peer.ip()
}

async fn listen_in(ns: &Path, ip: Ipv4Addr) -> TcpListener {
    let path = ns.to_path_buf();
    netns::run_in(ns, move || {
        TcpListener::bind((ip, 0)).map_err(NetworkError::io("listening in", path))
    })
    .await
    .unwrap()
}

/// How many IPv6 addresses the link has.
async fn ipv6_addr_count(h: &Handle, index: u32) -> usize {
    h.address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_filter(|a| futures_util::future::ready(a.header.family == AddressFamily::Inet6))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len()
}

/// The IPv4 addresses of `eth0` and the default route's gateway, as seen inside the pod.
async fn pod_view(netns_path: &Path) -> (Vec<(Ipv4Addr, u8)>, Option<Ipv4Addr>) {
    netlink::in_netns(netns_path, |h| async move {
        let eth0 = netlink::link_by_name(&h, POD_INTERFACE)
            .await?
            .expect("eth0 in the pod")
            .header
            .index;
        let addrs = ipv4_addrs(&h, eth0).await?;
        let gateway = routes(&h).await.into_iter().find_map(|r| {
            (r.header.destination_prefix_length == 0 && r.header.table == 254)
                .then(|| {
                    r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                        _ => None,
                    })
                })
                .flatten()
        });
        Ok((addrs, gateway))
    })
    .await
    .unwrap()
}

fn is_mounted(path: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(path))
}

fn ip_files(config: &NetworkConfig) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(config.state_dir.join("ips"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn setup_creates_the_bridge_with_the_gateway_and_unreachable_routes() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let first = PodNetwork::setup(config.clone()).await.unwrap();
        assert_eq!(first.gateway(), Ipv4Addr::new(10, 42, 0, 1));
        // Twice, as after an agent restart: nothing is added twice.
        drop(first);
        let network = PodNetwork::setup(config.clone()).await.unwrap();

        let bridge = link(&h, "orch0").await.expect("bridge orch0");
        assert!(bridge.header.flags.contains(LinkFlags::Up), "bridge is up");
        assert_eq!(
            ipv4_addrs(&h, bridge.header.index).await.unwrap(),
            vec![(Ipv4Addr::new(10, 42, 0, 1), 24)]
        );

        let all = routes(&h).await;
        for cidr in [config.cluster_cidr, config.service_cidr] {
            let matching: Vec<_> = all.iter().filter(|r| is_route_to(r, cidr)).collect();
            assert_eq!(matching.len(), 1, "one route for {cidr}: {matching:?}");
            assert_eq!(matching[0].header.kind, RouteType::Unreachable, "{cidr}");
        }
        // The node's own podCIDR is routed to the bridge, unknown cluster and service IPs nowhere.
        let local = route_get(&h, Ipv4Addr::new(10, 42, 0, 77)).await.unwrap();
        assert_eq!(output_interface(&local), Some(bridge.header.index));
        for ip in [Ipv4Addr::new(10, 42, 200, 5), Ipv4Addr::new(10, 43, 0, 10)] {
            let err = route_get(&h, ip).await.unwrap_err();
            assert_eq!(
                netlink::errno(&err),
                Some(Errno::EHOSTUNREACH),
                "{ip}: {err}"
            );
        }
        assert!(network.sandboxes().unwrap().is_empty());
    });
}

#[test]
fn setup_converges_a_bridge_left_with_a_stale_address() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let mut old = config.clone();
        old.pod_cidr = "10.42.7.0/24".parse().unwrap();
        drop(PodNetwork::setup(old).await.unwrap());
        drop(PodNetwork::setup(config).await.unwrap());
        let bridge = link(&h, "orch0").await.unwrap().header.index;
        assert_eq!(
            ipv4_addrs(&h, bridge).await.unwrap(),
            vec![(Ipv4Addr::new(10, 42, 0, 1), 24)]
        );
    });
}

#[test]
fn unknown_cluster_and_service_ips_fail_fast_instead_of_taking_the_default_route() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        // A default route like a real node's, into a portless bridge where packets vanish (the dummy link
        // type is not built into every kernel).
        h.link()
            .add(LinkBridge::new("fake0").build())
            .execute()
            .await
            .unwrap();
        let fake0 = link(&h, "fake0").await.unwrap().header.index;
        h.address()
            .add(fake0, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 24)
            .execute()
            .await
            .unwrap();
        netlink::replace_route(
            &h,
            netlink::default_route(Ipv4Addr::new(192, 0, 2, 254), fake0),
            "default",
        )
        .await
        .unwrap();
        let unknown_pod = Ipv4Addr::new(10, 42, 200, 5);
        let before = route_get(&h, unknown_pod).await.unwrap();
        assert_eq!(
            output_interface(&before),
            Some(fake0),
            "without the pod network it would leave"
        );

        let _network = PodNetwork::setup(config).await.unwrap();

        for ip in [unknown_pod, Ipv4Addr::new(10, 43, 0, 5)] {
            let err = route_get(&h, ip).await.unwrap_err();
            assert_eq!(
                netlink::errno(&err),
                Some(Errno::EHOSTUNREACH),
                "{ip}: {err}"
            );
            let started = Instant::now();
            let err = TcpStream::connect_timeout(&SocketAddr::from((ip, 80)), TIMEOUT).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{ip}: {err}");
            // Through fake0 the connect would wait for ARP (seconds) and then time out.
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{ip}: refused at once"
            );
        }
        let outside = route_get(&h, Ipv4Addr::new(198, 51, 100, 7)).await.unwrap();
        assert_eq!(
            output_interface(&outside),
            Some(fake0),
            "other traffic is unaffected"
        );
    });
}

#[test]
fn sandboxes_get_distinct_ips_and_reach_each_other_and_the_gateway() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let a = network.create_sandbox("pod-a", &[], true).await.unwrap();
        let b = network.create_sandbox("pod-b", &[], true).await.unwrap();

        assert_ne!(a.ip, b.ip);
        for s in [&a, &b] {
            assert!(config.pod_cidr.contains(s.ip), "{s:?}");
            assert_ne!(s.ip, s.gateway);
            assert_eq!(s.gateway, Ipv4Addr::new(10, 42, 0, 1));
            assert_eq!(s.prefix_len, 24);
            assert_eq!(
                pod_view(&s.netns_path).await,
                (vec![(s.ip, 24)], Some(s.gateway))
            );
        }
        assert_eq!(a.netns_path, config.netns_dir.join("pod-a"));
        assert!(netns::exists(&a.netns_path).unwrap());
        let bridge = link(&h, "orch0").await.unwrap().header.index;
        for id in ["pod-a", "pod-b"] {
            let name = veth_name(id);
            let host = link(&h, &name)
                .await
                .unwrap_or_else(|| panic!("host veth {name}"));
            assert_eq!(
                controller_index(&host),
                Some(bridge),
                "{name} on the bridge"
            );
            assert!(host.header.flags.contains(LinkFlags::Up), "{name} up");
            assert_eq!(
                ipv6_addr_count(&h, host.header.index).await,
                0,
                "{name} has no IPv6 link-local address"
            );
        }
        for s in [&a, &b] {
            let eth0_ipv6 = netlink::in_netns(&s.netns_path, |h| async move {
                let eth0 = netlink::link_by_name(&h, POD_INTERFACE).await?.unwrap();
                Ok(ipv6_addr_count(&h, eth0.header.index).await)
            })
            .await
            .unwrap();
            assert_eq!(
                eth0_ipv6, 0,
                "the pod's eth0 has no IPv6 link-local address"
            );
        }
        // Nothing but the bridge address and the pods' interfaces was added to the node.
        assert!(
            link(&h, POD_INTERFACE).await.is_none(),
            "eth0 only inside the pods"
        );

        // Pod to pod across the bridge, and the source address is the pod's own.
        let in_b = listen_in(&b.netns_path, b.ip).await;
        assert_eq!(exchange(&in_b, &a.netns_path).await, IpAddr::V4(a.ip));
        let in_a = listen_in(&a.netns_path, a.ip).await;
        assert_eq!(exchange(&in_a, &b.netns_path).await, IpAddr::V4(b.ip));
        // Pod to the node through its gateway address.
        let on_node = TcpListener::bind((a.gateway, 0)).unwrap();
        assert_eq!(exchange(&on_node, &a.netns_path).await, IpAddr::V4(a.ip));
        // Loopback inside the pod is up.
        let on_lo = listen_in(&a.netns_path, Ipv4Addr::LOCALHOST).await;
        assert_eq!(
            exchange(&on_lo, &a.netns_path).await,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );

        assert_eq!(network.sandboxes().unwrap(), vec!["pod-a", "pod-b"]);
    });
}

/// A network namespace standing for the world off the node: linked to the node by a veth pair with
/// `node_ip`/30 on the node's end and `outside_ip`/30 on its own, and no route back to any pod.
async fn outside_world(h: &Handle, path: &Path, node_ip: Ipv4Addr, outside_ip: Ipv4Addr) {
    netns::ensure(path).await.unwrap();
    let ns = std::fs::File::open(path).unwrap();
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name("world")
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let pair = LinkMessageBuilder::<LinkVeth>::new("to-world", "world")
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    h.link().add(pair).execute().await.unwrap();
    drop(ns);
    let index = link(h, "to-world").await.unwrap().header.index;
    h.address()
        .add(index, IpAddr::V4(node_ip), 30)
        .execute()
        .await
        .unwrap();
    netlink::set_up(h, index, None).await.unwrap();
    netlink::in_netns(path, move |h| async move {
        let index = netlink::link_by_name(&h, "world")
            .await?
            .unwrap()
            .header
            .index;
        h.address()
            .add(index, IpAddr::V4(outside_ip), 30)
            .execute()
            .await
            .map_err(NetworkError::netlink("address".into()))?;
        netlink::set_up(&h, index, None).await
    })
    .await
    .unwrap();
}

/// The test's namespace as a node beside [`outside_world`] (at `world` in the test's directory), with `lo`
/// up, as on a real node, where what is for the node's own addresses goes through it: the world's path,
/// the node's address and the world's.
async fn node_beside_world(h: &Handle, config: &NetworkConfig) -> (PathBuf, Ipv4Addr, Ipv4Addr) {
    let (node_ip, outside_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let world = config.state_dir.parent().unwrap().join("world");
    outside_world(h, &world, node_ip, outside_ip).await;
    let lo = link(h, "lo").await.unwrap().header.index;
    netlink::set_up(h, lo, None).await.unwrap();
    (world, node_ip, outside_ip)
}

/// `host_port` on any of the node's addresses, to the port `listener` listens on.
fn tcp_host_port(host_port: u16, listener: &TcpListener) -> HostPort {
    HostPort {
        protocol: "tcp",
        host_ip: None,
        host_port,
        container_port: listener.local_addr().unwrap().port(),
    }
}

#[test]
fn pods_reach_addresses_off_the_node_from_the_nodes_address_and_host_ports_reach_pods() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let (world, node_ip, outside_ip) = node_beside_world(&h, &config).await;
        // Forwarding off (a new namespace takes the host's setting): setting up the pod network turns it
        // on.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();

        let network = PodNetwork::setup(config.clone()).await.unwrap();
        // Applied again, as by a restarted agent: still one rule.
        PodNetwork::setup(config.clone()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            "1\n"
        );
        let ruleset = nftables::helper::get_current_ruleset_async().await.unwrap();
        let rules = ruleset
            .objects
            .iter()
            .filter(|o| {
                matches!(o, nftables::schema::NfObject::ListObject(nftables::schema::NfListObject::Rule(r))
                    if r.table == nat::TABLE)
            })
            .count();
        assert_eq!(
            rules, 8,
            "three jumps to the host ports, three masquerades, two guards of the node's loopback: \
             {ruleset:?}"
        );

        // The world has no route to pods: an answer reaches the pod only because its connection left
        // from the node's address.
        let pod = network.create_sandbox("pod-a", &[], true).await.unwrap();
        let in_world = listen_in(&world, outside_ip).await;
        assert_eq!(
            exchange(&in_world, &pod.netns_path).await,
            IpAddr::V4(node_ip)
        );
        // Between pods, the source stays the pod's own.
        let other = network.create_sandbox("pod-b", &[], true).await.unwrap();
        let in_other = listen_in(&other.netns_path, other.ip).await;
        assert_eq!(
            exchange(&in_other, &pod.netns_path).await,
            IpAddr::V4(pod.ip)
        );

        // A host port of pod-a: reached from the world with the client's own address (as Kubernetes keeps
        // it), from the node, and from a neighbour pod masqueraded so that the answer comes back the
        // same way.
        let in_pod = listen_in(&pod.netns_path, pod.ip).await;
        let host_port = tcp_host_port(8080, &in_pod);
        network
            .set_host_ports("pod-a", pod.ip, vec![host_port.clone()])
            .await
            .unwrap();
        let on_node = SocketAddr::from((node_ip, 8080));
        assert_eq!(
            exchange_through(&in_pod, Some(&world), on_node).await,
            IpAddr::V4(outside_ip)
        );
        assert_eq!(
            exchange_through(&in_pod, None, on_node).await,
            IpAddr::V4(node_ip)
        );
        assert_eq!(
            exchange_through(&in_pod, Some(&other.netns_path), on_node).await,
            IpAddr::V4(pod.gateway)
        );
        // From the node's 127.0.0.1 too, as with portmap: masqueraded behind the gateway, since the pod
        // could not answer 127.0.0.1. The rest of 127.0.0.0/8 stays the node's own.
        assert_eq!(
            exchange_through(&in_pod, None, SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))).await,
            IpAddr::V4(pod.gateway)
        );
        let stub_resolver = Ipv4Addr::new(127, 0, 0, 53);
        let on_stub = TcpListener::bind((stub_resolver, 8080)).unwrap();
        assert_eq!(
            exchange_through(&on_stub, None, SocketAddr::from((stub_resolver, 8080))).await,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        // A restarted agent keeps the mapping until it syncs the pod again.
        drop(network);
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        assert_eq!(
            exchange_through(&in_pod, Some(&world), on_node).await,
            IpAddr::V4(outside_ip)
        );
        // A hostIP that is not the node's captures nothing passing through the node.
        let in_world = netns::run_in(&world, move || {
            TcpListener::bind((outside_ip, 8080)).map_err(NetworkError::io("listening in", "world"))
        })
        .await
        .unwrap();
        let foreign = HostPort {
            host_ip: Some(outside_ip),
            ..host_port.clone()
        };
        network
            .set_host_ports("pod-a", pod.ip, vec![foreign])
            .await
            .unwrap();
        let in_the_world = SocketAddr::from((outside_ip, 8080));
        assert_eq!(
            exchange_through(&in_world, Some(&other.netns_path), in_the_world).await,
            IpAddr::V4(node_ip)
        );
        // Bound to another of the node's addresses: only there.
        let elsewhere = HostPort {
            host_ip: Some(pod.gateway),
            ..host_port.clone()
        };
        network
            .set_host_ports("pod-a", pod.ip, vec![elsewhere])
            .await
            .unwrap();
        let refused = TcpStream::connect_timeout(&on_node, TIMEOUT).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let on_gateway = SocketAddr::from((pod.gateway, 8080));
        assert_eq!(
            exchange_through(&in_pod, None, on_gateway).await,
            IpAddr::V4(pod.gateway)
        );
        // An agent on another data dir (where pod-a has no address) drops the mapping it finds.
        let mut other_data_dir = config.clone();
        other_data_dir.state_dir = config.state_dir.with_file_name("other-state");
        PodNetwork::setup(other_data_dir).await.unwrap();
        let refused = TcpStream::connect_timeout(&on_gateway, TIMEOUT).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        // Removing the sandbox unmaps its ports, and a late mapping for it is refused.
        network.remove_sandbox("pod-a").await.unwrap();
        let refused = TcpStream::connect_timeout(&on_gateway, TIMEOUT).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let late = network
            .set_host_ports("pod-a", pod.ip, vec![host_port])
            .await;
        assert!(
            matches!(late, Err(NetworkError::SandboxGone(_))),
            "{late:?}"
        );
        netns::remove(&world).unwrap();
    });
}

/// Whether `socket` gets a datagram within a second.
fn receives(socket: &UdpSocket) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    socket.recv_from(&mut [0; 16]).is_ok()
}

/// The bridge lets 127.0.0.0/8 through for host ports reached on 127.0.0.1, which must not open the
/// node's loopback-only services to pods, nor let a pod pass for the node's loopback (CVE-2020-8558):
/// a pod that sends to or from 127.0.0.0/8 by its gateway reaches nothing, which it would without the
/// guard.
#[test]
fn pods_neither_reach_nor_pass_for_the_nodes_loopback() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let lo = link(&h, "lo").await.unwrap().header.index;
        netlink::set_up(&h, lo, None).await.unwrap();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let pod = network.create_sandbox("pod-a", &[], true).await.unwrap();
        let bridge_switch = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", config.bridge);
        assert_eq!(std::fs::read_to_string(&bridge_switch).unwrap(), "1\n");
        let loopback_service = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to_loopback = loopback_service.local_addr().unwrap();
        let gateway_service = UdpSocket::bind((pod.gateway, 0)).unwrap();
        let to_gateway = gateway_service.local_addr().unwrap();

        // From 127.0.0.2, bound while 127.0.0.0/8 is still local in the pod (the node's kernel takes
        // a packet from one of its own addresses, such as 127.0.0.1, for a martian anyway).
        let spoofed = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0));
        let as_loopback = udp_socket_in(&pod.netns_path, spoofed).await;
        let sender = udp_socket_in(&pod.netns_path, (Ipv4Addr::UNSPECIFIED, 0).into()).await;
        // The pod's own 127.0.0.0/8 routes go, so that 127.0.0.1 leaves by its gateway, and its eth0
        // may send from 127.0.0.0/8.
        let netns = format!("--net={}", pod.netns_path.display());
        let via_gateway = format!(
            "ip route add 127.0.0.1/32 via {} dev {POD_INTERFACE} onlink",
            pod.gateway
        );
        for change in [
            "ip address add 127.0.0.2/32 dev lo",
            "ip route del local 127.0.0.0/8 dev lo table local",
            "ip route del local 127.0.0.1 dev lo table local",
            &via_gateway,
            "sysctl -qw net.ipv4.conf.eth0.route_localnet=1",
        ] {
            let args: Vec<&str> = std::iter::once(netns.as_str())
                .chain(change.split(' '))
                .collect();
            run("nsenter", &args);
        }
        let send = |socket: &UdpSocket, to| {
            assert_eq!(socket.send_to(b"from a pod", to).unwrap(), 10);
        };
        send(&sender, to_loopback);
        assert!(
            !receives(&loopback_service),
            "a pod reached the node's {to_loopback}"
        );
        send(&as_loopback, to_gateway);
        assert!(
            !receives(&gateway_service),
            "a pod passed for the node's loopback"
        );

        // Without the guard, both would get through.
        run("nft", &["flush", "chain", "ip", nat::TABLE, "guard"]);
        send(&sender, to_loopback);
        assert!(receives(&loopback_service));
        send(&as_loopback, to_gateway);
        assert!(receives(&gateway_service));

        // The node puts a guard changed from outside back.
        network.converge_host_rules().await.unwrap();
        send(&sender, to_loopback);
        assert!(!receives(&loopback_service));
        // Uninstalling takes the guard away, so the bridge stops letting 127.0.0.0/8 through first.
        remove_host_rules(&config.bridge);
        assert_eq!(std::fs::read_to_string(&bridge_switch).unwrap(), "0\n");
    });
}

async fn udp_socket_in(ns: &Path, addr: SocketAddr) -> UdpSocket {
    let path = ns.to_path_buf();
    let socket = netns::run_in(ns, move || {
        UdpSocket::bind(addr).map_err(NetworkError::io("binding a UDP socket in", path))
    })
    .await
    .unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

#[test]
fn a_udp_flow_follows_its_host_port_to_another_pod() {
    let conntrack = ["/usr/sbin/conntrack", "/sbin/conntrack"];
    assert!(
        conntrack.iter().any(|p| Path::new(p).exists()),
        "missing conntrack: run make test-deps (apt-get install conntrack)"
    );
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let (world, node_ip, outside_ip) = node_beside_world(&h, &config).await;
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let (a, b) = (
            network.create_sandbox("pod-a", &[], true).await.unwrap(),
            network.create_sandbox("pod-b", &[], true).await.unwrap(),
        );
        let in_a = udp_socket_in(&a.netns_path, SocketAddr::from((a.ip, 0))).await;
        let in_b = udp_socket_in(&b.netns_path, SocketAddr::from((b.ip, 0))).await;
        let mapping = |socket: &UdpSocket| {
            vec![HostPort {
                protocol: "udp",
                host_ip: None,
                host_port: 5353,
                container_port: socket.local_addr().unwrap().port(),
            }]
        };
        // One client source port throughout, as a VPN's keepalives keep it.
        let client = udp_socket_in(&world, SocketAddr::from((outside_ip, 40000))).await;
        let on_node = SocketAddr::from((node_ip, 5353));
        let mut buf = [0u8; 16];

        network
            .set_host_ports("pod-a", a.ip, mapping(&in_a))
            .await
            .unwrap();
        client.send_to(b"one", on_node).unwrap();
        let (n, from) = in_a.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"one"[..], SocketAddr::from((outside_ip, 40000)))
        );

        // The port moves to pod-b (pod-a replaced): the same flow follows it.
        network
            .set_host_ports("pod-a", a.ip, Vec::new())
            .await
            .unwrap();
        network
            .set_host_ports("pod-b", b.ip, mapping(&in_b))
            .await
            .unwrap();
        client.send_to(b"two", on_node).unwrap();
        let (n, _) = in_b.recv_from(&mut buf).unwrap_or_else(|e| {
            panic!("pod-b got nothing ({e}): the flow kept its old translation")
        });
        assert_eq!(&buf[..n], b"two");
        netns::remove(&world).unwrap();
    });
}

/// Runs a command in the test's namespace, which must succeed; its output.
fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (run make test-deps): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether a TCP connection from the namespace at `client_ns` to `addr` gets through within a second.
async fn connects(client_ns: &Path, addr: SocketAddr) -> bool {
    let ns = client_ns.to_path_buf();
    netns::run_in(client_ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .map_err(NetworkError::io("connecting from", ns))
    })
    .await
    .is_ok()
}

#[test]
fn a_dropping_host_firewall_is_opened_to_pods_and_outside_changes_are_undone() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let (world, node_ip, outside_ip) = node_beside_world(&h, &config).await;
        // Traffic between two pods on the bridge passes FORWARD only through br_netfilter, as on a host
        // with Docker.
        let bridge_nf = "/proc/sys/net/bridge/bridge-nf-call-iptables";
        assert_eq!(
            std::fs::read_to_string(bridge_nf)
                .unwrap_or_else(|e| panic!("{bridge_nf}: {e}: modprobe br_netfilter"))
                .trim(),
            "1"
        );

        // Without a firewall, no iptables state is made.
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        network.converge_host_rules().await.unwrap();
        assert_eq!(run("nft", &["list", "tables"]).trim(), "table ip orch");
        let (a, b) = (
            network.create_sandbox("pod-a", &[], true).await.unwrap(),
            network.create_sandbox("pod-b", &[], true).await.unwrap(),
        );
        let in_b = listen_in(&b.netns_path, b.ip).await;
        let in_world = listen_in(&world, outside_ip).await;
        let (to_b, to_world) = (in_b.local_addr().unwrap(), in_world.local_addr().unwrap());

        // Docker's policy: forwarded traffic is dropped, pods reach neither each other nor the world.
        run("iptables", &["-t", "filter", "-P", "FORWARD", "DROP"]);
        assert!(!connects(&a.netns_path, to_b).await);
        assert!(!connects(&a.netns_path, to_world).await);
        network.converge_host_rules().await.unwrap();
        assert_eq!(exchange(&in_b, &a.netns_path).await, IpAddr::V4(a.ip));
        assert_eq!(
            exchange(&in_world, &a.netns_path).await,
            IpAddr::V4(node_ip)
        );
        let forward = || run("iptables", &["-t", "filter", "-S", "FORWARD"]);
        assert_eq!(
            forward(),
            "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n",
            "{}",
            run("iptables", &["-t", "filter", "-S"])
        );

        // A firewall reloaded puts a drop of its own first: the opening goes back on top, once.
        run(
            "iptables",
            &["-t", "filter", "-I", "FORWARD", "1", "-j", "DROP"],
        );
        assert!(!connects(&a.netns_path, to_b).await);
        network.converge_host_rules().await.unwrap();
        assert_eq!(exchange(&in_b, &a.netns_path).await, IpAddr::V4(a.ip));
        assert_eq!(
            forward(),
            "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n-A FORWARD -j DROP\n"
        );

        // `nft flush ruleset` (what reloading nftables.conf does) takes the NAT table and the host ports
        // with it, and something turns forwarding off: both come back.
        let in_a = listen_in(&a.netns_path, a.ip).await;
        let host_port = tcp_host_port(8080, &in_a);
        network
            .set_host_ports("pod-a", a.ip, vec![host_port])
            .await
            .unwrap();
        run("nft", &["flush", "ruleset"]);
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap();
        assert!(!connects(&a.netns_path, to_world).await);
        network.converge_host_rules().await.unwrap();
        assert_eq!(
            exchange(&in_world, &a.netns_path).await,
            IpAddr::V4(node_ip)
        );
        let on_node = SocketAddr::from((node_ip, 8080));
        assert_eq!(
            exchange_through(&in_a, Some(&world), on_node).await,
            IpAddr::V4(outside_ip)
        );
        // Converged: nothing more to write.
        let before = run("nft", &["list", "ruleset"]);
        network.converge_host_rules().await.unwrap();
        assert_eq!(run("nft", &["list", "ruleset"]), before);
        // Uninstalling leaves the firewall as it was before the agent, and no NAT table.
        run("iptables", &["-t", "filter", "-P", "FORWARD", "DROP"]);
        network.converge_host_rules().await.unwrap();
        assert_eq!(forward(), "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n");
        remove_host_rules(&config.bridge);
        assert_eq!(forward(), "-P FORWARD DROP\n");
        assert!(!run("nft", &["list", "ruleset"]).contains("orch"));
        netns::remove(&world).unwrap();
    });
}

/// A packet passes both iptables backends: a firewall that drops in the legacy one (a Docker that runs
/// `iptables-legacy`) is opened there, and the nf_tables one, which drops nothing, is left alone.
#[test]
fn a_dropping_firewall_in_legacy_iptables_is_opened_too() {
    in_scratch_namespaces(|config| async move {
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let (a, b) = (
            network.create_sandbox("pod-a", &[], true).await.unwrap(),
            network.create_sandbox("pod-b", &[], true).await.unwrap(),
        );
        let in_b = listen_in(&b.netns_path, b.ip).await;
        let to_b = in_b.local_addr().unwrap();

        run(
            "iptables-legacy",
            &["-t", "filter", "-P", "FORWARD", "DROP"],
        );
        assert!(!connects(&a.netns_path, to_b).await);
        network.converge_host_rules().await.unwrap();
        assert_eq!(exchange(&in_b, &a.netns_path).await, IpAddr::V4(a.ip));
        let forward = |iptables| run(iptables, &["-t", "filter", "-S", "FORWARD"]);
        assert_eq!(
            forward("iptables-legacy"),
            "-P FORWARD DROP\n-A FORWARD -j ORCH-FORWARD\n"
        );
        assert!(
            !run("nft", &["list", "ruleset"]).contains("ORCH-FORWARD"),
            "{}",
            run("nft", &["list", "ruleset"])
        );
        remove_host_rules(&config.bridge);
        assert_eq!(forward("iptables-legacy"), "-P FORWARD DROP\n");
    });
}

fn mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

/// The MTUs of both ends of a sandbox's veth pair.
async fn veth_mtus(h: &Handle, id: &str, sandbox: &Sandbox) -> (Option<u32>, Option<u32>) {
    let host = mtu(&link(h, &veth_name(id)).await.unwrap());
    let pod = netlink::in_netns(&sandbox.netns_path, |h| async move {
        Ok(netlink::link_by_name(&h, POD_INTERFACE)
            .await?
            .as_ref()
            .and_then(mtu))
    })
    .await
    .unwrap();
    (host, pod)
}

#[test]
fn pods_get_the_mtu_of_the_nodes_uplink() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        // No default route: Ethernet's.
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let a = network.create_sandbox("pod-a", &[], true).await.unwrap();
        assert_eq!(veth_mtus(&h, "pod-a", &a).await, (Some(1500), Some(1500)));

        // An uplink of 1400, as a cloud or a tunnel gives it, with the default route: the next agent's
        // pods get 1400 on both ends.
        run(
            "ip",
            &[
                "link", "add", "uplink", "mtu", "1400", "type", "veth", "peer", "far-end",
            ],
        );
        run("ip", &["link", "set", "far-end", "up"]);
        run("ip", &["link", "set", "uplink", "up"]);
        run(
            "ip",
            &["address", "add", "198.51.100.7/24", "dev", "uplink"],
        );
        run("ip", &["route", "add", "default", "via", "198.51.100.1"]);
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let b = network.create_sandbox("pod-b", &[], true).await.unwrap();
        assert_eq!(veth_mtus(&h, "pod-b", &b).await, (Some(1400), Some(1400)));
        // The pods still reach each other, and the bridge carries what its ports carry.
        let in_a = listen_in(&a.netns_path, a.ip).await;
        assert_eq!(exchange(&in_a, &b.netns_path).await, IpAddr::V4(b.ip));
        assert_eq!(mtu(&link(&h, DEFAULT_BRIDGE).await.unwrap()), Some(1400));
    });
}

#[test]
fn create_sandbox_is_idempotent_and_repairs_a_lost_veth() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let first = network.create_sandbox("pod-a", &[], true).await.unwrap();
        let host_index = link(&h, &veth_name("pod-a")).await.unwrap().header.index;
        let again = network.create_sandbox("pod-a", &[], true).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(
            link(&h, &veth_name("pod-a")).await.unwrap().header.index,
            host_index,
            "the existing pair is kept"
        );
        assert_eq!(
            ip_files(&config),
            vec![(first.ip.to_string(), "pod-a".to_string())]
        );

        // Deleting the host end takes the pod end with it; the next call restores both.
        netlink::delete_link(&h, host_index).await.unwrap();
        let repaired = network.create_sandbox("pod-a", &[], true).await.unwrap();
        assert_eq!(repaired, first);
        assert_eq!(
            pod_view(&first.netns_path).await,
            (vec![(first.ip, 24)], Some(first.gateway))
        );
        let on_node = TcpListener::bind((first.gateway, 0)).unwrap();
        assert_eq!(
            exchange(&on_node, &first.netns_path).await,
            IpAddr::V4(first.ip)
        );

        // Concurrent calls for one id agree too.
        let (x, y) = tokio::join!(
            network.create_sandbox("pod-b", &[], true),
            network.create_sandbox("pod-b", &[], true)
        );
        assert_eq!(x.unwrap(), y.unwrap());
        assert_eq!(ip_files(&config).len(), 2);
    });
}

#[test]
fn sandboxes_made_side_by_side_are_each_complete() {
    in_scratch_namespaces(|config| async move {
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let ids: Vec<String> = (0..8).map(|i| format!("pod-{i}")).collect();
        let made = futures_util::future::try_join_all(
            ids.iter().map(|id| network.create_sandbox(id, &[], true)),
        )
        .await
        .unwrap();
        let ips: std::collections::HashSet<Ipv4Addr> = made.iter().map(|s| s.ip).collect();
        assert_eq!(ips.len(), ids.len(), "distinct addresses: {made:?}");
        for sandbox in &made {
            assert_eq!(
                pod_view(&sandbox.netns_path).await,
                (vec![(sandbox.ip, 24)], Some(sandbox.gateway))
            );
        }
        let on_node = TcpListener::bind((made[0].gateway, 0)).unwrap();
        for sandbox in &made {
            assert_eq!(
                exchange(&on_node, &sandbox.netns_path).await,
                IpAddr::V4(sandbox.ip)
            );
        }
        let _next = network.sandbox_locks.lock("pod-next").await;
        assert_eq!(
            network.sandbox_locks.0.lock().unwrap().len(),
            1,
            "the locks of finished changes are dropped"
        );
    });
}

#[test]
fn a_bridge_deleted_by_hand_is_made_again_for_the_next_sandbox() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        network.create_sandbox("pod-a", &[], true).await.unwrap();
        let bridge = link(&h, "orch0").await.unwrap().header.index;
        netlink::delete_link(&h, bridge).await.unwrap();

        let b = network.create_sandbox("pod-b", &[], true).await.unwrap();
        let again = link(&h, "orch0").await.expect("the bridge is back");
        assert_eq!(
            ipv4_addrs(&h, again.header.index).await.unwrap(),
            vec![(b.gateway, 24)]
        );
        let on_node = TcpListener::bind((b.gateway, 0)).unwrap();
        assert_eq!(exchange(&on_node, &b.netns_path).await, IpAddr::V4(b.ip));
        // The earlier pod's pair lost its bridge with it and is attached again when asked for.
        let a = network.create_sandbox("pod-a", &[], true).await.unwrap();
        assert_eq!(exchange(&on_node, &a.netns_path).await, IpAddr::V4(a.ip));
    });
}

#[test]
fn allocations_survive_a_restart_and_are_not_handed_out_again() {
    in_scratch_namespaces(|config| async move {
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let a = network.create_sandbox("pod-a", &[], true).await.unwrap();
        let b = network.create_sandbox("pod-b", &[], true).await.unwrap();
        drop(network);

        let restarted = PodNetwork::setup(config.clone()).await.unwrap();
        assert_eq!(restarted.sandboxes().unwrap(), vec!["pod-a", "pod-b"]);
        let c = restarted.create_sandbox("pod-c", &[], true).await.unwrap();
        assert!(c.ip != a.ip && c.ip != b.ip, "{c:?} reuses a live address");
        assert_eq!(
            restarted.create_sandbox("pod-a", &[], true).await.unwrap(),
            a
        );
        assert_eq!(
            restarted.create_sandbox("pod-b", &[], true).await.unwrap(),
            b
        );
    });
}

#[test]
fn remove_sandbox_releases_the_ip_and_removes_veth_and_netns() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let a = network.create_sandbox("pod-a", &[], true).await.unwrap();
        let b = network.create_sandbox("pod-b", &[], true).await.unwrap();
        assert!(is_mounted(&a.netns_path));

        network.remove_sandbox("pod-a").await.unwrap();
        assert!(!is_mounted(&a.netns_path), "netns unmounted");
        assert!(!a.netns_path.exists(), "netns file removed");
        assert_eq!(
            ip_files(&config),
            vec![(b.ip.to_string(), "pod-b".to_string())]
        );
        assert_eq!(network.sandboxes().unwrap(), vec!["pod-b"]);
        // Again, and for an id that never existed: nothing to do is success.
        network.remove_sandbox("pod-a").await.unwrap();
        network.remove_sandbox("never-created").await.unwrap();

        // The pair goes with the namespace, when the kernel frees it.
        assert!(
            freed(TIMEOUT, || async {
                link(&h, &veth_name("pod-a")).await.is_none()
            })
            .await,
            "veth gone"
        );
        // The other pod is untouched.
        let on_node = TcpListener::bind((b.gateway, 0)).unwrap();
        assert_eq!(exchange(&on_node, &b.netns_path).await, IpAddr::V4(b.ip));
        // The released address is free again (last, after the rest of the range).
        let again = network.create_sandbox("pod-a", &[], true).await.unwrap();
        assert!(config.pod_cidr.contains(again.ip) && again.ip != b.ip);
    });
}

/// Whether `done` comes true `within`: the kernel frees a namespace nothing holds any more in the
/// background, and the links in it then.
async fn freed<F, Fut>(within: Duration, done: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        if started.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[test]
fn a_veth_whose_namespace_is_no_longer_bound_is_deleted_by_request() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let a = network.create_sandbox("pod-a", &[], true).await.unwrap();
        // Unbound from outside while something still holds the namespace, which keeps its pair.
        let holder = std::fs::File::open(&a.netns_path).unwrap();
        netns::remove(&a.netns_path).unwrap();
        assert!(link(&h, &veth_name("pod-a")).await.is_some());

        network.remove_sandbox("pod-a").await.unwrap();
        assert!(link(&h, &veth_name("pod-a")).await.is_none(), "veth gone");
        assert!(ip_files(&config).is_empty());
        drop(holder);
    });
}

#[test]
fn the_pair_of_a_namespace_held_past_its_removal_is_deleted_by_the_second_sweep() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let a = network.create_sandbox("pod-a", &[], true).await.unwrap();
        let b = network.create_sandbox("pod-b", &[], true).await.unwrap();
        // A port-forward's socket, say, still holds pod-a's namespace.
        let holder = std::fs::File::open(&a.netns_path).unwrap();
        network.remove_sandbox("pod-a").await.unwrap();
        assert_eq!(network.remove_stray_veths().await.unwrap(), 0);
        assert!(
            link(&h, &veth_name("pod-a")).await.is_some(),
            "kept by its holder"
        );

        // Still there a sweep later: held, not being freed.
        assert_eq!(network.remove_stray_veths().await.unwrap(), 1);
        assert!(link(&h, &veth_name("pod-a")).await.is_none(), "deleted");
        assert!(
            link(&h, &veth_name("pod-b")).await.is_some(),
            "a sandbox's pair stays"
        );
        let on_node = TcpListener::bind((b.gateway, 0)).unwrap();
        assert_eq!(exchange(&on_node, &b.netns_path).await, IpAddr::V4(b.ip));
        assert_eq!(network.remove_stray_veths().await.unwrap(), 0);
        drop(holder);
    });
}

#[test]
fn leftovers_of_an_interrupted_create_are_listed_and_completed() {
    in_scratch_namespaces(|config| async move {
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        // A crash between creating the namespace file and mounting on it.
        std::fs::write(config.netns_dir.join("pod-x"), b"").unwrap();
        assert_eq!(network.sandboxes().unwrap(), vec!["pod-x"]);
        let x = network.create_sandbox("pod-x", &[], true).await.unwrap();
        assert!(netns::exists(&x.netns_path).unwrap());
        assert_eq!(
            pod_view(&x.netns_path).await,
            (vec![(x.ip, 24)], Some(x.gateway))
        );
        network.remove_sandbox("pod-x").await.unwrap();
        assert!(network.sandboxes().unwrap().is_empty());
    });
}

#[test]
fn ids_that_could_escape_the_directories_are_rejected() {
    in_scratch_namespaces(|config| async move {
        let network = PodNetwork::setup(config).await.unwrap();
        for id in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            ".hidden",
            "a b",
            &"x".repeat(254),
        ] {
            let err = network.create_sandbox(id, &[], true).await.unwrap_err();
            assert!(matches!(err, NetworkError::InvalidId(_)), "{id:?}: {err:?}");
            let err = network.remove_sandbox(id).await.unwrap_err();
            assert!(matches!(err, NetworkError::InvalidId(_)), "{id:?}: {err:?}");
        }
        // A pod UID is fine.
        validate_id("0f3c2a8e-1b7d-4c55-9a0e-2d6f1e9b7c41").unwrap();
    });
}

#[test]
fn configs_without_room_for_pods_are_rejected() {
    let dir = PathBuf::from("/nonexistent");
    let mut c = test_config(&dir);
    c.pod_cidr = "10.42.0.0/31".parse().unwrap();
    assert!(matches!(validate(&c), Err(NetworkError::Config(_))));
    let mut c = test_config(&dir);
    c.bridge = "a-very-long-bridge-name".into();
    assert!(matches!(validate(&c), Err(NetworkError::Config(_))));
    let mut c = test_config(&dir);
    c.pod_cidr = "10.43.0.0/24".parse().unwrap();
    assert!(matches!(validate(&c), Err(NetworkError::Config(_))));
    validate(&test_config(&dir)).unwrap();
}

#[test]
fn veth_names_are_stable_short_and_distinct() {
    let a = veth_name("0f3c2a8e-1b7d-4c55-9a0e-2d6f1e9b7c41");
    assert_eq!(a, veth_name("0f3c2a8e-1b7d-4c55-9a0e-2d6f1e9b7c41"));
    assert_eq!(a.len(), 15);
    assert!(a.starts_with("veth"));
    assert_ne!(a, veth_name("0f3c2a8e-1b7d-4c55-9a0e-2d6f1e9b7c42"));
    let mac = bridge_mac("orch0");
    assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
}

/// A node's pods are often made or deleted together (a Deployment scaled, a namespace deleted), each by
/// its own task on the agent's multi-threaded runtime, all of them on the node's one netlink socket.
#[test]
fn sandboxes_made_and_removed_at_once_by_the_hundred_are_each_done() {
    in_scratch_namespaces(|config| async move {
        // The agent's runtime, on a thread of the scratch namespaces.
        let outcome = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(make_and_remove_at_once(config, 250))
        })
        .join();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

async fn make_and_remove_at_once(config: NetworkConfig, count: usize) {
    let h = handle();
    let network = Arc::new(PodNetwork::setup(config).await.unwrap());
    let ids: Vec<String> = (0..count).map(|i| format!("pod-{i}")).collect();
    for remove in [false, true] {
        let tasks = ids.iter().map(|id| {
            let (network, id) = (network.clone(), id.clone());
            tokio::spawn(async move {
                if remove {
                    network.remove_sandbox(&id).await
                } else {
                    network.create_sandbox(&id, &[], true).await.map(drop)
                }
            })
        });
        let results = tokio::time::timeout(
            Duration::from_secs(120),
            futures_util::future::join_all(tasks),
        )
        .await
        .expect("every sandbox done in time");
        let failed: Vec<_> = results
            .into_iter()
            .filter_map(|r| r.unwrap().err())
            .collect();
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            failed.first()
        );
        if !remove {
            let veths = host_veths(&h).await;
            assert_eq!(veths, count, "a veth per sandbox");
        }
    }
    assert_eq!(network.sandboxes().unwrap(), Vec::<String>::new());
    assert!(
        // Hundreds of namespaces are freed in the background on a busy machine.
        freed(Duration::from_secs(60), || async {
            host_veths(&h).await == 0
        })
        .await,
        "veths left"
    );
}

async fn host_veths(h: &Handle) -> usize {
    let links: Vec<LinkMessage> = h.link().get().execute().try_collect().await.unwrap();
    links
        .iter()
        .filter(|l| {
            l.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::IfName(n) if n.starts_with("veth")))
        })
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_answer_never_comes_fails_instead_of_waiting_forever() {
    // A connection nobody drives: its requests are never sent, so no answer comes, as for an answer the
    // kernel dropped.
    let (_undriven, h) = netlink::node_connection().unwrap();
    let started = tokio::time::Instant::now();
    let err = tokio::time::timeout(netlink::ANSWER_TIMEOUT * 2, netlink::link_by_name(&h, "lo"))
        .await
        .expect("the request ends")
        .unwrap_err();
    assert!(
        matches!(&err, NetworkError::Unanswered(what) if what == "looking up link lo"),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), netlink::ANSWER_TIMEOUT);
    assert_eq!(
        err.to_string(),
        "looking up link lo: no answer from the kernel within 30s"
    );
}

#[tokio::test]
async fn the_nodes_netlink_socket_has_room_for_many_answers() {
    let (mut conn, _h) = netlink::node_connection().unwrap();
    let size = nix::sys::socket::getsockopt(
        conn.socket_mut().socket_ref(),
        nix::sys::socket::sockopt::RcvBuf,
    )
    .unwrap();
    // The kernel doubles what it is asked for, for its bookkeeping.
    assert!(size >= netlink::NODE_RECEIVE_BUFFER, "{size}");
}

#[test]
fn a_bridge_without_a_free_port_refuses_the_sandbox_in_words() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config.clone()).await.unwrap();
        let bridge = link(&h, "orch0").await.unwrap().header.index;
        // A Linux bridge numbers its ports 1 to 1023.
        for i in 0..1023 {
            let port = LinkVeth::new(&format!("port{i}"), &format!("peer{i}"))
                .controller(bridge)
                .build();
            h.link().add(port).execute().await.unwrap();
        }
        let err = network
            .create_sandbox("pod-a", &[], true)
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::BridgeFull), "{err:?}");
    });
}

/// A pod's sysctls go into its own namespace once its eth0 is there, until a call succeeds in setting
/// them (the caller says when one did), and again whenever eth0 is made anew; the node's own stay.
#[test]
fn sysctls_are_set_in_the_pods_namespace_until_set_and_again_with_a_new_eth0() {
    in_scratch_namespaces(|config| async move {
        let h = handle();
        let network = PodNetwork::setup(config).await.unwrap();
        let sysctl = |name: &str, value: &str| netns::Sysctl {
            name: name.into(),
            value: value.into(),
        };
        let read = |path: &'static str| std::fs::read_to_string(path).unwrap();
        const PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
        const RP_FILTER: &str = "/proc/sys/net/ipv4/conf/eth0/rp_filter";
        let host_start = read(PORT_START);
        let wanted = [
            sysctl("net.ipv4.ip_unprivileged_port_start", "80"),
            sysctl("net.ipv4.conf.eth0.rp_filter", "2"),
        ];
        let refused = [wanted[0].clone(), sysctl("net.ipv4.tcp_syncookies", "many")];
        let err = network
            .create_sandbox("pod-a", &refused, false)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, NetworkError::Sysctl { name, .. } if name == "net.ipv4.tcp_syncookies"),
            "{err}"
        );

        // The namespace and eth0 are there now: the retry still sets them, as asked.
        let pod = network
            .create_sandbox("pod-a", &wanted, false)
            .await
            .unwrap();
        let path = pod.netns_path.clone();
        let in_pod = move |file: &'static str| {
            let path = path.clone();
            async move { netns::run_in(&path, move || Ok(read(file))).await.unwrap() }
        };
        assert_eq!(in_pod(PORT_START).await, "80\n");
        assert_eq!(in_pod(RP_FILTER).await, "2\n");
        assert_eq!(read(PORT_START), host_start, "the node's own stays");
        // Once set, a sync leaves them, even changed...
        let later = [sysctl("net.ipv4.ip_unprivileged_port_start", "90")];
        network.create_sandbox("pod-a", &later, true).await.unwrap();
        assert_eq!(in_pod(PORT_START).await, "80\n");
        // ...unless it makes eth0 again, whose own sysctls went with the old one.
        let host_index = link(&h, &veth_name("pod-a")).await.unwrap().header.index;
        netlink::delete_link(&h, host_index).await.unwrap();
        network
            .create_sandbox("pod-a", &wanted, true)
            .await
            .unwrap();
        assert_eq!(in_pod(RP_FILTER).await, "2\n");
    });
}
