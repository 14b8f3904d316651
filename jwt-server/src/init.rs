//! `jwt-server init`: a first run without the repository's fixtures. A
//! private CA and a server certificate for the names given (rcgen), an
//! empty keystore and a config that points at them, owned by the user the
//! server runs as; the CA's pin is what enrolment invites carry. Nothing
//! that exists is overwritten.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use jose_binding::private_file::{write_private, Existing};
use jose_binding::{pin, tls, Keystore};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::cli::{is_root, Global, InitArgs};

/// The files init makes in its directory.
const CA: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CERT: &str = "server.pem";
const KEY: &str = "server.key";
const KEYSTORE: &str = "keystore.toml";

pub(crate) fn init(a: InitArgs, g: &Global) -> Result<(), String> {
    let sans = match a.sans.is_empty() {
        false => a.sans.clone(),
        true => {
            vec![hostname().ok_or("name the server with --san NAME (the host name clients dial)")?]
        }
    };
    let owner = match &a.user {
        Some(u) => Some(system_user(u)?),
        None if is_root() => system_user("jwt-server").ok(),
        None => None,
    };
    let dir = &a.dir;
    create_dir(dir, owner)?;
    let config = g.config.clone().unwrap_or_else(|| match is_root() {
        true => PathBuf::from("/etc/jwt-server/server.toml"),
        false => dir.join("server.toml"),
    });
    let mut made = Vec::new();
    let pki = [CA, CA_KEY, CERT, KEY].map(|f| dir.join(f));
    match pki.iter().filter(|p| p.exists()).count() {
        0 => {
            write_pki(dir, &sans, a.days, owner)?;
            made.extend(pki.iter().cloned());
        }
        4 => {}
        _ => {
            let present: Vec<String> = pki
                .iter()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            return Err(format!(
                "{} exist but not the rest of the CA and certificate: nothing was overwritten; move them away to make a new set, or complete it by hand",
                present.join(", ")
            ));
        }
    }
    let keystore = dir.join(KEYSTORE);
    if !keystore.exists() {
        Keystore::default()
            .save_atomic(&keystore)
            .map_err(|e| format!("cannot write {}: {e}", keystore.display()))?;
        chown(&keystore, owner)?;
        made.push(keystore.clone());
    }
    let kept_config = config.exists();
    if !kept_config {
        if let Some(parent) = config.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let text = config_text(dir, &sans[0]);
        // Not secret, but only the server and root need to read it.
        write_private(&config, text.as_bytes(), Existing::Refuse)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        chown(&config, owner)?;
        made.push(config.clone());
    }
    let chain = tls::load_certs(&dir.join(CERT)).map_err(|e| e.to_string())?;
    let pin = pin::pin_of_chain(&chain).ok_or("the certificate chain is not X.509")?;
    for p in &made {
        eprintln!("created {}", p.display());
    }
    if made.is_empty() {
        eprintln!(
            "nothing to do: {} holds a CA, a certificate and a keystore",
            dir.display()
        );
    }
    if kept_config {
        eprintln!(
            "kept {} (it exists; check that it points at the files above)",
            config.display()
        );
    }
    let hex: String = pin.digest().iter().map(|b| format!("{b:02x}")).collect();
    let names = match made.iter().any(|p| p.ends_with(CERT)) {
        true => sans.join(", "),
        false => chain
            .first()
            .map(tls::dns_names)
            .unwrap_or_default()
            .join(", "),
    };
    outln!("server names: {names}");
    outln!("pin (enrolment invites carry it): {pin}, full sha256 {hex}");
    outln!("next: systemctl enable --now jwt-server (or jwt-server --config {}), then jwt-server keys invite NAME", config.display());
    Ok(())
}

fn write_pki(
    dir: &Path,
    sans: &[String],
    days: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let err = |e: rcgen::Error| e.to_string();
    let now = time_now();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("jwt-server private CA for {}", sans[0]),
    );
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now;
    ca.not_after = now + time::Duration::days(20 * 365);
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;

    let mut srv = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    for name in sans {
        srv.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|_| format!("--san {name:?} is not a DNS name or an IP address"))?,
            ),
        });
    }
    srv.distinguished_name
        .push(DnType::CommonName, sans[0].clone());
    srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    srv.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    srv.not_before = now;
    srv.not_after = now + time::Duration::days(i64::from(days));
    let srv_key = KeyPair::generate().map_err(err)?;
    let srv_cert = srv.signed_by(&srv_key, &ca_cert, &ca_key).map_err(err)?;

    let public = |name: &str, text: &str| -> Result<(), String> {
        let path = dir.join(name);
        write_private(&path, text.as_bytes(), Existing::Refuse)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        chown(&path, owner)
    };
    let secret = |name: &str, text: &str| -> Result<(), String> {
        let path = dir.join(name);
        write_private(&path, text.as_bytes(), Existing::Refuse)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        chown(&path, owner)
    };
    // Keys first: a failure leaves no certificate without its key.
    secret(CA_KEY, &ca_key.serialize_pem())?;
    secret(KEY, &srv_key.serialize_pem())?;
    public(CA, &ca_cert.pem())?;
    // The chain the server presents: leaf, then the CA (so invites pin the CA).
    public(CERT, &format!("{}{}", srv_cert.pem(), ca_cert.pem()))
}

/// The config init writes: the files above, the first name as audience,
/// enrolment on.
fn config_text(dir: &Path, audience: &str) -> String {
    let q = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    format!(
        "# Written by `jwt-server init`. Every setting: jwt-server --help, or docs/SERVER.md.\n\
         listen = \"0.0.0.0:8443\"\n\
         cert = {}\n\
         key = {}\n\
         keystore = {}\n\
         # What clients name in `aud`: the host they dial.\n\
         audience = {}\n\
         # Clients enrol with `jwt-server keys invite NAME`; set to false once all have.\n\
         enroll = true\n\
         # GET /healthz, /readyz, /metrics for the balancer and Prometheus (plain HTTP).\n\
         status_listen = \"127.0.0.1:9090\"\n",
        q(&dir.join(CERT)),
        q(&dir.join(KEY)),
        q(&dir.join(KEYSTORE)),
        toml::Value::String(audience.to_owned())
    )
}

/// Creates `dir` 0700 (or tightens it), owned by `owner`.
fn create_dir(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    chown(dir, owner)
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("cannot give {} to uid {uid}: {e}", path.display())),
        None => Ok(()),
    }
}

/// The uid and gid of `name` in /etc/passwd.
fn system_user(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .ok_or_else(|| {
            format!("no user {name:?} (the package creates jwt-server; or pass --user USER)")
        })
}

fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_owned())
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
