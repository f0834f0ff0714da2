//! Leaf helpers shared by every layer: an injectable clock, CIDR arithmetic, random names, the open-files
//! limit, the node's mount table, the HTTPS accept loop, the server side of WebSocket and SPDY upgrades and SPDY/3.1 framing, and
//! Go's way of printing durations and network errors.

pub mod certificate;
pub mod cidr;
pub mod clock;
pub mod go_errors;
pub mod https;
pub mod mounts;
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

/// Go's `time.Duration.String`: how `metav1.Duration` appears in JSON ("1m30s"), and how kubelet's
/// messages print durations.
pub fn go_duration(nanos: i64) -> String {
    /// The digits of `value` below `10^precision`, without trailing zeros, after a dot.
    fn fraction(value: u64, precision: u32) -> (String, u64) {
        let scale = 10_u64.pow(precision);
        let digits = value % scale;
        let text = if digits == 0 {
            String::new()
        } else {
            let padded = format!("{digits:0width$}", width = precision as usize);
            format!(".{}", padded.trim_end_matches('0'))
        };
        (text, value / scale)
    }
    if nanos == 0 {
        return "0s".to_owned();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    if magnitude < 1_000_000_000 {
        let (precision, unit) = match magnitude {
            0..=999 => (0, "ns"),
            1_000..=999_999 => (3, "µs"),
            _ => (6, "ms"),
        };
        let (frac, whole) = fraction(magnitude, precision);
        return format!("{sign}{whole}{frac}{unit}");
    }
    let (frac, total_seconds) = fraction(magnitude, 9);
    let (seconds, minutes) = (total_seconds % 60, total_seconds / 60);
    match (minutes % 60, minutes / 60) {
        (0, 0) => format!("{sign}{seconds}{frac}s"),
        (minutes, 0) => format!("{sign}{minutes}m{seconds}{frac}s"),
        (minutes, hours) => format!("{sign}{hours}h{minutes}m{seconds}{frac}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(-2_000), "-2µs");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(80_000_000_000), "1m20s");
    }
}
