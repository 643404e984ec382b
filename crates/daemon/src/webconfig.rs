//! The web configuration file of Prometheus exporters (`--web.config.file` of node_exporter and
//! every exporter built on prometheus/exporter-toolkit): YAML with `tls_server_config`,
//! `basic_auth_users` (user → bcrypt hash) and `http_server_config`. memwarden reads the same
//! file, so one file can serve a host's node_exporter and memwarden alike.
//!
//! This module only parses and checks the text; [`crate::tls`] reads the certificate files and
//! [`crate::auth`] checks passwords. Keys memwarden does not implement are refused by name (a
//! file that asks for response headers or a rate limit must not be served without them), and
//! unknown keys are refused with their line, as serde_yaml_ng reports it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpServerFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// exporter-toolkit's token bucket: refused (see [`unsupported`]).
    #[serde(default)]
    rate_limit: Option<serde_yaml_ng::Value>,
}

/// `tls_server_config`, every key exporter-toolkit documents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<serde_yaml_ng::Value>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<serde_yaml_ng::Value>,
    prefer_server_cipher_suites: Option<serde_yaml_ng::Value>,
    curve_preferences: Option<serde_yaml_ng::Value>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerFile {
    /// memwarden speaks HTTP/1.1 only; `http2` is accepted and has no effect (Prometheus
    /// scrapes over HTTP/1.1 unless told otherwise).
    #[allow(dead_code)]
    http2: Option<bool>,
    headers: Option<serde_yaml_ng::Value>,
}

/// PEM text, from the file or written inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

/// TLS protocol versions rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Whether clients must show a certificate (Go's `tls.ClientAuthType` names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert`: the default.
    None,
    /// `VerifyClientCertIfGiven`: a client may come without a certificate; one it shows must
    /// be signed by the client CA.
    VerifyIfGiven(Pem),
    /// `RequireAndVerifyClientCert`: every client shows a certificate signed by the client CA.
    Require(Pem),
}

/// `tls_server_config`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

/// The whole file, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// None: plain HTTP (as exporter-toolkit, a file without a certificate serves no TLS).
    pub tls: Option<TlsSettings>,
    /// User → bcrypt hash; empty: no authentication.
    pub users: BTreeMap<String, String>,
}

impl WebConfig {
    /// Reads and checks `path` (relative file names in it are taken from its directory, as
    /// exporter-toolkit does). The certificate files are read by [`crate::tls`].
    pub fn load(path: &Path) -> anyhow::Result<WebConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the web configuration {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, dir)
            .with_context(|| format!("web configuration {}", path.display()))
    }

    /// Parses `text`; relative file names are joined to `dir`.
    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<WebConfig> {
        // An empty file is an empty mapping (exporter-toolkit serves plain HTTP then).
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml_ng::from_str(text)?
        };
        if file.rate_limit.is_some() {
            unsupported(
                "rate_limit",
                "the [http] limits of memwarden.toml cap connections",
            )?;
        }
        if let Some(h) = &file.http_server_config {
            if h.headers.is_some() {
                unsupported(
                    "http_server_config.headers",
                    "put a reverse proxy in front to add response headers",
                )?;
            }
        }
        let tls = match file.tls_server_config {
            Some(t) => tls_settings(t, dir)?,
            None => None,
        };
        let users = file.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                bail!("basic_auth_users: user {user:?} has a ':', which Basic authentication cannot carry");
            }
            hash.parse::<bcrypt::HashParts>().map_err(|e| {
                anyhow::anyhow!(
                    "basic_auth_users.{user}: not a bcrypt hash ({e}); make one with \
                     `htpasswd -nBC 10 \"\" | tr -d ':\\n'`"
                )
            })?;
        }
        Ok(WebConfig { tls, users })
    }
}

fn unsupported(key: &str, instead: &str) -> anyhow::Result<()> {
    bail!("{key}: not supported by memwarden ({instead}); remove the key")
}

fn tls_settings(t: TlsFile, dir: &Path) -> anyhow::Result<Option<TlsSettings>> {
    let refused = [
        ("client_allowed_sans", t.client_allowed_sans.is_some()),
        ("cipher_suites", t.cipher_suites.is_some()),
        (
            "prefer_server_cipher_suites",
            t.prefer_server_cipher_suites.is_some(),
        ),
        ("curve_preferences", t.curve_preferences.is_some()),
    ];
    for (key, set) in refused {
        if set {
            unsupported(
                &format!("tls_server_config.{key}"),
                "rustls offers only its own safe cipher suites and curves",
            )?;
        }
    }
    let pem = |inline: Option<String>, file: Option<PathBuf>, name: &str| match (inline, file) {
        (Some(_), Some(_)) => bail!("tls_server_config: give {name} or {name}_file, not both"),
        (Some(text), None) => Ok(Some(Pem::Inline(text))),
        (None, Some(f)) if f.as_os_str().is_empty() => Ok(None),
        (None, Some(f)) => Ok(Some(Pem::File(dir.join(f)))),
        (None, None) => Ok(None),
    };
    let cert = pem(t.cert, t.cert_file, "cert")?;
    let key = pem(t.key, t.key_file, "key")?;
    let ca = pem(t.client_ca, t.client_ca_file, "client_ca")?;
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) if ca.is_none() && t.client_auth_type.is_none() => return Ok(None),
        (None, None) => {
            bail!("tls_server_config: client authentication needs cert_file and key_file")
        }
        (Some(_), None) => bail!("tls_server_config: cert_file is given without key_file"),
        (None, Some(_)) => bail!("tls_server_config: key_file is given without cert_file"),
    };
    let client_auth = match (t.client_auth_type.as_deref().unwrap_or("NoClientCert"), ca) {
        ("NoClientCert", None) => ClientAuth::None,
        ("NoClientCert", Some(_)) => bail!(
            "tls_server_config: client_ca_file is given but client_auth_type is NoClientCert \
             (set client_auth_type: RequireAndVerifyClientCert)"
        ),
        ("RequireAndVerifyClientCert", Some(ca)) => ClientAuth::Require(ca),
        ("VerifyClientCertIfGiven", Some(ca)) => ClientAuth::VerifyIfGiven(ca),
        (kind @ ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven"), None) => {
            bail!("tls_server_config.client_auth_type {kind} needs client_ca_file")
        }
        (kind @ ("RequestClientCert" | "RequireAnyClientCert"), _) => bail!(
            "tls_server_config.client_auth_type {kind}: not supported by memwarden (it accepts \
             certificates nobody verified); use RequireAndVerifyClientCert"
        ),
        (other, _) => bail!(
            "tls_server_config.client_auth_type {other:?}: expected NoClientCert, \
             VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        ),
    };
    let min_version = version(t.min_version.as_deref(), "min_version", TlsVersion::Tls12)?;
    let max_version = version(t.max_version.as_deref(), "max_version", TlsVersion::Tls13)?;
    if min_version > max_version {
        bail!("tls_server_config: min_version is above max_version");
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_auth,
        min_version,
        max_version,
    }))
}

