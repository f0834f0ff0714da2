//! The registry side of a pull: the OCI distribution HTTP API for one endpoint (manifests by tag or digest,
//! blobs), the auth challenge dance (a 401 with `WWW-Authenticate: Basic` → retry with the credentials;
//! `Bearer realm=…,service=…,scope=…` → fetch a token from the realm, with the credentials if any), and
//! errors that carry what the registry said.
//!
//! Written on reqwest rather than with `oci-client`, which was tried first: it turns every 401 into
//! `UnauthorizedError { url }` and drops the body and challenge (so `kubectl describe pod` could not show
//! "authentication required"), swallows token-endpoint failures in its implicit auth, keeps the first
//! credentials it saw per registry host for the client's lifetime, and cannot present a client certificate
//! (registries.yaml `tls.cert_file`/`key_file`). The protocol subset a pull needs is small.

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::credentials::Auth;
use super::registries::Tls;
use super::store::sha256_digest;
use super::{manifest, ImageError};

/// Manifests are small JSON documents; a bigger answer is not a manifest (containerd's limit too).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two reads of a body: a stalled registry fails the pull instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a non-JSON error body makes it into the message.
const MAX_ERROR_TEXT: usize = 512;

/// A client for one endpoint (`https://host[:port]` or `http://…`) with the credentials to offer it.
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    auth: Option<Auth>,
    /// The `Authorization` value the last challenge earned, reused for the following requests.
    authorization: tokio::sync::Mutex<Option<HeaderValue>>,
}

/// A challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        error: Option<String>,
    },
}

impl RegistryClient {
    pub fn new(base: &str, tls: Option<&Tls>, auth: Option<Auth>) -> Result<Self, ImageError> {
        let host = base.split_once("://").map_or(base, |(_, h)| h).to_string();
        let tls_err = |reason: String| ImageError::Tls {
            host: host.clone(),
            reason,
        };
        // reqwest is built without a crypto provider (ring is the process-wide one) and would panic without it.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(tls_err(
                "no rustls crypto provider is installed (the process installs ring at start)"
                    .into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("orch/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = tls {
            if let Some(ca) = &tls.ca_file {
                let pem = std::fs::read(ca).map_err(|e| tls_err(format!("ca_file {ca}: {e}")))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| tls_err(format!("ca_file {ca}: {e}")))?;
                builder = builder.tls_certs_merge(certs);
            }
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => {
                    let mut pem = std::fs::read(cert)
                        .map_err(|e| tls_err(format!("cert_file {cert}: {e}")))?;
                    pem.push(b'\n');
                    pem.extend(
                        std::fs::read(key).map_err(|e| tls_err(format!("key_file {key}: {e}")))?,
                    );
                    let identity = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| tls_err(format!("client certificate {cert}: {e}")))?;
                    builder = builder.identity(identity);
                }
                (None, None) => {}
                _ => return Err(tls_err("cert_file and key_file go together".into())),
            }
            builder = builder.danger_accept_invalid_certs(tls.insecure_skip_verify);
        }
        let http = builder.build().map_err(|e| tls_err(error_chain(&e)))?;
        Ok(RegistryClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            auth,
            authorization: tokio::sync::Mutex::new(None),
        })
    }

    /// The manifest `reference` (a tag or a digest) of `repo`: its bytes and their digest. When asked by
    /// digest, the bytes must hash to it; a `Docker-Content-Digest` the registry sends must match too.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let mut response = self.get(repo, &url, Some(manifest::ACCEPT)).await?;
        if let Some(len) = response.content_length() {
            if len as usize > MAX_MANIFEST_BYTES {
                return Err(ImageError::Manifest {
                    digest: reference.into(),
                    reason: format!("{len} bytes is too large for a manifest"),
                });
            }
        }
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport("GET", &url, &e))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_MANIFEST_BYTES {
                return Err(ImageError::Manifest {
                    digest: reference.into(),
                    reason: "too large for a manifest".into(),
                });
            }
        }
        let digest = sha256_digest(&body);
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            header.filter(|h| h.starts_with("sha256:"))
        };
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(ImageError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        Ok((body, digest))
    }

    /// A blob's response, ready to stream (`Response::chunk`); the caller verifies what it reads.
    pub async fn blob(&self, repo: &str, digest: &str) -> Result<BlobStream, ImageError> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let response = self.get(repo, &url, None).await?;
        Ok(BlobStream { response, url })
    }

    async fn get(
        &self,
        repo: &str,
        url: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, ImageError> {
        let mut answered_challenge = false;
        loop {
            let mut request = self.http.get(url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(value) = self.authorization.lock().await.clone() {
                request = request.header(AUTHORIZATION, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport("GET", url, &e))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                let value = match parse_challenge(response.headers()) {
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope,
                        ..
                    }) => {
                        let scope = scope.unwrap_or_else(|| format!("repository:{repo}:pull"));
                        let token = self.token(&realm, service.as_deref(), &scope).await?;
                        Some(format!("Bearer {token}"))
                    }
                    Some(Challenge::Basic) => self.auth.as_ref().map(|a| {
                        let raw = format!("{}:{}", a.username, a.password);
                        format!(
                            "Basic {}",
                            base64::engine::general_purpose::STANDARD.encode(raw)
                        )
                    }),
                    None => None,
                };
                if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    *self.authorization.lock().await = Some(value);
                    continue;
                }
            }
            return Err(status_error("GET", url, response).await);
        }
    }

    /// The token endpoint of a Bearer challenge (Docker's token auth): GET with service and scope, basic
    /// credentials when we have them, answered by `{"token": …}` or `{"access_token": …}`.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, ImageError> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.http.get(realm).query(&query);
        if let Some(a) = &self.auth {
            request = request.basic_auth(&a.username, Some(&a.password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport("GET", realm, &e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport("GET", realm, &e))?;
        if !status.is_success() {
            return Err(ImageError::Token {
                realm: realm.into(),
                status,
                message: body_message(&body),
            });
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ImageError::Token {
                realm: realm.into(),
                status,
                message: format!("not a token response: {e}"),
            })?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ImageError::Token {
                realm: realm.into(),
                status,
                message: "the response holds no token".into(),
            })
    }
}

