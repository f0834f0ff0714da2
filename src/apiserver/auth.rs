//! Who is calling: a client certificate signed by the cluster CA (CN = user, O = groups), or a bearer
//! token. Every authenticated user is allowed everything until RBAC authorization lands.

use http::HeaderMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn admin() -> Self {
        User {
            name: "system:admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
}

pub struct Authenticator {
    tokens: Vec<(String, User)>,
}

impl Authenticator {
    pub fn new(tokens: Vec<(String, User)>) -> Self {
        Authenticator { tokens }
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Option<User> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        self.tokens
            .iter()
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, u)| u.clone())
    }
}

/// The user a verified client certificate names.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push("system:authenticated".into());
    Some(User { name, groups })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_authenticate_exactly() {
        let auth = Authenticator::new(vec![("secret".into(), User::admin())]);
        let mut h = HeaderMap::new();
        assert_eq!(auth.authenticate(&h), None);
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer secret".parse().unwrap(),
        );
        assert_eq!(auth.authenticate(&h), Some(User::admin()));
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer secreT".parse().unwrap(),
        );
        assert_eq!(auth.authenticate(&h), None);
    }
}
