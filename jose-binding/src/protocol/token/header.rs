//! Steps 4–6 on a protected header, and the per-connection memo of headers
//! that passed them.

use std::sync::Arc;

use super::*;
use crate::protocol::error::{reject, ErrorCode, Rejection};
use crate::protocol::json;

/// Protected headers that passed steps 4–6 on one connection, by their exact
/// encoded text and layer kind. A client sends the same few headers with
/// every token, and their analysis depends on nothing but the text and the
/// kind, so a repeat skips the base64 decode and the JSON parse. Holds at
/// most four headers (the two layers of a nested form, and room for a
/// rotation), replaced oldest first; only headers that passed are held.
#[derive(Debug, Default)]
pub struct HeaderMemo {
    entries: Vec<MemoEntry>,
    next: usize,
}

#[derive(Debug)]
struct MemoEntry {
    text: Box<str>,
    kind: Kind,
    cty: Cty,
    kid: Option<Arc<str>>,
}

impl HeaderMemo {
    const SLOTS: usize = 4;

    pub(super) fn get(&self, text: &str, kind: Kind) -> Option<(Cty, Option<Arc<str>>)> {
        self.entries
            .iter()
            .find(|e| e.kind == kind && *e.text == *text)
            .map(|e| (e.cty, e.kid.clone()))
    }

    pub(super) fn put(&mut self, text: &str, kind: Kind, cty: Cty, kid: Option<Arc<str>>) {
        let entry = MemoEntry {
            text: text.into(),
            kind,
            cty,
            kid,
        };
        if self.entries.len() < Self::SLOTS {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % Self::SLOTS;
        }
    }
}

pub(crate) const NON_CANONICAL: Rejection = reject(
    ErrorCode::Malformed,
    "a part is not canonical unpadded base64url",
);

/// Steps 4–6 on a decoded protected header of a layer of `kind`; gives the
/// header's `cty` and string `kid`, the only members read after step 6.
pub fn analyse_header(bytes: &[u8], kind: Kind) -> Result<(Cty, Option<String>), Rejection> {
    if bytes.len() > MAX_HEADER_LEN {
        return Err(reject(
            ErrorCode::TooLarge,
            "protected header is larger than 1024 bytes",
        ));
    }
    let h = json::parse_header(bytes, &FORBIDDEN_HEADERS)
        .map_err(|e| reject(ErrorCode::Malformed, e.detail()))?;
    if h.forbidden {
        return Err(reject(
            ErrorCode::UnsupportedHeader,
            "header has a member this protocol forbids (crit, zip, jku, jwk, x5u, x5c, x5t, x5t#S256, b64)",
        ));
    }
    if h.typ.as_str() != Some("JWT") {
        return Err(reject(
            ErrorCode::UnsupportedHeader,
            "header typ is absent or not exactly \"JWT\"",
        ));
    }
    match kind {
        Kind::Jws if h.alg.as_str() != Some("HS256") => {
            return Err(reject(
                ErrorCode::UnsupportedAlg,
                "JWS alg is not exactly HS256",
            ))
        }
        Kind::Jwe if h.alg.as_str() != Some("dir") => {
            return Err(reject(
                ErrorCode::UnsupportedAlg,
                "JWE alg is not exactly dir",
            ))
        }
        Kind::Jwe if h.enc.as_str() != Some("A256GCM") => {
            return Err(reject(
                ErrorCode::UnsupportedAlg,
                "JWE enc is not exactly A256GCM",
            ))
        }
        _ => {}
    }
    let cty = match &h.cty {
        json::Member::Absent => Cty::Absent,
        json::Member::Str(s) if s == "JWT" => Cty::Jwt,
        _ => Cty::Other,
    };
    Ok((cty, h.kid.as_str().map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::b64;
    use crate::protocol::schedule::{EncKey, SigKey};

    /// With a memo, parsing gives exactly what it gives without one, in
    /// any order of good and bad tokens sharing headers; the memo stays at
    /// four headers and never holds one that failed.
    #[test]
    fn header_memo_changes_no_result() {
        let sig = SigKey::from_bytes([9; 32]);
        let enc = EncKey::from_bytes([9; 32]);
        let b = |json: &str| b64::encode(json.as_bytes());
        let good = sign_jws(&headers::jws("c"), b"{}", &sig);
        let h = good.split('.').next().unwrap().to_owned();
        let jwe_h = b(&headers::jwe("c"));
        let zip = b(r#"{"alg":"HS256","typ":"JWT","kid":"c","zip":"DEF"}"#);
        let mut tokens = vec![
            good.clone(),
            format!("{h}.e30.AAAA"),
            format!("{h}.e30="),
            format!("{h}..{}", b64::encode(&[0; 32])),
            format!("{h}.e30.{}", b64::encode(&[0; 31])),
            format!("{h}.e30.{}.x.y", b64::encode(&[0; 32])),
            // The same header text in a JWE and then in a JWS.
            encrypt_jwe(&headers::jwe("c"), b"x", &enc, [1; 12]),
            format!("{jwe_h}.e30.{}", b64::encode(&[0; 32])),
            format!("{zip}.e30.{}", b64::encode(&[0; 32])),
            format!("{h}x.e30.{}", b64::encode(&[0; 32])),
        ];
        for kid in ["d", "e", "f", "g", "h"] {
            tokens.push(sign_jws(&headers::jws(kid), b"{}", &sig));
        }
        let mut memo = HeaderMemo::default();
        for round in 0..3 {
            for t in &tokens {
                let plain = format!("{:?}", Layer::parse(t));
                let memoized = format!("{:?}", Layer::parse_with(t, Some(&mut memo)));
                assert_eq!(plain, memoized, "round {round}: {t}");
                assert!(memo.entries.len() <= HeaderMemo::SLOTS);
                assert!(memo.entries.iter().all(|e| *e.text != *zip));
            }
        }
    }
}
