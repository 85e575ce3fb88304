//! The HTML paywall a browser sees instead of the JSON 402.
//!
//! The page carries every fact without JavaScript (price, payee, token, network, the
//! `agora pay` command and the raw requirements), all escaped. A small inline script
//! (`paywall.js`, no dependencies) adds a "Pay with wallet" button that signs with the
//! browser's EIP-1193 wallet and retries the request with `PAYMENT-SIGNATURE`. The page
//! is served with a Content-Security-Policy that allows exactly that script and style
//! (by hash) and same-origin requests, so nothing a seller writes into a route's name or
//! description can ever run.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use x402::client::UNLISTED_ASSET_DECIMALS;
use x402::money::Money;
use x402::network::USDC_DECIMALS;
use x402::wire::PaymentRequirements;

use crate::challenge::{Challenge, describe_price, escape_html};
use crate::route::Route;

/// The wallet script, inlined into every paywall page.
const SCRIPT: &str = include_str!("paywall.js");

/// The page's only style sheet, inlined (and allowed by hash).
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}\
code,pre{background:#f4f4f4;padding:.1rem .3rem;border-radius:4px}\
pre{padding:1rem;overflow:auto;white-space:pre-wrap;word-break:break-all}\
#x402-wallet{border:1px solid #d0d7de;border-radius:8px;padding:0 1rem 1rem;margin:1.5rem 0}\
button{font:inherit;font-weight:600;padding:.5rem 1rem;margin:.25rem .5rem .25rem 0;border:0;border-radius:6px;background:#1f6feb;color:#fff;cursor:pointer}\
button:disabled{background:#8c959f;cursor:default}\
#x402-status:empty{display:none}";

/// The `Content-Security-Policy` of the paywall: only its own script and style run,
/// requests go to the same origin, and the page cannot be framed.
pub(crate) static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        csp_hash(SCRIPT),
        csp_hash(STYLE)
    )
});

