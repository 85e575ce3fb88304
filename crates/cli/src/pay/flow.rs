//! The paid call, step by step rather than through `Client::pay_recorded`, because
//! each step has a ledger write between it and the next: probe → choose (refusal:
//! exit 2, nothing signed) → sign → ledger row and signed header in one transaction
//! (a budget refusal drops the signature unsent) → `sent` → send, once more with the
//! same header if the connection broke → `settled`, `unknown` or `refused`.
//! `--resume` enters at "send" with the header the ledger kept.

use alloy::primitives::{B256, U256};
use serde_json::{Value, json};
use wallet::budget::BudgetRefusal;
use wallet::home;
use wallet::keys;
use wallet::ledger::{Ledger, NewEntry};
use x402::client::{Client, ClientError, Outcome, Probe, SignedPayment};
use x402::{Money, UnixTimestamp};

use super::request::RequestSpec;
use super::show::{self, Sink};
use super::{Exit, PayArgs, no_cap, per_call_cap, policy};

fn now() -> u64 {
    UnixTimestamp::now().as_secs()
}

/// What every step needs: the request, the sink, the ledger and who pays.
struct Call {
    spec: RequestSpec,
    sink: Sink,
    store: Ledger,
    wallet: String,
    client: Client,
}

/// The paying client: like `x402::client::http_client`, it follows no redirect (one
/// would carry the signed header to whatever host the server names); a connect
/// timeout keeps an unreachable host from hanging the command, while the answer
/// itself may take as long as it streams.
fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}

/// `agora pay` without `--json`'s error object (see `super::run`): the free answer,
/// the dry run, the paid call or `--resume`.
pub async fn run(args: PayArgs) -> anyhow::Result<()> {
    let home = home::agora_home()?;
    let store = wallet::open_store(&home)?;
    let wallet = wallet::resolve_name(&home, &store, args.wallet.as_deref())?;
    let signer = keys::load(&home, &wallet)?;
    let spec = RequestSpec::new(
        &args.url,
        args.method.as_deref(),
        args.data.as_deref(),
        &args.headers,
    )?;
    let sink = Sink {
        file: args.output.clone(),
        head: args.include,
        json: args.json,
    };
    let http = http()?;
    if args.resume {
        let client = Client::new(http, signer, x402::client::Policy::new(U256::ZERO));
        let call = Call {
            spec,
            sink,
            store,
            wallet,
            client,
        };
        return resume(call).await;
    }
    let budget = store.budget()?;
    let cap = per_call_cap(args.max.as_deref(), budget.per_call)?;
    let (max, cap_is_wallet) = cap.unwrap_or((U256::MAX, false));
    let mut policy = policy(&args, max)?;
    if let Some(left) = store.remaining_daily_budget(now())? {
        policy = policy.with_budget(left);
    }
    let payer = signer.address();
    let mut client = Client::new(http, signer, policy);
    if !args.rpcs.is_empty() {
        client = client.with_balances(balances(&args.rpcs, payer).await?);
    }
    let call = Call {
        spec,
        sink,
        store,
        wallet,
        client,
    };
    let probe = call
        .client
        .probe(call.spec.build(call.client.http())?)
        .await
        .map_err(stop)?;
    let challenge = match probe {
        Probe::Answered(response) => return show::answer(response, &call.sink, None).await,
        Probe::PaymentRequired(challenge) => challenge,
    };
    let refused = |refusal: x402::client::Refusal| -> anyhow::Error {
        let message = match &refusal {
            // The wallet's per-call budget, not --max, was the lower cap: name it.
            x402::client::Refusal::AboveMax { price, max } if cap_is_wallet => format!(
                "the price {price} is above the wallet's per-call budget of {}; raise it with: agora wallet budget --per-call {}",
                Money::from_atomic(*max, price.money.decimals),
                price.money
            ),
            other => other.to_string(),
        };
        Exit::refused(format!("{message}; nothing was signed")).into()
    };
    if cap.is_none() && !args.dry_run {
        let choice = call.client.choose(&challenge).map_err(refused)?;
        return Err(no_cap(&choice.price.to_string()).into());
    }
    if args.dry_run {
        let preview = call.client.dry_run(&challenge).map_err(refused)?;
        return show::dry_run(&preview, call.sink.json);
    }
    let choice = call.client.choose(&challenge).map_err(refused)?;
    if !args.new_payment {
        refuse_while_open(&call)?;
    }
    let signed = call.client.prepare(&challenge).map_err(stop)?;
    let id = record(&call, &signed)?;
    let price = choice.price.to_string();
    call.store.mark_sent(id, now())?;
    let first = call
        .client
        .send(call.spec.build(call.client.http())?, &signed)
        .await;
    let (outcome, resent) = match first {
        // The connection broke after the header may have arrived: the same payment
        // once more, which the server charges at most once.
        Err(ClientError::Http(e)) => {
            eprintln!(
                "warning: the connection broke after the payment was sent ({e}); sending the same authorization once more"
            );
            let again = call
                .client
                .send(call.spec.build(call.client.http())?, &signed)
                .await;
            (again, true)
        }
        other => (other, false),
    };
    let before = if resent { Before::Sent } else { Before::Fresh };
    finish(&call, id, &price, &signed, outcome, before).await
}

