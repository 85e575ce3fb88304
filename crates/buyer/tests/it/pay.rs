//! `Buyer::pay` and `Buyer::resume` in process: a loopback seller (axum) that answers
//! 402, checks each payment with agora's offline verifier and answers with a receipt,
//! 503 pending, or a 402 again; the ledger is the wallet's own SQLite file. No chain is
//! needed: the receipts name a made-up transaction.

use std::sync::{Arc, Mutex};

use alloy::primitives::{B256, U256};
use alloy::signers::local::PrivateKeySigner;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use buyer::{
    Before, Buyer, Limits, NotResumable, PayError, Payment, Quote, Refusal, RequestSpec, Sink,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use wallet::budget::Budget;
use wallet::ledger::{Ledger, Status};
use x402::eip3009::verify_offline;
use x402::header;
use x402::time::unix_now;
use x402::wire::{PaymentPayload, PaymentRequirements, SettleResponse};

const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const TX: [u8; 32] = [7u8; 32];

/// The payment headers the seller received, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<String>>);

fn requirement() -> Value {
    json!({
        "scheme": "exact", "network": "eip155:84532", "amount": "1000", "payTo": PAY_TO,
        "asset": USDC, "maxTimeoutSeconds": 120, "extra": {"name": "USDC", "version": "2"}
    })
}

fn challenge(error: &str) -> Response {
    let body = json!({"x402Version": 2, "error": error, "accepts": [requirement()]});
    let mut response = (StatusCode::PAYMENT_REQUIRED, axum::Json(body.clone())).into_response();
    response.headers_mut().insert(
        "payment-required",
        HeaderValue::from_str(&header::encode(&body).unwrap()).unwrap(),
    );
    response
}

/// `/free` asks nothing; `/again` refuses every payment; `/pending` is pending the
/// first time a payment arrives; anything else is served with a receipt.
async fn seller(State(seen): State<Arc<Seen>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let Some(value) = request
        .headers()
        .get("payment-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return match path.as_str() {
            "/free" => "free".into_response(),
            _ => challenge("payment required"),
        };
    };
    let count = {
        let mut payments = seen.0.lock().unwrap();
        payments.push(value.clone());
        payments.iter().filter(|v| **v == value).count()
    };
    let payment: PaymentPayload = header::decode(&value).unwrap();
    let required: PaymentRequirements = serde_json::from_value(requirement()).unwrap();
    if verify_offline(&payment, &required, unix_now()).is_err() {
        return challenge("invalid payment");
    }
    match path.as_str() {
        "/again" => challenge("the facilitator refused: insufficient_funds"),
        "/pending" if count == 1 => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": "settlement_pending", "reason": "settlement_pending"})),
            )
                .into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("2"));
            r
        }
        _ => {
            let receipt = SettleResponse {
                success: true,
                error_reason: None,
                error_message: None,
                payer: Some(payment.payload.authorization.from),
                transaction: Some(TX.into()),
                network: payment.network.clone(),
                amount: None,
                extensions: None,
            };
            let value = header::encode(&receipt.to_wire(payment.x402_version)).unwrap();
            (
                [("payment-response", value)],
                axum::Json(json!({"served": path})),
            )
                .into_response()
        }
    }
}

/// A seller on loopback, a wallet in a fresh home, and a second look at its ledger.
struct World {
    url: String,
    seen: Arc<Seen>,
    home: TempDir,
    buyer: Buyer,
}

impl World {
    async fn new() -> Self {
        let seen = Arc::new(Seen::default());
        let app = Router::new().fallback(seller).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let home = tempfile::tempdir().unwrap();
        let ledger = wallet::open_store(home.path()).unwrap();
        let http = buyer::http_client().unwrap();
        let buyer = Buyer::new("alice", PrivateKeySigner::random(), ledger, http);
        Self {
            url,
            seen,
            home,
            buyer,
        }
    }

    fn spec(&self, path: &str) -> RequestSpec {
        RequestSpec::get(format!("{}{path}", self.url).parse().unwrap())
    }

    fn ledger(&self) -> Ledger {
        wallet::open_store(self.home.path()).unwrap()
    }

    fn statuses(&self) -> Vec<Status> {
        let entries = self.ledger().entries_since(0).unwrap();
        entries.into_iter().map(|e| e.status).collect()
    }

    fn payments(&self) -> usize {
        self.seen.0.lock().unwrap().len()
    }
}

fn max(atomic: u64) -> Limits {
    Limits::new().max(U256::from(atomic))
}

#[tokio::test]
async fn a_paid_call_within_the_cap_is_recorded_settled_and_delivered() {
    let w = World::new().await;
    let paid = w.buyer.pay(&w.spec("/thing"), &max(1000)).await.unwrap();
    assert_eq!(paid.status, 200);
    let body: Value = serde_json::from_slice(&paid.body).unwrap();
    assert_eq!(body["served"], "/thing");
    let payment = paid.payment.unwrap();
    assert_eq!(payment.tx, Some(B256::from(TX)));
    assert_eq!(payment.price.to_string(), "0.001 USDC on base-sepolia");
    assert_eq!(payment.payer, w.buyer.payer());
    assert_eq!(
        payment.pay_to,
        PAY_TO.parse::<alloy::primitives::Address>().unwrap()
    );
    let entry = w.ledger().entry(payment.ledger_id).unwrap().unwrap();
    assert_eq!(entry.status, Status::Settled);
    assert_eq!(entry.tx, Some(B256::from(TX).to_string()));
    assert_eq!(entry.amount, U256::from(1000));
    // Delivered whole: there is nothing to resume.
    let e = w.buyer.resume(&w.spec("/thing")).await.unwrap_err();
    assert!(
        matches!(e, PayError::NotResumable(NotResumable::Nothing { .. })),
        "{e}"
    );
    assert_eq!(w.payments(), 1);
}

