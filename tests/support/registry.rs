//! A real CNCF distribution registry (Debian's `docker-registry`) on
//! 127.0.0.1 with a random port and temp storage, plain or behind TLS with
//! a throwaway CA and htpasswd auth; and skopeo as an independent client.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why registry tests cannot run here, if they cannot (tools missing).
pub fn missing_tools() -> Option<String> {
    let need = [
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("htpasswd", "apache2-utils"),
        ("openssl", "openssl"),
    ];
    let missing: Vec<&str> = need
        .iter()
        .filter(|(bin, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    (!missing.is_empty())
        .then(|| format!("missing {} (ci/setup.sh installs them)", missing.join(", ")))
}

/// A running registry; killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Storage root (to tamper with blobs).
    pub storage: PathBuf,
    /// The CA certificate when TLS is on.
    pub ca: Option<PathBuf>,
    dir: tempfile::TempDir,
    /// Other temp directories that live as long as the registry.
    keep: Vec<tempfile::TempDir>,
}

/// TLS + htpasswd settings.
pub struct Secure {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes a CA and a server certificate for 127.0.0.1 in `dir`.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=imgbuild test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]));
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]));
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]));
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

impl Registry {
    /// Starts a plain-http registry.
    pub fn plain() -> Registry {
        Registry::start(None)
    }

    /// Starts a TLS registry with htpasswd auth.
    pub fn secure(s: &Secure) -> Registry {
        Registry::start(Some(s))
    }

    /// Starts a plain registry with token auth (the distribution token
    /// flow) and a token server on loopback that grants every scope asked
    /// for to `s.user` with `s.password`: JWTs signed ES256 with a throwaway
    /// key whose certificate the registry trusts.
    pub fn token(s: &Secure) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-token-")
            .tempdir()
            .unwrap();
        run(Command::new("openssl").current_dir(dir.path()).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
            "-days",
            "2",
            "-subj",
            "/CN=imgbuild test tokens",
        ]));
        run(Command::new("openssl").current_dir(dir.path()).args([
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
            "-out",
            "token.der",
        ]));
        use p256::pkcs8::DecodePrivateKey;
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(
            &std::fs::read_to_string(dir.path().join("token.key")).unwrap(),
        )
        .unwrap();
        let cert = std::fs::read(dir.path().join("token.der")).unwrap();
        let basic = {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", s.user, s.password))
            )
        };
        let user = s.user.clone();
        let (port, _log) = super::scripted::serve(std::sync::Arc::new(move |req, _| {
            if req.header("authorization") != Some(basic.as_str()) {
                return (401, vec![], b"bad credentials".to_vec());
            }
            let scopes: Vec<String> = req
                .target
                .split(['?', '&'])
                .filter_map(|kv| kv.strip_prefix("scope="))
                .map(|v| {
                    url::form_urlencoded::parse(format!("s={v}").as_bytes())
                        .next()
                        .unwrap()
                        .1
                        .into_owned()
                })
                .collect();
            let body = format!(r#"{{"token":"{}"}}"#, jwt(&key, &cert, &user, &scopes));
            (200, vec![], body.into_bytes())
        }));
        let auth = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
            dir.path().join("token.pem").display()
        );
        let mut reg = Registry::start_with(None, Some(auth));
        reg.keep.push(dir);
        reg
    }

    fn start(secure: Option<&Secure>) -> Registry {
        Registry::start_with(secure, None)
    }

    fn start_with(secure: Option<&Secure>, auth: Option<String>) -> Registry {
        let mut dir = tempfile::Builder::new()
            .prefix("imgbuild-registry-")
            .tempdir()
            .unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        // A few attempts: the port may be taken between probing and binding.
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                storage.display()
            );
            let mut ca = None;
            if let Some(s) = secure {
                let (c, cert, key) = make_certs(dir.path());
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ));
                let htpasswd = dir.path().join("htpasswd");
                let out = Command::new("htpasswd")
                    .args(["-Bbn", &s.user, &s.password])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                std::fs::write(&htpasswd, out.stdout).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: imgbuild-test\n    path: {}\n",
                    htpasswd.display()
                ));
                ca = Some(c);
            }
            if let Some(a) = &auth {
                config.push_str(a);
            }
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start docker-registry");
            let mut reg = Registry {
                child,
                addr: addr.clone(),
                storage: storage.clone(),
                ca,
                dir,
                keep: Vec::new(),
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break;
                }
                if TcpStream::connect(&addr).is_ok() {
                    return reg;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = reg.child.kill();
            let _ = reg.child.wait();
            dir = std::mem::replace(&mut reg.dir, tempfile::tempdir().unwrap());
        }
        panic!("docker-registry did not start");
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The stored file of blob `digest` (`sha256:…`).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Runs skopeo against this (plain) registry; returns stdout.
    pub fn skopeo(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("skopeo")
            .args(args)
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// A distribution token: a JWS (ES256, `x5c` = the signing certificate)
/// granting `scopes` (`repository:NAME:ACTIONS`) for five minutes.
fn jwt(key: &p256::ecdsa::SigningKey, cert: &[u8], user: &str, scopes: &[String]) -> String {
    use base64::Engine;
    use p256::ecdsa::signature::Signer;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let std_b64 = base64::engine::general_purpose::STANDARD.encode(cert);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut p = s.splitn(3, ':');
            let (kind, name, actions) = (p.next()?, p.next()?, p.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [std_b64]});
    let claims = serde_json::json!({
        "iss": "test-issuer", "sub": user, "aud": "test-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig.to_bytes()))
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
