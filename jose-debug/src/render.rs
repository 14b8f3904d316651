//! Text output: pretty, coloured on a terminal, plain when piped or when
//! `NO_COLOR` is set. Everything that comes from the token is escaped, so a
//! crafted header cannot send control sequences to the terminal.

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde_json::{Map, Value};

use crate::cli::ColorChoice;
use crate::inspect::{Claims, Content, Crypto, LayerView};
use crate::report::{
    Checks, CryptoCheck, DecodeReport, DeriveReport, KeylogReport, Mode, Schedule, Status,
};
use crate::verdict::{Outcome, Verdict};

/// Whether to colour stdout.
pub fn color_enabled(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn good(&self, s: &str) -> String {
        self.paint("1;32", s)
    }
    fn bad(&self, s: &str) -> String {
        self.paint("1;31", s)
    }
    fn warn(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn key(&self, s: &str) -> String {
        self.paint("36", s)
    }
    fn string(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn number(&self, s: &str) -> String {
        self.paint("35", s)
    }
    fn section(&self, s: &str) -> String {
        let rule = "─".repeat(60usize.saturating_sub(s.chars().count() + 4).max(2));
        self.paint("1;34", &format!("── {s} {rule}"))
    }
}

/// Escapes what a terminal would interpret: C0/C1 controls and the
/// bidirectional overrides.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
        if (c.is_control() && c != '\n') || bidi {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// [`sanitize`] for a one-line field: a line break from a token must not
/// start a line of its own that looks like this tool's.
pub fn sanitize_line(s: &str) -> String {
    sanitize(s).replace('\n', "\\n")
}

/// Pretty JSON with colours, indented by `indent` spaces.
pub fn json_block(v: &Value, indent: usize, st: Style) -> String {
    let mut out = String::new();
    out.push_str(&" ".repeat(indent));
    json_value(v, indent, st, &mut out);
    out.push('\n');
    out
}

fn json_string(s: &str) -> String {
    sanitize(&serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".to_owned()))
}

fn json_value(v: &Value, indent: usize, st: Style, out: &mut String) {
    match v {
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        Value::Object(m) => {
            out.push_str("{\n");
            for (i, (k, v)) in m.iter().enumerate() {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str(&st.key(&json_string(k)));
                out.push_str(": ");
                json_value(v, indent + 2, st, out);
                if i + 1 < m.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&" ".repeat(indent));
            out.push('}');
        }
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Array(a) => {
            out.push_str("[\n");
            for (i, v) in a.iter().enumerate() {
                out.push_str(&" ".repeat(indent + 2));
                json_value(v, indent + 2, st, out);
                if i + 1 < a.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&" ".repeat(indent));
            out.push(']');
        }
        Value::String(s) => out.push_str(&st.string(&json_string(s))),
        Value::Number(n) => out.push_str(&st.number(&n.to_string())),
        Value::Bool(b) => out.push_str(&st.number(&b.to_string())),
        Value::Null => out.push_str(&st.number("null")),
    }
}

fn field(out: &mut String, st: Style, name: &str, value: &str) {
    let _ = writeln!(out, "  {} {value}", st.bold(&format!("{name:<10}")));
}

fn note(out: &mut String, st: Style, text: &str) {
    let _ = writeln!(out, "  {} {}", st.warn("!"), st.warn(&sanitize_line(text)));
}

fn schedule_lines(out: &mut String, st: Style, s: &Schedule) {
    let id = json_string(&s.client_id);
    let secret = |name: &str| -> String {
        match &s.secrets {
            None => String::new(),
            Some(sec) => {
                let v = match name {
                    "ekm" => &sec.ekm_hex,
                    "prk" => &sec.prk_hex,
                    "sig" => &sec.sig_key_hex,
                    _ => &sec.enc_key_hex,
                };
                format!("  {}", st.warn(v))
            }
        }
    };
    let _ = writeln!(
        out,
        "    {:<13} fp={}  ({} bytes)",
        format!("root key #{}", s.root_key_index),
        s.root_key_fp,
        s.root_key_bytes
    );
    let conn = match &s.connection {
        Some(cr) => format!(
            "  {}",
            st.dim(&format!(
                "(connection {}…)",
                cr.get(..16).unwrap_or(cr.as_str())
            ))
        ),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "    {:<13} fp={}{}{conn}",
        "EKM",
        s.ekm_fp,
        secret("ekm")
    );
    let _ = writeln!(
        out,
        "    {:<13} fp={}{}  {}",
        "PRK",
        s.prk_fp,
        secret("prk"),
        st.dim("= HMAC-SHA256(root key, EKM)")
    );
    let _ = writeln!(
        out,
        "    {:<13} fp={}{}  {}",
        "sig_key",
        s.sig_key_fp,
        secret("sig"),
        st.dim(&format!(
            "= HKDF-Expand(PRK, \"jose-binding/v1 signing key\" || 0x00 || {id}, 32)"
        ))
    );
    let _ = writeln!(
        out,
        "    {:<13} fp={}{}  {}",
        "enc_key",
        s.enc_key_fp,
        secret("enc"),
        st.dim(&format!(
            "= HKDF-Expand(PRK, \"jose-binding/v1 encryption key\" || 0x00 || {id}, 32)"
        ))
    );
}

fn keylog_lines(out: &mut String, st: Style, k: &KeylogReport) {
    let _ = writeln!(
        out,
        "{}",
        st.section(&format!("key log {}", sanitize(&k.file)))
    );
    let _ = writeln!(
        out,
        "  {} TLS 1.3 connection(s) with an EXPORTER_SECRET; {} other line(s){}",
        k.connections.len(),
        k.other_lines,
        if k.tls12_lines > 0 {
            format!(" ({} TLS 1.2, which this protocol refuses)", k.tls12_lines)
        } else {
            String::new()
        }
    );
    for c in &k.connections {
        let mark = match (c.opens_token, c.root_key_index) {
            (Some(true), Some(i)) => format!(
                "  {}",
                st.good(&format!(
                    "<- the token was made on this connection (root key #{i})"
                ))
            ),
            _ => String::new(),
        };
        let ekm = match &c.ekm_hex {
            Some(h) => format!(" {}", st.warn(h)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  #{:<3} client_random {}  {}  EKM fp={}{ekm}{mark}",
            c.index, c.client_random, c.hash, c.ekm_fp
        );
    }
    for s in &k.skipped {
        note(out, st, &format!("line {} skipped: {}", s.line, s.why));
    }
    let tried = k.connections.iter().any(|c| c.opens_token.is_some());
    match &k.matched {
        Some(cr) => {
            let _ = writeln!(
                out,
                "  {} {}",
                st.good("=>"),
                st.good(&format!("bound to the connection with client_random {cr}"))
            );
        }
        None if tried => {
            let _ = writeln!(
                out,
                "  {} {}",
                st.bad("=>"),
                st.bad("the token opens on none of these connections")
            );
        }
        None => {}
    }
    out.push('\n');
}

fn parts_line(l: &LayerView) -> String {
    l.parts
        .iter()
        .map(|p| match p.bytes {
            Some(b) => format!("{} {b} B", p.name),
            None => format!("{} ({} chars, undecodable)", p.name, p.chars),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

fn layer_lines(out: &mut String, st: Style, l: &LayerView, total: usize) {
    let _ = writeln!(
        out,
        "{}",
        st.section(&format!(
            "layer {} of {}: {} ({} characters{})",
            l.depth,
            total,
            l.kind,
            l.chars,
            match l.serialization {
                "compact" => String::new(),
                other => format!(", JSON {other} serialization"),
            }
        ))
    );
    field(out, st, "parts", &parts_line(l));
    for p in &l.parts {
        for prob in &p.problems {
            note(out, st, &format!("{} part {prob}", p.name));
        }
    }
    let _ = writeln!(out, "  {}", st.bold("header"));
    match &l.header.json {
        Some(m) => out.push_str(&json_block(&Value::Object(m.clone()), 4, st)),
        None => {
            let _ = writeln!(out, "    {}", st.dim("(not a JSON object)"));
        }
    }
    if let Some(why) = l.header.strict_error {
        note(
            out,
            st,
            &format!("the server's JSON parser refuses this header: {why}"),
        );
    }
    if let Some(raw) = &l.header.raw {
        let _ = writeln!(out, "    {} {}", st.dim("raw:"), sanitize_line(raw));
    }
    if !l.forbidden_members.is_empty() {
        note(
            out,
            st,
            &format!(
                "header members the protocol forbids: {}",
                l.forbidden_members.join(", ")
            ),
        );
    }
    let label = match l.kind {
        "JWS" => "signature",
        "JWE" => "decryption",
        _ => "crypto",
    };
    // The alg, kid and library errors in it come from the token.
    let ctext = sanitize_line(&l.crypto.describe(l.kind));
    let painted = match &l.crypto {
        Crypto::Verified { .. } => st.good(&ctext),
        Crypto::Failed { .. } | Crypto::Unsecured | Crypto::Refused { .. } => st.bad(&ctext),
        _ => st.warn(&ctext),
    };
    field(out, st, label, &painted);
    for e in &l.entries {
        let what = if l.kind == "JWS" {
            "signature"
        } else {
            "recipient"
        };
        let _ = writeln!(
            out,
            "    {what} #{}: {}",
            e.index,
            sanitize_line(&e.crypto.describe(l.kind))
        );
        for (name, h) in [("protected", &e.protected), ("header", &e.header)] {
            if let Some(h) = h {
                let _ = writeln!(out, "      {}", st.bold(name));
                out.push_str(&json_block(&Value::Object(h.clone()), 8, st));
            }
        }
    }
    for w in &l.warnings {
        let _ = writeln!(
            out,
            "  {} {}",
            st.warn(&format!("warning [{}]", w.code)),
            sanitize_line(&w.message)
        );
    }
    match &l.server_syntax {
        None => field(
            out,
            st,
            "syntax",
            "passes the server's checks 3-6 for this layer",
        ),
        Some(r) => field(
            out,
            st,
            "syntax",
            &st.bad(&format!("server refuses ({}): {}", r.code, r.detail)),
        ),
    }
    let content = match &l.content {
        Content::Nested => format!("a nested token: layer {}", l.depth + 1),
        Content::Claims(_) => "a JSON claims set (below)".to_owned(),
        Content::Hidden => match l.parts.get(3).and_then(|p| p.bytes) {
            Some(n) if l.kind == "JWE" => format!("encrypted ({n} bytes of ciphertext)"),
            _ => "not readable".to_owned(),
        },
        Content::Text { text } if text.is_empty() => "empty".to_owned(),
        // One line: a payload's line break must not start a line that
        // looks like this tool's (the payload is shown unverified too).
        Content::Text { text } => format!("text: {}", sanitize_line(text)),
        Content::Binary { bytes, hex_prefix } => {
            format!("{bytes} bytes of binary, starting {hex_prefix}")
        }
    };
    field(out, st, "content", &content);
    for n in &l.notes {
        note(out, st, n);
    }
    out.push('\n');
}

fn claims_lines(out: &mut String, st: Style, c: &Claims) {
    let _ = writeln!(out, "{}", st.section("claims"));
    out.push_str(&json_block(&Value::Object(c.json.clone()), 2, st));
    if let Some(why) = c.strict_error {
        note(
            out,
            st,
            &format!("the server's JSON parser refuses these claims: {why}"),
        );
    }
    if let Some(raw) = &c.raw {
        let _ = writeln!(out, "  {} {}", st.dim("raw:"), sanitize_line(raw));
    }
    for t in &c.times {
        let when = t
            .rfc3339
            .clone()
            .unwrap_or_else(|| "(outside years 1-9999)".to_owned());
        let rel = if t.claim == "exp" && t.relative.starts_with("expired") {
            st.bad(&t.relative)
        } else {
            t.relative.clone()
        };
        let shown = c
            .json
            .get(t.claim)
            .map(Value::to_string)
            .unwrap_or_else(|| t.value.to_string());
        let _ = writeln!(
            out,
            "  {}  {} {}  {rel}",
            st.key(t.claim),
            st.number(&format!("{shown:<12}")),
            when
        );
    }
    for n in &c.notes {
        note(out, st, n);
    }
    out.push('\n');
}

fn verdict_lines(out: &mut String, st: Style, v: &Verdict, r: &DecodeReport) {
    let _ = writeln!(out, "{}", st.section("verdict"));
    let line = match v.outcome {
        Outcome::Accept => st.good(&format!(
            "the server would ACCEPT this token: form {}, client {}{}",
            v.form.unwrap_or("?"),
            v.client_id.as_deref().unwrap_or("?"),
            v.root_key_index
                .map(|i| format!(", root key #{i}"))
                .unwrap_or_default()
        )),
        Outcome::Reject => st.bad(&format!(
            "the server would REJECT this token with `{}`: {}",
            v.code.unwrap_or("?"),
            v.detail
        )),
        Outcome::Undetermined => st.warn(&format!("undetermined: {}", v.detail)),
    };
    let _ = writeln!(out, "  {line}");
    for n in &v.notes {
        note(out, st, n);
    }
    let p = &r.policy;
    let forms = if p.forms.len() == 3 {
        "all forms".to_owned()
    } else {
        format!("forms {}", p.forms.join(","))
    };
    let at = p.now_rfc3339.clone().unwrap_or_else(|| p.now.to_string());
    let _ = writeln!(
        out,
        "  {}",
        st.dim(&format!(
            "policy: audience {}, {forms}, skew {} s, max ttl {} s; at {at}{}",
            json_string(&p.audience),
            p.skew_secs,
            p.max_ttl_secs,
            if p.now_given { " (--now)" } else { " (now)" }
        ))
    );
    let _ = writeln!(
        out,
        "  {}",
        st.dim(&format!("computed by {}", v.computed_by))
    );
}

/// The whole `decode` report as text.
pub fn decode_text(r: &DecodeReport, st: Style) -> String {
    let mut out = String::new();
    if let Some(err) = &r.input.error {
        let _ = writeln!(out, "{} {}", st.bad("error:"), err);
        verdict_lines(&mut out, st, &r.verdict, r);
        out.push('\n');
        checks_lines(&mut out, st, &r.checks);
        return out;
    }
    if let Some(t) = &r.token {
        let form = match t.form {
            Some(f) => format!(" — looks like form {f}"),
            None => " — none of the protocol's forms".to_owned(),
        };
        let _ = writeln!(
            out,
            "{} {} characters: {}{form}",
            st.bold("token"),
            r.input.chars,
            t.structure
        );
    }
    for n in &r.input.notes {
        note(&mut out, st, n);
    }
    out.push('\n');

    let k = &r.keys;
    let _ = writeln!(out, "{}", st.section("keys"));
    let whose = match (&k.client_id, k.client_id_from) {
        (Some(id), Some(from)) => format!(" for client {} (from {from})", sanitize_line(id)),
        (Some(id), None) => format!(" for client {}", sanitize_line(id)),
        _ => String::new(),
    };
    match k.source {
        "derived" => {
            let _ = writeln!(
                out,
                "  derived as the server does (PROTOCOL.md §3) from {}{whose}",
                k.root_keys_from.as_deref().unwrap_or("?")
            );
            for s in &k.schedules {
                schedule_lines(&mut out, st, s);
            }
        }
        "explicit" => {
            let _ = writeln!(out, "  given on the command line{whose}");
            if let Some(fp) = &k.sig_key_fp {
                let hex = k
                    .sig_key_hex
                    .as_deref()
                    .map(|h| format!("  {}", st.warn(h)));
                let _ = writeln!(
                    out,
                    "    {:<13} fp={fp}{}",
                    "sig_key",
                    hex.unwrap_or_default()
                );
            }
            if let Some(fp) = &k.enc_key_fp {
                let hex = k
                    .enc_key_hex
                    .as_deref()
                    .map(|h| format!("  {}", st.warn(h)));
                let _ = writeln!(
                    out,
                    "    {:<13} fp={fp}{}",
                    "enc_key",
                    hex.unwrap_or_default()
                );
            }
        }
        _ if !k.jose_keys.is_empty() => {}
        _ => {
            let _ = writeln!(
                out,
                "  none: headers and JWS payloads are shown; signatures and JWE contents are not checked"
            );
        }
    }
    for j in &k.jose_keys {
        let kid = j
            .kid
            .as_deref()
            .map(|k| format!("kid {}  ", sanitize(&format!("{k:?}"))))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  --key {}: {kid}{}, {}",
            sanitize_line(&j.source),
            sanitize_line(&j.kind),
            j.fp
        );
    }
    for n in &k.notes {
        note(&mut out, st, n);
    }
    out.push('\n');
    if let Some(kl) = &r.keylog {
        keylog_lines(&mut out, st, kl);
    }
    if let Some(t) = &r.token {
        for l in &t.layers {
            layer_lines(&mut out, st, l, t.layers.len());
        }
        if let Some(c) = t.claims() {
            claims_lines(&mut out, st, c);
        }
    }
    verdict_lines(&mut out, st, &r.verdict, r);
    out.push('\n');
    checks_lines(&mut out, st, &r.checks);
    out
}

/// Every check, one line per layer, and the result the exit status gives.
fn checks_lines(out: &mut String, st: Style, c: &Checks) {
    let title = match c.mode {
        Mode::Protocol => "result (this protocol; --generic for plain JOSE)",
        Mode::Generic => "result (plain JOSE, --generic)",
    };
    let _ = writeln!(out, "{}", st.section(title));
    for l in &c.layers {
        let mark = match l.result {
            Status::Valid => st.good("ok"),
            Status::Incomplete => st.warn("not checked"),
            _ => st.bad("FAILS"),
        };
        let what = match l.kind {
            "JWE" => "decryption",
            _ => "signature",
        };
        let crypto = match l.crypto {
            CryptoCheck::Verified => "verified",
            CryptoCheck::Failed => "FAILED",
            CryptoCheck::Unsecured => "absent (alg none)",
            CryptoCheck::NotChecked => "not checked",
            CryptoCheck::Refused => "REFUSED",
        };
        let _ = writeln!(
            out,
            "  layer {} {:<4} {what} {crypto}  {mark}",
            l.depth, l.kind
        );
        if let Some(claims) = &l.claims {
            let checked = if claims.checked.is_empty() {
                "none present".to_owned()
            } else {
                claims.checked.join(", ")
            };
            let verdict = if claims.failures.is_empty() {
                st.good("hold")
            } else {
                st.bad("FAIL")
            };
            let _ = writeln!(out, "          claims checked: {checked}: {verdict}");
        }
        for w in &l.warnings {
            let _ = writeln!(out, "          {} {}", st.warn("warning"), w.code);
        }
    }
    let summary = format!(
        "exit status {} ({}): {}",
        c.exit_status,
        c.result.name(),
        c.result.meaning(c.mode)
    );
    let line = match c.result {
        Status::Valid => st.good(&format!("VALID: {summary}")),
        Status::Incomplete => st.warn(&format!("NOT SHOWN VALID: {summary}")),
        _ => st.bad(&format!("NOT VALID: {summary}")),
    };
    let _ = writeln!(out, "  {line}");
    for reason in &c.reasons {
        let _ = writeln!(out, "    - {}", sanitize_line(reason));
    }
}

/// The `derive` report as text.
pub fn derive_text(r: &DeriveReport, st: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        st.section(&format!(
            "key schedule (PROTOCOL.md §3) for client {} from {}",
            r.client_id,
            sanitize(&r.root_keys_from)
        ))
    );
    for (i, s) in r.schedules.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        schedule_lines(&mut out, st, s);
    }
    out.push('\n');
    if let Some(k) = &r.keylog {
        keylog_lines(&mut out, st, k);
    }
    if r.schedules.iter().all(|s| s.secrets.is_none()) {
        let _ = writeln!(
            out,
            "{}",
            st.dim("(fingerprints only; --show-secrets prints the values)")
        );
    }
    out
}

/// `{"error": ...}` for `--json` when the command cannot run.
pub fn json_error(message: &str) -> String {
    let mut m = Map::new();
    m.insert("error".to_owned(), Value::from(message));
    m.insert("valid".to_owned(), Value::from(false));
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_terminal_controls() {
        assert_eq!(sanitize("a\u{1b}[2Jb"), "a\\u{001b}[2Jb");
        assert_eq!(sanitize("x\u{9b}y\u{202e}z"), "x\\u{009b}y\\u{202e}z");
        assert_eq!(sanitize("plain ü ✓"), "plain ü ✓");
        let v: Value = serde_json::json!({"k\u{1b}": "v\u{9b}"});
        let s = json_block(&v, 0, Style { color: false });
        assert!(!s.contains('\u{1b}') && !s.contains('\u{9b}'), "{s}");
    }

    #[test]
    fn json_block_is_valid_json_without_colour() {
        let v: Value = serde_json::json!({"a": [1, {"b": null}], "c": "d", "e": {}, "f": []});
        let s = json_block(&v, 2, Style { color: false });
        assert_eq!(serde_json::from_str::<Value>(&s).unwrap(), v);
        let coloured = json_block(&v, 2, Style { color: true });
        assert!(coloured.contains("\x1b["));
    }
}
