//! What orch needs to know of a certificate it issued or was issued: how many days it stays valid and
//! which DNS names and IP addresses it carries, so that it is renewed before it expires or when the names
//! it must carry change (k3s renews 90 days ahead).

use std::net::IpAddr;

/// Renew a leaf certificate when fewer days than this remain.
pub const RENEW_BEFORE_DAYS: i64 = 90;

/// Days until the PEM certificate expires, and its DNS and IP names; None if it cannot be read.
pub fn inspect(pem: &str) -> Option<(i64, Vec<String>)> {
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).ok()?;
    let der: rustls_pki_types::CertificateDer<'_> = der;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let expires = cert.validity().not_after.timestamp();
    let days = (expires - jiff::Timestamp::now().as_second()) / 86_400;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.push(IpAddr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                    16 => names.push(IpAddr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string()),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Some((days, names))
}

/// Whether the certificate is far enough from expiry and carries every one of `wanted`.
pub fn is_current(pem: Option<&str>, wanted: &[String]) -> bool {
    let Some((days, names)) = pem.and_then(inspect) else {
        return false;
    };
    days > RENEW_BEFORE_DAYS && wanted.iter().all(|w| names.contains(w))
}
