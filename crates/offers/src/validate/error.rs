//! Every way an offer field can be refused, each message saying what to type
//! instead; one enum for the whole offer so callers match on one type.

/// A refused offer field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// No name.
    #[error("name cannot be empty")]
    EmptyName,
    /// Bad name.
    #[error(
        "invalid name {0:?}: must be lowercase alphanumeric with hyphens, 1-63 chars, starting with a letter or digit"
    )]
    InvalidName(String),
    /// Bad recipient.
    #[error("invalid wallet address {0:?}: must be 0x-prefixed 40-char hex")]
    InvalidWallet(String),
    /// No recipient.
    #[error("recipient required: the offer names no payTo address")]
    RecipientRequired,
    /// No price key.
    #[error("price required: set one of perRequest, perMTok or perHour")]
    PriceRequired,
    /// Several price keys.
    #[error("set exactly one price (perRequest, perMTok or perHour); got {0}")]
    SeveralPrices(String),
    /// A price that does not parse.
    #[error("invalid {field} value {value:?}: {reason}")]
    InvalidPrice {
        /// `--per-request` or the spec key.
        field: String,
        /// What was given.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A price of nothing: the exact scheme would have buyers sign and settle a
    /// transfer of zero, paying gas for no money. Free access is a free path instead.
    #[error(
        "{field} {value} is a zero price; x402 cannot charge nothing. To serve without payment, use a free route instead: the offer's upstream.healthPath is served free, and a service that should be free in full needs no offer; to charge, set at least {smallest} (one atomic unit)"
    )]
    ZeroPrice {
        /// The price key (`perRequest`, `perMTok`, `perHour`).
        field: String,
        /// What was given.
        value: String,
        /// One atomic unit of the asset, written as a decimal.
        smallest: String,
    },
    /// perEpoch cannot be charged per call.
    #[error(
        "perEpoch pricing ({0}) cannot be charged per request with the exact scheme; set perRequest or perHour instead"
    )]
    PerEpoch(String),
    /// Unknown network or asset problem.
    #[error("{0}")]
    Network(String),
    /// A scheme other than exact.
    #[error("payment scheme {0:?} is not supported; use \"exact\"")]
    Scheme(String),
    /// A token agora cannot settle.
    #[error("{0}")]
    Asset(String),
    /// maxTimeoutSeconds out of range.
    #[error("maxTimeoutSeconds {0} is out of range; use 1 to 86400")]
    Timeout(u64),
    /// limits.timeoutSeconds out of range.
    #[error("limits.timeoutSeconds {0} is out of range; use 1 to 86400")]
    UpstreamTimeout(u64),
    /// No upstream.
    #[error("upstream required: the offer names no upstream URL (e.g. http://127.0.0.1:8080)")]
    UpstreamRequired,
    /// Upstream that is not an http(s) URL.
    #[error("invalid upstream {0:?}: {1}")]
    InvalidUpstream(String, String),
    /// Path with bad characters.
    #[error("invalid path {0:?}: must start with / and use only letters, digits, /, _, . and -")]
    InvalidPath(String),
    /// Path with a dot segment.
    #[error("invalid path {0:?}: path traversal not allowed")]
    PathTraversal(String),
    /// Path on a gateway path.
    #[error("path {path} collides with the reserved platform path {reserved}")]
    ReservedPath {
        /// The offer's path.
        path: String,
        /// The reserved one.
        reserved: String,
    },
    /// Path taken by another offer.
    #[error("path {path} is already used by offer {other}")]
    PathInUse {
        /// The path.
        path: String,
        /// The offer using it.
        other: String,
    },
    /// Inference without a model.
    #[error("a model is required for inference offers")]
    ModelRequired,
    /// An OASF name that is not in the taxonomy.
    #[error("{0}")]
    Oasf(String),
    /// A drain time or grace period that does not parse.
    #[error("{0}")]
    Drain(String),
    /// A settle-first annotation that is neither `true` nor `false`.
    #[error(
        "annotation {annotation}: {0:?} is not a boolean; write \"true\" (settle before calling the upstream) or \"false\"",
        annotation = crate::spec::SETTLE_FIRST_ANNOTATION
    )]
    SettleFirst(String),
    /// An `allowedPaths` entry that cannot be used.
    #[error("{0}")]
    AllowedPath(#[from] gateway::allowed::AllowedPathError),
    /// `allowedPaths` on an offer that forwards every path anyway.
    #[error(
        "allowedPaths ({0:?}, ...) applies to type inference offers only; an offer of another type forwards every path, so remove allowedPaths"
    )]
    AllowedPathsNotInference(String),
}
