//! rustls configuration (TLS 1.3 only, no 0-RTT) and EKM export (§2, §3);
//! the server's certificate and key, replaceable while serving
//! ([`ReloadableCert`]).

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use der::{Decode as _, Reader as _, Tagged as _};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ConnectionCommon, ProtocolVersion, RootCertStore, ServerConfig};

use crate::protocol::schedule::{Ekm, EKM_LABEL, EKM_LEN};

/// ALPN identifiers, server preference order.
pub const ALPN_H2: &[u8] = b"h2";
/// HTTP/1.1's ALPN identifier, offered after [`ALPN_H2`].
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Why a certificate, key or TLS configuration could not be used, or a
/// connection's EKM not exported. No message quotes a key file's text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {path}: {problem}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong, in our own words.
        problem: PemProblem,
    },
    /// A certificate file holds no certificate.
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    /// The private key is of a kind or shape aws-lc-rs cannot sign with.
    #[error("{key}: not a private key this server can use ({problem})")]
    BadKey {
        /// The key file.
        key: String,
        /// rustls' reason.
        problem: rustls::Error,
    },
    /// The private key's public key is not the leaf certificate's.
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// rustls refused the configuration, a root certificate, or the export.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// An EKM was asked of a connection that is not TLS 1.3 or has not
    /// finished its handshake.
    #[error("the connection did not negotiate TLS 1.3")]
    NotTls13,
}

/// The one crypto provider: aws-lc-rs, whose default key-exchange list puts
/// X25519MLKEM768 first (`prefer-post-quantum`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What is wrong with a PEM file, in words of our own: the PEM reader's
/// error can quote a line of the file, and in a key file a malformed
/// `-----BEGIN` line may carry key material after it.
#[derive(Debug)]
#[non_exhaustive]
pub enum PemProblem {
    /// The file could not be read.
    Io(std::io::Error),
    /// A `-----BEGIN ...-----` line that is not one.
    BadBeginLine,
    /// A section with no `-----END ...-----` line.
    NoEndLine,
    /// A section whose body is not base64.
    BadBase64,
    /// No section of the kind wanted (a private key, a certificate).
    NothingFound,
    /// A section larger than the PEM reader accepts.
    TooLarge,
    /// Any other PEM error.
    Other,
}

impl From<pem::Error> for PemProblem {
    fn from(e: pem::Error) -> Self {
        match e {
            pem::Error::Io(e) => PemProblem::Io(e),
            pem::Error::IllegalSectionStart { .. } => PemProblem::BadBeginLine,
            pem::Error::MissingSectionEnd { .. } => PemProblem::NoEndLine,
            pem::Error::Base64Decode(_) => PemProblem::BadBase64,
            pem::Error::NoItemsFound => PemProblem::NothingFound,
            pem::Error::SectionTooLarge => PemProblem::TooLarge,
            _ => PemProblem::Other,
        }
    }
}

impl fmt::Display for PemProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemProblem::Io(e) => write!(f, "{e}"),
            PemProblem::BadBeginLine => f.write_str("a -----BEGIN line is malformed"),
            PemProblem::NoEndLine => f.write_str("a PEM section has no -----END line"),
            PemProblem::BadBase64 => f.write_str("a PEM section is not valid base64"),
            PemProblem::NothingFound => f.write_str("no PEM section of the expected kind"),
            PemProblem::TooLarge => f.write_str("a PEM section is too large"),
            PemProblem::Other => f.write_str("not a valid PEM file"),
        }
    }
}

/// Every certificate in the PEM file at `path`, in file order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            problem: e.into(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM file at `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        problem: e.into(),
    })
}

/// The certificate chain in `cert` and its private key in `key`, loaded
/// and checked to belong together (the key's public key is the leaf's).
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = load_certs(cert)?;
    let der = load_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|problem| TlsError::BadKey {
            key: key.display().to_string(),
            problem,
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    })?;
    Ok(certified)
}

/// The server's certificate and key, replaced whole while serving: each
/// handshake takes the pair in force when it starts, and connections
/// already open keep theirs.
#[derive(Debug)]
pub struct ReloadableCert(RwLock<Arc<CertifiedKey>>);

impl ReloadableCert {
    /// A resolver that serves `certified` until replaced.
    pub fn new(certified: CertifiedKey) -> Arc<Self> {
        Arc::new(ReloadableCert(RwLock::new(Arc::new(certified))))
    }

    /// The pair new handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `certified` the pair of every later handshake; check it first
    /// ([`load_certified_key`]), as this does not.
    pub fn replace(&self, certified: CertifiedKey) {
        let certified = Arc::new(certified);
        match self.0.write() {
            Ok(mut g) => *g = certified,
            Err(poisoned) => *poisoned.into_inner() = certified,
        }
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What the log says about a certificate: its subject and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject's attributes in certificate order, `CN=localhost, O=...`.
    pub subject: String,
    /// notAfter, RFC 3339 (`2124-01-01T00:00:00Z`).
    pub not_after: String,
}

/// The DNS names a certificate is valid for (its subjectAltName), in
/// order; none if it is not an X.509 end-entity certificate.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    match webpki::EndEntityCert::try_from(cert) {
        Ok(c) => c.valid_dns_names().map(str::to_owned).collect(),
        Err(_) => Vec::new(),
    }
}

