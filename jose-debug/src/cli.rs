//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jose_binding::Form;

const ABOUT: &str = "Inspect JOSE tokens bound to a TLS 1.3 connection: decode every layer, \
decrypt and verify with given or derived keys, find the connection a token was made on, \
and say what the server would answer.";

/// The exit statuses of `decode`, in both help texts.
macro_rules! exit_statuses {
    () => {
        "\
Exit status of decode (--json: checks.result and checks.exit_status, per layer in checks.layers):
  0  valid: every check passed (the server would accept the token; with --generic, every
     layer verifies or decrypts and the claims checked hold)
  1  crypto_failed: a signature or decryption check failed (alg none counts: nothing vouches
     for the content)
  2  usage error: bad option, unreadable file, no token
  3  rejected: no cryptographic check failed, but a format, claim or protocol check did
     (expired, not yet valid, wrong aud, the server would refuse)
  4  incomplete: nothing failed, but something could not be checked (no key for a layer,
     a detached payload not given, compressed content, a key a library would not use)
derive exits 0, or 2 on a usage error."
    };
}

const MAIN_AFTER: &str = concat!(
    exit_statuses!(),
    "

Secrets (root key, EKM, derived keys, key-log secrets) appear only as fingerprints unless \
--show-secrets is given. Colour: on a terminal only; NO_COLOR or --color never turns it off.

Run `jose-debug decode --help` or `jose-debug derive --help` for examples."
);

const DECODE_AFTER: &str = concat!(
    "\
KEY is hex, base64url (padding and +/ tolerated), `hex:...`/`b64:...` to force one, or @FILE \
(a file holding one of those; a plain path also works when the text is not itself a key).

Examples:
  # what is inside (no keys: headers, JWS payloads, JWE sizes; the checks before any key)
  jose-debug decode eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImNsaWVudDEifQ.eyJ...

  # from stdin or a pasted header line; `-` is stdin too
  pbpaste | jose-debug decode
  echo 'Authorization: Bearer eyJ...' | jose-debug decode -

  # derive the keys exactly as the server does, for one connection's EKM
  jose-debug decode --root-key @fixtures/client1.key --client-id client1 --ekm 5a7e59af... TOKEN

  # find the connection a token was made on in a key log: client and server write one
  # whenever SSLKEYLOGFILE is set (this example runs both and prints a token it sent)
  SSLKEYLOGFILE=/tmp/keys.log cargo run -p jose-debug --example bound_token > /tmp/token
  jose-debug decode --keylog /tmp/keys.log --root-key @fixtures/client1.key < /tmp/token

  # the server's keystore instead of one key (all of the client's keys, rotation included)
  jose-debug decode --keystore fixtures/keystore.toml --keylog /tmp/keys.log TOKEN

  # subkeys you already have (e.g. from `jose-debug derive --show-secrets`)
  jose-debug decode --sig-key c1dc3ea5... --enc-key 8caaae01... TOKEN

  # any JOSE token with --key (plain JOSE, as --generic): a JWKS picks the key by kid, and
  # without a kid tries each key of a fitting type and says which verified
  jose-debug decode --key idp-jwks.json TOKEN
  # a JWE for an EC or RSA key: its private key, in PEM
  jose-debug decode --key ec-private.pem JWE
  # PBES2; a detached payload; warnings as failures (exit 3)
  jose-debug decode --password-file pw.txt JWE
  jose-debug decode --key k.jwk --payload content.bin 'eyJhbGciOiJIUzI1NiJ9..c2ln'
  jose-debug decode --strict --key k.jwk TOKEN

  # octet keys still work (RFC 7515 A.1: valid when the signature verifies and exp/nbf hold
  # at --now)
  jose-debug decode --generic --sig-key AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow \\
      --now 2011-03-22T18:00:00Z TOKEN
  # (RFC 7520 5.6: a dir/A128GCM JWE of plain text)
  jose-debug decode --generic --enc-key XctOhJAkA-pD9Lh7ZgW_2A TOKEN

  # for scripts
  jose-debug decode --json --keylog keys.log --root-key @k TOKEN | jq -r .checks.result

Key forms (--key FILE, repeatable): PEM SPKI public key, PKCS#1 RSA public key, X.509
certificate, PKCS#8 private key, PKCS#1 RSA private key, SEC1 EC private key (several blocks
in one file are several keys); a JWK; a JWKS ({\"keys\":[...]}). A private key verifies too.
--sig-key/--enc-key take octets (hex or base64url); --password-file a PBES2 password.

Algorithms (RFC 7518, RFC 8037), compact or JSON (flattened, general) serialization:
  JWS  HS256 HS384 HS512  RS256 RS384 RS512  PS256 PS384 PS512  ES256 ES384 ES512 ES256K  EdDSA
  JWE  alg  dir  A128KW A192KW A256KW  A128GCMKW A192GCMKW A256GCMKW  RSA1_5 RSA-OAEP
            RSA-OAEP-256 RSA-OAEP-384 RSA-OAEP-512
            ECDH-ES ECDH-ES+A128KW ECDH-ES+A192KW ECDH-ES+A256KW
            PBES2-HS256+A128KW PBES2-HS384+A192KW PBES2-HS512+A256KW
       enc  A128GCM A192GCM A256GCM  A128CBC-HS256 A192CBC-HS384 A256CBC-HS512
Nested layers in any mix. zip content is decrypted but never inflated (exit 4).

Warnings (RFC 8725), codes in --json (checks.layers[].warnings); exit status unchanged
unless --strict (then 3): alg-none, hmac-key-short, rsa-key-small, rsa1_5, alg-key-mismatch,
crit, zip, p2c-low, jku, x5u, embedded-jwk, detached-payload, b64-false, header-overlap.
Refused before any computing (exit 3): p2c-too-large (PBES2 p2c above 1000000),
epk-invalid (an ECDH-ES epk not on its curve), an encrypted key no key wrap makes, more
than 16 signatures or recipients; crit, b64 or zip outside the protected header. At most
64 keys are tried per signature or recipient; a run computes at most 8000000 PBKDF2
iterations and 64 RSA private-key operations.
jku, x5u and jwk are never followed.

The verdict is computed by the server's own code (jose_binding's verifier) with the policy \
given by --audience, --forms, --skew-secs, --max-ttl-secs, at --now. The client id defaults \
to the token's kid. With --generic the verdict is still shown, but the exit status is plain \
JOSE's: exp and nbf (with --skew-secs) when the payload is a JSON claims set, aud only when \
--audience is given.

",
    exit_statuses!()
);

