//! Which worker the next run goes to: the preferred one while it is idle, else the
//! idle one with the lowest price per run, waiting a while for one to be idle. [`pick`]
//! is the rule on quotes already in hand; [`Coordinator::next_worker`] asks the
//! registry and the workers for them, round after round.

use std::time::Duration;

use super::find::{Coordinator, Note, Registry, Worker};
use super::workers::{self, Quote};

/// How long a round waits before asking the workers again.
const POLL: Duration = Duration::from_secs(2);

/// The quote to buy from among the `idle` workers': `prefer`'s (an endpoint) when it
/// is among them, else the lowest price per run (ties broken by endpoint, so the
/// choice is the same every time).
pub fn pick<'a>(idle: &'a [Quote], prefer: Option<&str>) -> Option<&'a Quote> {
    idle.iter()
        .find(|q| Some(q.endpoint.as_str()) == prefer)
        .or_else(|| idle.iter().min_by_key(|q| (q.amount(), q.endpoint.clone())))
}

/// Why no worker was picked.
#[derive(Debug)]
pub enum PickError<E> {
    /// The registry could not be asked.
    Lookup(E),
    /// Every worker stayed busy or unreachable for the whole wait.
    NoneIdle {
        /// How many endpoints were asked.
        endpoints: usize,
        /// How long it waited.
        wait: Duration,
    },
}

impl<E: std::fmt::Display> std::fmt::Display for PickError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lookup(e) => e.fmt(f),
            Self::NoneIdle { endpoints, wait } => write!(
                f,
                "no idle worker among {endpoints} found within {} s",
                wait.as_secs()
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PickError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Lookup(e) => e.source(),
            Self::NoneIdle { .. } => None,
        }
    }
}

impl Coordinator {
    /// The worker for the next run and its price: the candidates listing `skills` in
    /// `registry` (and `prefer`'s endpoint, listed or not) are sized up, and [`pick`]
    /// chooses among the idle ones; when none is idle it asks again every 2 s for up
    /// to `wait`. A worker that cannot be asked is passed over ([`Note::Skipped`]).
    pub async fn next_worker<R: Registry>(
        &self,
        registry: &R,
        skills: &[String],
        prefer: Option<&str>,
        wait: Duration,
    ) -> Result<(Worker, Quote), PickError<R::Error>> {
        let prefer = prefer.map(|p| p.trim_end_matches('/'));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let agents = self
                .agents(registry, skills)
                .await
                .map_err(PickError::Lookup)?;
            let candidates = workers::candidates(&agents, skills);
            let mut endpoints: Vec<String> = candidates
                .iter()
                .flat_map(|c| c.endpoints.clone())
                .collect();
            if let Some(p) = prefer
                && !endpoints.iter().any(|e| e == p)
            {
                endpoints.push(p.to_string());
            }
            let mut idle = Vec::new();
            for endpoint in &endpoints {
                match self.size_up(endpoint).await {
                    Ok((status, quote)) if !status.busy => idle.push(quote),
                    Ok(_) => {}
                    Err(error) => self.note(&Note::Skipped {
                        endpoint,
                        error: &error,
                    }),
                }
            }
            if let Some(quote) = pick(&idle, prefer) {
                return Ok((Worker::at(&quote.endpoint, &candidates), quote.clone()));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PickError::NoneIdle {
                    endpoints: endpoints.len(),
                    wait,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(endpoint: &str, atomic: u64) -> Quote {
        Quote {
            endpoint: endpoint.into(),
            per_run: format!("{atomic} atomic"),
            amount_atomic: atomic.to_string(),
            per_hour: None,
            x402_version: 2,
            network: "eip155:84532".into(),
            pay_to: String::new(),
            budget_seconds: Some(300),
            free: false,
        }
    }

    #[test]
    fn the_preferred_idle_worker_wins_else_the_cheapest() {
        let idle = [
            quote("http://b", 5),
            quote("http://a", 5),
            quote("http://c", 9),
        ];
        assert_eq!(
            pick(&idle, Some("http://c")).map(|q| q.endpoint.as_str()),
            Some("http://c")
        );
        assert_eq!(
            pick(&idle, Some("http://busy")).map(|q| q.endpoint.as_str()),
            Some("http://a"),
            "the cheapest, ties by endpoint"
        );
        assert_eq!(
            pick(&idle, None).map(|q| q.endpoint.as_str()),
            Some("http://a")
        );
        assert!(pick(&[], None).is_none());
    }

    #[test]
    fn none_idle_says_how_many_and_how_long_without_a_flag() {
        let e: PickError<std::io::Error> = PickError::NoneIdle {
            endpoints: 2,
            wait: Duration::from_secs(60),
        };
        assert_eq!(e.to_string(), "no idle worker among 2 found within 60 s");
    }
}
