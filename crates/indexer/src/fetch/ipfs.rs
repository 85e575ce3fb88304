//! `ipfs://` URIs: the CID and path are checked before any request, so a registrant's
//! URI cannot put anything but `/ipfs/<cid>/<path>` onto the operator's gateway.

use reqwest::Url;

use super::{Failure, Fetcher, preview};

impl Fetcher {
    /// `ipfs://<cid>/<path>` (or the older `ipfs://ipfs/<cid>`) on the gateway, once
    /// the CID is a real CID and the path cannot climb out of it.
    pub(super) fn gateway_url(&self, uri: &str) -> Result<Url, Failure> {
        let rest = uri.get("ipfs://".len()..).unwrap_or_default();
        let rest = rest.strip_prefix("ipfs/").unwrap_or(rest);
        if rest.is_empty() {
            return Err(Failure::new(
                "malformed",
                format!("{} names no IPFS content", preview(uri)),
            ));
        }
        let (cid, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        cid::check(cid).map_err(|why| {
            Failure::new(
                "malformed",
                format!(
                    "{} does not name an IPFS CID ({why}); use ipfs://<CID>/<path> with a CIDv0 (Qm..., 46 characters) or a CIDv1 such as bafy...",
                    preview(uri)
                ),
            )
        })?;
        check_ipfs_path(path).map_err(|why| {
            Failure::new(
                "malformed",
                format!(
                    "{} has an unusable path after the CID ({why}); use plain names such as ipfs://<CID>/agent.json",
                    preview(uri)
                ),
            )
        })?;
        self.ipfs_gateway
            .join(&format!("ipfs/{rest}"))
            .map_err(|e| {
                Failure::new(
                    "malformed",
                    format!("{} cannot be put on the gateway: {e}", preview(uri)),
                )
            })
    }
}

/// Checks the path after an `ipfs://` CID: URL path characters only (no `?`, `#`,
/// backslash or whitespace), percent escapes that do not hide a dot or a slash, and no
/// `.` or `..` segment, so the gateway URL stays under `/ipfs/<cid>/`.
fn check_ipfs_path(path: &str) -> Result<(), String> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let escaped = path
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| "a % that does not start a %XX escape".to_string())?;
            if matches!(escaped, b'.' | b'/' | b'\\') || escaped.is_ascii_control() {
                return Err(format!("the escape %{escaped:02X}"));
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b)) {
            return Err(match b {
                b'?' | b'#' => format!(
                    "a {:?}: query strings and fragments are not content",
                    b as char
                ),
                _ if b.is_ascii_whitespace() => "whitespace".to_string(),
                _ => format!(
                    "the character {:?}",
                    path.get(i..).and_then(|p| p.chars().next()).unwrap_or('?')
                ),
            });
        }
        i += 1;
    }
    if path
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err("a . or .. segment".to_string());
    }
    Ok(())
}

/// CIDs as the IPFS specs define them (CIDv0: a base58btc sha2-256 multihash; CIDv1: a
/// multibase string of version, codec and multihash), checked structurally so a
/// registrant's `ipfs://` URI cannot smuggle anything else onto the gateway URL.
pub(super) mod cid {
    /// Longest CID string accepted (a sha2-512 CIDv1 in base16 is about 140).
    const MAX_LEN: usize = 256;
    const BASE58BTC: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    const BASE16: &[u8] = b"0123456789abcdef";

