//! Cost of verifying an x402 exact-EVM payment offline, against the bare secp256k1
//! recovery it is built on (the baseline, measured in the same run): a payment seen for
//! the first time, and the same payment checked again (as the facilitator does after the
//! gateway), which answers its signer from memory.

use alloy::primitives::{Address, Signature, U256};
use alloy::signers::local::PrivateKeySigner;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use x402::eip3009::{self, signing_hash};
use x402::{Network, PaymentPayload, PaymentRequirements, header};

const NOW: u64 = 1_800_000_000;

/// More payments than the verifier remembers signers for, so cycling through them
/// recovers every one afresh.
const DISTINCT: usize = 10_000;

fn bench_verify(c: &mut Criterion) {
    let asset = Network::BASE_SEPOLIA
        .default_asset()
        .expect("Base Sepolia has USDC");
    let requirement = PaymentRequirements::exact(
        Network::BASE_SEPOLIA,
        &asset,
        U256::from(1000),
        Address::repeat_byte(0x42),
        60,
    );
    let signer = PrivateKeySigner::random();
    let payload =
        eip3009::authorize(&signer, &requirement, NOW).expect("signing a valid requirement");
    let payment = PaymentPayload::v2(&requirement, payload);
    let encoded = header::encode(&payment).expect("payment serializes");
    let domain = eip3009::domain("USDC", "2", 84532, asset.address);
    let digest = signing_hash(&payment.payload.authorization, &domain);
    let signature =
        Signature::from_raw(&payment.payload.signature).expect("65-byte signature from signing");

    let mut group = c.benchmark_group("verify");
    group.bench_function("baseline_ecrecover", |b| {
        b.iter(|| black_box(signature.recover_address_from_prehash(black_box(&digest))))
    });
    let distinct: Vec<PaymentPayload> = (0..DISTINCT)
        .map(|_| {
            let payload = eip3009::authorize(&signer, &requirement, NOW).expect("signing");
            PaymentPayload::v2(&requirement, payload)
        })
        .collect();
    let mut next = distinct.iter().cycle();
    group.bench_function("verify_offline_first_time", |b| {
        b.iter(|| {
            let payment = next.next().expect("cycle never ends");
            black_box(eip3009::verify_offline(
                black_box(payment),
                &requirement,
                NOW,
            ))
        })
    });
    group.bench_function("verify_offline_again", |b| {
        b.iter(|| {
            black_box(eip3009::verify_offline(
                black_box(&payment),
                &requirement,
                NOW,
            ))
        })
    });
    group.bench_function("decode_header_and_verify_again", |b| {
        b.iter(|| {
            let decoded = header::decode_payment(black_box(&encoded)).expect("valid header");
            black_box(eip3009::verify_offline(&decoded, &requirement, NOW))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
