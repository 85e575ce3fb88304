//! One paid experiment: the worker's free `/status` first (a busy worker is not paid,
//! nothing is signed), then the purchase through `buyer` (the wallet's limits and
//! ledger, as `agora pay` pays), then the record in the results database. The result
//! is recorded even when the run failed: it was paid.
//!
//! [`Coordinator::submit`] does all three. A front end that keeps the request body
//! before paying (to resend it when the answer is lost) runs the steps itself:
//! [`Order::new`], [`Coordinator::check_idle`], then [`Coordinator::buy`].

use buyer::{Buyer, Limits, PayError, RequestSpec};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};

use super::find::{Coordinator, Worker};
use super::store::{Experiment, Store, StoreError};
use super::workers::{self, AskError};

/// Why a paid experiment did not end in a record.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The `train.py` is not UTF-8, and the worker API carries it as a JSON string.
    #[error("the train.py is not UTF-8 text; the worker API carries it as a JSON string")]
    NotUtf8,
    /// The worker's `/status` could not be read; nothing was signed.
    #[error(transparent)]
    Ask(#[from] AskError),
    /// The worker is running another experiment; nothing was signed or paid.
    #[error("the worker at {endpoint} is busy with another experiment; nothing was signed or paid")]
    Busy {
        /// The worker asked.
        endpoint: String,
    },
    /// The worker's endpoint does not make a URL to buy.
    #[error("{url:?} is not a URL ({reason}); give the worker's offer URL")]
    Url {
        /// What was made of the endpoint.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The purchase stopped; its kind says whether anything was signed or charged.
    #[error(transparent)]
    Pay(#[from] PayError),
    /// The worker answered the paid call without an experiment result.
    #[error(
        "the worker at {endpoint} answered without a result: {answer}{}",
        if *.charged { " (it was charged)" } else { " (no charge was recorded)" }
    )]
    NoResult {
        /// The worker.
        endpoint: String,
        /// What it answered, verbatim (a JSON string when it was not JSON).
        answer: Value,
        /// Whether the payment settled on chain (a transaction is known).
        charged: bool,
    },
    /// The run was paid but the results database could not record it (the
    /// experiment is in the worker's answer and the wallet's ledger).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One experiment to buy: the worker, the `train.py` and its config as the request
/// body, under a fresh experiment id that the worker files the run under too.
#[derive(Debug, Clone)]
pub struct Order {
    /// Who runs it.
    pub worker: Worker,
    /// The id sent to the worker ([`super::experiment_id`]).
    pub experiment_id: String,
    /// `sha256:<hex>` of the exact `train.py` bytes ([`crate::train_hash`]).
    pub train_hash: String,
    train_py: String,
    config: Map<String, Value>,
}

impl Order {
    /// An order for `train_py` (sent byte for byte) at `worker`, with an empty config.
    pub fn new(worker: Worker, train_py: &[u8]) -> Result<Self, SubmitError> {
        let text = std::str::from_utf8(train_py).map_err(|_| SubmitError::NotUtf8)?;
        Ok(Self {
            worker,
            experiment_id: super::experiment_id(x402::time::unix_now()),
            train_hash: crate::train_hash(train_py),
            train_py: text.to_string(),
            config: Map::new(),
        })
    }

    /// The config object passed to `train.py` (`AUTORESEARCH_CONFIG`).
    pub fn with_config(mut self, config: Map<String, Value>) -> Self {
        self.config = config;
        self
    }

    /// The URL the run is bought at, `<endpoint>/experiment`.
    pub fn url(&self) -> String {
        format!("{}/experiment", self.worker.endpoint)
    }

    /// The request body, as sent (JSON): the bytes to keep for a resend.
    pub fn body(&self) -> Vec<u8> {
        json!({
            "train_py": self.train_py,
            "config": self.config,
            "experiment_id": self.experiment_id,
        })
        .to_string()
        .into_bytes()
    }
}

impl Coordinator {
    /// One paid run of `train_py` with `config` at `worker`, within `limits` and the
    /// wallet's budgets: [`Order::new`], [`Coordinator::check_idle`], [`Coordinator::buy`].
    pub async fn submit(
        &self,
        buyer: &Buyer,
        limits: &Limits,
        worker: Worker,
        train_py: &[u8],
        config: Map<String, Value>,
    ) -> Result<Experiment, SubmitError> {
        let order = Order::new(worker, train_py)?.with_config(config);
        self.check_idle(&order.worker).await?;
        self.buy(buyer, limits, &order).await
    }

    /// Asks the worker's `/status` (free): a busy worker is not paid.
    pub async fn check_idle(&self, worker: &Worker) -> Result<(), SubmitError> {
        let status = workers::status(self.http(), &worker.endpoint).await?;
        if status.busy {
            return Err(SubmitError::Busy {
                endpoint: worker.endpoint.clone(),
            });
        }
        Ok(())
    }

    /// Buys `order` from `buyer` within `limits`, and records what came back when the
    /// coordinator keeps a results database ([`Coordinator::record_in`]).
    pub async fn buy(
        &self,
        buyer: &Buyer,
        limits: &Limits,
        order: &Order,
    ) -> Result<Experiment, SubmitError> {
        let url = order.url();
        let target = reqwest::Url::parse(&url).map_err(|e| SubmitError::Url {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let spec = RequestSpec::post(target)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(order.body());
        let paid = buyer.pay(&spec, limits).await?;
        let (amount, tx) = paid.payment.as_ref().map_or(("0".to_string(), None), |p| {
            (
                p.price.money.atomic.to_string(),
                p.tx.map(|tx| tx.to_string()),
            )
        });
        let result: Value = serde_json::from_slice(&paid.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&paid.body).into_owned()));
        if result.get("experiment_id").is_none() {
            return Err(SubmitError::NoResult {
                endpoint: order.worker.endpoint.clone(),
                answer: result,
                charged: tx.is_some(),
            });
        }
        let worker = &order.worker;
        let experiment = Experiment {
            experiment_id: result["experiment_id"]
                .as_str()
                .unwrap_or(&order.experiment_id)
                .to_string(),
            endpoint: worker.endpoint.clone(),
            chain_id: worker.agent.map(|a| a.0),
            agent_id: worker.agent.map(|a| a.1.to_string()),
            train_hash: order.train_hash.clone(),
            worker_train_hash: result["train_hash"].as_str().map(str::to_string),
            status: result["status"].as_str().unwrap_or("unknown").to_string(),
            val_bpb: result["val_bpb"].as_f64(),
            amount_atomic: amount,
            tx,
            result,
            created_at: x402::time::unix_now(),
        };
        if let Some(results) = self.results() {
            Store::open(results)?.record(&experiment)?;
        }
        Ok(experiment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> Worker {
        Worker {
            endpoint: "http://w".into(),
            agent: None,
        }
    }

    #[test]
    fn an_order_carries_the_exact_bytes_hash_and_its_id() {
        let mut config = Map::new();
        config.insert("lr".into(), json!(0.01));
        let order = Order::new(worker(), b"print(1)\n")
            .expect("UTF-8")
            .with_config(config);
        assert_eq!(order.train_hash, crate::train_hash(b"print(1)\n"));
        assert_eq!(order.url(), "http://w/experiment");
        let body: Value = serde_json::from_slice(&order.body()).expect("JSON");
        assert_eq!(
            body,
            json!({"train_py": "print(1)\n", "config": {"lr": 0.01},
                "experiment_id": order.experiment_id})
        );
    }

    #[test]
    fn a_train_py_that_is_not_utf8_is_refused_without_a_flag() {
        let e = Order::new(worker(), &[0xff, 0xfe]).expect_err("not UTF-8");
        assert!(matches!(e, SubmitError::NotUtf8));
        assert!(!e.to_string().contains("--"), "{e}");
    }
}
