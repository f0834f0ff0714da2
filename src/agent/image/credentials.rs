//! Registry credentials from a pod's `imagePullSecrets` (`kubernetes.io/dockerconfigjson` and the legacy
//! `kubernetes.io/dockercfg`), matched to an image the way kubelet's keyring does: a key is a host (globs
//! allowed per label, as `*.example.com`) with an optional port and path prefix, any scheme and `/v1/`,
//! `/v2/` suffixes ignored; the most specific key wins; `index.docker.io` keys serve Docker Hub images.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use super::reference::DEFAULT_DOMAIN;
use super::ImageError;

pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// Docker config.json spells Docker Hub this way; kubelet treats it as the default registry's key.
const LEGACY_HUB_HOST: &str = "index.docker.io";

/// A username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Passwords end up in logs through Debug otherwise.
        f.debug_struct("Auth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Credentials by registry key (`host[:port][/path]`), in the order kubelet tries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    entries: Vec<(String, Auth)>,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Deserialize, Default)]
struct DockerConfigEntry {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

impl Credentials {
    /// One username and password for one registry (`orch images pull --creds`).
    pub fn basic(registry: &str, username: &str, password: &str) -> Self {
        let mut c = Credentials::default();
        c.add(
            registry,
            Auth {
                username: username.into(),
                password: password.into(),
            },
        );
        c
    }

    /// Parses the pod's image pull secrets, given as (secret type, secret data). Secrets of other types are
    /// ignored, as kubelet does; a malformed docker config is an error naming what is wrong.
    pub fn from_secrets<'a>(
        secrets: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, Vec<u8>>)>,
    ) -> Result<Self, ImageError> {
        let mut creds = Credentials::default();
        for (kind, data) in secrets {
            let entries = match kind {
                DOCKER_CONFIG_JSON_TYPE => {
                    let raw = data.get(DOCKER_CONFIG_JSON_KEY).ok_or_else(|| {
                        ImageError::Credentials(format!(
                            "{kind} secret has no {DOCKER_CONFIG_JSON_KEY} key"
                        ))
                    })?;
                    serde_json::from_slice::<DockerConfigJson>(raw)
                        .map_err(|e| {
                            ImageError::Credentials(format!("{DOCKER_CONFIG_JSON_KEY}: {e}"))
                        })?
                        .auths
                }
                DOCKERCFG_TYPE => {
                    let raw = data.get(DOCKERCFG_KEY).ok_or_else(|| {
                        ImageError::Credentials(format!("{kind} secret has no {DOCKERCFG_KEY} key"))
                    })?;
                    serde_json::from_slice::<BTreeMap<String, DockerConfigEntry>>(raw)
                        .map_err(|e| ImageError::Credentials(format!("{DOCKERCFG_KEY}: {e}")))?
                }
                _ => continue,
            };
            for (key, entry) in entries {
                creds.add(&key, entry.into_auth(&key)?);
            }
        }
        Ok(creds)
    }

    fn add(&mut self, location: &str, auth: Auth) {
        self.entries.push((normalise_key(location), auth));
        // Longest keys first: `host/team` is more specific than `host` (kubelet sorts its index the same way).
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The credentials to try for `image`, a schemeless `host[:port]/path` (a normalised reference's name),
    /// most specific first.
    pub fn lookup(&self, image: &str) -> Vec<&Auth> {
        let found: Vec<&Auth> = self
            .entries
            .iter()
            .filter(|(key, _)| urls_match(key, image))
            .map(|(_, auth)| auth)
            .collect();
        if !found.is_empty() || !is_docker_hub(image) {
            return found;
        }
        self.entries
            .iter()
            .filter(|(key, _)| key == LEGACY_HUB_HOST || key == DEFAULT_DOMAIN)
            .map(|(_, auth)| auth)
            .collect()
    }
}

impl DockerConfigEntry {
    /// `auth` (base64 `user:pass`) wins over separate fields, as docker's config loader decides.
    fn into_auth(self, key: &str) -> Result<Auth, ImageError> {
        if let Some(encoded) = self.auth.filter(|a| !a.is_empty()) {
            let bad = |why: String| ImageError::Credentials(format!("auth for {key:?}: {why}"));
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| bad(format!("not base64: {e}")))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("not UTF-8".into()))?;
            let (username, password) = text
                .split_once(':')
                .ok_or_else(|| bad("not username:password".into()))?;
            return Ok(Auth {
                username: username.into(),
                password: password.into(),
            });
        }
        Ok(Auth {
            username: self.username.unwrap_or_default(),
            password: self.password.unwrap_or_default(),
        })
    }
}