/// Refuses (exit 2, before signing) a second payment for a URL while an earlier one is
/// open: a seller that answers 402 to a signed payment still holds it, and signing
/// again on every retry is how such a seller would collect many.
fn refuse_while_open(call: &Call) -> anyhow::Result<()> {
    let url = call.spec.url.as_str();
    let Some(open) = call.store.open_payment(&call.wallet, url, now())? else {
        return Ok(());
    };
    Err(Exit::refused(format!(
        "ledger entry {} is a payment of wallet {} for {url} that is still open ({}{}) and may yet be charged until {}; send the same authorization again with: agora pay --resume {url} (same -X/-d/-H flags), or sign a second one anyway (both may be charged) with: agora pay --new {url} --max USDC (MCP pay tool: new: true); nothing was signed",
        open.id,
        call.wallet,
        serde_json::to_value(open.status)?.as_str().unwrap_or("open"),
        open.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default(),
        offers::time::format_rfc3339(open.valid_before),
    ))
    .into())
}

/// The wallet's USDC on each `--rpc` chain, so the choice prefers a chain where it
/// holds enough and refuses (before signing) a price it cannot cover.
async fn balances(
    rpcs: &[reqwest::Url],
    payer: alloy::primitives::Address,
) -> anyhow::Result<x402::client::Balances> {
    let mut balances = x402::client::Balances::default();
    for rpc in rpcs {
        let chain = wallet::chain::connect(None, Some(rpc)).await?;
        let held = chain.balances(payer).await?;
        balances.insert(chain.network.clone(), held.usdc_address, held.usdc);
    }
    Ok(balances)
}

/// Writes the ledger row and the signed header before anything is sent; a budget
/// refusal (another `agora pay` spent the remainder meanwhile) exits 2 and the
/// signature is dropped unsent.
fn record(call: &Call, signed: &SignedPayment) -> anyhow::Result<i64> {
    let requirement = &signed.requirement;
    let network = requirement.network.caip2();
    let url = call.spec.url.as_str();
    let entry = NewEntry {
        wallet: &call.wallet,
        payer: signed.payer(),
        url,
        network: &network,
        asset: requirement.asset,
        pay_to: requirement.pay_to,
        amount: requirement.amount,
        nonce: signed.nonce(),
        valid_before: signed.valid_before_secs(),
    };
    let payment = serde_json::to_string(signed)?;
    match call
        .store
        .record_payment_within_budget(&entry, &payment, now())?
    {
        Ok(id) => Ok(id),
        Err(refusal) => Err(budget_refusal(refusal)),
    }
}

fn budget_refusal(refusal: BudgetRefusal) -> anyhow::Error {
    Exit::refused(format!("{refusal}; the signature was dropped unsent")).into()
}

/// An error of the client before or without a ledger row: exit 2 when nothing was
/// signed (an unreadable 402 is a refusal too), else a plain error.
fn stop(e: ClientError) -> anyhow::Error {
    if e.signed_nothing() {
        return Exit::refused(format!("{e}; nothing was signed")).into();
    }
    anyhow::Error::new(e)
}