/// A blob being downloaded.
pub struct BlobStream {
    response: reqwest::Response,
    url: String,
}

impl BlobStream {
    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The next piece of the body, or None at its end.
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>, ImageError> {
        self.response
            .chunk()
            .await
            .map_err(|e| transport("GET", &self.url, &e))
    }
}

fn transport(method: &'static str, url: &str, e: &reqwest::Error) -> ImageError {
    ImageError::Transport {
        method,
        url: url.into(),
        message: crate::util::go_errors::dial_failure(e).unwrap_or_else(|| error_chain(e)),
    }
}

/// reqwest's own message is only "error sending request"; the cause (refused, TLS, timeout) is in its sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

async fn status_error(method: &'static str, url: &str, response: reqwest::Response) -> ImageError {
    let status = response.status();
    let challenge_error = match parse_challenge(response.headers()) {
        Some(Challenge::Bearer { error, .. }) => error,
        _ => None,
    };
    let body = response.bytes().await.unwrap_or_default();
    let mut message = body_message(&body);
    if message.is_empty() {
        message = challenge_error.unwrap_or_default();
    }
    if status == StatusCode::NOT_FOUND && url.contains("/manifests/") {
        // containerd words a missing tag as "<host>/<repo>:<tag>: not found".
        let path = url.split_once("://").map_or(url, |(_, rest)| rest);
        let reference = path
            .replacen("/v2/", "/", 1)
            .replace("/manifests/sha256:", "@sha256:")
            .replace("/manifests/", ":");
        return ImageError::ManifestUnknown { reference, message };
    }
    ImageError::Status {
        method,
        url: url.into(),
        status,
        message,
    }
}

/// The messages of a distribution error body (`{"errors":[{"code","message","detail"}]}`), a token
/// server's `{"details": …}`, or the start of whatever text it is.
pub fn body_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
        details: Option<String>,
        error: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
        let messages: Vec<String> = env
            .errors
            .into_iter()
            .filter_map(|e| e.message.filter(|m| !m.is_empty()).or(e.code))
            .collect();
        if !messages.is_empty() {
            return messages.join("; ");
        }
        if let Some(m) = env.details.or(env.error) {
            return m;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The first challenge of a `WWW-Authenticate` header this client can answer.
pub fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_challenge_value)
}

fn parse_challenge_value(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
        error: get("error"),
    })
}

/// `key="quoted, value",key2=token` (RFC 7235 auth-params, with backslash escapes in quoted strings).
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_string();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge_value(r#"Basic realm="orch-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge_value(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push",error="insufficient_scope""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: Some("insufficient_scope".into()),
            })
        );
        assert_eq!(
            parse_challenge_value(r#"bearer realm=http://x/t, service="a\"b""#),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: Some("a\"b".into()),
                scope: None,
                error: None,
            })
        );
        assert_eq!(parse_challenge_value("Bearer service=x"), None, "no realm");
        assert_eq!(parse_challenge_value("Negotiate abc"), None);
    }

    #[test]
    fn error_bodies_become_messages() {
        // What Debian's docker-registry (distribution 2.8) answers a wrong htpasswd password.
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"busybox","Action":"pull"}]}]}"#;
        assert_eq!(body_message(body), "authentication required");
        assert_eq!(
            body_message(br#"{"errors":[{"code":"DENIED"},{"code":"X","message":"m"}]}"#),
            "DENIED; m"
        );
        assert_eq!(
            body_message(br#"{"details":"incorrect username or password"}"#),
            "incorrect username or password"
        );
        assert_eq!(body_message(b"  plain text\n"), "plain text");
        assert!(body_message("x".repeat(2000).as_bytes()).ends_with('…'));
        let e = ImageError::Status {
            method: "GET",
            url: "http://127.0.0.1:5000/v2/busybox/manifests/latest".into(),
            status: StatusCode::UNAUTHORIZED,
            message: "authentication required".into(),
        };
        assert_eq!(
            e.to_string(),
            "unexpected status from GET request to http://127.0.0.1:5000/v2/busybox/manifests/latest: 401 Unauthorized: authentication required"
        );
    }
}
