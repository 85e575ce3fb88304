//! The OASF v0.8.0 skill and domain taxonomy that ERC-8004 registration documents
//! pin, shipped as data (`data/oasf-v0.8.0.json`, built by `data/generate_oasf.mjs`
//! from agntcy/oasf, Apache-2.0), with validation that says what to type instead and
//! the `prefix/*` filters discovery uses.
//!
//! Names are the `extends` chain joined with `/` from category to leaf, for example
//! `natural_language_processing/natural_language_generation/text_completion` (id 10201).

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// The embedded table; its attribution block stays with it in the source tree.
const DATA: &str = include_str!("../data/oasf-v0.8.0.json");

/// Parsed once on first use; the file is part of the build, so a parse failure is a
/// packaging defect caught by this module's tests, not a runtime condition.
static TAXONOMY: LazyLock<Taxonomy> =
    LazyLock::new(|| serde_json::from_str(DATA).expect("data/oasf-v0.8.0.json is valid"));

/// One skill or domain class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Full `/`-joined name, the string registration documents carry.
    pub name: String,
    /// OASF numeric id (parent id * 100 + local uid), the form OASF records carry.
    pub id: u32,
    /// Human caption, for listings.
    pub caption: String,
}

impl Entry {
    /// The last path segment (`text_completion`), what people remember and type.
    pub fn leaf(&self) -> &str {
        leaf(&self.name)
    }
}

/// Which of the two OASF trees a name belongs to; skills and domains are validated
/// separately because the same word can be valid in one and not the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What an agent can do.
    Skill,
    /// The field it works in.
    Domain,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Skill => "skill",
            Kind::Domain => "domain",
        })
    }
}

/// Why a skill, domain or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OasfError {
    /// Not a name (or, for a filter, not a known prefix) in the v0.8.0 taxonomy.
    #[error("unknown OASF v0.8.0 {kind} {input:?}: {}", advice(*.kind, .suggestions))]
    Unknown {
        /// Skill or domain.
        kind: Kind,
        /// What was given.
        input: String,
        /// What to type instead, best first (empty when nothing is close).
        suggestions: Vec<String>,
    },
}

fn advice(kind: Kind, suggestions: &[String]) -> String {
    match suggestions {
        [] => {
            let example = match kind {
                Kind::Skill => {
                    "natural_language_processing/natural_language_generation/text_completion"
                }
                Kind::Domain => "technology/data_science",
            };
            format!(
                "{kind}s are full category/.../leaf names such as {example}, or a category followed by /*"
            )
        }
        [one] => format!("type {one} instead"),
        many => format!("type one of {} instead", many.join(", ")),
    }
}

/// A validated discovery filter: one exact name, or an entry and everything under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Matches only this entry.
    Exact(&'static Entry),
    /// `prefix/*`: matches this entry and every name below it.
    Under(&'static Entry),
}

impl Filter {
    /// Whether `name` (as found in a registration document) passes the filter.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Filter::Exact(entry) => entry.name == name,
            Filter::Under(entry) => is_under(&entry.name, name),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Exact(entry) => f.write_str(&entry.name),
            Filter::Under(entry) => write!(f, "{}/*", entry.name),
        }
    }
}

/// Whether `name` passes `filter`, an exact name or `prefix/*` (the prefix itself and
/// everything below it), without consulting the taxonomy: documents in the wild may
/// carry names that are not in it, and filtering them must still work.
pub fn matches_filter(filter: &str, name: &str) -> bool {
    match filter.strip_suffix("/*") {
        Some(prefix) => is_under(prefix, name),
        None => filter == name,
    }
}

