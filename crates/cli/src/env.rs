//! Every environment variable the `agora` binary reads, under one name per setting,
//! so a reader (and `--help`) finds them all here. A variable that stands for a flag is
//! read by clap (`#[arg(env = ...)]`, named by these constants), or as clap would by
//! [`flag_var`] where options are built without a command line; the others are read
//! through [`var`] and [`var_os`], which treat an empty value as unset.
//!
//! Not read here: `HOME` and `XDG_DATA_HOME` (the platform's own, for the default
//! `AGORA_HOME`), `AGORA_ANVIL` as the `devnet` crate's own fallback when no `--anvil`
//! flag or variable reached it, `AGORA_CLOUDFLARED` (where cloudflared is, before
//! `PATH`), read by the `tunnel` crate, the test harnesses' `AGORA_CRASH_SEED`, and
//! `AGORA_TEST_UMASK_CHILD`, which only `seller`'s daemon unit test sets.

use reqwest::Url;

/// `HOME` is where agora keeps its state; `var` and `var_os` read the environment with an
/// empty value as unset. They live in the `wallet` crate, which resolves `$AGORA_HOME`.
pub use wallet::env::{HOME, var, var_os};

/// The log filter, e.g. `AGORA_LOG=debug`.
pub const LOG: &str = "AGORA_LOG";
/// `agora serve --listen`.
pub const LISTEN: &str = "AGORA_LISTEN";
/// `agora serve --metrics-listen`.
pub const METRICS_LISTEN: &str = "AGORA_METRICS_LISTEN";
/// `agora serve --facilitator` and `agora sell pricing --facilitator-url`.
pub const FACILITATOR_URL: &str = "AGORA_FACILITATOR_URL";
/// The old name of [`FACILITATOR_URL`], still accepted by `agora sell pricing` (where
/// it was read) with a warning naming the new one.
pub const DEPRECATED_FACILITATOR_URL: &str = "X402_FACILITATOR_URL";
/// `agora sell http|inference --pay-to` (the name obol's sellers already set).
pub const WALLET: &str = "X402_WALLET";
/// `agora discover --indexer`.
pub const INDEXER: &str = "AGORA_INDEXER";
/// `--anvil` of `agora devnet` and `agora demo`.
pub const ANVIL: &str = "AGORA_ANVIL";
/// The settlement key when no `--key-file` is given (`agora facilitator`, `serve --rpc`).
pub const FACILITATOR_KEY: &str = "AGORA_FACILITATOR_KEY";
/// The registry key when no `--registry-key-file` is given (`agora serve`).
pub const REGISTRY_KEY: &str = "AGORA_REGISTRY_KEY";
/// The buyer key when no `--key-file` is given (`agora sell probe --paid`).
pub const BUYER_KEY: &str = "AGORA_BUYER_KEY";
/// `agora pay --wallet`: the wallet that pays when not the default one.
pub const PAY_WALLET: &str = "AGORA_WALLET";
/// Loopback ports `agora sell inference` tries when no `--upstream` is given.
pub const INFERENCE_PORTS: &str = "AGORA_INFERENCE_PORTS";
/// `agora serve --tunnel` (none, auto, cloudflared, bore).
pub const TUNNEL: &str = "AGORA_TUNNEL";
/// `agora serve --bore-server`.
pub const BORE_SERVER: &str = "AGORA_BORE_SERVER";
/// `agora serve --bore-secret` and `agora tunnel relay --secret`.
pub const BORE_SECRET: &str = "AGORA_BORE_SECRET";
/// `agora serve --tunnel-token`: cloudflared's own name for a named tunnel's token,
/// handed to cloudflared in its environment.
pub const TUNNEL_TOKEN: &str = "TUNNEL_TOKEN";

/// The value of the variable that stands for a flag, read as clap reads it when the
/// flag is not given (an empty value is a value), for options built without parsing a
/// command line; a value that does not parse is an error naming the variable.
pub fn flag_var<T>(name: &str) -> anyhow::Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    flag_var_with(name, str::parse)
}

/// [`flag_var`] for a flag with its own parser (`value_parser = ...`).
pub fn flag_var_with<T, E: std::fmt::Display>(
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> anyhow::Result<Option<T>> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    let Some(text) = value.to_str() else {
        anyhow::bail!("{name} is not UTF-8");
    };
    parse(text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{name}={text:?} is not valid: {e}"))
}

/// The facilitator URL from the deprecated [`DEPRECATED_FACILITATOR_URL`], with a
/// warning, for `agora sell pricing` when neither the flag nor [`FACILITATOR_URL`] gave
/// one.
pub fn deprecated_facilitator_url() -> anyhow::Result<Option<Url>> {
    let Some(text) = var(DEPRECATED_FACILITATOR_URL) else {
        return Ok(None);
    };
    eprintln!("warning: {DEPRECATED_FACILITATOR_URL} is deprecated; set {FACILITATOR_URL} instead");
    let url = text.parse().map_err(|e| {
        anyhow::anyhow!(
            "{DEPRECATED_FACILITATOR_URL}={text:?} is not a URL ({e}); set {FACILITATOR_URL} to e.g. https://x402.org/facilitator"
        )
    })?;
    Ok(Some(url))
}

/// A URL as users write it: a bare origin without the `/` that parsing adds, so
/// `http://127.0.0.1:8080` is stored, shown and passed on unchanged.
pub fn url_text(url: &Url) -> String {
    let text = url.as_str();
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() {
        text.trim_end_matches('/').to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_text_keeps_what_users_wrote() {
        for text in [
            "http://127.0.0.1:8080",
            "https://x402.org/facilitator",
            "http://h/api/",
            "http://h/?q=1",
        ] {
            let url: Url = text.parse().expect("a URL");
            assert_eq!(url_text(&url), text);
        }
    }
}
