//! The sharing scheme: Shamir over GF(256) with vsss-rs, and the
//! commitment every share carries.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use vsss_rs::Gf256;
use zeroize::{Zeroize, Zeroizing};

use crate::protocol::client_id::ClientId;
use crate::protocol::schedule::{RootKey, SoftwareRootKey};

use super::*;

/// HMAC-SHA256(key, label || 0x00 || group id || client id).
pub fn commitment(key: &SoftwareRootKey, group: &GroupId, client: &ClientId) -> [u8; 32] {
    commitment_mac(key, group, client)
        .finalize()
        .into_bytes()
        .into()
}

pub(super) fn commitment_mac(
    key: &SoftwareRootKey,
    group: &GroupId,
    client: &ClientId,
) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(COMMITMENT_LABEL);
    mac.update(&[0]);
    mac.update(group.as_bytes());
    mac.update(client.as_str().as_bytes());
    mac
}

/// The result of [`split`]: one encrypted share per holder, in holder order
/// (share index = position + 1).
#[derive(Debug)]
pub struct Split {
    /// This split's fresh identifier.
    pub group: GroupId,
    /// Shares needed to rebuild the key.
    pub threshold: u8,
    /// The split key's [`RootKey::fingerprint`], 16 hex digits.
    pub key_fingerprint: String,
    /// One per holder, in holder order.
    pub shares: Vec<EncryptedShare>,
}

/// Splits `key` into one share per holder, any `threshold` of which rebuild
/// it, each encrypted to its holder. Checks that the shares rebuild the key
/// before returning them.
pub fn split(
    client: &ClientId,
    key: &SoftwareRootKey,
    threshold: usize,
    holders: &[Holder],
) -> Result<Split, CustodyError> {
    let n = holders.len();
    if threshold < 2 {
        return Err(CustodyError::ThresholdTooLow(threshold));
    }
    if n > MAX_SHARES {
        return Err(CustodyError::TooManyHolders(n));
    }
    if threshold > n {
        return Err(CustodyError::ThresholdAboveShares {
            threshold,
            shares: n,
        });
    }
    for (i, h) in holders.iter().enumerate() {
        if holders[..i].iter().any(|o| o.name == h.name) {
            return Err(CustodyError::DuplicateHolder(h.name.clone()));
        }
    }
    // Both fit in u8: 2 <= threshold <= n <= 255.
    let (t8, n8) = (threshold as u8, n as u8);
    let group = GroupId::random();
    let key_fingerprint = RootKey::fingerprint(key).to_string();
    let commitment = commitment(key, &group, client);
    let raw = Zeroizing::new(
        Gf256::split_bytes(
            threshold,
            n,
            key.expose(),
            getrandom::rand_core::UnwrapErr(getrandom::SysRng),
        )
        .map_err(|e| CustodyError::Split(e.to_string()))?,
    );
    let mut plain = Vec::with_capacity(n);
    for (i, (share, holder)) in raw.iter().zip(holders).enumerate() {
        let index = (i + 1) as u8;
        if share.len() != key.expose().len() + 1 || share[0] != index {
            return Err(CustodyError::Split(
                "unexpected share layout from vsss-rs".into(),
            ));
        }
        plain.push(PlainShare {
            meta: ShareMeta {
                group,
                client: client.clone(),
                threshold: t8,
                shares: n8,
                index,
                holder: holder.name.clone(),
                recipient: holder.recipient.to_string(),
                key_fingerprint: key_fingerprint.clone(),
                commitment,
            },
            value: Zeroizing::new(share[1..].to_vec()),
            origin: format!("share #{index} ({})", holder.name),
        });
    }
    if plain.len() != n {
        return Err(CustodyError::Split(
            "vsss-rs returned too few shares".into(),
        ));
    }
    // Self-check: the first t and the last t shares rebuild the key.
    for subset in [&plain[..threshold], &plain[n - threshold..]] {
        let back = combine(client, subset)?;
        if back.key.expose() != key.expose() {
            return Err(CustodyError::Split(
                "the shares do not rebuild the key".into(),
            ));
        }
    }
    let shares = plain
        .iter()
        .zip(holders)
        .map(|(p, h)| p.encrypt(&h.recipient))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Split {
        group,
        threshold: t8,
        key_fingerprint,
        shares,
    })
}

