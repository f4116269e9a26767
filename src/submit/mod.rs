//! Sending claimed users to the target: bounded concurrency, a rate limiter in front of every
//! attempt (retries included), retries with full-jitter backoff within a run-wide budget, a
//! pause for all workers when the server asks for one, a slower pace after runs of 429s, and a
//! circuit breaker that stops the run when the target keeps failing.
//!
//! A request whose answer never came (lost connection, timeout, 5xx) may still have created
//! the user. Such rows are *uncertain*: the create is resent, with the same body (generated
//! passwords are derived, so it is the same password) and the same `Idempotency-Key` where the
//! target honours one. A "user exists" answer to an uncertain row is probably roster's own
//! creation but cannot be proven: it is recorded `created (unconfirmed)`, with the remote id
//! from a lookup where the target has one, and its follow-up step (Crayon's password) still
//! runs. A row whose requests never left is not uncertain: "exists" then means exists.
//!
//! Every wait (the pause gate, the rate limiter, backoff) races the run's stop, so a signal
//! ends it at once; a server asking for a longer wait than `--max-wait` stops the run with
//! the "try again later" code. A panic while sending one row becomes that row's `failed`
//! outcome and stops the run with the internal-error code: no row is ever lost.

//!
//! [`driver`] sends and records (lanes of workers, one request's loop, lookups, follow-up
//! steps); [`decide`] says what each answer means, with no I/O; [`throttle`] holds the flow
//! control every worker shares.

pub mod adaptive;
pub mod decide;
pub mod driver;
pub mod throttle;

pub use decide::{DEFAULT_MAX_WAIT, RetryPolicy};

use crate::error::RunError;
use crate::http::Client;
use crate::model::Stop;
use crate::prepare::mapping::Mapping;
use crate::report::PasswordFile;
use crate::targets::{Api, Schema, Target};
use std::sync::Arc;
use std::time::Duration;
use throttle::Throttle;

/// Most of a refusal's body kept in the ledger.
const MAX_KEPT_BODY: usize = 4096;

/// How the submit stage behaves.
#[derive(Debug, Clone, Copy)]
pub struct SubmitSettings {
    /// Most requests in flight at once: the adaptive limit's ceiling.
    pub concurrency: usize,
    /// Where the adaptive limit starts (the ceiling when `--concurrency` was given).
    pub start_concurrency: usize,
    /// Attempts per second (0 = unlimited).
    pub rate: f64,
    /// Attempts allowed at once after an idle spell.
    pub burst: u32,
    /// Per-request timeout (connect included).
    pub timeout: Duration,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// The longest wait the run accepts from a server (`--max-wait`); a longer one stops it.
    pub max_wait: Duration,
}

impl Default for SubmitSettings {
    fn default() -> Self {
        SubmitSettings {
            concurrency: DEFAULT_CONCURRENCY,
            start_concurrency: START_CONCURRENCY,
            rate: 0.0,
            burst: 1,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_wait: DEFAULT_MAX_WAIT,
        }
    }
}

/// The ceiling of requests in flight when `--concurrency` is not given: the adaptive limit
/// finds what the server sustains below it.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Where the adaptive limit starts when `--concurrency` is not given.
pub const START_CONCURRENCY: usize = 8;

/// Fewest workers a lane is given: below this, a lane's batch waits on too few workers while
/// other lanes idle (a slow API's tail would stretch).
const MIN_LANE_WORKERS: usize = 8;
/// Most lanes: beyond this, the single ledger thread is the limit, not the network.
const MAX_LANES: usize = 8;

/// How many lanes (threads with their own runtime and connections) send requests: one per
/// core, each with at least [`MIN_LANE_WORKERS`] of the concurrency.
fn lanes(settings: &SubmitSettings) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    lanes_for(cores, settings.concurrency)
}

fn lanes_for(cores: usize, concurrency: usize) -> usize {
    let by_workers = (concurrency / MIN_LANE_WORKERS).max(1);
    cores.min(by_workers).min(MAX_LANES)
}

/// Sends users to one target.
pub struct Submitter {
    passwords: Option<Arc<PasswordFile>>,
    /// How requests travel: each worker has a sender of its own, whose connections are opened
    /// and used on its lane's thread.
    client: Arc<Client>,
    /// Threads with their own runtime that send requests.
    lanes: usize,
    /// The target's name, for messages.
    name: &'static str,
    /// How the target's API is spoken to.
    api: Arc<dyn Api>,
    /// How rows become bodies, and API field names become the user's columns.
    schema: Arc<dyn Schema>,
    mapping: Arc<Mapping>,
    /// The create endpoint, parsed once (parsing it per request showed in profiles).
    endpoint: url::Url,
    throttle: Throttle,
    settings: SubmitSettings,
    stop: Arc<Stop>,
}

impl Submitter {
    /// A submitter for `target`; `mapping` names the user's columns in remote errors.
    pub fn new(
        target: Arc<Target>,
        mapping: Arc<Mapping>,
        settings: SubmitSettings,
        limit: Arc<adaptive::ConcurrencyLimit>,
        stop: Arc<Stop>,
    ) -> Result<Submitter, RunError> {
        let throttle =
            Throttle::new(settings.rate, settings.burst, limit).map_err(RunError::Usage)?;
        let api = target.api()?.clone();
        let endpoint = url::Url::parse(api.endpoint())
            .map_err(|e| RunError::Usage(format!("`{}` is not a URL: {e}", api.endpoint())))?;
        let client = Client::new(settings.timeout).map_err(|e| RunError::Startup(e.to_string()))?;
        Ok(Submitter {
            passwords: None,
            client,
            lanes: lanes(&settings),
            name: target.info.name,
            api,
            schema: target.schema.clone(),
            mapping,
            endpoint,
            throttle,
            settings,
            stop,
        })
    }

    /// How many threads send requests.
    pub fn lanes(&self) -> usize {
        self.lanes
    }

    /// The most users to hand a lane at once: twice its share of the concurrency, enough to
    /// keep its workers busy between hand-offs (one share cost ~5 % in the e2e bench), few
    /// enough that at the end of a run no lane holds more than two rounds while others idle.
    pub fn lane_batch(&self) -> usize {
        2 * self.settings.concurrency.max(1).div_ceil(self.lanes())
    }

    /// Writes every generated password of a created user to `file`.
    pub fn with_password_file(mut self, file: Option<Arc<PasswordFile>>) -> Submitter {
        self.passwords = file;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lane_per_core_each_with_enough_workers() {
        assert_eq!(lanes_for(2, 64), 2);
        assert_eq!(lanes_for(1, 64), 1);
        assert_eq!(lanes_for(2, 5), 1, "too few workers to split");
        assert_eq!(lanes_for(64, 16), 2, "eight workers a lane at least");
        assert_eq!(lanes_for(64, 1024), MAX_LANES);
    }
}
