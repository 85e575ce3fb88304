//! The inline form of a registration, a `data:` URI, for registering without hosting a
//! file; read in every variant writers use (padding or not, URL-safe alphabet,
//! %-encoded JSON).

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

use super::{Registration, RegistrationError};

/// What a data URI holding a registration starts with.
pub const DATA_URI_PREFIX: &str = "data:application/json;base64,";

impl Registration {
    /// The document as a `data:application/json;base64,...` URI, for registering
    /// without hosting a file.
    pub fn to_data_uri(&self) -> String {
        let json = serde_json::to_vec(self).expect("a Registration always serializes");
        format!(
            "{DATA_URI_PREFIX}{}",
            general_purpose::STANDARD.encode(json)
        )
    }

    /// Reads an inline registration: `data:application/json[;params][;base64],...`,
    /// base64 with or without padding (standard or URL-safe alphabet), or %-encoded.
    pub fn from_data_uri(uri: &str) -> Result<Self, RegistrationError> {
        let uri = uri.trim();
        let rest = uri
            .get(..5)
            .filter(|scheme| scheme.eq_ignore_ascii_case("data:"))
            .and_then(|_| uri.get(5..))
            .ok_or_else(|| RegistrationError::NotDataUri(preview(uri)))?;
        let (header, payload) = rest
            .split_once(',')
            .ok_or_else(|| RegistrationError::NotDataUri(preview(uri)))?;
        let mut params = header.split(';').map(str::trim);
        let media_type = params.next().unwrap_or_default();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(RegistrationError::MediaType(media_type.to_string()));
        }
        let bytes = if params.any(|p| p.eq_ignore_ascii_case("base64")) {
            decode_base64(payload)?
        } else {
            percent_decode(payload)?
        };
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// The start of `uri`, for error messages (a data URI can be kilobytes long).
fn preview(uri: &str) -> String {
    const MAX: usize = 40;
    match uri.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &uri[..cut]),
        None => uri.to_string(),
    }
}

fn decode_base64(payload: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    let payload = payload.trim();
    standard
        .decode(payload)
        .or_else(|e| url_safe.decode(payload).map_err(|_| e))
}

/// %-decodes the payload; the library passes a broken escape through as text, so
/// escapes are checked first and a broken one is refused rather than guessed at.
fn percent_decode(payload: &str) -> Result<Vec<u8>, RegistrationError> {
    let bytes = payload.as_bytes();
    let broken_escape = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if broken_escape {
        return Err(RegistrationError::PercentEncoding);
    }
    Ok(percent_encoding::percent_decode(bytes).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_uri_round_trips() {
        let doc: Registration = serde_json::from_value(json!({
            "name": "w",
            "description": "w via x402 \u{00ff}",
            "services": [
                {"name": "web", "endpoint": "https://seller.example/services/w"},
                {"name": "OASF", "endpoint": "https://github.com/agntcy/oasf/", "version": "0.8",
                 "skills": ["natural_language_processing/natural_language_generation/text_completion"]}
            ],
            "x402Support": true,
            "registrations": [{"agentId": 7, "agentRegistry": "eip155:84532:0x8004A818BFB912233c491871b3d84c89A494BD9e"}]
        }))
        .unwrap();
        let uri = doc.to_data_uri();
        assert!(uri.starts_with(DATA_URI_PREFIX));
        assert_eq!(Registration::from_data_uri(&uri).unwrap(), doc);
    }

    #[test]
    fn data_uri_variants_are_read() {
        let json = r#"{"name":"n","services":[]}"#;
        let unpadded = general_purpose::STANDARD_NO_PAD.encode(json);
        let url_safe = general_purpose::URL_SAFE.encode("{\"name\":\"\u{00ff}\u{00fe}?>\"}");
        assert!(
            url_safe.contains(['-', '_']),
            "{url_safe} exercises the URL-safe alphabet"
        );
        let cases = [
            format!("data:application/json;base64,{unpadded}"),
            format!("DATA:Application/JSON;charset=utf-8;base64,{unpadded}"),
            format!("data:application/json;base64,{url_safe}"),
            "data:application/json,%7B%22name%22%3A%22n%22%7D".to_string(),
            r#"data:application/json,{"name":"n"}"#.to_string(),
        ];
        for uri in cases {
            let doc = Registration::from_data_uri(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert!(!doc.name.is_empty(), "{uri}");
        }
    }

    #[test]
    fn bad_data_uris_say_what_is_wrong() {
        let variant = |e: &RegistrationError| match e {
            RegistrationError::NotDataUri(_) => "not a data URI",
            RegistrationError::MediaType(_) => "media type",
            RegistrationError::Base64(_) => "base64",
            RegistrationError::PercentEncoding => "percent",
            RegistrationError::Json(_) => "json",
            RegistrationError::Oasf { .. } | RegistrationError::Endpoint { .. } => "offer",
        };
        let cases = [
            ("https://x/agent.json", "not a data URI"),
            ("data:application/json;base64", "not a data URI"),
            ("data:text/plain;base64,e30=", "media type"),
            ("data:application/json;base64,!!!", "base64"),
            ("data:application/json,%7", "percent"),
            ("data:application/json;base64,WzFd", "json"),
        ];
        for (uri, expected) in cases {
            let err = Registration::from_data_uri(uri).unwrap_err();
            assert_eq!(variant(&err), expected, "{uri}: {err}");
        }
        let long = format!("ipfs://{}", "a".repeat(200));
        let message = Registration::from_data_uri(&long).unwrap_err().to_string();
        assert!(message.len() < 150, "{message}");
        assert!(message.contains(DATA_URI_PREFIX), "{message}");
    }
}