impl CertSummary {
    /// Reads the subject and notAfter of a DER certificate; `None` if it is
    /// not an X.509 certificate.
    pub fn of(cert: &[u8]) -> Option<CertSummary> {
        let mut tbs = der::SliceReader::new(tbs_fields(cert)?).ok()?;
        // serial, signature, issuer
        for _ in 0..3 {
            der::asn1::AnyRef::decode(&mut tbs).ok()?;
        }
        let not_after = tbs
            .sequence(|validity| {
                read_time(validity)?;
                read_time(validity)
            })
            .ok()?;
        let subject = tbs.sequence(read_name).ok()?;
        Some(CertSummary { subject, not_after })
    }
}

/// The fields of a DER certificate's tbsCertificate after its optional
/// version (serial, signature, issuer, validity, subject, key, ...);
/// `None` if it is not a certificate.
pub(crate) fn tbs_fields(cert: &[u8]) -> Option<&[u8]> {
    let certificate = der::asn1::AnyRef::decode(&mut der::SliceReader::new(cert).ok()?).ok()?;
    let mut outer = der::SliceReader::new(certificate.value()).ok()?;
    let tbs = der::asn1::AnyRef::decode(&mut outer).ok()?;
    if certificate.tag() != der::Tag::Sequence || tbs.tag() != der::Tag::Sequence {
        return None;
    }
    let mut fields = der::SliceReader::new(tbs.value()).ok()?;
    let version = der::Tag::ContextSpecific {
        constructed: true,
        number: der::TagNumber::N0,
    };
    if fields.peek_tag().ok()? == version {
        der::asn1::AnyRef::decode(&mut fields).ok()?;
    }
    let rest = fields.remaining_len();
    fields.read_slice(rest).ok()
}

fn read_time<'a, R: der::Reader<'a>>(r: &mut R) -> der::Result<String> {
    if r.peek_tag()? == der::Tag::UtcTime {
        Ok(der::asn1::UtcTime::decode(r)?.to_date_time().to_string())
    } else {
        Ok(der::asn1::GeneralizedTime::decode(r)?
            .to_date_time()
            .to_string())
    }
}

/// An X.509 Name (a SEQUENCE of SETs of type and value) as `CN=..., O=...`.
fn read_name<'a, R: der::Reader<'a>>(r: &mut R) -> der::Result<String> {
    let mut parts = Vec::new();
    while !r.is_finished() {
        let set = der::asn1::AnyRef::decode(r)?;
        let mut attrs = der::SliceReader::new(set.value())?;
        while !attrs.is_finished() {
            attrs.sequence(|atv| {
                let oid = der::asn1::ObjectIdentifier::decode(atv)?;
                let value = der::asn1::AnyRef::decode(atv)?;
                let name = match oid.to_string().as_str() {
                    "2.5.4.3" => "CN".to_owned(),
                    "2.5.4.6" => "C".to_owned(),
                    "2.5.4.7" => "L".to_owned(),
                    "2.5.4.8" => "ST".to_owned(),
                    "2.5.4.10" => "O".to_owned(),
                    "2.5.4.11" => "OU".to_owned(),
                    other => other.to_owned(),
                };
                // Printable text only: a subject must not forge log lines.
                let text: String = String::from_utf8_lossy(value.value())
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect();
                parts.push(format!("{name}={text}"));
                Ok(())
            })?;
        }
    }
    Ok(parts.join(", "))
}

/// The server side with the certificate chosen per handshake by
/// `resolver` (a [`ReloadableCert`]); otherwise as [`server_config`].
pub fn server_config_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, TlsError> {
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(finish_server(cfg))
}

/// The trust anchors a client verifies the server against: every
/// certificate in the PEM file at `path`.
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
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(finish_server(cfg))
}

/// What every server configuration has: ALPN h2 then http/1.1, no early
/// data, the key log when asked for.
fn finish_server(mut cfg: ServerConfig) -> ServerConfig {
    cfg.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
    cfg.max_early_data_size = 0;
    cfg.send_half_rtt_data = false;
    keylog(&mut cfg.key_log);
    cfg
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    #[test]
    fn summarizes_the_fixture_leaf() {
        let chain = load_certs(&fixture("server.pem")).unwrap();
        let leaf = CertSummary::of(&chain[0]).unwrap();
        assert_eq!(leaf.subject, "CN=localhost");
        assert_eq!(leaf.not_after, "2124-01-01T00:00:00Z");
        let ca = CertSummary::of(&chain[1]).unwrap();
        assert!(ca.subject.contains("test CA"), "{ca:?}");
        assert_eq!(CertSummary::of(b"not DER"), None);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("tls-pair-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let other = dir.join("other.key");
        let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap()
        .to_pkcs8v1()
        .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8.as_ref())
        );
        std::fs::write(&other, &pem).unwrap();
        let err = load_certified_key(&fixture("server.pem"), &other).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        assert!(load_certified_key(&fixture("server.pem"), &fixture("server.key")).is_ok());

        // Key material on a malformed BEGIN line is not quoted back.
        let body = pem.lines().nth(1).unwrap();
        std::fs::write(&other, format!("-----BEGIN PRIVATE KEY-----{body}\n")).unwrap();
        let err = load_certified_key(&fixture("server.pem"), &other)
            .unwrap_err()
            .to_string();
        assert!(!err.contains(&body[..20]), "{err}");
        assert!(err.contains("BEGIN line is malformed"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