#[tokio::test]
async fn refusals_sign_nothing_and_say_which_cap_binds() {
    let w = World::new().await;
    let e = w.buyer.pay(&w.spec("/thing"), &max(999)).await.unwrap_err();
    let PayError::Refused(refusal) = &e else {
        panic!("{e}")
    };
    assert!(
        matches!(
            **refusal,
            Refusal::Policy {
                refusal: x402::client::Refusal::AboveMax { .. },
                cap_from_wallet: false
            }
        ),
        "{e}"
    );
    assert!(e.to_string().ends_with("nothing was signed"), "{e}");
    let e = w
        .buyer
        .pay(&w.spec("/thing"), &Limits::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PayError::Refused(r) if matches!(**r, Refusal::NoCap { .. })),
        "{e}"
    );
    assert!(
        !e.to_string().contains("--"),
        "no CLI flag in a library text: {e}"
    );
    w.ledger()
        .set_budget(&Budget {
            daily: None,
            per_call: Some(U256::from(500)),
        })
        .unwrap();
    let e = w
        .buyer
        .pay(&w.spec("/thing"), &max(1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PayError::Refused(r) if matches!(**r, Refusal::Policy { cap_from_wallet: true, .. })),
        "{e}"
    );
    assert!(
        e.to_string().contains("wallet's per-call budget of 0.0005"),
        "{e}"
    );
    assert_eq!(w.payments(), 0);
    assert!(w.statuses().is_empty(), "nothing recorded");
}

#[tokio::test]
async fn a_free_answer_and_a_quote_record_nothing() {
    let w = World::new().await;
    let paid = w.buyer.pay(&w.spec("/free"), &Limits::new()).await.unwrap();
    assert_eq!(paid.body, b"free");
    assert!(paid.payment.is_none());
    let Quote::Priced(preview) = w
        .buyer
        .quote(&w.spec("/thing"), &Limits::new())
        .await
        .unwrap()
    else {
        panic!("a 402 is quoted")
    };
    assert_eq!(
        preview.choice.price.to_string(),
        "0.001 USDC on base-sepolia"
    );
    assert_eq!(preview.authorization.from, w.buyer.payer());
    assert!(w.statuses().is_empty());
    assert_eq!(w.payments(), 0);
}

#[tokio::test]
async fn pending_stays_open_refuses_a_second_signature_and_resumes() {
    let w = World::new().await;
    let e = w
        .buyer
        .pay(&w.spec("/pending"), &max(1000))
        .await
        .unwrap_err();
    let PayError::Pending {
        ledger_id,
        retry_after,
        ..
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!(retry_after, Some(std::time::Duration::from_secs(2)));
    assert_eq!(w.statuses(), [Status::Unknown]);
    let e = w
        .buyer
        .pay(&w.spec("/pending"), &max(1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PayError::Refused(r) if matches!(&**r, Refusal::Open { entry, .. } if entry.id == ledger_id)),
        "{e}"
    );
    let paid = w.buyer.resume(&w.spec("/pending")).await.unwrap();
    assert_eq!(paid.payment.unwrap().ledger_id, ledger_id);
    assert_eq!(w.statuses(), [Status::Settled]);
    let sent = w.seen.0.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the same authorization, byte for byte");
}

#[tokio::test]
async fn a_refused_payment_stays_open_until_it_expires() {
    let w = World::new().await;
    let e = w
        .buyer
        .pay(&w.spec("/again"), &max(1000))
        .await
        .unwrap_err();
    let PayError::Rejected { before, error, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*before, Before::Fresh);
    assert!(error.to_string().contains("insufficient_funds"), "{e}");
    // A refusal proves nothing: the server holds the authorization, so the row stays
    // open (unknown), its reason kept, until it expires or the chain says.
    let entries = w.ledger().entries_since(0).unwrap();
    assert_eq!(entries[0].status, Status::Unknown);
    assert!(
        entries[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("insufficient_funds")
    );
}

/// A sink that gives up on the body: the answer is incomplete, and a resume fetches
/// it again with the same authorization.
struct Failing;

impl Sink for Failing {
    type Output = ();

    async fn receive(
        &mut self,
        _response: reqwest::Response,
        payment: Option<&Payment>,
    ) -> Result<(), buyer::BoxError> {
        assert!(payment.is_some());
        Err("disk full".into())
    }
}

#[tokio::test]
async fn a_cut_answer_is_incomplete_and_resumed_without_signing_again() {
    let w = World::new().await;
    let e = w
        .buyer
        .pay_to(&w.spec("/thing"), &max(1000), &mut Failing)
        .await
        .unwrap_err();
    let PayError::Incomplete { source, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(source.to_string(), "disk full");
    assert_eq!(w.statuses(), [Status::Settled]);
    let paid = w.buyer.resume(&w.spec("/thing")).await.unwrap();
    assert_eq!(paid.status, 200);
    let again = w.buyer.resume(&w.spec("/thing")).await.unwrap_err();
    assert!(matches!(again, PayError::NotResumable(_)), "{again}");
    assert_eq!(w.payments(), 2);
}

#[test]
fn a_buyer_can_be_shared_between_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Buyer>();
}