/// kubelet's `BasicDockerKeyring.Add`: drop the scheme, treat `/v1/` and `/v2/` as the bare host.
fn normalise_key(location: &str) -> String {
    let rest = location
        .split_once("://")
        .map_or(location, |(_, rest)| rest);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path
        .strip_prefix("v1/")
        .or_else(|| path.strip_prefix("v2/"))
        .or(if path == "v1" || path == "v2" {
            Some("")
        } else {
            None
        })
        .unwrap_or(path)
        .trim_end_matches('/');
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// kubelet's `URLsMatch`: hosts label by label with globs, ports equal, the key's path a prefix of the image's.
fn urls_match(key: &str, image: &str) -> bool {
    let split = |s: &str| -> (String, String, String) {
        let (hostport, path) = s.split_once('/').unwrap_or((s, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p),
            _ => (hostport, ""),
        };
        (host.to_string(), port.to_string(), path.to_string())
    };
    let (khost, kport, kpath) = split(key);
    let (ihost, iport, ipath) = split(image);
    let klabels: Vec<&str> = khost.split('.').collect();
    let ilabels: Vec<&str> = ihost.split('.').collect();
    klabels.len() == ilabels.len()
        && klabels.iter().zip(&ilabels).all(|(k, i)| glob_match(k, i))
        && kport == iport
        && ipath.starts_with(&kpath)
}

/// `filepath.Match` for one host label: `*` any run, `?` one character (labels hold no separators).
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn is_docker_hub(image: &str) -> bool {
    let host = image.split('/').next().unwrap_or("");
    host == DEFAULT_DOMAIN || host == LEGACY_HUB_HOST
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &str, json: &str) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(key.to_string(), json.as_bytes().to_vec())])
    }

    fn users(c: &Credentials, image: &str) -> Vec<String> {
        c.lookup(image).iter().map(|a| a.username.clone()).collect()
    }

    #[test]
    fn parses_both_secret_types() {
        let json = secret(
            DOCKER_CONFIG_JSON_KEY,
            r#"{"auths":{"https://registry.example.com:5000/v2/":{"auth":"YWxpY2U6czNjcjN0Og=="},
                "quay.io":{"username":"bob","password":"pw"}}}"#,
        );
        let cfg = secret(
            DOCKERCFG_KEY,
            r#"{"https://index.docker.io/v1/":{"username":"hub","password":"x","email":"a@b"}}"#,
        );
        let other = secret("token", "irrelevant");
        let c = Credentials::from_secrets([
            (DOCKER_CONFIG_JSON_TYPE, &json),
            (DOCKERCFG_TYPE, &cfg),
            ("kubernetes.io/service-account-token", &other),
        ])
        .unwrap();
        let a = c.lookup("registry.example.com:5000/team/app");
        assert_eq!(a.len(), 1);
        // The password itself contains a ':' after the first one.
        assert_eq!(
            (a[0].username.as_str(), a[0].password.as_str()),
            ("alice", "s3cr3t:")
        );
        assert_eq!(users(&c, "quay.io/org/x"), ["bob"]);
        assert_eq!(users(&c, "docker.io/library/busybox"), ["hub"]);
        assert!(
            c.lookup("registry.example.com/team/app").is_empty(),
            "port must match"
        );
        assert!(!format!("{:?}", a[0]).contains("s3cr3t"));
    }

    #[test]
    fn malformed_secrets_are_errors() {
        let missing = secret("wrong-key", "{}");
        let e = Credentials::from_secrets([(DOCKER_CONFIG_JSON_TYPE, &missing)]).unwrap_err();
        assert!(e.to_string().contains(".dockerconfigjson"), "{e}");
        let bad = secret(DOCKER_CONFIG_JSON_KEY, r#"{"auths":{"h":{"auth":"%%%"}}}"#);
        let e = Credentials::from_secrets([(DOCKER_CONFIG_JSON_TYPE, &bad)]).unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
        let nocolon = secret(
            DOCKER_CONFIG_JSON_KEY,
            r#"{"auths":{"h":{"auth":"YWxpY2U="}}}"#,
        );
        let e = Credentials::from_secrets([(DOCKER_CONFIG_JSON_TYPE, &nocolon)]).unwrap_err();
        assert!(e.to_string().contains("username:password"), "{e}");
    }

    #[test]
    fn matches_like_kubelet() {
        let mut c = Credentials::default();
        for (key, user) in [
            ("*.example.com", "wild"),
            ("example.com/team", "team"),
            ("http://example.com", "host"),
            ("docker.io", "hub"),
            ("localhost:5000", "local"),
        ] {
            c.add(
                key,
                Auth {
                    username: user.into(),
                    password: String::new(),
                },
            );
        }
        assert_eq!(users(&c, "example.com/team/app"), ["team", "host"]);
        assert_eq!(users(&c, "example.com/other"), ["host"]);
        assert_eq!(users(&c, "reg.example.com/x"), ["wild"]);
        assert!(
            users(&c, "a.b.example.com/x").is_empty(),
            "a glob is one label"
        );
        assert!(users(&c, "example.org/x").is_empty());
        assert_eq!(users(&c, "docker.io/library/busybox"), ["hub"]);
        assert_eq!(users(&c, "localhost:5000/app"), ["local"]);
        assert!(users(&c, "localhost:5001/app").is_empty());

        let legacy = Credentials::basic("index.docker.io", "old", "pw");
        assert_eq!(users(&legacy, "docker.io/user/app"), ["old"]);
        assert!(users(&legacy, "quay.io/user/app").is_empty());
    }

    #[test]
    fn key_normalisation_and_globs() {
        assert_eq!(
            normalise_key("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(normalise_key("http://h:5000/v2/team/"), "h:5000/team");
        assert_eq!(normalise_key("h/v2"), "h");
        assert_eq!(normalise_key("h/path"), "h/path");
        assert!(glob_match("*", "anything"));
        assert!(glob_match("re*y", "registry"));
        assert!(glob_match("r?g", "reg"));
        assert!(!glob_match("r?g", "regg"));
        assert!(!glob_match("abc", "abd"));
    }
}
