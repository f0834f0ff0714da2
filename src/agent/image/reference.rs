//! Image references (`busybox`, `user/app:1.0`, `registry:5000/a/b@sha256:…`) parsed and normalised exactly as
//! Docker's `distribution/reference` (`ParseNormalizedNamed`) does, so that a pod's `image:` names the same
//! content here as under containerd; and Kubernetes' `imagePullPolicy` default, which depends on the tag.

use std::fmt;

use super::ImageError;

/// Where a reference without a registry host goes, and the hub's legacy alias that means the same.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Single-component hub repositories (`busybox`) are official images under `library/`.
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// A fully normalised reference: the domain is always set, docker.io single names carry `library/`, and a
/// reference with neither tag nor digest gets the `latest` tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let invalid = |why: &str| ImageError::InvalidReference(format!("{why} in {s:?}"));
        if s.is_empty() {
            return Err(ImageError::InvalidReference(
                "repository name must have at least one component".into(),
            ));
        }
        // Docker refuses a bare image ID here: it would be ambiguous with a repository named by 64 hex chars.
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(ImageError::InvalidReference(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                validate_digest(d)?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                let t = &t[1..];
                if !is_tag(t) {
                    return Err(invalid("invalid tag"));
                }
                (n, Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (domain, path) = split_domain(name);
        if !domain.is_empty() && !is_domain(domain) {
            return Err(invalid("invalid registry host"));
        }
        if path.is_empty() {
            return Err(invalid("repository name must have at least one component"));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ImageError::InvalidReference(format!(
                "repository name must be lowercase: {s:?}"
            )));
        }
        if !path.split('/').all(is_path_component) {
            return Err(invalid("invalid repository name"));
        }
        let (domain, path) = normalise_domain(domain, path);
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ImageError::InvalidReference(format!(
                "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters: {s:?}"
            )));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some(DEFAULT_TAG.to_string())
        } else {
            tag
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (with port), e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path`, the repository name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's `splitDockerDomain`: the first component is a registry host only if it looks like one (has a
/// `.` or `:`, or is `localhost`), or has uppercase letters (which a repository component never may).
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => ("", name),
    }
}

fn normalise_domain(domain: &str, path: &str) -> (String, String) {
    let domain = if domain.is_empty() || domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path.to_string()
    };
    (domain.to_string(), path)
}

/// `host(:port)?` where host is dot-separated DNS labels or a bracketed IPv6 address.
fn is_domain(d: &str) -> bool {
    let (host, port) = if let Some(v6) = d.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, rest)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => match rest {
                "" => return true,
                p => ("", p.strip_prefix(':').unwrap_or("x")),
            },
            _ => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (d, ""),
        }
    };
    let host_ok = host.is_empty() && d.starts_with('[')
        || !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
    let port_ok = (port.is_empty() && !d.ends_with(':'))
        || !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    host_ok && port_ok
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`: alphanumeric runs joined by one `.`, one or two `_`, or dashes.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// `algorithm:hex`, with the lengths the registered algorithms require (sha256 is all registries use).
pub fn validate_digest(d: &str) -> Result<(), ImageError> {
    let bad = |reason| {
        Err(ImageError::InvalidDigest {
            digest: d.to_string(),
            reason,
        })
    };
    let Some((alg, hex)) = d.split_once(':') else {
        return bad("missing the algorithm prefix (want sha256:<hex>)");
    };
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return bad("unsupported digest algorithm"),
    };
    if hex.len() != want || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return bad("wrong length or not lowercase hex");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Kubernetes' defaulting of `imagePullPolicy` (`SetDefaults_Container`): `Always` when the tag is
    /// `latest`, which includes no tag and no digest; otherwise, and for unparseable images, `IfNotPresent`.
    pub fn default_for(image: &str) -> Self {
        match Reference::parse(image) {
            Ok(r) if r.tag() == Some(DEFAULT_TAG) => PullPolicy::Always,
            _ => PullPolicy::IfNotPresent,
        }
    }

    /// The API's spelling; anything else there is rejected by validation before it reaches the agent.
    pub fn from_api(s: &str) -> Option<Self> {
        match s {
            "Always" => Some(PullPolicy::Always),
            "IfNotPresent" => Some(PullPolicy::IfNotPresent),
            "Never" => Some(PullPolicy::Never),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    fn err(s: &str) -> String {
        Reference::parse(s).expect_err(s).to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app:tag"), "docker.io/user/app:tag");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/user/app"),
            "docker.io/user/app:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("registry:5000/a/b"), "registry:5000/a/b:latest");
        assert_eq!(
            norm(&format!("registry:5000/a/b@{D}")),
            format!("registry:5000/a/b@{D}")
        );
        assert_eq!(
            norm(&format!("app:1.0@{D}")),
            format!("docker.io/library/app:1.0@{D}")
        );
        assert_eq!(norm("quay.io/org/sub/app:v1"), "quay.io/org/sub/app:v1");
        assert_eq!(norm("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(
            norm("a__b-c---d/x_y.z"),
            "docker.io/a__b-c---d/x_y.z:latest"
        );
        // A dot makes the first component a host, and hosts may not contain `_`.
        assert!(err("a_b.c/x").contains("invalid registry host"));
        // No '.', ':' nor localhost: the first component is a hub user, not a host.
        assert_eq!(norm("registry/app"), "docker.io/registry/app:latest");
    }

    #[test]
    fn parts() {
        let r = Reference::parse(&format!("localhost:5000/team/app:v2@{D}")).unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.name(), "localhost:5000/team/app");
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None, "a digest alone gets no default tag");
    }

    #[test]
    fn rejects_with_reasons() {
        assert!(
            err("Busybox").contains("must be lowercase"),
            "{}",
            err("Busybox")
        );
        assert!(err("user/App").contains("must be lowercase"));
        assert!(err("").contains("at least one component"));
        assert!(err("app:").contains("invalid tag"));
        assert!(err("app:-x").contains("invalid tag"));
        assert!(err("app@sha256:abc").contains("invalid digest"));
        assert!(err("app@md5:abc").contains("unsupported digest algorithm"));
        assert!(err("a//b").contains("invalid repository name"));
        assert!(err("a/b_/c").contains("invalid repository name"));
        assert!(err("a/b___c").contains("invalid repository name"));
        assert!(err("host:port/app").contains("invalid registry host"));
        assert!(err("-bad.io/app").contains("invalid registry host"));
        assert!(err(&"0123456789abcdef".repeat(4)).contains("64-byte hexadecimal"));
        assert!(err(&format!("x.io/{}", "a".repeat(260))).contains("not be more than 255"));
    }

    #[test]
    fn pull_policy_default() {
        use PullPolicy::*;
        assert_eq!(PullPolicy::default_for("busybox"), Always);
        assert_eq!(PullPolicy::default_for("busybox:latest"), Always);
        assert_eq!(
            PullPolicy::default_for(&format!("busybox:latest@{D}")),
            Always
        );
        assert_eq!(PullPolicy::default_for("busybox:1.36"), IfNotPresent);
        assert_eq!(
            PullPolicy::default_for(&format!("busybox@{D}")),
            IfNotPresent
        );
        assert_eq!(PullPolicy::default_for("Bad"), IfNotPresent);
        assert_eq!(PullPolicy::from_api("Never"), Some(Never));
        assert_eq!(PullPolicy::from_api("sometimes"), None);
    }
}
