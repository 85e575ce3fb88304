//! The listing's OASF skills and domains, checked against the taxonomy shipped with
//! erc8004 (v0.8.0), so a typo is refused with a suggestion before it is published.

use erc8004::oasf::Taxonomy;

use super::ValidationError;
use crate::spec::RegistrationSpec;

/// Validates OASF names in a registration block against the shipped taxonomy.
pub fn check_oasf(registration: &RegistrationSpec) -> Result<(), ValidationError> {
    for skill in &registration.skills {
        Taxonomy::validate_skill(skill).map_err(|e| ValidationError::Oasf(e.to_string()))?;
    }
    for domain in &registration.domains {
        Taxonomy::validate_domain(domain).map_err(|e| ValidationError::Oasf(e.to_string()))?;
    }
    Ok(())
}
