//! Why a registry lookup failed. The texts say what went wrong in the library's words;
//! a front end that has flags for the indexer or the filters adds them when it reports.

use erc8004::{Kind, OasfError};

/// Why a lookup could not answer.
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// A skill or domain filter names nothing in the OASF taxonomy.
    #[error("the {kind} filter is not in the taxonomy: {source}")]
    Filter {
        /// Skill or domain.
        kind: Kind,
        /// What the taxonomy says, with the nearest names.
        source: OasfError,
    },
    /// The search text is only blanks, which an indexer refuses.
    #[error("the search text is blank; leave it out or give the words to look for")]
    BlankText,
    /// The indexer's address and the API path do not make a URL.
    #[error("{base} is not a URL an indexer can be asked at: {message}")]
    Url {
        /// The indexer's address as given.
        base: String,
        /// Why the list URL does not parse.
        message: String,
    },
    /// The indexer did not answer at all.
    #[error("cannot reach the indexer at {url}")]
    Unreachable {
        /// The query sent.
        url: reqwest::Url,
        /// What the connection said.
        source: reqwest::Error,
    },
    /// The indexer answered something other than JSON.
    #[error("{url} did not answer JSON")]
    NotJson {
        /// The query sent.
        url: reqwest::Url,
        /// Why the body does not read.
        source: reqwest::Error,
    },
    /// The answer bought from a paid indexer is not JSON.
    #[error("{url} did not answer JSON after payment")]
    PaidNotJson {
        /// The query bought.
        url: reqwest::Url,
        /// Why the body does not read.
        source: serde_json::Error,
    },
    /// The indexer answered with an error of its own.
    #[error("the indexer refused the query: {error} ({hint})")]
    Refused {
        /// Its `error`.
        error: String,
        /// Its `hint`: what to send instead.
        hint: String,
    },
    /// A success without the list of agents: not an 8004scan-shaped API.
    #[error(
        "{url} answered without an `items` list; is it an agora index (or a gateway route selling one)?"
    )]
    NoItems {
        /// The query sent.
        url: reqwest::Url,
    },
    /// The scan's temporary database could not be created.
    #[cfg(feature = "scan")]
    #[error("cannot create a temporary database")]
    TempDir(#[source] std::io::Error),
    /// Indexing the registry for a scan failed.
    #[cfg(feature = "scan")]
    #[error(transparent)]
    Scan(#[from] indexer::IndexerError),
}
