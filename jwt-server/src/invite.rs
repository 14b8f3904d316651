//! `jwt-server keys invite|invites|revoke-invite`: pending enrolments
//! (docs/PROTOCOL.md §10). An invite is a one-time secret in the keystore
//! under the client id it will enrol; the line printed carries it with the
//! server's URL and pin. A server started with `--enroll` turns it into
//! the client on first use.

use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jose_binding::bundle::{Bundle, Trust};
use jose_binding::invite::{Invite, SECRET_LEN};
use jose_binding::private_file::{write_private, Existing};
use jose_binding::{pin, tls, ClientId, Form, SoftwareRootKey};
use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use crate::cli::{Advertised, BundleArgs, Global, InviteArgs, ListenAddr, ServeSettings};
use crate::keys::{keystore_for, load_or_empty, lock, save};

/// `keys invite NAME`.
pub(crate) fn invite(a: InviteArgs, g: &Global, s: &ServeSettings) -> Result<(), String> {
    let id = ClientId::new(&a.target.client_id).map_err(|e| e.to_string())?;
    let path = keystore_for(a.target.keystore.clone(), g, s)?;
    let (chain_path, chain) = chain_for(&a.server, g, s)?;
    let audience = crate::config::audience(s, Some(&chain_path));
    let url = advertised(&a.server, s, &audience)?;
    let pin = pin::pin_of_chain(&chain).ok_or("the certificate chain is not X.509")?;
    // Where the line goes is settled before anything changes.
    let out = match (&a.out, a.stdout || std::io::stdout().is_terminal()) {
        (Some(p), _) if p.is_dir() => {
            return Err(format!(
                "--out {} is a directory; name the file (nothing was changed)",
                p.display()
            ))
        }
        (Some(p), _) => Some(p.as_path()),
        (None, true) => None,
        (None, false) => {
            return Err(
                "stdout is not a terminal, and the invite line is a credential until used: \
                 use --out FILE (written mode 0600), or --stdout to print it anyway; nothing was changed"
                    .into(),
            )
        }
    };
    let secret = SoftwareRootKey::generate();
    let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
    bytes.copy_from_slice(secret.expose());
    let expires = now() + a.ttl.as_secs();
    let invite = Invite::new(&url, pin, id.clone(), bytes, expires).map_err(|e| e.to_string())?;
    let line = invite.line();

    let _lock = lock(&path)?;
    let mut ks = load_or_empty(&path)?;
    let replaced = ks.invite(id.as_str()).is_some();
    ks.set_invite(id.clone(), secret, expires, &url)
        .map_err(|e| format!("client {id}: {e}; nothing was changed"))?;
    if let Some(p) = out {
        // The line's file exists before the keystore holds its secret, so
        // a failure leaves no invite nobody has.
        write_private(p, format!("{}\n", *line).as_bytes(), Existing::Replace)
            .map_err(|e| format!("cannot write {}: {e}; nothing was changed", p.display()))?;
    }
    if let Err(e) = save(&ks, &path) {
        if let Some(p) = out {
            let _ = std::fs::remove_file(p);
        }
        return Err(format!("{e}; no invite was made"));
    }
    let until = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(expires));
    let what = if replaced {
        "replaced (the previous line no longer works)"
    } else {
        "made"
    };
    eprintln!(
        "invite for client {id} {what}: server {url}, pinned {pin}, valid until {until} (once)"
    );
    match out {
        Some(p) => eprintln!(
            "the line is in {} (mode 0600); on the client run: jwt-client enroll - < {}",
            p.display(),
            p.display()
        ),
        None => {
            eprintln!("on the client run: jwt-client enroll <the line below>");
            let mut stdout = std::io::stdout();
            stdout
                .write_all(format!("{}\n", *line).as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| {
                    format!("cannot write the line to stdout: {e}; revoke the invite with `jwt-server keys revoke-invite {id}`")
                })?;
        }
    }
    if !s.enroll {
        eprintln!("note: a client can enrol only at a server started with --enroll (or JWT_ENROLL=1, or enroll = true in --config)");
    }
    Ok(())
}

/// `keys invites`.
pub(crate) fn list(
    keystore: Option<std::path::PathBuf>,
    json: bool,
    g: &Global,
    s: &ServeSettings,
) -> Result<(), String> {
    let path = keystore_for(keystore, g, s)?;
    let ks = load_or_empty(&path)?;
    let now = now();
    for i in ks.invites() {
        let until = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(i.expires));
        let state = if i.expired_at(now) {
            "expired"
        } else {
            "pending"
        };
        if json {
            outln!(
                "{}",
                serde_json::json!({
                    "client_id": i.client.id.as_str(),
                    "expires": i.expires,
                    "expires_rfc3339": until.to_string(),
                    "state": state,
                    "url": i.url,
                })
            );
        } else {
            outln!("{}\t{state}\tuntil {until}\t{}", i.client.id, i.url);
        }
    }
    Ok(())
}

