//! Pod IP allocation in the style of CNI's host-local plugin: one file per allocated address,
//! `<state_dir>/ips/<ip>`, holding the id of the sandbox that owns it. The directory is the only state, so
//! allocations survive agent restarts and two allocators (even in two processes) can never hand out the
//! same address: the file for an address is created exclusively. Each allocator also keeps who holds which
//! address in memory (read from the directory once, checked against the address's file on use), so that
//! finding a sandbox's address reads one file, not every allocation of the node.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Ipv4Cidr;
use super::NetworkError;

/// The addresses each owner holds.
type Owners = HashMap<String, Vec<Ipv4Addr>>;

#[derive(Clone, Debug)]
pub(super) struct Ipam {
    dir: PathBuf,
    last_reserved: PathBuf,
    range: Ipv4Cidr,
    gateway: Ipv4Addr,
    /// The addresses each owner holds, once read from the directory.
    owners: Arc<Mutex<Option<Owners>>>,
}

impl Ipam {
    /// Allocates from `range`, never its network, broadcast or `gateway` address.
    pub(super) fn open(
        state_dir: &Path,
        range: Ipv4Cidr,
        gateway: Ipv4Addr,
    ) -> Result<Self, NetworkError> {
        let dir = state_dir.join("ips");
        fs::create_dir_all(&dir).map_err(NetworkError::io("creating", &dir))?;
        Ok(Ipam {
            dir,
            last_reserved: state_dir.join("last_reserved_ip"),
            range,
            gateway,
            owners: Arc::default(),
        })
    }

    /// The address of `id`: the one it already holds, or a free one.
    pub(super) fn allocate(&self, id: &str) -> Result<Ipv4Addr, NetworkError> {
        if let Some(ip) = self.lookup(id)? {
            if self.usable(ip) {
                return Ok(ip);
            }
            // Allocated from an earlier podCIDR: the pod cannot keep it on this bridge.
            self.remove(id, ip)?;
        }
        // The owner is written before the address file appears: link(2) publishes a complete file and fails
        // with EEXIST exactly like O_EXCL, so a crash never leaves an address without its owner.
        let tmp = self.dir.join(format!(".{id}.tmp"));
        write_synced(&tmp, id).map_err(NetworkError::io("writing", &tmp))?;
        let result = self.claim_free(&tmp);
        let _ = fs::remove_file(&tmp);
        let ip = result?;
        self.with_owners(|owners| owners.entry(id.to_string()).or_default().push(ip))?;
        // Only a hint for where the next search starts; losing it costs nothing but an early reuse, so
        // it is not worth an fsync while every sandbox creation waits.
        let _ = fs::write(&self.last_reserved, ip.to_string());
        Ok(ip)
    }

    fn claim_free(&self, owner_file: &Path) -> Result<Ipv4Addr, NetworkError> {
        // Start after the last address handed out, like host-local: a just-released address is reused
        // last, so stale ARP and conntrack entries for it have time to expire.
        let first = 2; // 0 is the network address, 1 the gateway
        let last = self.range.size().saturating_sub(2); // size - 1 is the broadcast address
        let start = fs::read_to_string(&self.last_reserved)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .and_then(|ip| self.range.offset_of(ip))
            .filter(|n| (first..=last).contains(n))
            .map_or(first, |n| if n == last { first } else { n + 1 });
        let candidates = (start..=last).chain(first..start);
        for n in candidates {
            let Some(ip) = self.range.nth(n) else {
                continue;
            };
            if ip == self.gateway {
                continue;
            }
            let path = self.dir.join(ip.to_string());
            match fs::hard_link(owner_file, &path) {
                Ok(()) => return Ok(ip),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(NetworkError::io("allocating", &path)(e)),
            }
        }
        Err(NetworkError::Exhausted(self.range))
    }

    fn usable(&self, ip: Ipv4Addr) -> bool {
        self.range.contains(ip)
            && ip != self.range.network()
            && ip != self.range.broadcast()
            && ip != self.gateway
    }

    /// Runs `f` on the owners' addresses, read from the directory the first time.
    fn with_owners<T>(&self, f: impl FnOnce(&mut Owners) -> T) -> Result<T, NetworkError> {
        let mut owners = self.owners.lock().expect("ipam owners lock");
        if owners.is_none() {
            let mut read = Owners::new();
            for (ip, owner) in self.allocations()? {
                read.entry(owner).or_default().push(ip);
            }
            *owners = Some(read);
        }
        Ok(f(owners.as_mut().expect("read above")))
    }

    /// The addresses `id` holds, lowest first, each confirmed by its file.
    fn held(&self, id: &str) -> Result<Vec<Ipv4Addr>, NetworkError> {
        let mut ips = self.with_owners(|owners| owners.get(id).cloned().unwrap_or_default())?;
        ips.retain(|ip| {
            fs::read_to_string(self.dir.join(ip.to_string())).is_ok_and(|owner| owner.trim() == id)
        });
        ips.sort();
        Ok(ips)
    }

    pub(super) fn lookup(&self, id: &str) -> Result<Option<Ipv4Addr>, NetworkError> {
        Ok(self.held(id)?.first().copied())
    }

