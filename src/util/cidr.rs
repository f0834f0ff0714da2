//! IPv4 networks in CIDR form: what `--cluster-cidr`, `--service-cidr` and `Node.spec.podCIDR` hold, and
//! the arithmetic the allocators need (containment, the n-th address, the broadcast address, subnets).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CIDR {input:?}: {reason}")]
pub struct CidrError {
    pub input: String,
    pub reason: &'static str,
}

/// An IPv4 network; the address is always the network address (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// Host bits of `addr` are cleared, as Go's `net.ParseCIDR` does for k3s' flags, so `10.42.0.1/16` names
    /// the same network as `10.42.0.0/16`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError {
                input: format!("{addr}/{prefix_len}"),
                reason: "prefix length above 32",
            });
        }
        Ok(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix_len)),
            prefix_len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Number of addresses, network and broadcast included.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix_len))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.network)
    }

    /// The `n`-th address of the network (0 = the network address), if the network is that large.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + n as u32))
    }

    /// Position of `ip` in the network, the inverse of [`Ipv4Cidr::nth`].
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u64> {
        self.contains(ip)
            .then(|| u64::from(u32::from(ip) - u32::from(self.network)))
    }

    /// Whether the two networks share any address (one then contains the other).
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `index`-th subnet of length `prefix_len` inside this network, if there is one; subnets longer
    /// than /30 hold no pods and are never carved.
    pub fn subnet(&self, prefix_len: u8, index: u32) -> Option<Ipv4Cidr> {
        if prefix_len < self.prefix_len || prefix_len > 30 {
            return None;
        }
        let count = 1u64 << (prefix_len - self.prefix_len);
        if u64::from(index) >= count {
            return None;
        }
        let step = 1u32 << (32 - prefix_len);
        Some(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(self.network) + index * step),
            prefix_len,
        })
    }
}

fn mask(prefix_len: u8) -> u32 {
    // A shift by 32 overflows u32, hence the special case for /0.
    match prefix_len {
        0 => 0,
        n => u32::MAX << (32 - u32::from(n)),
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| CidrError {
            input: s.to_string(),
            reason,
        };
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| invalid("missing /prefix-length"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("not an IPv4 address"))?;
        // u8's parser accepts a leading '+', which no CIDR has.
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("prefix length is not a number"));
        }
        let len: u8 = len
            .parse()
            .map_err(|_| invalid("prefix length is not a number"))?;
        Ipv4Cidr::new(addr, len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalises_host_bits() {
        let c = cidr("10.42.3.7/16");
        assert_eq!(c.network(), Ipv4Addr::new(10, 42, 0, 0));
        assert_eq!(c.prefix_len(), 16);
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(cidr("10.0.0.1/32").size(), 1);
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "10.42.0.0",
            "10.42.0.0/33",
            "10.42.0.0/",
            "10.42.0.0/+8",
            "10.42.0/16",
            "fd00::/64",
            "10.42.0.0/16/1",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn arithmetic() {
        let c = cidr("10.42.1.0/24");
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 42, 1, 255));
        assert_eq!(c.size(), 256);
        assert_eq!(c.nth(0), Some(Ipv4Addr::new(10, 42, 1, 0)));
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(10, 42, 1, 1)));
        assert_eq!(c.nth(255), Some(Ipv4Addr::new(10, 42, 1, 255)));
        assert_eq!(c.nth(256), None);
        assert!(c.contains(Ipv4Addr::new(10, 42, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 42, 2, 0)));
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 42, 1, 9)), Some(9));
        assert_eq!(c.offset_of(Ipv4Addr::new(10, 42, 0, 9)), None);
        assert!(cidr("10.42.0.0/16").overlaps(&c));
        assert!(c.overlaps(&cidr("10.42.0.0/16")));
        assert!(!c.overlaps(&cidr("10.43.0.0/16")));
        let all = cidr("0.0.0.0/0");
        assert!(all.contains(Ipv4Addr::new(255, 255, 255, 255)));
        assert_eq!(all.broadcast(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn subnets_are_carved_in_order() {
        let cluster: Ipv4Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(cluster.subnet(24, 0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(
            cluster.subnet(24, 255).unwrap().to_string(),
            "10.42.255.0/24"
        );
        assert!(cluster.subnet(24, 256).is_none());
        assert!(cluster.subnet(8, 0).is_none());
        let everything: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains(Ipv4Addr::new(10, 1, 2, 3)));
    }
}