/// `keys revoke-invite NAME`.
pub(crate) fn revoke(
    target: crate::cli::KeyTarget,
    g: &Global,
    s: &ServeSettings,
) -> Result<(), String> {
    let id = ClientId::new(&target.client_id).map_err(|e| e.to_string())?;
    let path = keystore_for(target.keystore, g, s)?;
    let _lock = lock(&path)?;
    let mut ks = load_or_empty(&path)?;
    if !ks.remove_invite(id.as_str()) {
        return Err(match ks.get(id.as_str()) {
            Some(_) => format!("no pending invite for {id}: it was used (the client exists; `keys remove {id}` removes it)"),
            None => format!("no pending invite for {id} in {}", path.display()),
        });
    }
    save(&ks, &path)?;
    eprintln!("invite for client {id} revoked: its line no longer works");
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `--advertise`, else `https://<audience>:<listen port>`; its host must be
/// the audience, which the enrolling client names in `aud`.
fn advertised(a: &Advertised, s: &ServeSettings, audience: &str) -> Result<String, String> {
    let url = match (&a.advertise, &s.listen) {
        (Some(u), _) => u.trim_end_matches('/').to_owned(),
        (None, ListenAddr::Tcp(addr)) => format!("https://{audience}:{}", addr.port()),
        (None, ListenAddr::Unix(_)) => {
            return Err("the server listens on a Unix socket: pass --advertise https://HOST[:PORT], the address clients reach".into())
        }
    };
    if !jose_binding::invite::is_origin(&url) {
        return Err(format!(
            "--advertise {url:?}: the URL must be https://HOST[:PORT], without path, query or user info"
        ));
    }
    let authority = &url["https://".len()..];
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    if !host.eq_ignore_ascii_case(audience) {
        return Err(format!(
            "the advertised host {host:?} is not the server's audience {:?}: a client names the \
             host it dials in `aud`, so its tokens would be refused; advertise \
             https://{}[:PORT], or serve with --audience {host}",
            audience, audience
        ));
    }
    Ok(url)
}

/// The chain clients will see: `--chain`, else the server's certificate.
fn chain_for(
    a: &Advertised,
    g: &Global,
    s: &ServeSettings,
) -> Result<(std::path::PathBuf, Vec<CertificateDer<'static>>), String> {
    let chain_path = match (&a.chain, &s.cert) {
        (Some(p), _) => p.clone(),
        _ if !matches!(s.frontend, crate::cli::Frontend::None) => {
            return Err("behind --frontend the frontend holds the certificate: pass --chain FILE, the chain it serves".into());
        }
        (None, Some(cert)) => cert.clone(),
        (None, None) if g.dev => crate::config::DEV_CERT.into(),
        (None, None) => return Err("no certificate to pin: pass the server's --cert FILE (or JWT_CERT, or cert in --config), or --chain FILE".into()),
    };
    if !chain_path.exists() {
        return Err(crate::serve::missing_hint("cert", &chain_path));
    }
    let chain =
        tls::load_certs(&chain_path).map_err(|e| format!("{}: {e}", chain_path.display()))?;
    Ok((chain_path, chain))
}

/// `keys add NAME --bundle FILE`'s text: the client's whole configuration
/// with its new `key`, sealed with age to `--to` when given.
pub(crate) fn bundle_text(
    id: &ClientId,
    key: &SoftwareRootKey,
    a: &BundleArgs,
    g: &Global,
    s: &ServeSettings,
) -> Result<Zeroizing<String>, String> {
    // Checked before the key exists anywhere: a mistyped recipient changes nothing.
    let recipient = match &a.to {
        Some(r) => Some(
            jose_binding::sealed::parse_recipient(r)
                .map_err(|e| format!("--to: {e}; nothing was changed"))?,
        ),
        None => None,
    };
    let (chain_path, chain) = chain_for(&a.server, g, s)?;
    let audience = crate::config::audience(s, Some(&chain_path));
    let server = advertised(&a.server, s, &audience)?;
    let trust = match chain.as_slice() {
        [] => return Err("the certificate chain is empty".into()),
        [leaf] => Trust::ServerKey(
            pin::server_key_digest(leaf).ok_or("the server's certificate is not X.509")?,
        ),
        [.., ca] => Trust::CaCertificate(ca.to_vec()),
    };
    let form = Form::ALL
        .into_iter()
        .find(|f| s.forms.contains(f))
        .unwrap_or(Form::Signed);
    let bundle = Bundle {
        server,
        client_id: id.clone(),
        audience,
        form,
        trust,
        root_key: key.clone(),
    };
    let text = bundle.to_text();
    match recipient {
        None => Ok(text),
        Some(r) => {
            let sealed = jose_binding::sealed::seal(&r, text.as_bytes())
                .map_err(|e| format!("{e}; nothing was changed"))?;
            Ok(Zeroizing::new(format!(
                "# jose-binding enrolment bundle for client {id}, sealed with age to {r}\n\
                 # Install it with: jwt-client enroll FILE --identity AGE_KEY_FILE\n{sealed}\n"
            )))
        }
    }
}