/// `--resume`: the newest resumable authorization for this URL (see
/// `Ledger::last_resumable_payment`), sent again byte for byte.
async fn resume(call: Call) -> anyhow::Result<()> {
    let url = call.spec.url.as_str().to_string();
    let Some((id, payment, settled)) = call.store.last_resumable_payment(&call.wallet, &url)?
    else {
        anyhow::bail!(
            "the ledger holds no payment of wallet {} for {url} whose answer is missing; see agora wallet spent, or pay anew with: agora pay {url} --max USDC",
            call.wallet
        );
    };
    let signed: SignedPayment = serde_json::from_str(&payment).map_err(|e| {
        anyhow::anyhow!("ledger entry {id} holds an unreadable signed payment ({e}); nothing was sent; see agora wallet spent --rpc URL")
    })?;
    if !settled && signed.valid_before_secs() <= now() {
        anyhow::bail!(
            "the authorization of ledger entry {id} expired at {}; it cannot be sent again. Whether it was charged: agora wallet spent --rpc URL; to pay anew: agora pay {url} --max USDC",
            signed.valid_before_secs()
        );
    }
    eprintln!(
        "resending ledger entry {id} (nonce {}), the same authorization; nothing new is signed",
        signed.nonce()
    );
    let price = price_of(&signed);
    let before = if settled {
        Before::Settled
    } else {
        call.store.mark_sent(id, now())?;
        Before::Sent
    };
    let outcome = call
        .client
        .resume(call.spec.build(call.client.http())?, &signed)
        .await;
    finish(&call, id, &price, &signed, outcome, before).await
}

/// The decimals and symbol of a stored payment's asset: known USDC, else an
/// `--allow-asset` token counted with USDC's 6 decimals (see `--allow-asset`).
fn units(signed: &SignedPayment) -> (u8, String) {
    let r = &signed.requirement;
    match r.network.known() {
        Some(chain) if chain.usdc.address == r.asset => {
            (chain.usdc.decimals, chain.usdc.symbol.to_string())
        }
        _ => (
            x402::client::UNLISTED_ASSET_DECIMALS,
            format!("units of {}", r.asset.to_checksum(None)),
        ),
    }
}

/// `0.001 USDC on base-sepolia` for a stored payment.
fn price_of(signed: &SignedPayment) -> String {
    let (decimals, symbol) = units(signed);
    format!(
        "{} {symbol} on {}",
        Money::from_atomic(signed.requirement.amount, decimals),
        signed.requirement.network.v1_name()
    )
}

/// What the ledger knew of this authorization before this send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Sent for the first time (no retry).
    Fresh,
    /// Sent before (the automatic retry, or `--resume` of an open row): a refusal
    /// now may be a replay guard refusing a payment that did settle, so the row
    /// stays `unknown` for `wallet spent --rpc`.
    Sent,
    /// Charged already, its answer cut: the row stays `settled` whatever comes.
    Settled,
}

