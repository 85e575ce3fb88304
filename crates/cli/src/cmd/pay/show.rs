//! What `agora pay` prints: the answer's body streamed to stdout or `-o FILE` chunk
//! by chunk as the server sends it (so SSE tokens show up while they are generated),
//! curl's `-i` status and headers, the dry run, the one `--json` object, and the
//! buyer's notes on stderr. Nothing here decides about money; the payment arrives as
//! a ready value.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use buyer::{BoxError, Note, Payment};
use reqwest::Response;
use serde_json::{Value, json};
use x402::Money;
use x402::client::Preview;

use crate::output::{self, outln};

/// Where and how the answer goes.
#[derive(Debug, Clone)]
pub struct Sink {
    /// `-o FILE`.
    pub file: Option<PathBuf>,
    /// `-i`: status line and headers before the body.
    pub head: bool,
    /// `--json`: one object at the end instead of the raw body.
    pub json: bool,
}

impl buyer::Sink for Sink {
    type Output = ();

    async fn receive(
        &mut self,
        response: Response,
        payment: Option<&Payment>,
    ) -> Result<(), BoxError> {
        answer(response, self, payment.map(receipt_json))
            .await
            .map_err(anyhow::Error::reallocate_into_boxed_dyn_error_without_backtrace)
    }
}

/// What the buyer tells on the way, on stderr.
pub fn note(note: &Note<'_>) {
    match note {
        Note::Retrying { error } => eprintln!(
            "warning: the connection broke after the payment was sent ({error}); sending the same authorization once more"
        ),
        Note::Charged { price, tx } => eprintln!("paid {price}, tx {tx}"),
        Note::NoReceipt {
            status,
            receipt_error,
        } => eprintln!(
            "warning: the server answered {status} without a receipt naming a transaction{}; the ledger keeps this payment as unknown until it expires (check with: agora wallet spent --rpc URL)",
            receipt_error.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
        Note::Resending { ledger_id, nonce } => eprintln!(
            "resending ledger entry {ledger_id} (nonce {nonce}), the same authorization; nothing new is signed"
        ),
    }
}

/// The receipt for `--json`: tx, amount, network, payer.
fn receipt_json(payment: &Payment) -> Value {
    let receipt = payment.receipt.as_ref();
    let price = &payment.price;
    let amount = receipt.and_then(|r| r.amount).unwrap_or(price.money.atomic);
    json!({
        "tx": payment.tx.map(|t| t.to_string()),
        "amountAtomic": amount.to_string(),
        "amount": Money::from_atomic(amount, price.money.decimals).to_string(),
        "symbol": price.symbol,
        "network": price.network.v1_name(),
        "payer": receipt.and_then(|r| r.payer).unwrap_or(payment.payer).to_checksum(None),
        "payTo": payment.pay_to.to_checksum(None),
        "nonce": payment.nonce.to_string(),
        "success": receipt.map(|r| r.success),
    })
}

/// curl's `-i` block: `HTTP/1.1 200 OK`, the headers, a blank line.
fn head_text(response: &Response) -> String {
    let mut text = format!("{:?} {}\r\n", response.version(), response.status());
    for (name, value) in response.headers() {
        text.push_str(name.as_str());
        text.push_str(": ");
        text.push_str(&String::from_utf8_lossy(value.as_bytes()));
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

fn headers_json(response: &Response) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in response.headers() {
        map.insert(
            name.as_str().to_string(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    Value::Object(map)
}

/// Streams `response`'s body to the sink; `receipt` (already checked) goes into the
/// `--json` object. Returns once the last byte is written.
pub async fn answer(
    mut response: Response,
    sink: &Sink,
    receipt: Option<Value>,
) -> anyhow::Result<()> {
    let status = response.status().as_u16();
    let headers = sink.head.then(|| headers_json(&response));
    let head = sink.head.then(|| head_text(&response));
    if let Some(path) = &sink.file {
        let written = to_file(&mut response, path, head.as_deref()).await?;
        if sink.json {
            let mut object = json!({ "status": status, "file": path, "bytes": written });
            extend(&mut object, headers, receipt);
            return outln!("{object}");
        }
        return Ok(());
    }
    if sink.json {
        let mut body = Vec::new();
        while let Some(chunk) = next_chunk(&mut response).await? {
            body.extend_from_slice(&chunk);
        }
        let body = match serde_json::from_slice::<Value>(&body) {
            Ok(value) => value,
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        };
        let mut object = json!({ "status": status, "body": body });
        extend(&mut object, headers, receipt);
        return outln!("{object}");
    }
    if let Some(head) = head {
        output::write_bytes(head.as_bytes())?;
    }
    while let Some(chunk) = next_chunk(&mut response).await? {
        output::write_bytes(&chunk)?;
    }
    Ok(())
}

fn extend(object: &mut Value, headers: Option<Value>, receipt: Option<Value>) {
    if let Some(headers) = headers {
        object["headers"] = headers;
    }
    if let Some(receipt) = receipt {
        object["receipt"] = receipt;
    }
}

/// The next piece of the body as the server sent it, `None` at the end.
async fn next_chunk(response: &mut Response) -> anyhow::Result<Option<Vec<u8>>> {
    let chunk = response.chunk().await.context(
        "the connection broke while the answer's body was arriving (what arrived was written)",
    )?;
    Ok(chunk.map(|bytes| bytes.to_vec()))
}

async fn to_file(response: &mut Response, path: &Path, head: Option<&str>) -> anyhow::Result<u64> {
    let mut file = std::fs::File::create(path)
        .with_context(|| format!("cannot create -o {}; give a writable path", path.display()))?;
    let mut written = 0u64;
    let fail = |e| anyhow::Error::new(e).context(format!("cannot write to {}", path.display()));
    if let Some(head) = head {
        file.write_all(head.as_bytes()).map_err(fail)?;
    }
    while let Some(chunk) = next_chunk(response).await? {
        file.write_all(&chunk).map_err(fail)?;
        file.flush().map_err(fail)?;
        written += chunk.len() as u64;
    }
    Ok(written)
}

/// `--dry-run`: the price and the authorization that would be signed.
pub fn dry_run(preview: &Preview, json: bool) -> anyhow::Result<()> {
    let offer = &preview.choice.offer.requirement;
    let price = &preview.choice.price;
    let a = &preview.authorization;
    if json {
        return outln!(
            "{}",
            json!({
                "dryRun": true,
                "signed": false,
                "price": price.money.to_string(),
                "symbol": price.symbol,
                "network": price.network.v1_name(),
                "amountAtomic": offer.amount.to_string(),
                "asset": offer.asset.to_checksum(None),
                "payTo": offer.pay_to.to_checksum(None),
                "header": preview.header,
                "authorization": a,
            })
        );
    }
    outln!("price: {price} ({} atomic units)", offer.amount)?;
    outln!("asset: {}", offer.asset.to_checksum(None))?;
    outln!("pay to: {}", offer.pay_to.to_checksum(None))?;
    outln!(
        "would sign (EIP-3009, sent in {}): from {} to {} value {} validAfter {} validBefore {} (nonce drawn at signing)",
        preview.header,
        a.from.to_checksum(None),
        a.to.to_checksum(None),
        a.value,
        a.valid_after,
        a.valid_before
    )?;
    outln!("dry run: nothing was signed or sent")
}
