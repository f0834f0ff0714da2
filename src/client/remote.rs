//! The client's network transport: HTTP/2 over rustls to the API server, one multiplexed connection that is
//! re-dialled when it breaks. Credentials come from a kubeconfig, or from a k3s-style join token whose CA hash
//! pins the certificate fetched from the unauthenticated `/cacerts`.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{ClientError, ResponseBody};

#[derive(Debug, Clone)]
pub enum RemoteAuth {
    Bearer(String),
    ClientCertificate { cert_pem: String, key_pem: String },
}

#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `https://host:port`
    pub server: String,
    pub ca_pem: String,
    pub auth: RemoteAuth,
}

impl RemoteConfig {
    /// The current context of a kubeconfig with inline data (what `orch server` writes).
    pub fn from_kubeconfig(text: &str) -> Result<Self, ClientError> {
        let config: Value = serde_saphyr::from_str(text)
            .map_err(|e| ClientError::Config(format!("kubeconfig: {e}")))?;
        let current = config["current-context"].as_str().unwrap_or_default();
        let named = |list: &str, name: &str, field: &str| -> Value {
            config[list]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["name"] == name)
                .map(|e| e[field].clone())
                .unwrap_or(Value::Null)
        };
        let context = named("contexts", current, "context");
        let cluster = named(
            "clusters",
            context["cluster"].as_str().unwrap_or(""),
            "cluster",
        );
        let user = named("users", context["user"].as_str().unwrap_or(""), "user");
        let decode = |v: &Value, field: &str| -> Result<String, ClientError> {
            let data = v[field]
                .as_str()
                .ok_or_else(|| ClientError::Config(format!("kubeconfig: {field} missing")))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| ClientError::Config(format!("kubeconfig: {field}: {e}")))?;
            String::from_utf8(bytes)
                .map_err(|e| ClientError::Config(format!("kubeconfig: {field}: {e}")))
        };
        let auth = match user["token"].as_str() {
            Some(token) => RemoteAuth::Bearer(token.to_string()),
            None => RemoteAuth::ClientCertificate {
                cert_pem: decode(&user, "client-certificate-data")?,
                key_pem: decode(&user, "client-key-data")?,
            },
        };
        Ok(RemoteConfig {
            server: cluster["server"]
                .as_str()
                .ok_or_else(|| ClientError::Config("kubeconfig: cluster server missing".into()))?
                .to_string(),
            ca_pem: decode(&cluster, "certificate-authority-data")?,
            auth,
        })
    }

    /// Joins with a k3s token `K10<sha256 of CA PEM>::<user>:<secret>`: fetches the CA from `/cacerts`
    /// without trusting it, accepts it only when its hash matches the token, and authenticates with the
    /// secret as a bearer token.
    pub async fn from_token(server: &str, token: &str) -> Result<Self, ClientError> {
        let (hash, credentials) = token
            .trim()
            .strip_prefix("K10")
            .and_then(|rest| rest.split_once("::"))
            .ok_or_else(|| {
                ClientError::Config("token must have the form K10<ca hash>::<user>:<secret>".into())
            })?;
        let secret = credentials
            .split_once(':')
            .map(|(_, s)| s)
            .unwrap_or(credentials);
        let unverified = Remote::dial_unverified(server)?;
        let req = Request::get("/cacerts")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let resp = unverified.send(req).await?;
        let ca = resp.into_body().collect().await?.to_bytes();
        let actual = hex::encode(Sha256::digest(&ca));
        if actual != hash {
            return Err(ClientError::Config(format!(
                "the server's CA (sha256 {actual}) does not match the token's hash {hash}"
            )));
        }
        Ok(RemoteConfig {
            server: server.trim_end_matches('/').to_string(),
            ca_pem: String::from_utf8_lossy(&ca).into_owned(),
            auth: RemoteAuth::Bearer(secret.to_string()),
        })
    }
}

pub(super) struct Remote {
    connector: tokio_rustls::TlsConnector,
    host: String,
    port: u16,
    bearer: Option<String>,
    connection: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

fn split_server(server: &str) -> Result<(String, u16), ClientError> {
    let uri: Uri = server
        .parse()
        .map_err(|e| ClientError::Config(format!("server URL {server:?}: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(ClientError::Config(format!(
            "server URL {server:?} must start with https://"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| ClientError::Config(format!("server URL {server:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(443)))
}

impl Remote {
    pub(super) fn new(config: RemoteConfig) -> Result<Self, ClientError> {
        let tls_err = |e: &dyn std::fmt::Display| ClientError::Config(format!("TLS: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(config.ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|e| tls_err(&e))?)
                .map_err(|e| tls_err(&e))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&e))?
        .with_root_certificates(roots);
        let (mut tls, bearer) = match config.auth {
            RemoteAuth::Bearer(token) => (builder.with_no_client_auth(), Some(token)),
            RemoteAuth::ClientCertificate { cert_pem, key_pem } => {
                let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| tls_err(&e))?;
                let key =
                    PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls_err(&e))?;
                (
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| tls_err(&e))?,
                    None,
                )
            }
        };
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let (host, port) = split_server(&config.server)?;
        Ok(Remote {
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            host,
            port,
            bearer,
            connection: Mutex::new(None),
        })
    }

    /// A connection that accepts any server certificate: only for fetching `/cacerts`, whose content the
    /// caller checks against the token's hash.
    fn dial_unverified(server: &str) -> Result<Remote, ClientError> {
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let (host, port) = split_server(server)?;
        Ok(Remote {
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            host,
            port,
            bearer: None,
            connection: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let transport = |e: &dyn std::fmt::Display| {
            ClientError::Transport(format!("{}:{}: {e}", self.host, self.port))
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| transport(&e))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.host.clone()).map_err(|e| transport(&e))?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| transport(&e))?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "API server connection ended");
            }
        });
        Ok(sender)
    }

    pub(super) async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let uri: Uri = format!(
            "https://{}:{}{}",
            self.host,
            self.port,
            req.uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        )
        .parse()
        .map_err(|e| ClientError::Config(format!("request URI: {e}")))?;
        *req.uri_mut() = uri;
        if let Some(token) = &self.bearer {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| ClientError::Config(e.to_string()))?;
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        let mut sender = {
            let mut slot = self.connection.lock().await;
            match slot.as_ref() {
                Some(s) if !s.is_closed() => s.clone(),
                _ => {
                    let s = self.connect().await?;
                    *slot = Some(s.clone());
                    s
                }
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(resp.map(|b| {
            b.map_err(|e| ClientError::Transport(e.to_string()))
                .boxed_unsync()
        }))
    }
}

#[derive(Debug)]
struct AcceptAnyCertificate;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
