//! Per-route traffic limits: a token bucket for requests per second and a semaphore
//! for paid calls in flight at the upstream.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::route::Limits;

/// Live limiter state for one route; kept across table swaps while its limits stay
/// the same, so a swap never resets a busy route's budget.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    bucket: Option<Mutex<Bucket>>,
    in_flight: Option<Arc<Semaphore>>,
}

/// Every in-flight slot of the route is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the route is at its limit of concurrent calls")]
pub struct Full;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Limiter {
    /// State for `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            bucket: limits.rps.map(|rps| {
                Mutex::new(Bucket {
                    tokens: f64::from(rps),
                    last: Instant::now(),
                })
            }),
            in_flight: limits
                .max_in_flight
                .map(|n| Arc::new(Semaphore::new(n as usize))),
        }
    }

    /// The limits this state enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Takes one request token; false when the route is over its rate.
    pub fn admit(&self) -> bool {
        let (Some(bucket), Some(rps)) = (&self.bucket, self.limits.rps) else {
            return true;
        };
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(b.last).as_secs_f64() * f64::from(rps);
        b.tokens = (b.tokens + refill).min(f64::from(rps));
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A slot at the upstream, held until the returned permit drops.
    pub fn enter(&self) -> Result<Option<OwnedSemaphorePermit>, Full> {
        match &self.in_flight {
            None => Ok(None),
            Some(sem) => sem.clone().try_acquire_owned().map(Some).map_err(|_| Full),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_admits_its_burst_then_refuses() {
        let l = Limiter::new(Limits {
            rps: Some(3),
            max_in_flight: None,
        });
        assert!(l.admit() && l.admit() && l.admit());
        assert!(!l.admit());
    }

    #[test]
    fn in_flight_slots_come_back_when_dropped() {
        let l = Limiter::new(Limits {
            rps: None,
            max_in_flight: Some(1),
        });
        let first = l.enter().unwrap();
        assert!(l.enter().is_err());
        drop(first);
        assert!(l.enter().is_ok());
        assert!(Limiter::new(Limits::default()).enter().unwrap().is_none());
    }
}
