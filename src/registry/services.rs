//! Service strategy and its allocators: a ClusterIP from the service CIDR and node ports from the node-port
//! range, each unique across the cluster. Allocation reads the live services under one lock, so the stored
//! services are the only allocation record and nothing can leak.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{json, Value};
use tokio::sync::{Mutex, MutexGuard};

use crate::api::resources;
use crate::api::validation::{ErrorType, FieldError};
use crate::util::cidr::Ipv4Cidr;

use super::store::{ListOptions, Registry};
use super::strategy::Strategy;

pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {}

pub struct ServiceAllocator {
    cidr: Ipv4Cidr,
    node_ports: (u16, u16),
    lock: Mutex<()>,
}

impl ServiceAllocator {
    pub fn new(cidr: Ipv4Cidr, node_ports: (u16, u16)) -> Self {
        ServiceAllocator {
            cidr,
            node_ports,
            lock: Mutex::new(()),
        }
    }

    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Fills in (or checks) `spec.clusterIP(s)` and node ports of `svc`. The caller holds `lock()`.
    pub async fn allocate(
        &self,
        registry: &Registry,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), Vec<FieldError>> {
        let services = resources::find("", "v1", "services").expect("services are served");
        let others = registry
            .list(services, None, &ListOptions::default())
            .await
            .map_err(|e| vec![invalid("spec", None, &e.to_string())])?
            .items
            .into_iter()
            .filter(|s| {
                s["metadata"]["uid"] != svc["metadata"]["uid"] || svc["metadata"]["uid"].is_null()
            })
            .collect::<Vec<_>>();
        let spec = &mut svc["spec"];
        let service_type = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        let mut errors = Vec::new();
        if service_type == "ExternalName" {
            if let Some(s) = spec.as_object_mut() {
                s.remove("clusterIP");
                s.remove("clusterIPs");
            }
        } else {
            if spec["clusterIP"].as_str().unwrap_or("").is_empty() {
                if let Some(previous) = old
                    .and_then(|o| o["spec"]["clusterIP"].as_str())
                    .filter(|s| !s.is_empty())
                {
                    spec["clusterIP"] = json!(previous);
                }
            }
            match spec["clusterIP"].as_str().unwrap_or("") {
                "" => {
                    let used: HashSet<Ipv4Addr> = others
                        .iter()
                        .filter_map(|s| s["spec"]["clusterIP"].as_str()?.parse().ok())
                        .collect();
                    match self.free_ip(&used) {
                        Some(ip) => spec["clusterIP"] = json!(ip.to_string()),
                        None => errors.push(invalid(
                            "spec.clusterIPs",
                            None,
                            &format!(
                                "failed to allocate IP from range {}: range is full",
                                self.cidr
                            ),
                        )),
                    }
                }
                "None" => {}
                requested => {
                    let unchanged =
                        old.and_then(|o| o["spec"]["clusterIP"].as_str()) == Some(requested);
                    match requested.parse::<Ipv4Addr>() {
                        Ok(ip) if unchanged => {
                            let _ = ip;
                        }
                        Ok(ip) if !self.cidr.contains(ip) => errors.push(invalid(
                            "spec.clusterIPs",
                            Some(json!([requested])),
                            &format!(
                                "failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is {}",
                                self.cidr
                            ),
                        )),
                        Ok(_) if others.iter().any(|s| s["spec"]["clusterIP"] == requested) => errors.push(invalid(
                            "spec.clusterIPs",
                            Some(json!([requested])),
                            &format!("failed to allocate IP {requested}: provided IP is already allocated"),
                        )),
                        Ok(_) => {}
                        Err(_) => errors.push(invalid(
                            "spec.clusterIPs[0]",
                            Some(json!(requested)),
                            "must be a valid IP address, (e.g. 10.9.128.0)",
                        )),
                    }
                }
            }
            let ip = spec["clusterIP"].clone();
            if !ip.is_null() {
                spec["clusterIPs"] = json!([ip]);
            }
        }
        let wants_node_ports = service_type == "NodePort" || service_type == "LoadBalancer";
        let used_ports: HashSet<u64> = others
            .iter()
            .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["nodePort"].as_u64())
            .collect();
        let old_ports = old
            .map(|o| o["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        let mut taken: HashSet<u64> = HashSet::new();
        if let Some(ports) = spec["ports"].as_array_mut() {
            for (i, port) in ports.iter_mut().enumerate() {
                if !wants_node_ports {
                    if let Some(p) = port.as_object_mut() {
                        p.remove("nodePort");
                    }
                    continue;
                }
                if port["nodePort"].as_u64().unwrap_or(0) == 0 {
                    let previous = old_ports
                        .iter()
                        .find(|p| p["port"] == port["port"] && p["protocol"] == port["protocol"])
                        .and_then(|p| p["nodePort"].as_u64());
                    let chosen = previous.or_else(|| self.free_port(&used_ports, &taken));
                    match chosen {
                        Some(n) => port["nodePort"] = json!(n),
                        None => {
                            errors.push(invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                None,
                                "range is full",
                            ));
                            continue;
                        }
                    }
                } else {
                    let n = port["nodePort"].as_u64().unwrap_or(0);
                    let unchanged = old_ports.iter().any(|p| p["nodePort"].as_u64() == Some(n));
                    if !unchanged
                        && !(u64::from(self.node_ports.0)..=u64::from(self.node_ports.1))
                            .contains(&n)
                    {
                        errors.push(invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            Some(json!(n)),
                            &format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                self.node_ports.0, self.node_ports.1
                            ),
                        ));
                        continue;
                    }
                    if used_ports.contains(&n) || taken.contains(&n) {
                        errors.push(invalid(
                            &format!("spec.ports[{i}].nodePort"),
                            Some(json!(n)),
                            "provided port is already allocated",
                        ));
                        continue;
                    }
                }
                if let Some(n) = port["nodePort"].as_u64() {
                    taken.insert(n);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn free_ip(&self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        use rand::Rng;
        // Neither the network nor the broadcast address.
        let size = self.cidr.size().saturating_sub(2);
        if size == 0 {
            return None;
        }
        // The first addresses are reserved for the kubernetes and DNS services; start at a random offset so
        // concurrent clusters sharing a range rarely collide, then scan.
        let start = rand::rng().random_range(0..size);
        (0..size)
            .filter_map(|i| self.cidr.nth(1 + (start + i) % size))
            .find(|ip| !used.contains(ip) && !self.reserved(*ip))
    }

    fn reserved(&self, ip: Ipv4Addr) -> bool {
        self.cidr.offset_of(ip).is_none_or(|offset| offset <= 10)
    }

    fn free_port(&self, used: &HashSet<u64>, taken: &HashSet<u64>) -> Option<u64> {
        use rand::Rng;
        let (lo, hi) = (u64::from(self.node_ports.0), u64::from(self.node_ports.1));
        let size = hi - lo + 1;
        let start = rand::rng().random_range(0..size);
        (0..size)
            .map(|i| lo + (start + i) % size)
            .find(|p| !used.contains(p) && !taken.contains(p))
    }
}

fn invalid(field: &str, value: Option<Value>, detail: &str) -> FieldError {
    FieldError {
        error_type: ErrorType::Invalid,
        field: field.to_string(),
        value,
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_and_membership() {
        let net: Ipv4Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.43.0.0/16");
        assert!(net.contains("10.43.255.1".parse().unwrap()));
        assert!(!net.contains("10.44.0.1".parse().unwrap()));
        assert_eq!(net.nth(1), Some("10.43.0.1".parse::<Ipv4Addr>().unwrap()));
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn free_ip_skips_reserved_and_used() {
        let alloc = ServiceAllocator::new("10.43.0.0/28".parse().unwrap(), (30000, 30001));
        let used: HashSet<Ipv4Addr> = ["10.43.0.11", "10.43.0.12", "10.43.0.13"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(alloc.free_ip(&used), Some("10.43.0.14".parse().unwrap()));
        let ports: HashSet<u64> = [30000].into_iter().collect();
        assert_eq!(alloc.free_port(&ports, &HashSet::new()), Some(30001));
        assert_eq!(
            alloc.free_port(&ports, &[30001].into_iter().collect()),
            None
        );
    }

    #[test]
    fn a_range_without_room_has_no_free_ip() {
        for cidr in ["10.43.0.0/31", "10.43.0.0/32", "10.43.0.0/29"] {
            let alloc = ServiceAllocator::new(cidr.parse().unwrap(), (30000, 30001));
            assert_eq!(alloc.free_ip(&HashSet::new()), None, "{cidr}");
        }
    }
}
