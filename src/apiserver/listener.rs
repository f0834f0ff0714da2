//! The API server's HTTPS transport: the caller's verified client certificate becomes its identity.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{auth, ApiServer};

/// Accepts connections until `shutdown` turns true.
pub async fn serve_tls(
    server: Arc<ApiServer>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let handle = move |req, certificate: Option<Arc<rustls_pki_types::CertificateDer<'static>>>| {
        let server = server.clone();
        async move {
            let user = certificate.and_then(|cert| auth::user_from_certificate(cert.as_ref()));
            server.handle(req, user).await
        }
    };
    crate::util::https::serve(listener, tls, handle, shutdown).await
}
