//! The published documents: what a buyer, an agent or a crawler reads to learn what
//! this gateway sells and how to pay.
//!
//! The gateway serves them as values swapped together with the route table, so the
//! catalog never disagrees with what the gate charges. [`Documents::build`] derives
//! them from the routes; the registration file comes from the registry side.
//!
//! Everything here is public, so nothing internal is rendered: not a route's upstream
//! URL, and a route's `unavailable` reason only with any URL in it cut down to
//! `scheme://host[:port]` (the reconciler already writes generic reasons; this is the
//! backstop for one that slips through, since upstream and health URLs reveal the
//! seller's private network and may carry keys).

use serde_json::{Value, json};
use x402::wire::X402Version;

use crate::challenge::{describe_price, escape_html};
use crate::route::Route;

/// Who is selling, for the headings of the documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Shown as the storefront title.
    pub title: String,
    /// Public base URL without a trailing slash (e.g. a tunnel URL); empty when only
    /// relative links can be given.
    pub base_url: String,
}

impl Default for Site {
    fn default() -> Self {
        Self {
            title: "agora seller".to_string(),
            base_url: String::new(),
        }
    }
}

/// Everything served outside the paid routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Documents {
    /// `/skill.md`: how an agent uses these services.
    pub skill_md: String,
    /// `/api/services.json`: the machine-readable catalog.
    pub services_json: Value,
    /// `/openapi.json`: paths with their price.
    pub openapi_json: Value,
    /// `/.well-known/x402`: the paid resources in x402 discovery form.
    pub x402_well_known: Value,
    /// `/`: the storefront page.
    pub storefront_html: String,
    /// `/.well-known/agent-registration.json` (ERC-8004); 404 while absent.
    pub agent_registration: Option<Value>,
}

impl Default for Documents {
    fn default() -> Self {
        Self::build(&Site::default(), &[], None)
    }
}

impl Documents {
    /// Derives the catalog documents from `routes`.
    pub fn build(site: &Site, routes: &[Route], agent_registration: Option<Value>) -> Self {
        let mut sorted: Vec<&Route> = routes.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            skill_md: skill_md(site, &sorted),
            services_json: services_json(site, &sorted),
            openapi_json: openapi_json(site, &sorted),
            x402_well_known: x402_well_known(site, &sorted),
            storefront_html: storefront(site, &sorted),
            agent_registration,
        }
    }
}

/// `reason` with every URL in it cut down to its origin, so a reason that embeds an
/// upstream or health-check URL cannot publish its path or query.
fn public_reason(reason: &str) -> String {
    reason
        .split(' ')
        .map(|word| {
            if !word.contains("://") {
                return word.to_string();
            }
            let start = word
                .find(|c: char| c.is_ascii_alphanumeric())
                .unwrap_or(word.len());
            let core = &word[start..];
            let end = core
                .trim_end_matches(|c: char| ")]}>\"',;:.".contains(c))
                .len();
            let (core, tail) = core.split_at(end);
            format!("{}{}{tail}", &word[..start], x402::redact::origin(core))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn url_of(site: &Site, route: &Route) -> String {
    format!("{}{}", site.base_url, route.prefix)
}

fn prices(route: &Route) -> Vec<Value> {
    route
        .accepts
        .iter()
        .map(|r| {
            json!({
                "scheme": r.scheme,
                "network": r.network.caip2(),
                "asset": r.asset.to_checksum(None),
                "amount": r.amount.to_string(),
                "payTo": r.pay_to.to_checksum(None),
                "maxTimeoutSeconds": r.max_timeout_seconds,
                "display": describe_price(r),
            })
        })
        .collect()
}

fn services_json(site: &Site, routes: &[&Route]) -> Value {
    let services: Vec<Value> = routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "path": r.prefix,
                "url": url_of(site, r),
                "description": r.description,
                "mimeType": r.mime_type,
                "free": r.accepts.is_empty(),
                "price": prices(r),
                "priceNote": r.price_note,
                "available": r.unavailable.is_none(),
                "unavailableReason": r.unavailable.as_deref().map(public_reason),
            })
        })
        .collect();
    json!({ "x402Version": 2, "title": site.title, "services": services })
}