fn is_under(prefix: &str, name: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The OASF v0.8.0 taxonomy, loaded from the embedded data on first use.
#[derive(Debug, Deserialize)]
pub struct Taxonomy {
    version: String,
    skills: Vec<Entry>,
    domains: Vec<Entry>,
}

impl Taxonomy {
    /// The OASF schema version of the shipped data ("0.8.0").
    pub fn version() -> &'static str {
        &TAXONOMY.version
    }

    /// Every skill (136), sorted by name.
    pub fn skills() -> &'static [Entry] {
        &TAXONOMY.skills
    }

    /// Every domain (204), sorted by name.
    pub fn domains() -> &'static [Entry] {
        &TAXONOMY.domains
    }

    /// The entries of one tree, sorted by name.
    pub fn entries(kind: Kind) -> &'static [Entry] {
        match kind {
            Kind::Skill => Self::skills(),
            Kind::Domain => Self::domains(),
        }
    }

    /// The entry named exactly `name` in `kind`'s tree.
    pub fn find(kind: Kind, name: &str) -> Option<&'static Entry> {
        let entries = Self::entries(kind);
        entries
            .binary_search_by(|e| e.name.as_str().cmp(name))
            .ok()
            .and_then(|i| entries.get(i))
    }

    /// Checks a name typed by a user or read from a document, suggesting the closest
    /// valid names when it is not one.
    pub fn validate(kind: Kind, name: &str) -> Result<&'static Entry, OasfError> {
        Self::find(kind, name).ok_or_else(|| OasfError::Unknown {
            kind,
            input: name.to_string(),
            suggestions: suggest(kind, name),
        })
    }

    /// [`Taxonomy::validate`] for skills.
    pub fn validate_skill(name: &str) -> Result<&'static Entry, OasfError> {
        Self::validate(Kind::Skill, name)
    }

    /// [`Taxonomy::validate`] for domains.
    pub fn validate_domain(name: &str) -> Result<&'static Entry, OasfError> {
        Self::validate(Kind::Domain, name)
    }

    /// Parses a discovery filter, an exact name or `prefix/*`, checking that the name
    /// or prefix exists so a typo does not silently match nothing.
    pub fn filter(kind: Kind, filter: &str) -> Result<Filter, OasfError> {
        let Some(prefix) = filter.strip_suffix("/*") else {
            return Self::validate(kind, filter).map(Filter::Exact);
        };
        Self::find(kind, prefix)
            .map(Filter::Under)
            .ok_or_else(|| OasfError::Unknown {
                kind,
                input: filter.to_string(),
                suggestions: suggest(kind, prefix)
                    .into_iter()
                    .map(|s| format!("{s}/*"))
                    .collect(),
            })
    }
}

/// At most this many names are suggested.
const MAX_SUGGESTIONS: usize = 3;

/// A typed leaf this long or longer is completed to the leaves it starts
/// (`devops` -> `devops_mlops`); shorter ones would match too much.
const MIN_STEM: usize = 3;

