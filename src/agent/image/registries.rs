//! `/etc/orch/registries.yaml` in k3s' format: mirrors (endpoints and repository rewrites per registry, `*` for
//! every registry without its own entry) and per-host configs (auth, TLS). Decides, for a registry, the
//! ordered endpoints a pull tries: the mirrors first, then the registry itself.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::reference::DEFAULT_DOMAIN;
use super::ImageError;

/// Docker Hub's API is not served at docker.io itself.
const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io";

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regex → replacement applied to the repository path when pulling through this registry's mirrors.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub auth: Option<Auth>,
    pub tls: Option<Tls>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`, as in docker's config.json.
    pub auth: Option<String>,
    pub identitytoken: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try a pull: the base URL (scheme and host, `http://` allowed), the settings for that host,
/// and whether it is a mirror, whose rewrites apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint<'a> {
    pub url: String,
    pub config: Option<&'a HostConfig>,
    pub rewrite: Option<&'a BTreeMap<String, String>>,
}

impl Registries {
    /// A missing file means no mirrors and no credentials, as k3s.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).map_err(|reason| ImageError::RegistriesConfig {
                path: path.into(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ImageError::Io {
                context: "reading",
                path: path.into(),
                source,
            }),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let parsed: Self = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        for (registry, mirror) in &parsed.mirrors {
            for e in &mirror.endpoint {
                let url = normalise_endpoint(e);
                if host_of(&url).is_empty() {
                    return Err(format!("mirror {registry:?}: endpoint {e:?} has no host"));
                }
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(format!(
                        "mirror {registry:?}: endpoint {e:?} is neither http nor https"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    /// The endpoints to try for `registry` (a reference's domain), in order: its mirrors (or the `*`
    /// mirrors when it has no entry), then the registry itself unless a mirror already is it.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint<'_>> {
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let mut out: Vec<Endpoint<'_>> = Vec::new();
        for e in mirror.map(|m| m.endpoint.as_slice()).unwrap_or_default() {
            let url = normalise_endpoint(e);
            if out.iter().any(|o| o.url == url) {
                continue;
            }
            let config = self.configs.get(host_of(&url));
            out.push(Endpoint {
                url,
                config,
                rewrite: mirror.map(|m| &m.rewrite).filter(|r| !r.is_empty()),
            });
        }
        let default = if registry == DEFAULT_DOMAIN {
            DOCKER_HUB_ENDPOINT.to_string()
        } else {
            format!("https://{registry}")
        };
        if !out.iter().any(|o| o.url == default) {
            let config = self
                .configs
                .get(host_of(&default))
                .or_else(|| self.configs.get(registry));
            out.push(Endpoint {
                url: default,
                config,
                rewrite: None,
            });
        }
        out
    }
}

/// k3s accepts endpoints with or without scheme and with or without the `/v2` API suffix; pulls add `/v2`.
fn normalise_endpoint(e: &str) -> String {
    let (scheme, rest) = e.trim().split_once("://").unwrap_or(("https", e.trim()));
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix("/v2").unwrap_or(rest);
    format!("{scheme}://{rest}")
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
      - "http://10.0.0.5:5000/v2"
    rewrite:
      "^rancher/(.*)": "mirror/rancher/$1"
  "*":
    endpoint: ["plain.example.com"]
configs:
  "mirror.example.com:5000":
    auth:
      username: alice
      password: secret
    tls:
      ca_file: /etc/ssl/mirror-ca.pem
      cert_file: /etc/ssl/client.pem
      key_file: /etc/ssl/client.key
  "10.0.0.5:5000":
    tls:
      insecure_skip_verify: true
  "registry.local:5000":
    auth:
      auth: YWxpY2U6c2VjcmV0
      identitytoken: tok
"#;

    #[test]
    fn parses_k3s_format() {
        let r = Registries::parse(YAML).unwrap();
        let m = &r.mirrors["docker.io"];
        assert_eq!(m.endpoint.len(), 2);
        assert_eq!(m.rewrite["^rancher/(.*)"], "mirror/rancher/$1");
        let c = &r.configs["mirror.example.com:5000"];
        assert_eq!(c.auth.as_ref().unwrap().username.as_deref(), Some("alice"));
        assert_eq!(
            c.tls.as_ref().unwrap().ca_file.as_deref(),
            Some("/etc/ssl/mirror-ca.pem")
        );
        assert!(
            r.configs["10.0.0.5:5000"]
                .tls
                .as_ref()
                .unwrap()
                .insecure_skip_verify
        );
        assert_eq!(
            r.configs["registry.local:5000"]
                .auth
                .as_ref()
                .unwrap()
                .identitytoken
                .as_deref(),
            Some("tok")
        );
        assert_eq!(Registries::parse("").unwrap(), Registries::default());
        let e = Registries::parse("mirrors:\n  docker.io:\n    endpoints: [x]\n").unwrap_err();
        assert!(
            e.contains("endpoints"),
            "a misspelt key is an error, not silently ignored: {e}"
        );
        assert!(
            Registries::parse("mirrors:\n  a:\n    endpoint: ['https://']\n")
                .unwrap_err()
                .contains("no host")
        );
    }

    #[test]
    fn endpoints_mirrors_first_then_default() {
        let r = Registries::parse(YAML).unwrap();
        let hub = r.endpoints("docker.io");
        let urls: Vec<_> = hub.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://mirror.example.com:5000",
                "http://10.0.0.5:5000",
                "https://registry-1.docker.io"
            ]
        );
        assert!(hub[0].config.unwrap().auth.is_some());
        assert!(
            hub[1]
                .config
                .unwrap()
                .tls
                .as_ref()
                .unwrap()
                .insecure_skip_verify
        );
        assert!(
            hub[0].rewrite.is_some() && hub[2].rewrite.is_none(),
            "rewrites apply to mirrors only"
        );
        assert!(hub[2].config.is_none());

        // No entry of its own: the `*` mirrors, then the registry; its config is found by host.
        let local = r.endpoints("registry.local:5000");
        let urls: Vec<_> = local.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(
            urls,
            ["https://plain.example.com", "https://registry.local:5000"]
        );
        assert!(local[1].config.unwrap().auth.is_some());

        let empty = Registries::default();
        let none = empty.endpoints("quay.io");
        assert_eq!(
            none,
            vec![Endpoint {
                url: "https://quay.io".into(),
                config: None,
                rewrite: None
            }]
        );
    }

    #[test]
    fn load_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Registries::load(&dir.path().join("nope.yaml")).unwrap(),
            Registries::default()
        );
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "mirrors: [1, 2]").unwrap();
        let e = Registries::load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.yaml"), "{e}");
    }
}
