//! The cluster's certificates and token under `<data-dir>/server/tls` and `<data-dir>/server/token`: a CA
//! made on first start, a serving certificate (re-issued when its names change or it nears expiry), an
//! admin client certificate for the kubeconfig and the client certificate the API server dials kubelets
//! with. Restarts reuse what exists. Joining agents get their kubelet serving certificates from here.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};

use crate::api::kubelet::ServingCertificate;
use crate::apiserver::kubelet::KubeletCredentials;
use crate::util::certificate::is_current;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}: not a valid PEM certificate")]
    BadCertificate(PathBuf),
    #[error("invalid token in {0}: expected K10<ca hash>::<user>:<secret> or a plain secret")]
    BadToken(PathBuf),
}

const LEAF_DAYS: i64 = 365;
const CA_DAYS: i64 = 3650;

pub struct Pki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// What the API server presents to kubelet endpoints (`system:kube-apiserver`, group system:masters).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
    ca_key_pem: String,
    /// The full token, `K10<sha256 of CA PEM>::server:<secret>`.
    pub token: String,
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes through a temporary file and rename, so a crash never leaves half a key.
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The calendar date `days` from today, as rcgen takes it.
fn date_in_days(days: i64) -> (i32, u8, u8) {
    let at = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(days))
        .expect("date in range");
    (i32::from(at.year()), at.month() as u8, at.day() as u8)
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

fn san(name: &str) -> Result<SanType, PkiError> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.to_string().try_into()?),
    })
}

/// A client certificate `<tls>/<file>.crt` for `user` in group system:masters, re-issued near expiry.
fn client_certificate(
    tls: &Path,
    file: &str,
    user: &str,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), PkiError> {
    let (cert_path, key_path) = (
        tls.join(format!("{file}.crt")),
        tls.join(format!("{file}.key")),
    );
    match (read(&cert_path)?, read(&key_path)?) {
        (Some(c), Some(k)) if is_current(Some(&c), &[]) => Ok((c, k)),
        _ => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = dn(user, Some("system:masters"));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let (y, m, d) = date_in_days(LEAF_DAYS);
            params.not_after = rcgen::date_time_ymd(y, m, d);
            let cert = params.signed_by(&key, issuer)?;
            write(&key_path, &key.serialize_pem(), 0o600)?;
            write(&cert_path, &cert.pem(), 0o644)?;
            Ok((cert.pem(), key.serialize_pem()))
        }
    }
}

impl Pki {
    /// Loads or creates everything under `server_dir` (`<data-dir>/server`). `sans` are the serving
    /// certificate's names; `token` overrides the generated secret.
    pub fn ensure(
        server_dir: &Path,
        sans: &[String],
        token: Option<&str>,
    ) -> Result<Pki, PkiError> {
        let tls = server_dir.join("tls");
        let (ca_cert_path, ca_key_path) = (tls.join("server-ca.crt"), tls.join("server-ca.key"));
        let (ca_cert_pem, ca_key_pem) = match (read(&ca_cert_path)?, read(&ca_key_path)?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.distinguished_name = dn(
                    &format!("orch-server-ca@{}", jiff::Timestamp::now().as_second()),
                    None,
                );
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
                let (y, m, d) = date_in_days(CA_DAYS);
                params.not_after = rcgen::date_time_ymd(y, m, d);
                let cert = params.self_signed(&key)?;
                write(&ca_key_path, &key.serialize_pem(), 0o600)?;
                write(&ca_cert_path, &cert.pem(), 0o644)?;
                (cert.pem(), key.serialize_pem())
            }
        };
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

