//! Recognising a server by an invite's pin (docs/PROTOCOL.md §10) instead
//! of a CA file: the pin a server's chain gives, and a client TLS
//! configuration that accepts only a server matching one.

use std::sync::Arc;

use der::{Decode as _, Encode as _};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::protocol::invite::Pin;
use crate::serve::tls::{provider, tbs_fields, TlsError};

/// The pin an invite for a server serving `chain` carries: the last
/// certificate of a chain longer than one (the CA the operator serves with
/// it), else the server's own key. `None` if the one certificate is not
/// X.509.
pub fn pin_of_chain(chain: &[CertificateDer<'_>]) -> Option<Pin> {
    match chain {
        [] => None,
        [leaf] => server_key_digest(leaf).map(Pin::ServerKey),
        [.., ca] => Some(Pin::CaCertificate(Sha256::digest(ca.as_ref()).into())),
    }
}

/// SHA-256 of the DER SubjectPublicKeyInfo of `cert`.
pub fn server_key_digest(cert: &[u8]) -> Option<[u8; 32]> {
    let mut tbs = der::SliceReader::new(tbs_fields(cert)?).ok()?;
    // serial, signature, issuer, validity, subject
    for _ in 0..5 {
        der::asn1::AnyRef::decode(&mut tbs).ok()?;
    }
    let spki = der::asn1::AnyRef::decode(&mut tbs).ok()?.to_der().ok()?;
    Some(Sha256::digest(&spki).into())
}

/// A client configuration (TLS 1.3 only, like [`crate::tls::client_config`])
/// that accepts only a server matching `pin`: a chain that holds the pinned
/// CA certificate and verifies up to it for the name connected to, or a
/// server certificate whose key is the pinned one.
pub fn pinned_client_config(pin: Pin, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    pinned_client_config_seen(pin, alpn).map(|(cfg, _)| cfg)
}

/// The certificate a pinned configuration matched: the pinned CA, or the
/// server's own certificate for a key pin. An enrolling client keeps it as
/// its trust anchor.
#[derive(Debug, Clone, Default)]
pub struct Matched(Arc<std::sync::Mutex<Option<CertificateDer<'static>>>>);

impl Matched {
    /// The certificate of the last server accepted, if any.
    pub fn certificate(&self) -> Option<CertificateDer<'static>> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn set(&self, cert: &CertificateDer<'_>) {
        let cert = Some(cert.clone().into_owned());
        match self.0.lock() {
            Ok(mut g) => *g = cert,
            Err(p) => *p.into_inner() = cert,
        }
    }
}

/// [`pinned_client_config`], and where it records the certificate it
/// matched.
pub fn pinned_client_config_seen(
    pin: Pin,
    alpn: &[&[u8]],
) -> Result<(ClientConfig, Matched), TlsError> {
    let provider = provider();
    let matched = Matched::default();
    let verifier = Arc::new(PinnedServer {
        pin,
        provider: provider.clone(),
        matched: matched.clone(),
    });
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg.enable_early_data = false;
    Ok((cfg, matched))
}

#[derive(Debug)]
struct PinnedServer {
    pin: Pin,
    provider: Arc<CryptoProvider>,
    matched: Matched,
}

fn refused(why: &str) -> rustls::Error {
    rustls::Error::General(why.to_owned())
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            Pin::CaCertificate(digest) => {
                let ca = intermediates
                    .iter()
                    .find(|c| Sha256::digest(c.as_ref())[..] == digest[..])
                    .ok_or_else(|| refused("the server's chain does not hold the pinned CA"))?;
                let mut roots = RootCertStore::empty();
                roots.add(ca.clone().into_owned())?;
                // The pinned CA as the one trust anchor: names, validity
                // and signatures are checked as for any server.
                let ok = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| refused(&e.to_string()))?
                .verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp,
                    now,
                )?;
                self.matched.set(ca);
                Ok(ok)
            }
            // The key itself is pinned, as an SSH host key is: the
            // handshake's signature proves the server holds it.
            Pin::ServerKey(digest) => match server_key_digest(end_entity) {
                Some(d) if d == digest => {
                    self.matched.set(end_entity);
                    Ok(ServerCertVerified::assertion())
                }
                _ => Err(refused("the server's key is not the pinned one")),
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::tls::{load_certs, load_key, server_config};

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    /// A handshake in memory between the fixture server (leaf and CA) and
    /// a client pinned to `pin`, connecting to `name`.
    fn handshake(pin: Pin, name: &str) -> Result<Matched, rustls::Error> {
        let chain = load_certs(&fixture("server.pem")).unwrap();
        let key = load_key(&fixture("server.key")).unwrap();
        let server_cfg = Arc::new(server_config(chain, key).unwrap());
        let (client_cfg, matched) = pinned_client_config_seen(pin, &[]).unwrap();
        let client_cfg = Arc::new(client_cfg);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(client_cfg, name)?;
        let mut server = rustls::ServerConnection::new(server_cfg)?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut &buf[..]).unwrap();
            server.process_new_packets()?;
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut &buf[..]).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(matched);
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn the_pin_of_the_served_chain_is_accepted_and_no_other() {
        let chain = load_certs(&fixture("server.pem")).unwrap();
        let pin = pin_of_chain(&chain).unwrap();
        let ca = load_certs(&fixture("ca.pem")).unwrap();
        assert_eq!(
            pin,
            Pin::CaCertificate(Sha256::digest(ca[0].as_ref()).into()),
            "the chain's last certificate is the fixture CA"
        );
        let matched = handshake(pin, "localhost").unwrap().certificate();
        assert_eq!(matched.as_ref(), Some(&ca[0]), "the pinned CA is kept");
        // The pinned CA vouches only for the names it signed.
        assert!(handshake(pin, "api.example").is_err());
        assert!(handshake(Pin::CaCertificate([7; 32]), "localhost").is_err());
    }

    #[test]
    fn a_pinned_server_key_is_accepted_under_any_name_and_no_other_key() {
        let chain = load_certs(&fixture("server.pem")).unwrap();
        let leaf_only = pin_of_chain(&chain[..1]).unwrap();
        let Pin::ServerKey(digest) = leaf_only else {
            panic!("one certificate: its key is pinned, {leaf_only:?}");
        };
        let matched = handshake(Pin::ServerKey(digest), "localhost").unwrap();
        assert_eq!(
            matched.certificate().as_ref(),
            Some(&chain[0]),
            "the server's own"
        );
        handshake(Pin::ServerKey(digest), "api.example").unwrap();
        let mut other = digest;
        other[0] ^= 1;
        assert!(handshake(Pin::ServerKey(other), "localhost").is_err());
        // The CA's key is not the server's.
        let ca_key = server_key_digest(chain[1].as_ref()).unwrap();
        assert!(handshake(Pin::ServerKey(ca_key), "localhost").is_err());
    }
}
