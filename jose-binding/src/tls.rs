//! rustls configuration (TLS 1.3 only, no 0-RTT) and EKM export (§2, §3).

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ConnectionCommon, ProtocolVersion, RootCertStore, ServerConfig};

use crate::schedule::{Ekm, EKM_LABEL, EKM_LEN};

/// ALPN identifiers, server preference order.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Pem {
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the connection did not negotiate TLS 1.3")]
    NotTls13,
}

/// The one crypto provider: aws-lc-rs, whose default key-exchange list puts
/// X25519MLKEM768 first (`prefer-post-quantum`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem {
        path: path.display().to_string(),
        source,
    })
}

pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Server side: TLS 1.3 only, 0-RTT refused, ALPN h2 then http/1.1.
/// Honours `SSLKEYLOGFILE` (with a warning) so a debugger can find a
/// token's connection.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    cfg.max_early_data_size = 0;
    cfg.send_half_rtt_data = false;
    keylog(&mut cfg.key_log);
    Ok(cfg)
}

/// Client side: TLS 1.3 only, no early data, WebPKI verification against `roots`.
pub fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.enable_early_data = false;
    keylog(&mut cfg.key_log);
    Ok(cfg)
}

fn keylog(slot: &mut Arc<dyn rustls::KeyLog>) {
    if std::env::var_os("SSLKEYLOGFILE").is_some() {
        tracing::warn!(
            "SSLKEYLOGFILE is set: TLS secrets of every connection are being written to it; \
             anyone who reads that file can derive this process's token keys"
        );
        *slot = Arc::new(rustls::KeyLogFile::new());
    }
}

/// The connection's EKM (RFC 9266 `tls-exporter`): label
/// `EXPORTER-Channel-Binding`, empty context, 32 bytes. Refuses anything but
/// a completed TLS 1.3 handshake.
pub fn export_ekm<D>(conn: &ConnectionCommon<D>) -> Result<Ekm, TlsError> {
    if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) || conn.is_handshaking() {
        return Err(TlsError::NotTls13);
    }
    let out = conn.export_keying_material([0u8; EKM_LEN], EKM_LABEL, Some(&[]))?;
    Ok(Ekm::from_bytes(out))
}
