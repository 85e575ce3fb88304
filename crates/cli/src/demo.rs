//! `agora demo`: the whole payment path on a local chain, with the on-chain proof.
//!
//! A buyer signs an EIP-3009 authorization for a seller's x402 requirement, it travels
//! as a `PAYMENT-SIGNATURE` header, agora verifies it, a relayer settles it with
//! `transferWithAuthorization`, and the USDC `Transfer` log is checked against the
//! price. Replaying the same authorization is shown to fail.

use std::path::PathBuf;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use anyhow::{Context, bail, ensure};
use clap::Args;
use devnet::{Devnet, DevnetConfig};
use serde::Serialize;
use x402::eip3009::{self, IEip3009Token};
use x402::{Money, PaymentPayload, PaymentRequirements, header};

/// Options of `agora demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Price of the demo request in USDC.
    #[arg(long, default_value = "0.001")]
    price: String,
    /// The anvil binary (default: $AGORA_ANVIL, PATH, then the project's tools/ install).
    #[arg(long)]
    anvil: Option<PathBuf>,
    /// Print one JSON object with the proof instead of the narrative.
    #[arg(long)]
    json: bool,
}

/// What the demo proved, for `--json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DemoProof {
    rpc_url: String,
    network: String,
    asset: Address,
    price: String,
    amount_atomic: String,
    payer: Address,
    pay_to: Address,
    transaction: B256,
    block_number: u64,
    transfer_value_atomic: String,
    payer_balance_before: String,
    payer_balance_after: String,
    seller_balance_before: String,
    seller_balance_after: String,
    nonce_used_on_chain: bool,
    replay_rejected: bool,
}

/// Runs the demo and prints the proof.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    let price = Money::parse(&args.price, 6)
        .with_context(|| format!("--price {:?} is not a USDC amount", args.price))?;
    ensure!(
        !price.is_zero(),
        "--price must be above zero to demonstrate a payment"
    );

    say("1. starting a local Base Sepolia look-alike (anvil, chain id 84532)".into());
    let chain = Devnet::start(DevnetConfig {
        accounts: 3,
        anvil: args.anvil.clone(),
        ..DevnetConfig::default()
    })
    .await
    .context("could not start the devnet")?;
    let result = pay_once(&chain, price, &say).await;
    chain.stop().await;
    let proof = result?;
    if args.json {
        println!("{}", serde_json::to_string(&proof)?);
    } else {
        println!(
            "\nproof: tx {} in block {}",
            proof.transaction, proof.block_number
        );
        println!(
            "  seller {} USDC -> {} USDC (+{} USDC, exactly the price)",
            proof.seller_balance_before, proof.seller_balance_after, proof.price
        );
        println!("  chain stopped; run `agora devnet` to keep one running");
    }
    Ok(())
}

async fn pay_once(
    chain: &Devnet,
    price: Money,
    say: &impl Fn(String),
) -> anyhow::Result<DemoProof> {
    let [relayer, buyer, seller] = chain.accounts() else {
        bail!("the demo devnet should have exactly three accounts");
    };
    let usdc = chain.usdc();
    say(format!(
        "   USDC {} (EIP-712 {:?} v{}) at {}",
        usdc.symbol, usdc.eip712_name, usdc.eip712_version, usdc.address
    ));

    let mut requirement =
        PaymentRequirements::exact(chain.network(), usdc, price.atomic, seller.address(), 60);
    requirement.description = Some("agora demo request".into());
    say(format!(
        "2. seller {} asks {} USDC ({} atomic) per request on {}",
        seller.address(),
        price,
        price.atomic,
        requirement.network
    ));

    let signed = eip3009::authorize(&buyer.signer(), &requirement, eip3009::unix_now())?;
    let payment = PaymentPayload::v2(&requirement, signed);
    let header_value = header::encode(&payment)?;
    say(format!(
        "3. buyer {} signs an EIP-3009 authorization ({}-byte PAYMENT-SIGNATURE header)",
        buyer.address(),
        header_value.len()
    ));

    let received = header::decode_payment(&header_value)?;
    let payer = eip3009::verify_offline(&received, &requirement, eip3009::unix_now())?;
    say(format!(
        "4. verified: signature recovers to {payer}, amount and recipient match"
    ));

    let payer_before = chain.usdc_balance(payer).await?;
    let seller_before = chain.usdc_balance(seller.address()).await?;
    let provider = chain.provider_for(relayer.signer())?;
    let call = eip3009::settlement_call(&received.payload)?;
    let tx = TransactionRequest::default()
        .to(usdc.address)
        .input(call.abi_encode().into());
    let receipt = provider
        .send_transaction(tx.clone())
        .await?
        .get_receipt()
        .await?;
    ensure!(
        receipt.status(),
        "transferWithAuthorization reverted: {}",
        receipt.transaction_hash
    );
    let transfer = transfer_log(&receipt, usdc.address)?;
    ensure!(
        transfer.from == payer && transfer.to == seller.address() && transfer.value == price.atomic,
        "the Transfer log ({} -> {}, {}) does not match the payment",
        transfer.from,
        transfer.to,
        transfer.value
    );
    say(format!(
        "5. relayer {} settled it: tx {} (Transfer {} -> {}, {} atomic)",
        relayer.address(),
        receipt.transaction_hash,
        transfer.from,
        transfer.to,
        transfer.value
    ));

    let token = IEip3009Token::new(usdc.address, &provider);
    let nonce_used = token
        .authorizationState(payer, received.payload.authorization.nonce)
        .call()
        .await?;
    let replay_rejected = provider.call(tx).await.is_err();
    ensure!(nonce_used, "the token does not mark the nonce as used");
    ensure!(
        replay_rejected,
        "the token accepted the same authorization twice"
    );
    say("6. replaying the same authorization is rejected by the token (nonce used)".into());

    let payer_after = chain.usdc_balance(payer).await?;
    let seller_after = chain.usdc_balance(seller.address()).await?;
    ensure!(
        seller_after - seller_before == price.atomic && payer_before - payer_after == price.atomic,
        "balances moved by something other than the price"
    );
    let show = |atomic: U256| Money::from_atomic(atomic, usdc.decimals).to_string();
    Ok(DemoProof {
        rpc_url: chain.rpc_url().to_string(),
        network: requirement.network.caip2(),
        asset: usdc.address,
        price: price.to_string(),
        amount_atomic: price.atomic.to_string(),
        payer,
        pay_to: seller.address(),
        transaction: receipt.transaction_hash,
        block_number: receipt.block_number.unwrap_or_default(),
        transfer_value_atomic: transfer.value.to_string(),
        payer_balance_before: show(payer_before),
        payer_balance_after: show(payer_after),
        seller_balance_before: show(seller_before),
        seller_balance_after: show(seller_after),
        nonce_used_on_chain: nonce_used,
        replay_rejected,
    })
}

fn transfer_log(
    receipt: &TransactionReceipt,
    token: Address,
) -> anyhow::Result<IEip3009Token::Transfer> {
    receipt
        .inner
        .logs()
        .iter()
        .filter(|log| log.address() == token)
        .find_map(|log| IEip3009Token::Transfer::decode_log_data(log.data()).ok())
        .context("the settlement emitted no USDC Transfer log")
}