/// Turns the server's answer into a ledger status and what the user sees.
async fn finish(
    call: &Call,
    id: i64,
    price: &str,
    signed: &SignedPayment,
    outcome: Result<Outcome, ClientError>,
    before: Before,
) -> anyhow::Result<()> {
    let url = call.spec.url.as_str();
    let resume_hint = format!("agora pay --resume {url} (with the same -X/-d/-H flags)");
    let settled = before == Before::Settled;
    // A settled row keeps its status; every other outcome moves an open row.
    let unknown = || {
        if settled {
            Ok(())
        } else {
            call.store.mark_unknown(id, now())
        }
    };
    match outcome {
        Ok(Outcome::Delivered(delivered)) => {
            let tx = delivered.charged_in();
            let receipt = receipt_json(&delivered.receipt, signed, tx);
            // The answer is paid for: it is shown even if the ledger cannot be
            // written, and that failure is reported after it.
            let marked = match tx {
                Some(tx) => {
                    eprintln!("paid {price}, tx {tx}");
                    if settled {
                        Ok(())
                    } else {
                        call.store.mark_settled(id, &tx.to_string(), now())
                    }
                }
                // Charged earlier (a cut answer fetched again): nothing to record.
                None if settled => Ok(()),
                None => {
                    eprintln!(
                        "warning: the server answered {} without a receipt naming a transaction{}; the ledger keeps this payment as unknown until it expires (check with: agora wallet spent --rpc URL)",
                        delivered.response.status(),
                        delivered
                            .receipt_error
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    );
                    unknown()
                }
            };
            if let Err(e) = show::answer(delivered.response, &call.sink, Some(receipt)).await {
                if crate::output::is_stdout_closed(&e) {
                    return Err(e);
                }
                return Err(Exit {
                    code: 3,
                    kind: "incomplete",
                    message: format!(
                        "{e:#}; the payment of {price} was charged, and the server owes the rest: get the whole answer with the same authorization: {resume_hint}"
                    ),
                }
                .into());
            }
            marked
                .and_then(|()| call.store.mark_delivered(id, now()))
                .map_err(|e| {
                    e.context(format!(
                        "the answer was delivered, but ledger entry {id} could not be updated; see agora wallet spent --rpc URL"
                    ))
                })
        }
        Ok(Outcome::Pending(pending)) => {
            unknown()?;
            Err(Exit {
                code: 3,
                kind: "pending",
                message: format!(
                    "the payment of {price} was sent but the server does not know yet whether it settled ({}{}); nothing new will be signed. Get the answer {} with: {resume_hint}",
                    pending.reason.as_deref().unwrap_or("pending"),
                    pending
                        .transaction
                        .map(|tx| format!(", tx {tx}"))
                        .unwrap_or_default(),
                    pending
                        .retry_after
                        .map(|d| format!("in {} s or later", d.as_secs().max(1)))
                        .unwrap_or_else(|| "later".to_string())
                ),
            }
            .into())
        }
        Err(e @ (ClientError::Rejected { .. } | ClientError::PayToChanged { .. })) => {
            let message = match before {
                // A refusal is no proof of non-payment: the server holds the signed
                // authorization and may still submit it before it expires.
                Before::Fresh => {
                    call.store
                        .mark_refused_after_sending(id, &e.to_string(), now())?;
                    format!(
                        "{e}. The server received the signed authorization, so it counts against your budget until it expires at {} (agora wallet spent --rpc URL asks the chain)",
                        offers::time::format_rfc3339(signed.valid_before_secs())
                    )
                }
                Before::Sent => {
                    unknown()?;
                    format!(
                        "{e}. This authorization was sent before, so it may have been charged then; the ledger keeps it as unknown until the chain says (agora wallet spent --rpc URL)"
                    )
                }
                Before::Settled => format!(
                    "{e}. This authorization was charged earlier (see agora wallet spent); the server will not serve it again"
                ),
            };
            Err(Exit {
                code: 4,
                kind: "rejected",
                message,
            }
            .into())
        }
        Err(e) => {
            unknown()?;
            Err(Exit {
                code: 3,
                kind: "unknown",
                message: format!(
                    "the payment of {price} was sent but its answer was lost ({e}); it may or may not have been charged. Get the answer with the same authorization: {resume_hint}"
                ),
            }
            .into())
        }
    }
}

/// The receipt for `--json`: tx, amount, network, payer.
fn receipt_json(
    receipt: &Option<x402::SettleResponse>,
    signed: &SignedPayment,
    tx: Option<B256>,
) -> Value {
    let amount = receipt
        .as_ref()
        .and_then(|r| r.amount)
        .unwrap_or(signed.requirement.amount);
    json!({
        "tx": tx.map(|t| t.to_string()),
        "amountAtomic": amount.to_string(),
        "amount": Money::from_atomic(amount, units(signed).0).to_string(),
        "symbol": units(signed).1,
        "network": signed.requirement.network.v1_name(),
        "payer": receipt.as_ref().and_then(|r| r.payer).unwrap_or(signed.payer()).to_checksum(None),
        "payTo": signed.requirement.pay_to.to_checksum(None),
        "nonce": signed.nonce().to_string(),
        "success": receipt.as_ref().map(|r| r.success),
    })
}
