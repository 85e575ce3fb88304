//! The offer name, checked once at the edge so the rest of the crate holds a valid one.

use std::fmt;

use super::ValidationError;

/// A validated offer name: `^[a-z0-9][a-z0-9-]{0,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OfferName(String);

impl OfferName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        if name.is_empty() {
            return Err(ValidationError::EmptyName);
        }
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !first_ok || !rest_ok || name.len() > 63 {
            return Err(ValidationError::InvalidName(name.to_string()));
        }
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OfferName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_reference_rule() {
        assert!(OfferName::parse("my-qwen-3").is_ok());
        assert_eq!(
            OfferName::parse("").unwrap_err().to_string(),
            "name cannot be empty"
        );
        for bad in ["My-Qwen", "-x", "a_b", "a.b", &"a".repeat(64)] {
            assert_eq!(
                OfferName::parse(bad).unwrap_err().to_string(),
                format!(
                    "invalid name {bad:?}: must be lowercase alphanumeric with hyphens, 1-63 chars, starting with a letter or digit"
                )
            );
        }
    }
}