fn openapi_json(site: &Site, routes: &[&Route]) -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes {
        let operation = |method: &str| {
            json!({
                "summary": format!("{} ({method})", r.description),
                "operationId": format!("{}_{method}", r.name),
                "parameters": [{
                    "name": "path", "in": "path", "required": true,
                    "schema": {"type": "string"},
                    "description": "Path forwarded to the service below its prefix"
                }],
                "responses": {
                    "200": {"description": "The service's answer; the payment receipt is in PAYMENT-RESPONSE and X-PAYMENT-RESPONSE"},
                    "402": {"description": "Payment required: the requirements are in the PAYMENT-REQUIRED header (v2) and the JSON body"}
                },
                "x-x402": {"accepts": prices(r), "priceNote": r.price_note},
            })
        };
        paths.insert(
            format!("{}/{{path}}", r.prefix),
            json!({ "get": operation("get"), "post": operation("post") }),
        );
    }
    let servers = if site.base_url.is_empty() {
        json!([])
    } else {
        json!([{ "url": site.base_url }])
    };
    json!({
        "openapi": "3.1.0",
        "info": {"title": site.title, "version": env!("CARGO_PKG_VERSION"),
                 "description": "Services paid per call with x402 (USDC, EIP-3009)."},
        "servers": servers,
        "paths": paths,
    })
}

fn x402_well_known(site: &Site, routes: &[&Route]) -> Value {
    let items: Vec<Value> = routes
        .iter()
        .filter(|r| !r.accepts.is_empty())
        .map(|r| {
            let accepts: Vec<Value> = r
                .accepts
                .iter()
                .map(|a| a.to_wire(X402Version::V2))
                .collect();
            json!({
                "resource": url_of(site, r),
                "type": "http",
                "x402Version": 2,
                "accepts": accepts,
                "metadata": {"name": r.name, "description": r.description, "mimeType": r.mime_type},
            })
        })
        .collect();
    json!({ "x402Version": 2, "items": items })
}

fn skill_md(site: &Site, routes: &[&Route]) -> String {
    let mut md = format!(
        "---\nname: {}\ndescription: Paid HTTP services behind an x402 gate; pay per call in USDC.\n---\n\n# {}\n\n",
        site.title, site.title
    );
    md.push_str(
        "Every service below answers an unpaid request with HTTP 402 and its payment \
requirements (the `PAYMENT-REQUIRED` header, base64 JSON, and a JSON body). Pay with any x402 \
client: sign an EIP-3009 `transferWithAuthorization` for the exact amount and retry with the \
payment in `PAYMENT-SIGNATURE` (or `X-PAYMENT`). You are charged only when the service answers \
with a status below 400; the receipt is in `PAYMENT-RESPONSE`.\n\n## Services\n\n",
    );
    if routes.is_empty() {
        md.push_str("Nothing is for sale right now.\n");
    }
    for r in routes {
        md.push_str(&format!("### {}\n\n{}\n\n", r.name, r.description));
        md.push_str(&format!("- Endpoint: `{}/...`\n", url_of(site, r)));
        if r.accepts.is_empty() {
            md.push_str("- Price: free\n");
        }
        for a in &r.accepts {
            md.push_str(&format!(
                "- Price: {} (`{}` atomic units of `{}`, network `{}`, pay to `{}`)\n",
                describe_price(a),
                a.amount,
                a.asset,
                a.network.caip2(),
                a.pay_to
            ));
        }
        if let Some(note) = &r.price_note {
            md.push_str(&format!("- Pricing: {note}\n"));
        }
        if let Some(reason) = &r.unavailable {
            md.push_str(&format!(
                "- Currently unavailable: {}\n",
                public_reason(reason)
            ));
        }
        md.push('\n');
    }
    md
}

