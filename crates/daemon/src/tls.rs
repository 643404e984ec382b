//! TLS for the HTTP server: a rustls configuration (ring provider) built from the web
//! configuration's `tls_server_config`, the certificate files read here, and the check that
//! tells a plain-HTTP client it reached a TLS port.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::webconfig::{ClientAuth, Pem, TlsSettings, TlsVersion};

/// What Go's net/http answers a plain request on a TLS port (Prometheus users know it).
const PLAIN_ON_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\
Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The first byte of a TLS record carrying a handshake message (a ClientHello).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Reads the certificate, key and client CA and builds the acceptor.
pub fn acceptor(t: &TlsSettings) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (t.min_version..=t.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .context("tls_server_config: TLS versions")?;
    let builder = match &t.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Require(ca) | ClientAuth::VerifyIfGiven(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs(ca, "client_ca_file")? {
                roots
                    .add(c)
                    .with_context(|| format!("client_ca_file {}: a bad CA certificate", ca))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = match &t.client_auth {
                ClientAuth::VerifyIfGiven(_) => v.allow_unauthenticated(),
                _ => v,
            };
            builder.with_client_cert_verifier(v.build().context("client_ca_file")?)
        }
    };
    let chain = certs(&t.cert, "cert_file")?;
    let key = match &t.key {
        Pem::File(p) => {
            check_readable(p, "key_file")?;
            PrivateKeyDer::from_pem_file(p)
                .with_context(|| format!("key_file {}: no private key in it", p.display()))?
        }
        Pem::Inline(s) => PrivateKeyDer::from_pem_slice(s.as_bytes())
            .context("tls_server_config.key: no private key in it")?,
    };
    let mut cfg = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "tls_server_config: the key in {} does not go with the certificate in {}",
            t.key, t.cert
        )
    })?;
    // HTTP/1.1 only: offer it, so that a client that asks for h2 alone is told at once.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

fn certs(pem: &Pem, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let found: Result<Vec<_>, _> = match pem {
        Pem::File(p) => {
            check_readable(p, key)?;
            CertificateDer::pem_file_iter(p)
                .with_context(|| format!("{key} {}", p.display()))?
                .collect()
        }
        Pem::Inline(s) => CertificateDer::pem_slice_iter(s.as_bytes()).collect(),
    };
    let found = found.with_context(|| format!("{key} {pem}: bad PEM"))?;
    if found.is_empty() {
        bail!("{key} {pem}: no CERTIFICATE in it");
    }
    Ok(found)
}

/// A missing file said plainly (the PEM reader's error says only "No such file").
fn check_readable(p: &Path, key: &str) -> anyhow::Result<()> {
    std::fs::metadata(p)
        .map(|_| ())
        .with_context(|| format!("{key} {}", p.display()))
}

impl std::fmt::Display for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(p) => write!(f, "{}", p.display()),
            Pem::Inline(_) => f.write_str("(inline)"),
        }
    }
}

/// Whether the client's first byte opens a TLS handshake. A plain-HTTP client gets Go's 400
/// and is closed; one that closes before sending anything is closed too. Waits for the first
/// byte: the caller bounds it by the header deadline.
pub async fn starts_with_handshake(stream: &mut TcpStream) -> bool {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == HANDSHAKE_RECORD => true,
        Ok(1) => {
            let _ = stream.write_all(PLAIN_ON_TLS).await;
            let _ = stream.shutdown().await;
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cert: &str, key: &str) -> TlsSettings {
        TlsSettings {
            cert: Pem::File(cert.into()),
            key: Pem::File(key.into()),
            client_auth: ClientAuth::None,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
        }
    }

    #[test]
    fn a_missing_certificate_file_is_named_with_its_key() {
        let Err(e) = acceptor(&settings(
            "/nonexistent/server.crt",
            "/nonexistent/server.key",
        )) else {
            panic!("a missing file was accepted");
        };
        let msg = format!("{e:#}");
        assert!(msg.contains("cert_file /nonexistent/server.crt"), "{msg}");
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "not pem\n").expect("write");
        let p = p.display().to_string();
        let Err(e) = acceptor(&settings(&p, &p)) else {
            panic!("a file without a certificate was accepted");
        };
        assert!(format!("{e:#}").contains("no CERTIFICATE"), "{e:#}");
    }
}
