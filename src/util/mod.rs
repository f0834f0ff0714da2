//! Leaf helpers shared by every layer: an injectable clock, CIDR arithmetic, random names, the open-files
//! limit, the HTTPS accept loop, the server side of WebSocket and SPDY upgrades and SPDY/3.1 framing.

pub mod certificate;
pub mod cidr;
pub mod clock;
pub mod https;
pub mod rlimit;
pub mod spdy;
pub mod upgrade;
pub mod websocket;

pub use clock::{Clock, SystemClock};

/// The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random suffix of `len` characters, as `generateName` and pod-template hashes use.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect()
}