fn storefront(site: &Site, routes: &[&Route]) -> String {
    let mut rows = String::new();
    for r in routes {
        let price = if r.accepts.is_empty() {
            "free".to_string()
        } else {
            r.accepts
                .iter()
                .map(describe_price)
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let status = match &r.unavailable {
            None => "available".to_string(),
            Some(reason) => format!("unavailable: {}", escape_html(&public_reason(reason))),
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"{url}/\">{name}</a></td><td>{desc}</td><td>{price}</td><td>{status}</td></tr>\n",
            url = escape_html(&url_of(site, r)),
            name = escape_html(&r.name),
            desc = escape_html(&r.description),
            price = escape_html(&price).replace("&lt;br&gt;", "<br>"),
        ));
    }
    if routes.is_empty() {
        rows.push_str("<tr><td colspan=\"4\">Nothing is for sale right now.</td></tr>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}}code{{background:#f4f4f4;padding:.1rem .3rem}}</style>
</head><body>
<h1>{title}</h1>
<p>Services paid per call with <a href="https://www.x402.org/">x402</a>: an unpaid request gets HTTP 402 with the price;
any x402 client (the official <code>@x402/fetch</code> or the <code>x402</code> Python package) pays it by retrying with a signed USDC authorization.
You are charged only for successful answers.</p>
<table><thead><tr><th>Service</th><th>What it does</th><th>Price per call</th><th>Status</th></tr></thead><tbody>
{rows}</tbody></table>
<p>Machine-readable: <a href="/api/services.json">/api/services.json</a>, <a href="/openapi.json">/openapi.json</a>,
<a href="/.well-known/x402">/.well-known/x402</a>, <a href="/skill.md">/skill.md</a>.</p>
</body></html>
"#,
        title = escape_html(&site.title),
    )
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};
    use reqwest::Url;
    use x402::network::Network;
    use x402::wire::PaymentRequirements;

    use super::*;

    fn routes() -> Vec<Route> {
        let net = Network::BASE_SEPOLIA;
        let paid = Route::new(
            "qwen",
            "/services/qwen",
            Url::parse("http://127.0.0.1:11434").unwrap(),
            vec![PaymentRequirements::exact(
                net.clone(),
                &net.default_asset().unwrap(),
                U256::from(1000),
                Address::repeat_byte(0x11),
                300,
            )],
        );
        let free = Route::new(
            "status",
            "/services/status",
            Url::parse("http://127.0.0.1:1").unwrap(),
            Vec::new(),
        );
        vec![paid, free]
    }

    #[test]
    fn documents_list_each_route_with_its_price() {
        let site = Site {
            title: "Alice's <GPU>".into(),
            base_url: "https://alice.example".into(),
        };
        let docs = Documents::build(&site, &routes(), None);
        let services = docs.services_json["services"].as_array().unwrap();
        assert_eq!(services.len(), 2);
        assert_eq!(services[0]["name"], "qwen");
        assert_eq!(services[0]["url"], "https://alice.example/services/qwen");
        assert_eq!(services[0]["price"][0]["amount"], "1000");
        assert_eq!(
            services[0]["price"][0]["display"],
            "0.001 USDC on Base Sepolia"
        );
        assert_eq!(services[1]["free"], true);
        assert!(
            docs.openapi_json["paths"]["/services/qwen/{path}"]["post"]["x-x402"]["accepts"][0]["amount"]
                == "1000"
        );
        let items = docs.x402_well_known["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "free routes are not x402 resources");
        assert_eq!(items[0]["accepts"][0]["network"], "eip155:84532");
        assert!(docs.skill_md.contains("0.001 USDC on Base Sepolia"));
        assert!(docs.storefront_html.contains("Alice&#39;s &lt;GPU&gt;"));
        assert!(docs.storefront_html.contains("0.001 USDC on Base Sepolia"));
    }

    #[test]
    fn an_unavailable_reason_shows_no_url_path_anywhere() {
        let mut routes = routes();
        routes[0].unavailable =
            Some("GET (http://10.0.0.7:8080/secret-XYZ/health?key=APIKEY77): refused".into());
        let docs = Documents::build(&Site::default(), &routes, None);
        let rendered = [
            docs.services_json.to_string(),
            docs.openapi_json.to_string(),
            docs.x402_well_known.to_string(),
            docs.skill_md.clone(),
            docs.storefront_html.clone(),
        ];
        for text in &rendered {
            assert!(!text.contains("secret-XYZ"), "{text}");
            assert!(!text.contains("APIKEY77"), "{text}");
            assert!(
                !text.contains("11434"),
                "the upstream is never shown: {text}"
            );
        }
        assert_eq!(
            docs.services_json["services"][0]["unavailableReason"],
            "GET (http://10.0.0.7:8080): refused"
        );
        assert_eq!(public_reason("no url here"), "no url here");
    }
}
