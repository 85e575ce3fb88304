//! Unit tests of the flag-to-spec step: each takes flags as a user types them and
//! checks the offer or the message, with no daemon.

use clap::Parser;
use offers::ServiceOffer;

use super::*;
use crate::cmd::sell::args::{SellArgs, SellCommand};

/// `agora sell ARGS` as clap reads it.
fn parse(args: &[&str]) -> SellCommand {
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        sell: SellArgs,
    }
    let argv = std::iter::once("sell").chain(args.iter().copied());
    match Wrapper::try_parse_from(argv) {
        Ok(w) => w.sell.command,
        Err(e) => panic!("agora sell {args:?}: {e}"),
    }
}

fn http_args(args: &[&str]) -> HttpArgs {
    match parse(&[&["http"], args].concat()) {
        SellCommand::Http(a) => a,
        other => panic!("{other:?}"),
    }
}

const WALLET: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn error(result: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", result.expect_err("an error"))
}

#[test]
fn http_flags_become_the_offer_with_defaults_filling_the_rest() {
    let a = http_args(&[
        "api",
        "--upstream",
        "http://127.0.0.1:8080",
        "--per-mtok",
        "2",
        "--rps",
        "5",
        "--register-metadata",
        "k=v",
    ]);
    let defaults = Settings {
        pay_to: Some(WALLET.to_lowercase()),
        network: Some("base".into()),
        facilitator: None,
    };
    let offer = http(&a)
        .and_then(|d| d.offer(&a.payment, &defaults))
        .expect("an offer");
    let spec = &offer.spec;
    assert_eq!(offer.metadata.name, "api");
    assert_eq!(spec.upstream.url.as_deref(), Some("http://127.0.0.1:8080"));
    assert_eq!(spec.payment.price.per_mtok.as_deref(), Some("2"));
    assert_eq!(spec.payment.pay_to, WALLET, "checksummed from the default");
    assert_eq!(spec.payment.network, "base");
    assert_eq!(spec.limits.as_ref().and_then(|l| l.rps), Some(5));
    let registration = spec.registration.as_ref().expect("registration");
    assert_eq!(registration.metadata["k"], "v");
    assert_eq!(registration.name.as_deref(), Some("api"));
}

#[test]
fn settle_first_becomes_the_offers_annotation_and_is_off_by_default() {
    let defaults = Settings {
        pay_to: Some(WALLET.to_lowercase()),
        network: Some("base".into()),
        facilitator: None,
    };
    let offer = |flags: &[&str]| {
        let a = http_args(
            &[
                &["job", "-u", "http://127.0.0.1:8080", "--price", "1"],
                flags,
            ]
            .concat(),
        );
        http(&a)
            .and_then(|d| d.offer(&a.payment, &defaults))
            .expect("an offer")
    };
    let key = offers::spec::SETTLE_FIRST_ANNOTATION;
    assert_eq!(offer(&["--settle-first"]).metadata.annotations[key], "true");
    assert!(!offer(&[]).metadata.annotations.contains_key(key));
    let resolved = offers::validate::resolve(&offer(&["--settle-first"])).unwrap();
    assert!(
        resolved.settle_first,
        "the annotation reads back as the route flag"
    );
}

#[test]
fn each_bad_flag_is_named_in_its_message() {
    let a = http_args(&["api", "--upstream", "http://h", "--per-hour", "1"]);
    let missing = error(http(&a).and_then(|d| d.offer(&a.payment, &Settings::default())));
    assert!(missing.contains("recipient required: use --pay-to <addr> or set X402_WALLET"));
    let cases: [(&[&str], &str); 4] = [
        (&["api", "--upstream", "http://h"], "price required"),
        (
            &["api", "--price", "1"],
            "upstream required: use --upstream",
        ),
        (
            &[
                "api",
                "-u",
                "http://h",
                "--price",
                "1",
                "--no-register",
                "--register-skills",
                "x",
            ],
            "--no-register cannot be combined",
        ),
        (
            &["api", "-u", "http://h", "--price", "abc"],
            "invalid --price/--per-request value \"abc\"",
        ),
    ];
    for (args, message) in cases {
        let got = error(http(&http_args(args)));
        assert!(got.contains(message), "{args:?}: {got}");
    }
}

#[test]
fn a_bad_recipient_is_refused_by_clap_with_the_wallet_message() {
    #[derive(Parser, Debug)]
    struct Wrapper {
        #[command(flatten)]
        sell: SellArgs,
    }
    let err = Wrapper::try_parse_from(["sell", "update", "x", "--pay-to", "0x1234"])
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("invalid wallet address \"0x1234\": must be 0x-prefixed 40-char hex"),
        "{err}"
    );
}

#[test]
fn inference_picks_the_only_model_and_asks_when_there_are_several() {
    let detected = |models: &[&str]| Detected {
        url: "http://127.0.0.1:11434".into(),
        runtime: "ollama",
        models: models.iter().map(|m| m.to_string()).collect(),
        health_path: "/",
    };
    assert_eq!(
        model(None, &detected(&["m"])).expect("picked"),
        ("m".to_string(), true)
    );
    assert_eq!(
        model(Some("x"), &detected(&[])).expect("asked"),
        ("x".to_string(), false)
    );
    assert!(error(model(None, &detected(&["a", "b"]))).contains("serves a, b; pass --model"));
    assert!(error(model(None, &detected(&[]))).contains("lists no models yet"));
}

#[test]
fn update_needs_a_change_and_applies_only_what_was_given() {
    let update_args = |args: &[&str]| match parse(&[&["update", "api"], args].concat()) {
        SellCommand::Update(a) => a,
        other => panic!("{other:?}"),
    };
    assert!(error(update(&update_args(&[]))).starts_with("nothing to update"));
    let mut offer = ServiceOffer::new("api", OfferSpec::default());
    offer.spec.payment.network = "base-sepolia".into();
    update(&update_args(&["--pay-to", &WALLET.to_lowercase()]))
        .expect("changes")
        .apply(&mut offer);
    assert_eq!(offer.spec.payment.pay_to, WALLET);
    assert_eq!(offer.spec.payment.network, "base-sepolia");
}

#[test]
fn stop_grace_and_manifests_are_checked_before_any_request() {
    let stop_args = |args: &[&str]| match parse(&[&["stop", "api"], args].concat()) {
        SellCommand::Stop(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        grace(&stop_args(&[])).expect("1h"),
        Duration::from_secs(3600)
    );
    assert_eq!(grace(&stop_args(&["--now"])).expect("0"), Duration::ZERO);
    assert!(error(grace(&stop_args(&["--grace=-1s"]))).contains("--grace must be >= 0"));
    let mut offer = ServiceOffer::new("api", OfferSpec::default());
    drain(&mut offer, 0, Duration::from_secs(90));
    assert_eq!(offer.spec.drain_at.as_deref(), Some("1970-01-01T00:00:00Z"));

    let yaml = offer.to_yaml().expect("yaml");
    let two = format!("---\n{yaml}\n---\n{yaml}");
    assert_eq!(manifests(&two, "f.yaml").expect("two offers").len(), 2);
    let wrong = yaml.replace("kind: ServiceOffer", "kind: Pod");
    assert!(error(manifests(&wrong, "f.yaml")).contains("f.yaml document 1: kind Pod"));
}