    /// Frees every address `id` holds; nothing to free is not an error.
    pub(super) fn release(&self, id: &str) -> Result<(), NetworkError> {
        for ip in self.held(id)? {
            self.remove(id, ip)?;
        }
        self.with_owners(|owners| owners.remove(id))?;
        Ok(())
    }

    fn remove(&self, id: &str, ip: Ipv4Addr) -> Result<(), NetworkError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(NetworkError::io("releasing", &path)(e))
            }
            _ => {}
        }
        self.with_owners(|owners| {
            if let Some(ips) = owners.get_mut(id) {
                ips.retain(|held| *held != ip);
            }
        })
    }

    /// Every allocated address with its owner.
    pub(super) fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, NetworkError> {
        let entries = fs::read_dir(&self.dir).map_err(NetworkError::io("listing", &self.dir))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(NetworkError::io("listing", &self.dir))?;
            // Temporary owner files start with '.', and strangers' files do not parse as addresses.
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            match fs::read_to_string(entry.path()) {
                Ok(owner) => out.push((ip, owner.trim().to_string())),
                // Released between listing and reading.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(NetworkError::io("reading", entry.path())(e)),
            }
        }
        out.sort();
        Ok(out)
    }
}

fn write_synced(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn ipam(dir: &Path, cidr: &str) -> Ipam {
        let range: Ipv4Cidr = cidr.parse().unwrap();
        Ipam::open(dir, range, range.nth(1).unwrap()).unwrap()
    }

    #[test]
    fn skips_network_gateway_and_broadcast_and_reports_exhaustion() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.42.0.0/29");
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| ipam.allocate(&format!("pod-{i}")).unwrap())
            .collect();
        let want: Vec<Ipv4Addr> = (2..=6).map(|n| Ipv4Addr::new(10, 42, 0, n)).collect();
        assert_eq!(got, want);
        let err = ipam.allocate("one-too-many").unwrap_err();
        assert!(matches!(err, NetworkError::Exhausted(_)), "{err:?}");
        assert_eq!(err.to_string(), "no free IP address left in 10.42.0.0/29");
        // A failed allocation leaves no trace.
        assert_eq!(ipam.allocations().unwrap().len(), 5);
        assert_eq!(ipam.lookup("one-too-many").unwrap(), None);
        assert_eq!(
            fs::read_to_string(dir.path().join("ips/10.42.0.4")).unwrap(),
            "pod-2"
        );
    }

    #[test]
    fn same_id_same_address_and_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.42.0.0/29");
        let a = ipam.allocate("a").unwrap();
        assert_eq!(ipam.allocate("a").unwrap(), a);
        assert_eq!(ipam.lookup("a").unwrap(), Some(a));
        for i in 0..4 {
            ipam.allocate(&format!("fill-{i}")).unwrap();
        }
        assert!(ipam.allocate("b").is_err());
        ipam.release("a").unwrap();
        ipam.release("a").unwrap();
        assert_eq!(ipam.lookup("a").unwrap(), None);
        assert_eq!(ipam.allocate("b").unwrap(), a);
    }

    #[test]
    fn released_addresses_are_reused_last() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.42.0.0/24");
        let a = ipam.allocate("a").unwrap();
        ipam.release("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(b, Ipv4Addr::new(10, 42, 0, 3));
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let a = ipam(dir.path(), "10.42.0.0/24").allocate("a").unwrap();
        let reopened = ipam(dir.path(), "10.42.0.0/24");
        assert_eq!(reopened.allocate("a").unwrap(), a);
        assert_ne!(reopened.allocate("b").unwrap(), a);
    }

    #[test]
    fn allocation_from_an_old_range_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let old = ipam(dir.path(), "10.42.0.0/24").allocate("a").unwrap();
        let new = ipam(dir.path(), "10.42.1.0/24");
        let ip = new.allocate("a").unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 42, 1, 2));
        assert_ne!(ip, old);
        assert_eq!(new.allocations().unwrap(), vec![(ip, "a".to_string())]);
    }

    #[test]
    fn an_address_is_held_only_while_its_file_names_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.42.0.0/24");
        let a = ipam.allocate("a").unwrap();
        assert_eq!(ipam.lookup("a").unwrap(), Some(a));
        // Removed behind the allocator's back: it no longer hands the address out as a's.
        fs::remove_file(dir.path().join("ips").join(a.to_string())).unwrap();
        assert_eq!(ipam.lookup("a").unwrap(), None);
        let again = ipam.allocate("a").unwrap();
        assert_eq!(ipam.allocations().unwrap(), vec![(again, "a".to_string())]);
        ipam.release("a").unwrap();
        assert!(ipam.allocations().unwrap().is_empty());
    }

    #[test]
    fn concurrent_allocators_never_share_an_address() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    // A separate instance per thread, as two processes would have.
                    let ipam = ipam(dir.path(), "10.42.0.0/26");
                    (0..7)
                        .map(|i| ipam.allocate(&format!("t{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 56);
        assert_eq!(distinct.len(), 56, "an address was handed out twice");
        let on_disk = ipam(dir.path(), "10.42.0.0/26").allocations().unwrap();
        assert_eq!(on_disk.len(), 56);
    }
}