        let (serving_cert_path, serving_key_path) =
            (tls.join("serving.crt"), tls.join("serving.key"));
        let existing = read(&serving_cert_path)?;
        let (serving_cert_pem, serving_key_pem) = match (existing, read(&serving_key_path)?) {
            (Some(c), Some(k)) if is_current(Some(&c), sans) => (c, k),
            _ => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::new(Vec::<String>::new())?;
                params.subject_alt_names = sans.iter().map(|s| san(s)).collect::<Result<_, _>>()?;
                params.distinguished_name = dn("orch", Some("orch"));
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                let (y, m, d) = date_in_days(LEAF_DAYS);
                params.not_after = rcgen::date_time_ymd(y, m, d);
                let cert = params.signed_by(&key, &issuer)?;
                write(&serving_key_path, &key.serialize_pem(), 0o600)?;
                write(&serving_cert_path, &cert.pem(), 0o644)?;
                (cert.pem(), key.serialize_pem())
            }
        };

        let (admin_cert_pem, admin_key_pem) =
            client_certificate(&tls, "client-admin", "system:admin", &issuer)?;
        let (kubelet_client_cert_pem, kubelet_client_key_pem) = client_certificate(
            &tls,
            "client-kube-apiserver",
            "system:kube-apiserver",
            &issuer,
        )?;

        let token_path = server_dir.join("token");
        let ca_hash = hex::encode(Sha256::digest(ca_cert_pem.as_bytes()));
        let secret = match token {
            Some(t) => secret_of(t)
                .ok_or_else(|| PkiError::BadToken(token_path.clone()))?
                .to_string(),
            None => match read(&token_path)? {
                Some(existing) => secret_of(existing.trim())
                    .ok_or_else(|| PkiError::BadToken(token_path.clone()))?
                    .to_string(),
                None => hex::encode(rand::random::<[u8; 16]>()),
            },
        };
        let full = format!("K10{ca_hash}::server:{secret}");
        if read(&token_path)?.map(|t| t.trim().to_string()) != Some(full.clone()) {
            write(&token_path, &format!("{full}\n"), 0o600)?;
        }
        Ok(Pki {
            ca_cert_pem,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
            kubelet_client_cert_pem,
            kubelet_client_key_pem,
            ca_key_pem,
            token: full,
        })
    }

    /// What the API server needs for joined nodes' kubelet endpoints.
    pub fn kubelet_credentials(&self) -> Result<KubeletCa, String> {
        Ok(KubeletCa {
            ca_cert_pem: self.ca_cert_pem.clone(),
            ca_key_pem: self.ca_key_pem.clone(),
            client: std::sync::Arc::new(self.kubelet_client_tls()?),
        })
    }

    /// TLS for dialing kubelet endpoints: only the cluster CA is trusted, and the API server presents its
    /// kubelet client certificate.
    fn kubelet_client_tls(&self) -> Result<rustls::ClientConfig, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let roots = self.ca_roots()?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.kubelet_client_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("kubelet client certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(self.kubelet_client_key_pem.as_bytes())
            .map_err(|e| format!("kubelet client key: {e}"))?;
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("kubelet client TLS: {e}"))
    }

    fn ca_roots(&self) -> Result<rustls::RootCertStore, String> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls_pki_types::CertificateDer::pem_slice_iter(self.ca_cert_pem.as_bytes()) {
            roots
                .add(ca.map_err(|e| format!("CA certificate: {e}"))?)
                .map_err(|e| format!("CA certificate: {e}"))?;
        }
        Ok(roots)
    }

    /// The secret part of the token, which also authenticates as a bearer token.
    pub fn token_secret(&self) -> &str {
        secret_of(&self.token).unwrap_or(&self.token)
    }

    pub fn tls_config(&self) -> Result<rustls::ServerConfig, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.serving_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("serving certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(self.serving_key_pem.as_bytes())
            .map_err(|e| format!("serving key: {e}"))?;
        let roots = self.ca_roots()?;
        let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| format!("TLS configuration: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The cluster CA as the API server uses it for kubelet endpoints.
pub struct KubeletCa {
    ca_cert_pem: String,
    ca_key_pem: String,
    client: std::sync::Arc<rustls::ClientConfig>,
}

impl KubeletCa {
    /// A serving certificate for a joined node's kubelet endpoint: its name and addresses as SANs,
    /// `system:node:<name>` in group system:nodes, as Kubernetes names kubelet serving certificates. Not
    /// stored: the agent asks again on every start.
    fn issue_serving(
        &self,
        node: &str,
        addresses: &[IpAddr],
    ) -> Result<(String, String), PkiError> {
        let issuer =
            Issuer::from_ca_cert_pem(&self.ca_cert_pem, KeyPair::from_pem(&self.ca_key_pem)?)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = std::iter::once(san(node))
            .chain(addresses.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_, _>>()?;
        params.distinguished_name = dn(&format!("system:node:{node}"), Some("system:nodes"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (y, m, d) = date_in_days(LEAF_DAYS);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

impl KubeletCredentials for KubeletCa {
    fn issue_serving_certificate(
        &self,
        node: &str,
        addresses: &[IpAddr],
    ) -> Result<ServingCertificate, String> {
        let (certificate, key) = self
            .issue_serving(node, addresses)
            .map_err(|e| e.to_string())?;
        Ok(ServingCertificate { certificate, key })
    }

    fn client_config(&self) -> std::sync::Arc<rustls::ClientConfig> {
        self.client.clone()
    }
}

/// The secret of a token in any of the forms k3s accepts: full `K10<hash>::<user>:<secret>`, or plain.
pub fn secret_of(token: &str) -> Option<&str> {
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    match token
        .strip_prefix("K10")
        .and_then(|rest| rest.split_once("::"))
    {
        Some((_, cred)) => cred
            .split_once(':')
            .map(|(_, secret)| secret)
            .filter(|s| !s.is_empty()),
        None => Some(token),
    }
}

/// The CA hash a full token pins (`K10<hash>::…`), for joining agents.
pub fn ca_hash_of(token: &str) -> Option<&str> {
    token
        .trim()
        .strip_prefix("K10")
        .and_then(|rest| rest.split_once("::"))
        .map(|(hash, _)| hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::certificate::inspect;

    #[test]
    fn token_forms() {
        assert_eq!(secret_of("K10abc::server:s3cret"), Some("s3cret"));
        assert_eq!(secret_of("plain"), Some("plain"));
        assert_eq!(secret_of("K10abc::server:"), None);
        assert_eq!(ca_hash_of("K10abc::server:x"), Some("abc"));
    }

    #[test]
    fn ensure_creates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = Pki::ensure(dir.path(), &sans, None).unwrap();
        assert!(first.token.starts_with("K10"));
        let again = Pki::ensure(dir.path(), &sans, None).unwrap();
        assert_eq!(first.ca_cert_pem, again.ca_cert_pem);
        assert_eq!(first.serving_cert_pem, again.serving_cert_pem);
        assert_eq!(first.token, again.token);
        let more = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "edge.example".to_string(),
        ];
        let reissued = Pki::ensure(dir.path(), &more, None).unwrap();
        assert_eq!(reissued.ca_cert_pem, first.ca_cert_pem);
        assert_ne!(reissued.serving_cert_pem, first.serving_cert_pem);
        assert!(inspect(&reissued.serving_cert_pem)
            .unwrap()
            .1
            .contains(&"edge.example".to_string()));
        assert!(reissued.tls_config().is_ok());
    }
}