    /// Whether `text` is a CID; the error says what is wrong with it.
    pub(in crate::fetch) fn check(text: &str) -> Result<(), String> {
        if text.is_empty() {
            return Err("it is empty".into());
        }
        if text.len() > MAX_LEN {
            return Err(format!("it is longer than {MAX_LEN} characters"));
        }
        if let Some(c) = text.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(format!("{c:?} is not a CID character"));
        }
        if text.starts_with("Qm") {
            if text.len() != 46 {
                return Err(format!(
                    "a CIDv0 has 46 characters, this has {}",
                    text.len()
                ));
            }
            let bytes = radix(text, BASE58BTC)?;
            return match bytes.as_slice() {
                [0x12, 0x20, digest @ ..] if digest.len() == 32 => Ok(()),
                _ => Err("a CIDv0 is a base58btc sha2-256 multihash".into()),
            };
        }
        let mut chars = text.chars();
        let prefix = chars.next().unwrap_or_default();
        let body = chars.as_str();
        let bytes = match prefix {
            'b' => bits(body, BASE32, 5)?,
            'B' => bits(&body.to_ascii_lowercase(), BASE32, 5).and_then(|b| upper(body, b))?,
            'f' => bits(body, BASE16, 4)?,
            'F' => bits(&body.to_ascii_lowercase(), BASE16, 4).and_then(|b| upper(body, b))?,
            'k' => radix(body, BASE36)?,
            'K' => radix(&body.to_ascii_lowercase(), BASE36).and_then(|b| upper(body, b))?,
            'z' => radix(body, BASE58BTC)?,
            other => {
                return Err(format!(
                    "{other:?} is not a multibase prefix agora reads (b, B, f, F, k, K, z)"
                ));
            }
        };
        cid_v1(&bytes)
    }

    /// Refuses lower-case letters in an upper-case multibase body.
    fn upper(body: &str, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        if body.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err("an upper-case multibase prefix with lower-case letters".into());
        }
        Ok(bytes)
    }

    /// `<version=1><codec><multihash code><digest length><digest>`, varints throughout.
    fn cid_v1(bytes: &[u8]) -> Result<(), String> {
        let mut rest = bytes;
        let version = varint(&mut rest)?;
        if version != 1 {
            return Err(format!(
                "CID version {version}; a multibase CID is version 1"
            ));
        }
        let _codec = varint(&mut rest)?;
        let _hash = varint(&mut rest)?;
        let length = varint(&mut rest)?;
        if u64::try_from(rest.len()).ok() != Some(length) {
            return Err(format!(
                "its multihash says {length} digest bytes but {} follow",
                rest.len()
            ));
        }
        Ok(())
    }

    /// One unsigned LEB128 varint of at most 9 bytes, as multiformats allow.
    fn varint(rest: &mut &[u8]) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..9 {
            let Some((&byte, tail)) = rest.split_first() else {
                return Err("it ends inside its header".into());
            };
            *rest = tail;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 9 bytes".into())
    }

    /// Decodes an RFC 4648 bit-group encoding without padding (base32, base16).
    fn bits(body: &str, alphabet: &[u8], width: u32) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(body.len() * width as usize / 8);
        let (mut acc, mut held) = (0u32, 0u32);
        for c in body.bytes() {
            let digit = position(alphabet, c)?;
            acc = (acc << width) | digit;
            held += width;
            if held >= 8 {
                held -= 8;
                out.push((acc >> held) as u8);
                acc &= (1 << held) - 1;
            }
        }
        if held >= width || acc != 0 {
            return Err("its last character carries stray bits".into());
        }
        Ok(out)
    }

    /// Decodes a positional (big number) encoding (base58btc, base36).
    fn radix(body: &str, alphabet: &[u8]) -> Result<Vec<u8>, String> {
        let base = alphabet.len() as u32;
        let zero = alphabet.first().copied().unwrap_or_default();
        let leading = body.bytes().take_while(|&c| c == zero).count();
        let mut number: Vec<u8> = Vec::new(); // little-endian base 256
        for c in body.bytes() {
            let mut carry = position(alphabet, c)?;
            for byte in number.iter_mut() {
                carry += u32::from(*byte) * base;
                *byte = (carry & 0xff) as u8;
                carry >>= 8;
            }
            while carry > 0 {
                number.push((carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        let mut out = vec![0u8; leading];
        out.extend(number.iter().rev());
        Ok(out)
    }

    fn position(alphabet: &[u8], c: u8) -> Result<u32, String> {
        alphabet
            .iter()
            .position(|&a| a == c)
            .map(|p| p as u32)
            .ok_or_else(|| format!("{:?} is not a character of its base", char::from(c)))
    }
}
