//! Registry credentials and `WWW-Authenticate` challenges.
//!
//! Credentials come, in this order, from `IMGBUILD_REGISTRY_USERNAME` /
//! `IMGBUILD_REGISTRY_PASSWORD`, the containers auth file
//! (`$REGISTRY_AUTH_FILE`, as podman and skopeo use it) and the Docker config
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`). Both files
//! have the same `{"auths": {"HOST[:PORT]": {"auth": base64("user:pass")}}}`
//! shape. Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use super::RegistryError;

/// A user name and password (or token used as a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Where they were found, for error messages (never the secret).
    pub origin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.username, self.origin)
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Largest auth file read: they hold a few entries.
const MAX_AUTH_FILE: u64 = 1 << 20;

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// Finds credentials for `registry` (`host[:port]`) from the environment
/// and the auth files; `None` means anonymous.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(username), Some(password)) = (
        env("IMGBUILD_REGISTRY_USERNAME"),
        env("IMGBUILD_REGISTRY_PASSWORD"),
    ) {
        return Ok(Some(Credentials {
            username,
            password,
            origin: "IMGBUILD_REGISTRY_USERNAME/IMGBUILD_REGISTRY_PASSWORD".into(),
        }));
    }
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        files.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME") {
        files.push(PathBuf::from(h).join(".docker").join("config.json"));
    }
    for f in files {
        if let Some(c) = from_file(&f, registry)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The credentials for `registry` in one auth file (absent file: `None`).
pub fn from_file(path: &Path, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let bad = |reason: String| RegistryError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match std::fs::File::open(path) {
        Ok(f) => {
            use std::io::Read;
            let mut buf = Vec::new();
            f.take(MAX_AUTH_FILE + 1)
                .read_to_end(&mut buf)
                .map_err(|e| bad(e.to_string()))?;
            if buf.len() as u64 > MAX_AUTH_FILE {
                return Err(bad("larger than 1 MiB".into()));
            }
            buf
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let file: AuthFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let Some((_, entry)) = file
        .auths
        .iter()
        .find(|(k, _)| normalize_key(k) == registry)
    else {
        return Ok(None);
    };
    let origin = path.display().to_string();
    if let Some(a) = &entry.auth {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|e| bad(format!("`auth` of {registry}: {e}")))?;
        let raw =
            String::from_utf8(raw).map_err(|_| bad(format!("`auth` of {registry}: not UTF-8")))?;
        let (u, p) = raw
            .split_once(':')
            .ok_or_else(|| bad(format!("`auth` of {registry}: no `user:password`")))?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
            origin,
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
            origin,
        })),
        _ => Ok(None),
    }
}

/// `https://host:port/v1/` → `host:port` (Docker writes both forms).
fn normalize_key(k: &str) -> &str {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    k.split('/').next().unwrap_or(k)
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…,scope=…`: the distribution token flow.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if any.
        service: Option<String>,
        /// `scope` parameter, if any.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (one challenge; quoted values may hold
/// commas, as scopes do).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else {
        None
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    // Bounded by the input: every iteration consumes at least one char.
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_commas_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.test/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.test/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn auth_file_entries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        let token = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        std::fs::write(
            &f,
            format!(
                r#"{{"auths":{{"https://127.0.0.1:5000/v1/":{{"auth":"{token}"}},"other:1":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        )
        .unwrap();
        let c = from_file(&f, "127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3:cret")
        );
        assert_eq!(from_file(&f, "other:1").unwrap().unwrap().username, "bob");
        assert!(from_file(&f, "nowhere:1").unwrap().is_none());
        assert!(
            from_file(&dir.path().join("absent"), "x")
                .unwrap()
                .is_none()
        );
        std::fs::write(&f, "{not json").unwrap();
        let e = from_file(&f, "x").unwrap_err().to_string();
        assert!(e.contains("auth.json"), "{e}");
    }
}