/// A key rebuilt by [`combine`] and checked against the commitment.
#[derive(Debug)]
pub struct Rebuilt {
    /// The root key, checked against the commitment and the fingerprint.
    pub key: SoftwareRootKey,
    /// The split the shares came from.
    pub group: GroupId,
    /// Shares that split needs.
    pub threshold: u8,
    /// Shares that split made.
    pub shares: u8,
    /// The shares used: (index, holder), by index.
    pub used: Vec<(u8, String)>,
}

/// Rebuilds `client`'s key from decrypted shares: they must belong to one
/// split of that client's key, have distinct indexes and reach the
/// threshold; the rebuilt key must match the commitment. All given shares
/// are used, so any one that is corrupted is detected.
pub fn combine(client: &ClientId, shares: &[PlainShare]) -> Result<Rebuilt, CustodyError> {
    let first = shares.first().ok_or(CustodyError::NoShares)?;
    for s in shares {
        if s.meta.client != *client {
            return Err(CustodyError::OtherClient {
                origin: s.origin.clone(),
                found: s.meta.client.to_string(),
                want: client.to_string(),
            });
        }
    }
    for s in &shares[1..] {
        if s.meta.group != first.meta.group {
            return Err(CustodyError::OtherGroup {
                first: first.origin.clone(),
                second: s.origin.clone(),
                first_group: first.meta.group.to_string(),
                second_group: s.meta.group.to_string(),
            });
        }
        let disagree = |field| CustodyError::Disagree {
            first: first.origin.clone(),
            second: s.origin.clone(),
            field,
        };
        if s.meta.threshold != first.meta.threshold {
            return Err(disagree("threshold"));
        }
        if s.meta.shares != first.meta.shares {
            return Err(disagree("shares"));
        }
        if s.meta.commitment != first.meta.commitment {
            return Err(disagree("commitment"));
        }
        if s.meta.key_fingerprint != first.meta.key_fingerprint {
            return Err(disagree("key-fingerprint"));
        }
        if s.value.len() != first.value.len() {
            return Err(disagree("key length"));
        }
    }
    for (i, s) in shares.iter().enumerate() {
        if s.meta.index == 0 || s.meta.index > s.meta.shares {
            return Err(CustodyError::Malformed {
                origin: s.origin.clone(),
                problem: format!("index {} is out of range", s.meta.index),
            });
        }
        if let Some(prev) = shares[..i].iter().find(|p| p.meta.index == s.meta.index) {
            return Err(CustodyError::DuplicateIndex {
                first: prev.origin.clone(),
                second: s.origin.clone(),
                index: s.meta.index,
            });
        }
    }
    let (need, total) = (first.meta.threshold, first.meta.shares);
    if need < 2 || shares.len() < need as usize {
        return Err(CustodyError::BelowThreshold {
            got: shares.len(),
            need,
            shares: total,
        });
    }
    let mut points: Zeroizing<Vec<Vec<u8>>> = Zeroizing::new(Vec::with_capacity(shares.len()));
    for s in shares {
        let mut p = Vec::with_capacity(s.value.len() + 1);
        p.push(s.meta.index);
        p.extend_from_slice(&s.value);
        points.push(p);
    }
    let bytes =
        Zeroizing::new(
            Gf256::combine_bytes(&*points).map_err(|e| CustodyError::Malformed {
                origin: first.origin.clone(),
                problem: format!("cannot interpolate: {e}"),
            })?,
        );
    points.zeroize();
    let key = SoftwareRootKey::new(&bytes).map_err(|_| CustodyError::CommitmentMismatch)?;
    let mac = commitment_mac(&key, &first.meta.group, client);
    // verify_slice compares in constant time.
    if mac.verify_slice(&first.meta.commitment).is_err()
        || RootKey::fingerprint(&key).to_string() != first.meta.key_fingerprint
    {
        return Err(CustodyError::CommitmentMismatch);
    }
    let mut used: Vec<(u8, String)> = shares
        .iter()
        .map(|s| (s.meta.index, s.meta.holder.clone()))
        .collect();
    used.sort_unstable();
    Ok(Rebuilt {
        key,
        group: first.meta.group,
        threshold: need,
        shares: total,
        used,
    })
}