/// `sha256-<base64>` of an inline element's exact text, as CSP source lists name it.
fn csp_hash(text: &str) -> String {
    format!(
        "sha256-{}",
        STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// Whether the wallet script can pay `requirement`: the exact scheme on an EVM chain
/// with the token's EIP-712 domain named.
fn wallet_can_pay(requirement: &PaymentRequirements) -> bool {
    requirement.scheme == "exact"
        && requirement.network.chain_id().is_some()
        && requirement.eip712_domain().is_some()
}

/// Quotes `text` for a POSIX shell, so a URL with `&` or `?` copies safely.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The `agora pay` command that pays `resource_url` at the cheapest offered price:
/// known USDC is capped by `--max` in USDC; another token needs `--allow-asset` too.
pub fn agora_pay_command(accepts: &[PaymentRequirements], resource_url: &str) -> String {
    let usdc =
        |r: &&PaymentRequirements| r.network.known().is_some_and(|c| c.usdc.address == r.asset);
    let cheapest = accepts
        .iter()
        .filter(usdc)
        .min_by_key(|r| r.amount)
        .or_else(|| accepts.iter().min_by_key(|r| r.amount));
    let Some(r) = cheapest else {
        return format!("agora pay {}", shell_quote(resource_url));
    };
    let (decimals, allow) = if usdc(&r) {
        (USDC_DECIMALS, String::new())
    } else {
        let allow = format!(" --allow-asset {}:{}", r.network.caip2(), r.asset);
        (UNLISTED_ASSET_DECIMALS, allow)
    };
    let max = Money::from_atomic(r.amount, decimals);
    format!("agora pay --max {max}{allow} {}", shell_quote(resource_url))
}

/// The paywall page for `route`'s `challenge`.
pub fn page(route: &Route, challenge: &Challenge) -> String {
    let accepts = &challenge.required.accepts;
    let mut options = String::new();
    let mut buttons = String::new();
    for (i, r) in accepts.iter().enumerate() {
        let price = escape_html(&describe_price(r));
        options.push_str(&format!(
            "<li><strong>{price}</strong><br>pay to <code>{}</code>, token <code>{}</code>, network <code>{}</code>, scheme <code>{}</code></li>\n",
            r.pay_to,
            r.asset,
            escape_html(&r.network.caip2()),
            escape_html(&r.scheme),
        ));
        if wallet_can_pay(r) {
            let label = if accepts.len() == 1 {
                "Pay with wallet".to_string()
            } else {
                format!("Pay with wallet: {price}")
            };
            buttons.push_str(&format!(
                "<button type=\"button\" data-accept=\"{i}\" hidden>{label}</button>\n"
            ));
        }
    }
    let note = route
        .price_note
        .as_deref()
        .map(|n| format!("<p>{}</p>", escape_html(n)))
        .unwrap_or_default();
    let resource_url = challenge
        .required
        .resource
        .as_ref()
        .map_or("", |r| r.url.as_str());
    let command = escape_html(&agora_pay_command(accepts, resource_url));
    let raw = serde_json::to_string_pretty(&challenge.body).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Payment required: {name}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style>
</head><body>
<h1>402: payment required</h1>
<p><strong>{name}</strong>: {description}</p>
{note}
<p>Each call costs:</p>
<ul>
{options}</ul>
<section id="x402-wallet" data-payment-required="{required}" hidden>
<h2>Pay from this page</h2>
{buttons}<p id="x402-status" role="status" aria-live="polite"></p>
<div id="x402-no-wallet" hidden><p>No browser wallet was found on this page (there is no <code>window.ethereum</code>). Install an Ethereum wallet extension and reload, or pay from a terminal with agora:</p>
<pre>{command}</pre></div>
<div id="x402-result" hidden><h3>Answer</h3>
<pre id="x402-answer"></pre>
<p id="x402-receipt">Receipt: transaction <code id="x402-tx"></code></p></div>
</section>
<h2>Pay from a terminal</h2>
<p>With agora (<code>agora wallet new</code>, fund the address it prints, then):</p>
<pre id="x402-cli">{command}</pre>
<h2>How to pay with any x402 client</h2>
<p>This endpoint speaks <a href="https://www.x402.org/">x402</a>. Any x402 client pays it without configuration,
for example the official <code>@x402/fetch</code> package or the <code>x402</code> Python package:
retry the request with a signed EIP-3009 authorization in the <code>PAYMENT-SIGNATURE</code> (or <code>X-PAYMENT</code>) header.
You are charged only when the service answers successfully. The full list of services is at <a href="/">the storefront</a>
and <a href="/api/services.json">/api/services.json</a>.</p>
<details><summary>Payment requirements (JSON)</summary><pre>{raw}</pre></details>
<script>{SCRIPT}</script>
</body></html>
"#,
        name = escape_html(&route.name),
        description = escape_html(&route.description),
        required = escape_html(&challenge.header),
        raw = escape_html(&raw),
    )
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{U256, address};
    use reqwest::Url;
    use serde_json::Value;
    use x402::network::{Asset, Network};

    use super::*;
    use crate::challenge::build;

    const HOSTILE: &str = "<script>alert('x')</script>\"&";

    fn requirement(network: Network, asset: &Asset, amount: u64) -> PaymentRequirements {
        PaymentRequirements::exact(
            network,
            asset,
            U256::from(amount),
            address!("0x1111111111111111111111111111111111111111"),
            300,
        )
    }

    fn usdc_route() -> Route {
        let net = Network::BASE_SEPOLIA;
        let asset = net.default_asset().unwrap();
        Route::new(
            "echo",
            "/services/echo",
            Url::parse("http://127.0.0.1:9").unwrap(),
            vec![requirement(net, &asset, 1500)],
        )
    }

    fn page_for(route: &Route, url: &str) -> String {
        let challenge = build(route, url, 0, "payment required", None).unwrap();
        page(route, &challenge)
    }

    /// The text of the page's one inline script, exactly as served.
    fn inline_script(page: &str) -> &str {
        let start = page.find("<script>").unwrap() + "<script>".len();
        let end = start + page[start..].find("</script>").unwrap();
        &page[start..end]
    }

    #[test]
    fn every_seller_and_buyer_controlled_text_is_escaped() {
        let mut route = usdc_route();
        route.name = HOSTILE.into();
        route.description = HOSTILE.into();
        route.price_note = Some(HOSTILE.into());
        let page = page_for(&route, "http://h/services/echo/<b>?q='1'&r=\"2\"");
        assert_eq!(
            page.matches("<script>").count(),
            1,
            "only the wallet script"
        );
        assert!(!page.contains("alert('x')"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
        assert!(
            !page.contains("echo/<b>"),
            "the URL in the command is escaped"
        );
        assert!(page.contains(
            "agora pay --max 0.0015 &#39;http://h/services/echo/&lt;b&gt;?q=&#39;\\&#39;&#39;1&#39;\\&#39;&#39;&amp;r=&quot;2&quot;&#39;"
        ));
    }

    #[test]
    fn without_javascript_the_price_payee_and_command_are_on_the_page() {
        let page = page_for(&usdc_route(), "http://h/services/echo/x");
        assert!(page.contains("0.0015 USDC on Base Sepolia"));
        assert!(page.contains("0x1111111111111111111111111111111111111111"));
        assert!(page.contains(
            "<pre id=\"x402-cli\">agora pay --max 0.0015 &#39;http://h/services/echo/x&#39;</pre>"
        ));
        assert!(
            page.contains("<section id=\"x402-wallet\" data-payment-required=")
                && page.contains("\" hidden>"),
            "the wallet section shows only once the script runs"
        );
        assert!(
            page.contains(
                "<button type=\"button\" data-accept=\"0\" hidden>Pay with wallet</button>"
            )
        );
    }

    #[test]
    fn the_script_carries_the_exact_v2_challenge() {
        let route = usdc_route();
        let challenge = build(
            &route,
            "http://h/services/echo/x",
            0,
            "payment required",
            None,
        )
        .unwrap();
        let page = page(&route, &challenge);
        let attr = "data-payment-required=\"";
        let start = page.find(attr).unwrap() + attr.len();
        let value = &page[start..start + page[start..].find('"').unwrap()];
        assert_eq!(value, challenge.header, "base64 needs no escaping");
        let decoded: Value = x402::header::decode(value).unwrap();
        assert_eq!(decoded["x402Version"], 2);
        assert_eq!(decoded["accepts"][0]["extra"]["name"], "USDC");
    }

    #[test]
    fn the_policy_allows_exactly_the_served_script_and_style() {
        let page = page_for(&usdc_route(), "http://h/services/echo/x");
        let policy = CONTENT_SECURITY_POLICY.as_str();
        assert!(policy.contains(&format!("script-src '{}';", csp_hash(inline_script(&page)))));
        assert!(policy.contains(&format!("style-src '{}';", csp_hash(STYLE))));
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
        assert!(policy.starts_with("default-src 'none';"));
        assert!(!policy.contains("unsafe-inline"));
        assert!(
            !SCRIPT.contains("</script"),
            "the script cannot end its own element"
        );
    }

    #[test]
    fn a_requirement_no_wallet_can_sign_gets_no_button_but_stays_listed() {
        let asset = Asset {
            address: address!("0x2222222222222222222222222222222222222222"),
            decimals: 6,
            symbol: "TST".into(),
            eip712_name: "Test".into(),
            eip712_version: "1".into(),
        };
        let mut evm = requirement(Network::Eip155(31337), &asset, 2500);
        evm.extra = None;
        let other = requirement(Network::Other("solana:5eykt".into()), &asset, 500);
        let route = Route::new(
            "odd",
            "/services/odd",
            Url::parse("http://127.0.0.1:9").unwrap(),
            vec![evm, other],
        );
        let page = page_for(&route, "http://h/services/odd");
        assert!(!page.contains("<button"));
        assert!(page.contains("solana:5eykt") && page.contains("eip155:31337"));
        assert!(page.contains(
            "agora pay --max 0.0005 --allow-asset solana:5eykt:0x2222222222222222222222222222222222222222 &#39;http://h/services/odd&#39;"
        ));
    }

    #[test]
    fn several_options_get_one_labelled_button_each_and_the_command_takes_the_cheapest() {
        let net = Network::BASE_SEPOLIA;
        let asset = net.default_asset().unwrap();
        let route = Route::new(
            "two",
            "/services/two",
            Url::parse("http://127.0.0.1:9").unwrap(),
            vec![
                requirement(net.clone(), &asset, 3000),
                requirement(net, &asset, 1000),
            ],
        );
        let page = page_for(&route, "http://h/services/two");
        assert!(page.contains(
            "data-accept=\"0\" hidden>Pay with wallet: 0.003 USDC on Base Sepolia</button>"
        ));
        assert!(page.contains(
            "data-accept=\"1\" hidden>Pay with wallet: 0.001 USDC on Base Sepolia</button>"
        ));
        assert!(page.contains("agora pay --max 0.001 &#39;"));
    }
}