/// The closest valid names to `input`: a case or separator fix, then entries with the
/// same leaf (a partial path), then leaves that start with the typed one, then the
/// nearest by edit distance on the full name or on the leaf, whichever is closer.
fn suggest(kind: Kind, input: &str) -> Vec<String> {
    let entries = Taxonomy::entries(kind);
    let normalized: String = input
        .trim()
        .trim_matches('/')
        .chars()
        .map(|c| match c {
            ' ' | '-' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    if normalized.is_empty() {
        return Vec::new();
    }
    if let Some(entry) = Taxonomy::find(kind, &normalized) {
        return vec![entry.name.clone()];
    }
    let wanted_leaf = leaf(&normalized);
    let same_leaf: Vec<String> = entries
        .iter()
        .filter(|e| e.leaf() == wanted_leaf)
        .map(|e| e.name.clone())
        .collect();
    if !same_leaf.is_empty() {
        return same_leaf.into_iter().take(MAX_SUGGESTIONS).collect();
    }
    if wanted_leaf.len() >= MIN_STEM {
        let mut stems: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.leaf().starts_with(wanted_leaf))
            .collect();
        if !stems.is_empty() {
            stems.sort_by_key(|e| (e.name.len(), e.name.as_str()));
            return stems
                .into_iter()
                .take(MAX_SUGGESTIONS)
                .map(|e| e.name.clone())
                .collect();
        }
    }
    let scored: Vec<(usize, &Entry)> = entries
        .iter()
        .filter_map(|e| {
            let full = strsim::levenshtein(&normalized, &e.name);
            let by_leaf = strsim::levenshtein(wanted_leaf, e.leaf());
            let full_ok = full <= tolerance(&e.name);
            let leaf_ok = by_leaf <= tolerance(e.leaf());
            match (full_ok, leaf_ok) {
                (false, false) => None,
                (true, false) => Some((full, e)),
                (false, true) => Some((by_leaf, e)),
                (true, true) => Some((full.min(by_leaf), e)),
            }
        })
        .collect();
    let Some(best) = scored.iter().map(|(d, _)| *d).min() else {
        return Vec::new();
    };
    scored
        .into_iter()
        .filter(|(d, _)| *d == best)
        .take(MAX_SUGGESTIONS)
        .map(|(_, e)| e.name.clone())
        .collect()
}

/// How many edits still count as a typo of `target`: a quarter of its length, at
/// least 1 (looser tolerances suggest unrelated names, such as `code_optimization` for
/// `model_optimization`).
fn tolerance(target: &str) -> usize {
    (target.chars().count() / 4).max(1)
}

fn leaf(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn counts_match_oasf_v0_8_0() {
        assert_eq!(Taxonomy::version(), "0.8.0");
        assert_eq!(Taxonomy::skills().len(), 136);
        assert_eq!(Taxonomy::domains().len(), 204);
        let roots = |entries: &[Entry]| entries.iter().filter(|e| !e.name.contains('/')).count();
        assert_eq!(roots(Taxonomy::skills()), 15, "skill_categories.json");
        assert_eq!(roots(Taxonomy::domains()), 24, "domain_categories.json");
    }

    #[test]
    fn reference_ids() {
        let cases = [
            (
                Kind::Skill,
                "natural_language_processing/natural_language_generation/text_completion",
                10201,
            ),
            (Kind::Skill, "devops_mlops/model_versioning", 1204),
            (Kind::Domain, "technology/data_science", 104),
            (
                Kind::Domain,
                "research_and_development/scientific_research",
                1906,
            ),
            (Kind::Domain, "technology", 1),
        ];
        for (kind, name, id) in cases {
            let entry = Taxonomy::validate(kind, name).unwrap();
            assert_eq!(entry.id, id, "{name}");
        }
        assert_eq!(
            Taxonomy::validate_skill(
                "natural_language_processing/natural_language_generation/text_completion"
            )
            .unwrap()
            .caption,
            "Text Completion"
        );
    }

    #[test]
    fn names_and_ids_are_unique_sorted_and_consistent_with_parents() {
        for kind in [Kind::Skill, Kind::Domain] {
            let entries = Taxonomy::entries(kind);
            let names: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            let ids: HashSet<u32> = entries.iter().map(|e| e.id).collect();
            assert_eq!(names.len(), entries.len(), "{kind} names");
            assert_eq!(ids.len(), entries.len(), "{kind} ids");
            assert!(
                entries.windows(2).all(|w| w[0].name < w[1].name),
                "{kind} order"
            );
            for entry in entries {
                assert!(!entry.caption.is_empty(), "{}", entry.name);
                assert!(
                    entry.name.split('/').all(|s| !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')),
                    "{}",
                    entry.name
                );
                match entry.name.rsplit_once('/') {
                    Some((parent, _)) => {
                        let parent = Taxonomy::find(kind, parent)
                            .unwrap_or_else(|| panic!("{}: no parent {parent}", entry.name));
                        assert_eq!(entry.id / 100, parent.id, "{}", entry.name);
                        assert_ne!(entry.id % 100, 0, "{}", entry.name);
                    }
                    None => assert!(entry.id < 100, "{}", entry.name),
                }
            }
        }
    }

    #[test]
    fn the_data_file_carries_its_attribution() {
        let raw: serde_json::Value = serde_json::from_str(DATA).unwrap();
        let attribution = &raw["attribution"];
        assert_eq!(attribution["source"], "https://github.com/agntcy/oasf");
        assert_eq!(attribution["tag"], "v0.8.0");
        assert_eq!(attribution["license"], "Apache-2.0");
        assert_eq!(
            attribution["generator"],
            "crates/erc8004/data/generate_oasf.mjs"
        );
        assert!(
            attribution["notice"]
                .as_str()
                .unwrap()
                .contains("Cisco and/or its affiliates")
        );
    }

    #[test]
    fn skills_and_domains_are_separate_trees() {
        assert!(Taxonomy::validate_domain("devops_mlops/model_versioning").is_err());
        assert!(Taxonomy::validate_skill("technology/data_science").is_err());
    }

    fn suggestions(result: Result<&'static Entry, OasfError>) -> Vec<String> {
        match result.unwrap_err() {
            OasfError::Unknown { suggestions, .. } => suggestions,
        }
    }

    #[test]
    fn a_bare_leaf_suggests_its_full_name() {
        let err = Taxonomy::validate_skill("text_completion").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown OASF v0.8.0 skill \"text_completion\": type \
             natural_language_processing/natural_language_generation/text_completion instead"
        );
        assert_eq!(
            suggestions(Taxonomy::validate_skill("mlops/model_versioning")),
            ["devops_mlops/model_versioning"]
        );
    }

    #[test]
    fn case_and_separators_are_fixed_in_the_suggestion() {
        assert_eq!(
            suggestions(Taxonomy::validate_domain("Technology/Data-Science")),
            ["technology/data_science"]
        );
    }

    #[test]
    fn typos_suggest_the_nearest_name() {
        assert_eq!(
            suggestions(Taxonomy::validate_skill("devops_mlops/model_versoning")),
            ["devops_mlops/model_versioning"]
        );
        assert_eq!(
            suggestions(Taxonomy::validate_domain(
                "research_and_development/scientfic_research"
            )),
            ["research_and_development/scientific_research"]
        );
    }

    /// Paths from older obol docs that are not in v0.8.0 (reference §2), and other
    /// near misses: refused, and whatever is suggested is itself valid.
    #[test]
    fn suggestions_are_valid_names() {
        let inputs = [
            "machine_learning/model_optimization",
            "technology/artificial_intelligence/research",
            "data",
            "code",
            "sentiment",
            "natural_language_processing/summarization",
        ];
        for input in inputs {
            let suggested = suggestions(Taxonomy::validate_skill(input));
            for name in &suggested {
                assert!(Taxonomy::validate_skill(name).is_ok(), "{input} -> {name}");
            }
            assert!(suggested.len() <= MAX_SUGGESTIONS, "{input}");
        }
        assert_eq!(
            suggestions(Taxonomy::validate_skill("data")),
            [
                "data_engineering",
                "data_engineering/data_cleaning",
                "data_engineering/data_quality_assessment"
            ]
        );
    }

    #[test]
    fn without_a_close_name_the_error_shows_the_form() {
        for input in [
            "technology/artificial_intelligence/research",
            "zzzz_qqqq",
            "",
            "*",
        ] {
            let err = Taxonomy::validate_skill(input).unwrap_err();
            assert!(suggestions(Err(err.clone())).is_empty(), "{err}");
            assert!(
                err.to_string().contains(
                    "such as natural_language_processing/natural_language_generation/text_completion, or a category followed by /*"
                ),
                "{err}"
            );
        }
        let err = Taxonomy::validate_domain("technology/artificial_intelligence").unwrap_err();
        assert!(
            err.to_string().contains("such as technology/data_science"),
            "{err}"
        );
    }

    #[test]
    fn exact_and_wildcard_filters_match_on_the_path() {
        let name = "devops_mlops/model_versioning";
        assert!(matches_filter("devops_mlops/*", name));
        assert!(matches_filter("devops_mlops/*", "devops_mlops"));
        assert!(matches_filter(name, name));
        assert!(matches_filter(&format!("{name}/*"), name));
        assert!(!matches_filter("devops/*", name));
        assert!(!matches_filter("devops_mlops", name));
        assert!(!matches_filter("devops_ml/*", name));
        assert!(!matches_filter("*", name));
        assert!(matches_filter(
            "natural_language_processing/*",
            "natural_language_processing/natural_language_generation/text_completion"
        ));
    }

    #[test]
    fn filters_are_validated_against_the_taxonomy() {
        let filter = Taxonomy::filter(Kind::Skill, "natural_language_processing/*").unwrap();
        assert_eq!(filter.to_string(), "natural_language_processing/*");
        assert!(
            filter
                .matches("natural_language_processing/natural_language_generation/text_completion")
        );
        assert!(!filter.matches("devops_mlops/model_versioning"));

        let exact = Taxonomy::filter(Kind::Domain, "technology/data_science").unwrap();
        assert_eq!(
            exact,
            Filter::Exact(Taxonomy::find(Kind::Domain, "technology/data_science").unwrap())
        );
        assert!(!exact.matches("technology/data_science/big_data"));

        let err = Taxonomy::filter(Kind::Skill, "devops/*").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown OASF v0.8.0 skill \"devops/*\": type devops_mlops/* instead"
        );
        let err = Taxonomy::filter(Kind::Skill, "devops_mlop/*").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown OASF v0.8.0 skill \"devops_mlop/*\": type devops_mlops/* instead"
        );
        assert!(Taxonomy::filter(Kind::Skill, "*").is_err());
        assert!(Taxonomy::filter(Kind::Skill, "/*").is_err());
    }
}
