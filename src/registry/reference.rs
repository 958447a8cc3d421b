//! Image references: `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`.
//!
//! The registry is always written out: there is no default registry (a
//! reference without a host is an error), so a publication never lands on a
//! public registry by accident. Repository and tag grammar are the
//! distribution-spec's.

use std::fmt;

use super::RegistryError;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host` or `host:port`.
    pub registry: String,
    /// Repository path (`team/image`).
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// `sha256:<hex>`, if given.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text`; errors say which part is wrong.
    pub fn parse(text: &str) -> Result<Reference, RegistryError> {
        let bad = |reason: &str| RegistryError::Reference {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|e| bad(&e))?;
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        let Some((registry, path)) = rest.split_once('/') else {
            return Err(bad(
                "no registry host: write HOST[:PORT]/REPOSITORY[:TAG] (the registry is configuration, never implied)",
            ));
        };
        check_host(registry).map_err(|e| bad(&e))?;
        // A `:` after the last `/` starts the tag.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_string())),
            _ => (path, None),
        };
        check_repository(repository).map_err(|e| bad(&e))?;
        if let Some(t) = &tag {
            check_tag(t).map_err(|e| bad(&e))?;
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The same repository with another tag (no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The host name without the port.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }

    /// The digest if given, else the tag, else `latest`: what a manifest
    /// request names.
    pub fn target(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The host part of `host[:port]` (IPv6 literals in brackets kept whole).
pub fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |i| &registry[..=i]);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Whether `host` is a loopback address (`--insecure` is only allowed there).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_host(registry: &str) -> Result<(), String> {
    if registry.is_empty() || registry.len() > 255 {
        return Err("empty or overlong registry host".into());
    }
    let host = host_of(registry);
    let port = &registry[host.len()..];
    if let Some(p) = port.strip_prefix(':') {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("bad port `{p}`"));
        }
    } else if !port.is_empty() {
        return Err(format!("bad registry `{registry}`"));
    }
    let ok = if host.starts_with('[') {
        host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    // Docker's rule: the first component is a registry only when it has a
    // `.` or `:` or is `localhost`; anything else would be a Hub user name.
    if !ok || !(registry.contains('.') || registry.contains(':') || host == "localhost") {
        return Err(format!(
            "`{registry}` is not a registry host (needs a `.`, a port or `localhost`)"
        ));
    }
    Ok(())
}

fn check_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() || repo.len() > 255 {
        return Err("empty or overlong repository".into());
    }
    for comp in repo.split('/') {
        // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !b.is_empty()
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter()
                .all(|&c| alnum(c) || matches!(c, b'.' | b'_' | b'-'))
            && !comp.contains("..")
            && !comp.contains("___")
            && !comp.contains("._")
            && !comp.contains("_.");
        if !ok {
            return Err(format!(
                "bad repository component `{comp}` (lower-case letters, digits, `.`, `_`, `-`)"
            ));
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad tag `{tag}` (letters, digits, `.`, `_`, `-`, at most 128)"
        ))
    }
}

/// Checks `sha256:<64 lower-case hex>` (the only algorithm used here).
pub fn check_digest(d: &str) -> Result<(), String> {
    match d.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(())
        }
        _ => Err(format!("bad digest `{d}` (sha256:<64 lower-case hex>)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = Reference::parse("127.0.0.1:5000/team/sonic-p4:1.0").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/sonic-p4");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.host(), "127.0.0.1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost/x@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.target(), d);
        assert_eq!(r.to_string(), format!("localhost/x@{d}"));
        let r = Reference::parse("[::1]:5000/x").unwrap();
        assert_eq!(r.host(), "[::1]");
        assert!(is_loopback(r.host()));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "sonic-p4",
            "library/sonic-p4:1",
            "host.example/Upper",
            "host.example/x:",
            "host.example/x:-bad",
            "host.example:0/x",
            "host.example/x@sha256:abc",
            "host.example/a..b",
            "host example/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("registry.example"));
    }
}
