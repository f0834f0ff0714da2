//! OS and network failures worded as Go's `syscall`, `net` and `net/http` packages word them. Kubelet's probe events and
//! containerd's pull errors carry these texts ("dial tcp 10.42.0.5:8080: connect: connection refused"), and
//! users search for them verbatim; Rust's ("Connection refused (os error 111)", "error sending request
//! for url") say the same in words nobody has seen in a cluster.

use std::error::Error;
use std::io;

/// An OS error as Go's `syscall.Errno` prints it: strerror's text with a lower-case first letter
/// ("connection refused"), not Rust's "Connection refused (os error 111)".
pub fn errno_text(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    let description = nix::errno::Errno::from_raw(code).desc();
    let mut chars = description.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => e.to_string(),
    }
}

/// A TCP connect to `address` that the OS refused (or found no route for), as Go's dialer reports it.
pub fn dial_error(address: &str, e: &io::Error) -> String {
    format!("dial tcp {address}: connect: {}", errno_text(e))
}

/// Go's dial error for a request whose connect the OS failed, when the URL names an IP address: Go
/// prints the address it dialled, which for a host name is one this side never learns. None otherwise
/// (a TLS handshake fails in the connect phase too, with no OS error).
pub fn dial_failure(e: &reqwest::Error) -> Option<String> {
    if !e.is_connect() {
        return None;
    }
    let os_error = causes(e)
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .find(|io| io.raw_os_error().is_some())?;
    let url = e.url()?;
    let port = url.port_or_known_default()?;
    let ip: std::net::IpAddr = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let address = std::net::SocketAddr::new(ip, port);
    Some(dial_error(&address.to_string(), os_error))
}

/// What Go's `http.Client` with a timeout says after `Get "URL": ` for a request that got no answer:
/// the dial error for a refused or unreachable connect, the client timeout, `EOF` for a connection
/// closed before a response, else the innermost cause.
pub fn request_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into();
    }
    if let Some(dial) = dial_failure(e) {
        return dial;
    }
    if causes(e)
        .filter_map(|c| c.downcast_ref::<hyper::Error>())
        .any(hyper::Error::is_incomplete_message)
    {
        return "EOF".into();
    }
    if let Some(io_error) = causes(e).find_map(|c| c.downcast_ref::<io::Error>()) {
        return errno_text(io_error);
    }
    causes(e)
        .last()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// `e` and its sources, outermost first.
fn causes<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(e), |e| (*e).source())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let refused = io::Error::from_raw_os_error(nix::libc::ECONNREFUSED);
        assert_eq!(errno_text(&refused), "connection refused");
        assert_eq!(
            dial_error("10.42.0.5:80", &refused),
            "dial tcp 10.42.0.5:80: connect: connection refused"
        );
        let unreachable = io::Error::from_raw_os_error(nix::libc::EHOSTUNREACH);
        assert_eq!(errno_text(&unreachable), "no route to host");
    }

    async fn get(url: &str, timeout: Duration) -> reqwest::Error {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .expect_err("the request fails")
    }

    #[tokio::test]
    async fn a_refused_request_names_the_dial() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let e = get(&format!("http://{address}/"), Duration::from_secs(5)).await;
        assert_eq!(
            request_error(&e),
            format!("dial tcp {address}: connect: connection refused")
        );
        // By name, Go would print the address it resolved, which reqwest does not tell.
        let e = get(
            &format!("http://localhost:{}/", address.port()),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(dial_failure(&e), None);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_the_client_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let e = get(&format!("http://{address}/"), Duration::from_millis(200)).await;
        assert_eq!(
            request_error(&e),
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_connection_closed_without_an_answer_is_eof() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut socket, _) = listener.accept().await.unwrap();
            // The whole request, so that closing sends a FIN rather than a reset for unread bytes.
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut chunk = [0u8; 1024];
                let n = socket.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client closed before its request ended");
                request.extend_from_slice(&chunk[..n]);
            }
        });
        let e = get(&format!("http://{address}/"), Duration::from_secs(5)).await;
        assert_eq!(request_error(&e), "EOF");
        server.await.unwrap();
    }
}