const DERIVE_AFTER: &str = "\
Prints PROTOCOL.md §3 for the inputs given:
  PRK     = HMAC-SHA256(root key, EKM)
  sig_key = HKDF-Expand-SHA256(PRK, \"jose-binding/v1 signing key\"    || 0x00 || client_id, 32)
  enc_key = HKDF-Expand-SHA256(PRK, \"jose-binding/v1 encryption key\" || 0x00 || client_id, 32)

Examples:
  # the first test vector of docs/PROTOCOL.md, keys shown
  jose-debug derive --client-id client1 --root-key REfaz4EODT-Lj9W5Hc_eaiEOAJgT0DtyUIBXrcVD7mk \\
      --ekm d5efe7d2d7de310d9144daceaef444b30217c22a89372afb316692531caa8563 --show-secrets

  # every connection of a key log (EKM per RFC 8446 §7.5, label EXPORTER-Channel-Binding)
  jose-debug derive --client-id client1 --root-key @fixtures/client1.key --keylog /tmp/keys.log

  # every key the server holds for the client
  jose-debug derive --client-id client1 --keystore fixtures/keystore.toml --ekm HEX --json";

#[derive(Debug, Parser)]
#[command(name = "jose-debug", version, about = ABOUT, after_help = MAIN_AFTER)]
pub struct Cli {
    /// When to colour the output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always (even when piped or with NO_COLOR).
    Always,
    /// Never.
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode a token: every layer's header and claims, keys, connection and verdict.
    #[command(after_help = DECODE_AFTER)]
    Decode(DecodeArgs),
    /// Print the key schedule (PROTOCOL.md §3) for a root key, EKM(s) and client id.
    #[command(after_help = DERIVE_AFTER)]
    Derive(DeriveArgs),
    /// Print the shell completion script (the package installs them).
    Completions(jose_binding_settings::shipped::CompletionsArgs),
    /// Print the man page (roff), as the package installs it.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The token; `-` or nothing reads standard input, @FILE reads a file.
    /// "Bearer " and "Authorization:" prefixes, quotes and line breaks are removed.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,

    #[command(flatten)]
    pub jose: JoseKeyArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Judge the token as plain JOSE (RFC 7515/7516/7519) instead of by this
    /// protocol: valid when every layer verifies or decrypts with the keys
    /// given, whatever the payload; when it is a JSON claims set, exp and
    /// nbf must hold at --now, and aud must name --audience if given. The
    /// server's verdict is still shown. Implied by --key and --password-file.
    #[arg(long)]
    pub generic: bool,

    /// Make every warning (RFC 8725's mistakes: alg none, short HMAC key,
    /// RSA under 2048 bits, RSA1_5, alg/key mismatch, crit, zip, PBES2
    /// count, epk, jku/x5u/jwk headers, detached or unencoded payload)
    /// reject the token: exit status 3.
    #[arg(long)]
    pub strict: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Keys of plain JOSE, for any algorithm.
#[derive(Debug, Args)]
pub struct JoseKeyArgs {
    /// A key file, repeatable: PEM (SPKI public key; PKCS#8, PKCS#1 or SEC1
    /// private key; X.509 certificate; several blocks), a JWK, or a JWK set
    /// ({"keys":[...]}). A private key verifies too. The token's kid picks
    /// the key; without a kid, or with one not in the set, every key of a
    /// fitting type is tried and the output says which verified. Several
    /// files: repeat it, or separate them with commas.
    #[arg(
        long,
        value_name = "FILE",
        env = "JOSE_DEBUG_KEY",
        value_delimiter = ','
    )]
    pub key: Vec<PathBuf>,

    /// A file holding the PBES2 password (one line; its line break is not
    /// part of it).
    #[arg(long, value_name = "FILE", env = "JOSE_DEBUG_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,

    /// The content of a JWS with a detached payload (RFC 7515 Appendix F).
    #[arg(long, value_name = "FILE")]
    pub payload: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeriveArgs {
    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One JSON document on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also print secret values (EKM, PRK, sig_key, enc_key) in hex, not
    /// only their fingerprints. Whoever sees them can forge tokens for the
    /// connection.
    #[arg(long)]
    pub show_secrets: bool,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// HS256 key of the connection (sig_key), or any HMAC key (HS256/384/512)
    /// for a generic JWS.
    #[arg(
        long,
        value_name = "KEY",
        env = "JOSE_DEBUG_SIG_KEY",
        hide_env_values = true
    )]
    pub sig_key: Option<String>,

    /// A256GCM key of the connection (enc_key), or the symmetric key of any
    /// JWE: dir (16 to 64 bytes, as its enc needs), A*KW or A*GCMKW.
    #[arg(
        long,
        value_name = "KEY",
        env = "JOSE_DEBUG_ENC_KEY",
        hide_env_values = true
    )]
    pub enc_key: Option<String>,

    /// The client's root key (32 to 64 bytes), usually @FILE (a client key file).
    #[arg(
        long,
        value_name = "KEY",
        env = "JOSE_DEBUG_ROOT_KEY",
        hide_env_values = true
    )]
    pub root_key: Option<String>,

    /// The server's keystore (TOML): uses every key it holds for the client.
    #[arg(long, value_name = "FILE", env = "JOSE_DEBUG_KEYSTORE")]
    pub keystore: Option<PathBuf>,

    /// The connection's EKM (32 bytes, hex or base64url, or @FILE).
    #[arg(
        long,
        value_name = "HEX",
        env = "JOSE_DEBUG_EKM",
        hide_env_values = true
    )]
    pub ekm: Option<String>,

    /// NSS key log (what SSLKEYLOGFILE makes client and server write): the
    /// EKM of every TLS 1.3 connection in it is computed and tried.
    #[arg(long, value_name = "FILE", env = "JOSE_DEBUG_KEYLOG")]
    pub keylog: Option<PathBuf>,

    /// The client id (default: the token's kid).
    #[arg(long, value_name = "ID", env = "JOSE_DEBUG_CLIENT_ID")]
    pub client_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The audience the server expects [default: localhost]. With
    /// --generic, aud is checked only when this is given.
    #[arg(long, value_name = "AUD", env = "JOSE_DEBUG_AUDIENCE")]
    pub audience: Option<String>,

    /// Forms the server accepts, comma-separated (signed, encrypted-then-signed,
    /// signed-then-encrypted, or S, ES, SE). Default: all three.
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = crate::verdict::parse_form)]
    pub forms: Option<Vec<Form>>,

    /// Clock skew the server allows on exp, iat and nbf.
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub skew_secs: u64,

    /// Longest exp - iat the server accepts.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub max_ttl_secs: u64,

    /// The time to judge at: seconds since the epoch or RFC 3339
    /// (e.g. 2026-01-01T00:00:00Z). Default: now.
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_forms_and_flags() {
        let cli = Cli::try_parse_from([
            "jose-debug",
            "decode",
            "--forms",
            "S,encrypted-then-signed",
            "--json",
            "tok",
        ])
        .unwrap();
        let Command::Decode(d) = cli.command else {
            panic!("decode")
        };
        assert_eq!(
            d.policy.forms,
            Some(vec![Form::Signed, Form::EncryptedThenSigned])
        );
        assert!(d.output.json);
        assert_eq!(d.token.as_deref(), Some("tok"));
        assert!(Cli::try_parse_from(["jose-debug", "decode", "--forms", "jwt"]).is_err());
    }
}