fn version(v: Option<&str>, key: &str, default: TlsVersion) -> anyhow::Result<TlsVersion> {
    match v {
        None | Some("") => Ok(default),
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => bail!(
            "tls_server_config.{key} {old}: not supported by memwarden (rustls speaks TLS12 and \
             TLS13 only)"
        ),
        Some(other) => bail!("tls_server_config.{key} {other:?}: expected TLS12 or TLS13"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bcrypt hash of "secret" at cost 4 (the least: keeps the tests fast).
    fn hash() -> String {
        bcrypt::hash("secret", 4).expect("bcrypt")
    }

    fn parse(text: &str) -> anyhow::Result<WebConfig> {
        WebConfig::parse(text, Path::new("/etc/memwarden"))
    }

    #[test]
    fn the_exporter_toolkit_example_parses() {
        let cfg = parse(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  \
             min_version: TLS13\nhttp_server_config:\n  http2: false\n\
             basic_auth_users:\n  alice: {}\n",
            hash()
        ))
        .expect("parse");
        let tls = cfg.tls.expect("tls");
        assert_eq!(
            tls.cert,
            Pem::File("/etc/memwarden/server.crt".into()),
            "relative to the file"
        );
        assert_eq!(tls.key, Pem::File("/abs/server.key".into()));
        assert_eq!(tls.client_auth, ClientAuth::None);
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.max_version, TlsVersion::Tls13);
        assert!(cfg.users["alice"].starts_with("$2b$04$"));
    }

    #[test]
    fn no_certificate_is_plain_http_and_an_empty_file_is_no_change() {
        let cfg = parse(&format!("basic_auth_users:\n  bob: {}\n", hash())).expect("parse");
        assert!(cfg.tls.is_none());
        assert_eq!(cfg.users.len(), 1);
        assert_eq!(parse("").expect("empty"), WebConfig::default());
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name_and_line() {
        let e = parse("tls_server_config:\n  cert_file: a\n  key_flie: b\n").expect_err("typo");
        let msg = format!("{e:#}");
        assert!(msg.contains("key_flie"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        let e = parse("basic_auth:\n  a: b\n").expect_err("unknown top key");
        assert!(format!("{e:#}").contains("basic_auth"), "{e:#}");
    }

    #[test]
    fn a_bad_bcrypt_hash_is_refused_naming_the_user() {
        let e = parse("basic_auth_users:\n  alice: plaintext\n").expect_err("not a hash");
        let msg = format!("{e:#}");
        assert!(msg.contains("basic_auth_users.alice"), "{msg}");
        assert!(msg.contains("bcrypt"), "{msg}");
    }

    #[test]
    fn keys_memwarden_does_not_implement_are_refused_by_name() {
        for (text, key) in [
            ("http_server_config:\n  headers:\n    X-Frame-Options: deny\n", "headers"),
            ("rate_limit:\n  interval: 1s\n  burst: 20\n", "rate_limit"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n",
                "cipher_suites",
            ),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n", "TLS10"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "RequireAnyClientCert",
            ),
        ] {
            let msg = format!("{:#}", parse(text).expect_err(key));
            assert!(msg.contains(key) && msg.contains("not supported"), "{msg}");
        }
    }

    #[test]
    fn half_a_tls_config_is_refused() {
        let e = parse("tls_server_config:\n  cert_file: a\n").expect_err("no key");
        assert!(format!("{e:#}").contains("key_file"), "{e:#}");
        let e = parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
        )
        .expect_err("no CA");
        assert!(format!("{e:#}").contains("client_ca_file"), "{e:#}");
        let cfg = parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
        )
        .expect("mTLS");
        assert_eq!(
            cfg.tls.expect("tls").client_auth,
            ClientAuth::Require(Pem::File("/etc/memwarden/ca.pem".into()))
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = WebConfig::load(Path::new("/nonexistent/web.yml")).expect_err("missing");
        assert!(format!("{e:#}").contains("/nonexistent/web.yml"), "{e:#}");
    }
}
