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

use crate::auth::scheme::Used;
use crate::error::RunError;
use crate::flow::{AimdPacer, CircuitBreaker, RetryBudget};
use crate::http::{Client, Sender};
use crate::ledger::now_ms;
use crate::ledger::writer::LedgerSender;
use crate::model::{ErrorCode, FieldError, Outcome, Person, Stop, StopReason, Submission};
use crate::prepare::mapping::Mapping;
use crate::report::{PasswordFile, PasswordStatus};
use crate::retry::{PauseGate, RetryPolicy};
use crate::targets::{Api, Schema, Target, Verdict};
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::Method;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Most of a refusal's body kept in the ledger.
const MAX_KEPT_BODY: usize = 4096;

/// How the submit stage behaves.
#[derive(Debug, Clone, Copy)]
pub struct SubmitSettings {
    /// Most requests in flight at once.
    pub concurrency: usize,
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
            concurrency: 16,
            rate: 0.0,
            burst: 1,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            max_wait: crate::retry::DEFAULT_MAX_WAIT,
        }
    }
}

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

/// What a conflict answer turned out to mean.
enum Settled {
    /// The person existed, and no attempt of roster's can have created them.
    Exists,
    /// The person exists, probably by an earlier attempt of roster's.
    OursUnconfirmed,
    /// Another person holds a value of this row's: refused, with these messages.
    Refused(Vec<FieldError>),
}

/// What a conflict's messages say is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConflictOn {
    /// This row's identity: the person exists.
    Identity,
    /// Another field's value (a user name another person holds).
    Field(crate::model::Field),
    /// The answer does not say.
    Unknown,
}

/// How one request of a submission ended.
enum StepEnd {
    /// A final answer (never `Retry`: retries are spent inside the step).
    Answered(Verdict),
    /// Retries ran out; the message says after what.
    Exhausted(String),
    /// The run stopped first.
    Stopped,
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
    limiter: Option<DefaultDirectRateLimiter>,
    /// The create endpoint, parsed once (parsing it per request showed in profiles).
    endpoint: url::Url,
    gate: PauseGate,
    pacer: AimdPacer,
    budget: RetryBudget,
    breaker: CircuitBreaker,
    settings: SubmitSettings,
    stop: Arc<Stop>,
}

/// How one attempt ended, for the run's flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptEnd {
    /// An answer that is not a server failure (2xx, 4xx).
    Answered,
    /// 429.
    Throttled,
    /// 5xx: the server failed (and may have acted first).
    ServerError,
    /// No answer: the connection was lost or timed out after the request may have left.
    NoAnswer,
    /// The connection could not be made: nothing was sent.
    NotConnected,
}

impl Submitter {
    /// A submitter for `target`; `mapping` names the user's columns in remote errors.
    pub fn new(
        target: Arc<Target>,
        mapping: Arc<Mapping>,
        settings: SubmitSettings,
        stop: Arc<Stop>,
    ) -> Result<Submitter, RunError> {
        let limiter = if settings.rate > 0.0 {
            let period = Duration::from_secs_f64(1.0 / settings.rate);
            let burst = NonZeroU32::new(settings.burst.max(1)).expect("max(1) is non-zero");
            let quota = Quota::with_period(period)
                .ok_or_else(|| RunError::Usage(format!("--rate {} is too high", settings.rate)))?
                .allow_burst(burst);
            Some(RateLimiter::direct(quota))
        } else {
            None
        };
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
            limiter,
            endpoint,
            gate: PauseGate::default(),
            pacer: AimdPacer::new(settings.rate),
            budget: RetryBudget::default(),
            breaker: CircuitBreaker::new(settings.concurrency),
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

    /// Sends every user from `users`, at most `concurrency` at once, recording each result.
    ///
    /// The work is spread over lanes, one per core: a thread with its own single-threaded
    /// runtime and connection pool, so a request, its connection and its answer are handled
    /// on one thread. (On one shared multi-threaded runtime, tasks woke each other across
    /// threads for every request; profiles showed a sixth of the time in those hand-offs.)
    ///
    /// Users arrive in claimed batches, so threads hand each other work once per batch, not
    /// once per user.
    pub async fn run(self: Arc<Self>, users: mpsc::Receiver<Vec<Person>>, ledger: LedgerSender) {
        let users = Arc::new(tokio::sync::Mutex::new(users));
        let lanes = self.lanes;
        // A lane's runtime keeps serving its connections until every lane is done (another
        // lane's token renewal may have borrowed one): it waits for `release` to be dropped.
        let (release, released) = tokio::sync::watch::channel(());
        let mut finished = Vec::with_capacity(lanes);
        for lane in 0..lanes {
            // Dropped unsent if the lane never starts or dies, which also counts as finished.
            let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
            finished.push(done_rx);
            let this = self.clone();
            let users = users.clone();
            let ledger = ledger.clone();
            let mut released = released.clone();
            // The concurrency split exactly: 5 over 2 lanes is 3 + 2.
            let concurrency = this.settings.concurrency.max(1);
            let slots = concurrency / lanes + usize::from(lane < concurrency % lanes);
            let spawned = std::thread::Builder::new()
                .name(format!("roster-net-{lane}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => return this.lane_failed(e),
                    };
                    runtime.block_on(async {
                        this.run_lane(lane, slots, users, ledger).await;
                        let _ = done_tx.send(());
                        while released.changed().await.is_ok() {}
                    });
                });
            if let Err(e) = spawned {
                self.lane_failed(e);
            }
        }
        for done in finished {
            let _ = done.await;
        }
        drop(release);
    }

    /// A lane could not be started: the run stops (the other lanes finish what they hold).
    fn lane_failed(&self, e: std::io::Error) {
        let message = format!("cannot start a network thread: {e}");
        self.stop.stop(StopReason::RetryLater(message));
    }

    /// One lane: a feeder takes batches from the shared queue into the lane's own, and
    /// `slots` workers each send one user at a time from it.
    async fn run_lane(
        self: &Arc<Self>,
        lane: usize,
        slots: usize,
        batches: Arc<tokio::sync::Mutex<mpsc::Receiver<Vec<Person>>>>,
        ledger: LedgerSender,
    ) {
        let (local_tx, local_rx) = mpsc::channel::<Person>(slots);
        let local_rx = Arc::new(tokio::sync::Mutex::new(local_rx));
        let mut workers = JoinSet::new();
        for _ in 0..slots {
            let this = self.clone();
            let ledger = ledger.clone();
            let queue = local_rx.clone();
            let mut sender = self.client.sender();
            workers.spawn(async move {
                loop {
                    // The lock is only ever contended by this lane's own workers.
                    let Some(user) = queue.lock().await.recv().await else {
                        break;
                    };
                    let done = this.submit(user, &mut sender).await;
                    if ledger.done(done).await.is_err() {
                        break;
                    }
                }
            });
        }
        // Only the workers hold the queue's receiver: once they have all stopped (the ledger
        // is gone), handing them more fails instead of waiting forever on a full queue.
        drop(local_rx);
        'feed: loop {
            let Some(batch) = batches.lock().await.recv().await else {
                break;
            };
            for user in batch {
                if local_tx.send(user).await.is_err() {
                    // Every worker has stopped (the ledger is gone): take no more batches.
                    break 'feed;
                }
            }
        }
        drop(local_tx);
        while let Some(joined) = workers.join_next().await {
            // A submission's own panic is caught in `submit`; anything else is a bug too.
            if let Err(e) = joined
                && e.is_panic()
            {
                let message = format!("a sending task of lane {lane} panicked");
                self.stop.stop(StopReason::Internal(message));
            }
        }
    }

    /// All attempts for one user: the create request, then the target's follow-up step (if
    /// any); a user created in an earlier run whose follow-up did not finish starts there.
    ///
    /// A panic while sending becomes this row's `failed` outcome (its request may have left,
    /// so it stays uncertain) and stops the run with the internal-error code.
    pub async fn submit(&self, user: Person, sender: &mut Sender) -> Submission {
        let mut done = Submission::new(user);
        let sending = AssertUnwindSafe(self.submit_into(&mut done, sender));
        if let Err(panic) = futures_util::FutureExt::catch_unwind(sending).await {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            done.user.uncertain |= done.attempts > 0;
            let message = format!(
                "internal error while sending this row ({what}); it is retried on the next run"
            );
            self.stop.stop(StopReason::Internal(format!(
                "a panic while sending row {}: {what}",
                done.user.row
            )));
            self.failed(&mut done, &message);
        }
        done
    }

    /// [`submit`](Self::submit)'s work, on a submission that survives a panic.
    async fn submit_into(&self, done: &mut Submission, sender: &mut Sender) {
        // Set when the target said "exists" to a row whose earlier attempt may have landed.
        let mut unconfirmed = false;
        match done.user.remote_id.clone() {
            Some(id) => done.remote_id = Some(id),
            None => {
                let body = Bytes::from(done.user.body.clone());
                let endpoint = self.endpoint.clone();
                let key = self.idempotency_key(&done.user);
                match self
                    .run_step(done, sender, self.api.method(), &endpoint, body, key)
                    .await
                {
                    StepEnd::Answered(Verdict::Created { remote_id }) => {
                        if let Some(problem) = self.unlike_a_success(done, remote_id.as_deref()) {
                            // It may have created the person all the same.
                            done.user.uncertain = true;
                            self.failed(done, &problem);
                            done.errors[0].code = ErrorCode::Unexpected;
                            return;
                        }
                        done.remote_id = remote_id;
                    }
                    StepEnd::Answered(Verdict::Conflict { errors, declared }) => {
                        match self.settle_conflict(done, sender, errors, declared).await {
                            Settled::Exists => {
                                // No request of roster's for this person can have landed.
                                done.outcome = Outcome::Exists;
                                done.response_body = None;
                                return;
                            }
                            // Probably roster's own earlier request; the target cannot prove
                            // it. The id (from a lookup) lets the follow-up step run.
                            Settled::OursUnconfirmed => unconfirmed = true,
                            Settled::Refused(errors) => return self.rejected(done, errors),
                        }
                    }
                    StepEnd::Answered(Verdict::Rejected { errors }) => {
                        let errors = self.name_columns(errors);
                        return self.rejected(done, errors);
                    }
                    StepEnd::Answered(Verdict::Fatal { message }) => {
                        return self.fatal(done, message);
                    }
                    StepEnd::Answered(Verdict::Retry { .. }) => {
                        unreachable!("retries are spent in run_step")
                    }
                    StepEnd::Exhausted(message) => return self.failed(done, &message),
                    StepEnd::Stopped if done.attempts > 0 => {
                        return self.failed(done, "the run stopped before this row succeeded");
                    }
                    StepEnd::Stopped => {
                        done.outcome = Outcome::NotProcessed;
                        return;
                    }
                }
            }
        }
        let mut follow_up_done = false;
        if let Some(id) = done.remote_id.clone()
            && let Some(step) = self.api.follow_up(&id, &done.user.fields)
        {
            let what = step.what;
            let url = match url::Url::parse(&step.url) {
                Ok(url) => url,
                Err(e) => {
                    let message = format!("`{}` is not a URL: {e}", step.url);
                    return self.fatal(done, message);
                }
            };
            match self
                .run_step(done, sender, step.method, &url, step.body.into(), None)
                .await
            {
                StepEnd::Answered(Verdict::Created { .. }) => follow_up_done = true,
                StepEnd::Answered(Verdict::Conflict { errors, .. }) => {
                    let errors = self.name_columns(errors);
                    return self.rejected(done, errors);
                }
                StepEnd::Answered(Verdict::Rejected { errors }) => {
                    let errors = self
                        .name_columns(errors)
                        .into_iter()
                        .map(|mut e| {
                            e.message =
                                format!("created as {id}, but {what} was refused: {}", e.message);
                            e
                        })
                        .collect();
                    return self.rejected(done, errors);
                }
                StepEnd::Answered(Verdict::Fatal { message }) => return self.fatal(done, message),
                StepEnd::Answered(Verdict::Retry { .. }) => {
                    unreachable!("retries are spent in run_step")
                }
                StepEnd::Exhausted(message) => {
                    let message = format!("created as {id}, but {what} failed: {message}");
                    return self.failed(done, &message);
                }
                StepEnd::Stopped => {
                    let message = format!(
                        "created as {id}; the run stopped before {what}; the next run finishes it"
                    );
                    return self.failed(done, &message);
                }
            }
        } else if done.remote_id.is_none()
            && let Some(step) = self.api.follow_up("", &done.user.fields)
        {
            // The person exists (probably roster's creation) but without an id the step it
            // needs cannot run: the row stays to be finished, and says why.
            let message = format!(
                "the target says this person exists (probably created by an earlier attempt of \
                 roster's), but gave no id to finish {} on; a re-run tries again",
                step.what
            );
            return self.failed(done, &message);
        }
        done.outcome = match unconfirmed {
            true => Outcome::CreatedUnconfirmed,
            false => Outcome::Created,
        };
        done.response_body = None;
        // The target holds the password if the answer to the request that carried it was a
        // success: the create's, or the follow-up step's that set it.
        let confirmed = !unconfirmed || follow_up_done;
        self.hand_over_password(done, confirmed);
    }

    /// Why a 2xx answer to a create is not the success the target documents (another status,
    /// no id where it returns one: a wrong `--base-url` answering a web page), if it is not.
    fn unlike_a_success(&self, done: &Submission, remote_id: Option<&str>) -> Option<String> {
        let status = done.status.unwrap_or(200);
        let what = match (self.api.success_status(status), remote_id) {
            (false, _) => format!("HTTP {status}, not the documented success"),
            (true, None) if self.api.returns_id() => {
                format!("HTTP {status} without the new user's id")
            }
            _ => return None,
        };
        let body = String::from_utf8_lossy(&done.last_body[..done.last_body.len().min(240)]);
        let start: String = body.trim().chars().take(120).collect();
        let start = match start.is_empty() {
            true => "an empty body".to_string(),
            false => format!("`{start}`"),
        };
        Some(format!(
            "target `{}` answered {what} ({start}): not what it documents; the person may exist \
             (hint: check --base-url); a re-run retries",
            self.name
        ))
    }

    /// Writes a created user's generated password line (before the ledger records the row
    /// created, so no password is ever in the ledger's hands only). A line that cannot be
    /// written is owed: the row is marked so, the run stops, and the next run writes it.
    fn hand_over_password(&self, done: &mut Submission, confirmed: bool) {
        if !done.user.generated_password {
            return;
        }
        let (Some(file), Some(password)) = (
            &self.passwords,
            done.user.fields.get(crate::model::Field::Password),
        ) else {
            return;
        };
        let status = match confirmed {
            true => PasswordStatus::Created,
            false => PasswordStatus::Unconfirmed,
        };
        if let Err(e) = file.write(&done.user.identity, password, status) {
            done.password_owed = true;
            let message = format!(
                "cannot write the password file `{}`: {e}; the people created so far are \
                 recorded, and a re-run writes the password lines still owed",
                file.path().display()
            );
            self.stop.stop(StopReason::RetryLater(message));
        }
    }

    /// The `Idempotency-Key` for a user's create, where the target honours one: the same for
    /// the same identity and content in every run, so a resend after a crash replays.
    fn idempotency_key(&self, user: &Person) -> Option<String> {
        if !self.api.idempotency_keys() {
            return None;
        }
        let mut input = Vec::with_capacity(64);
        input.extend_from_slice(self.api.ledger_key().as_bytes());
        input.push(0);
        input.extend_from_slice(user.identity.as_bytes());
        input.push(0);
        input.extend_from_slice(&user.content_hash.to_le_bytes());
        Some(format!(
            "roster-{:032x}",
            xxhash_rust::xxh3::xxh3_128(&input)
        ))
    }

    /// Whose a conflict is. The row's own identity when the answer names its email, the user
    /// name roster sent in its place, or the user as a whole: the person exists. Another
    /// field (two people sharing a user name): a refusal of that field, under its column —
    /// unless a lookup finds a person with this row's email after all. An answer naming no
    /// field at all: a lookup decides, else the row is refused as a conflict to check.
    async fn settle_conflict(
        &self,
        done: &mut Submission,
        sender: &mut Sender,
        errors: Vec<crate::http::problem::ApiError>,
        declared: bool,
    ) -> Settled {
        let identity_settled = |done: &mut Submission| match done.user.uncertain {
            true => Settled::OursUnconfirmed,
            false => Settled::Exists,
        };
        let on = self.conflict_on(&errors, &done.user, declared);
        if on == ConflictOn::Identity {
            if done.user.uncertain {
                // The id lets a follow-up step (Crayon's password) run.
                done.remote_id = self.look_up(done, sender).await;
            }
            return identity_settled(done);
        }
        // Someone holds a value of this row's: is it this very person?
        if let Some(id) = self.look_up(done, sender).await {
            done.remote_id = Some(id);
            return identity_settled(done);
        }
        let status = done.status.unwrap_or(409);
        let refused = match on {
            ConflictOn::Identity => unreachable!("settled above"),
            ConflictOn::Field(field) => {
                let column = self.mapping.column_name(field).to_string();
                errors
                    .iter()
                    .filter(|e| {
                        crate::http::problem::says_already_exists(&e.message) || status == 409
                    })
                    .map(|e| FieldError {
                        field: Some(field),
                        column: column.clone(),
                        message: e.message.clone(),
                        source: crate::model::ErrorSource::Remote,
                        code: ErrorCode::Conflict,
                    })
                    .collect()
            }
            ConflictOn::Unknown => vec![FieldError {
                field: None,
                column: String::new(),
                message: format!(
                    "the target answered HTTP {status}, a conflict with an existing user, without \
                     saying which value is taken, and found no user with this email: a conflict \
                     to check against the users there"
                ),
                source: crate::model::ErrorSource::Remote,
                code: ErrorCode::Conflict,
            }],
        };
        Settled::Refused(refused)
    }

    /// What a conflict's messages say is taken.
    fn conflict_on(
        &self,
        errors: &[crate::http::problem::ApiError],
        user: &Person,
        declared: bool,
    ) -> ConflictOn {
        use crate::http::problem;
        use crate::model::Field;
        let identity = user.identity.to_lowercase();
        // The user name sent is the email when the row gave none (every target that takes one
        // falls back to the email): a conflict on it is on the identity.
        let username_is_identity = user
            .fields
            .get(Field::Username)
            .is_none_or(|name| name.eq_ignore_ascii_case(&identity));
        let mut other = None;
        for e in errors {
            if e.message.to_lowercase().contains(&identity) {
                return ConflictOn::Identity; // the answer quotes this row's email
            }
            let field = e
                .field
                .as_deref()
                .and_then(|f| self.schema.field_for(problem::conflict_field_name(f)))
                .or_else(|| {
                    problem::field_named_in(&e.message)
                        .and_then(|f| self.schema.field_for(f.as_str()))
                });
            match field {
                Some(Field::Email) => return ConflictOn::Identity,
                Some(Field::Username) if username_is_identity => return ConflictOn::Identity,
                Some(field) => other = other.or(Some(field)),
                None if problem::names_the_user(&e.message) => return ConflictOn::Identity,
                None => {}
            }
        }
        match other {
            Some(field) => ConflictOn::Field(field),
            None if declared => ConflictOn::Identity,
            None => ConflictOn::Unknown,
        }
    }

    /// Waits until the server's pause is over and the rate limiter lets one more request go;
    /// false if the run stopped first.
    async fn wait_turn(&self) -> bool {
        if self.stop.is_stopped() {
            return false;
        }
        // Nothing to wait for (the usual case): no race with the stop to set up.
        if self.gate.is_open() && self.limiter.as_ref().is_none_or(|l| l.check().is_ok()) {
            self.pacer.acquire().await;
            return !self.stop.is_stopped();
        }
        let turn = async {
            self.gate.wait_open().await;
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            self.pacer.acquire().await;
        };
        tokio::select! {
            _ = turn => !self.stop.is_stopped(),
            _ = self.stop.stopped() => false,
        }
    }

    /// Sleeps for `wait`; false if the run stopped first.
    async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.stop.stopped() => false,
        }
    }

    /// A wait the server asked for that is longer than the run allows: the run stops (a
    /// re-run later will find the server ready), with the reason as the row's message.
    fn too_long(&self, wait: Duration) -> Option<String> {
        if wait <= self.settings.max_wait {
            return None;
        }
        let message = format!(
            "target `{}` asked to wait {} (Retry-After or a rate-limit reset), longer than \
             --max-wait {}; run again later",
            self.name,
            humantime::format_duration(Duration::from_secs(wait.as_secs())),
            humantime::format_duration(self.settings.max_wait),
        );
        self.stop.stop(StopReason::RetryLater(message.clone()));
        Some(message)
    }

    /// For an uncertain row answered "exists": the remote id, when the target can look the
    /// user up and finds it.
    async fn look_up(&self, done: &mut Submission, sender: &mut Sender) -> Option<String> {
        let url = self
            .api
            .lookup_url(&done.user.identity, &done.user.fields)?;
        let url = url::Url::parse(&url).ok()?;
        for _ in 0..3 {
            if !self.wait_turn().await {
                return None;
            }
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            if self.api.auth().authorize(&mut headers).await.is_err() {
                return None;
            }
            let answer = sender.send(Method::GET, &url, headers, Bytes::new()).await;
            if !matches!(&answer, Err(e) if e.nothing_sent()) {
                done.attempts += 1;
            }
            match answer {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    return self.api.lookup_id(&answer.body, &done.user.identity);
                }
                Ok(answer) if answer.status == 429 => {
                    let wait = crate::http::wait::server_wait(
                        &answer.headers,
                        std::time::SystemTime::now(),
                    )
                    .unwrap_or(Duration::from_secs(1));
                    if self.too_long(wait).is_some() {
                        return None;
                    }
                    self.gate.pause_for(wait);
                }
                Ok(answer) if answer.status >= 500 => {
                    self.sleep(Duration::from_millis(200)).await;
                }
                // Not found, refused, or the API has no such listing: no id.
                Ok(_) => return None,
                Err(_) => {
                    self.sleep(Duration::from_millis(200)).await;
                }
            }
        }
        None
    }

    /// Sends one request until it gets a final answer, retrying transient failures with
    /// backoff (and renewing a refused token once).
    async fn run_step(
        &self,
        done: &mut Submission,
        sender: &mut Sender,
        method: Method,
        url: &url::Url,
        body: Bytes,
        idempotency_key: Option<String>,
    ) -> StepEnd {
        let mut schedule = self.settings.retry.schedule();
        let mut problem = String::new();
        let mut renewals = 0;
        loop {
            if self.stop.is_stopped() || !self.wait_turn().await {
                return StepEnd::Stopped;
            }
            let started = now_ms();
            done.first_attempt_ms.get_or_insert(started);
            done.last_attempt_ms = Some(started);
            let headers = self.headers(idempotency_key.as_deref());
            let (verdict, used, end) = self
                .attempt(
                    done,
                    sender,
                    (method.clone(), url, headers, body.clone()),
                    &mut problem,
                )
                .await;
            match end {
                AttemptEnd::Throttled => {
                    self.pacer.throttled();
                    self.breaker.answered();
                }
                AttemptEnd::Answered => {
                    self.pacer.answered();
                    self.breaker.answered();
                }
                AttemptEnd::ServerError | AttemptEnd::NoAnswer | AttemptEnd::NotConnected => {
                    if end != AttemptEnd::NotConnected {
                        done.user.uncertain = true;
                    }
                    if self.breaker.failed() {
                        let message = format!(
                            "target `{}` keeps failing: {} requests in a row without a good \
                             answer (last: {problem}); stopping — run again later to resume",
                            self.name,
                            self.breaker.failures_in_a_row()
                        );
                        self.stop.stop(StopReason::RetryLater(message));
                        return StepEnd::Exhausted(format!("{problem}; the run stopped"));
                    }
                }
            }
            let auth = self.api.auth();
            // Some APIs (Cradl) answer an expired token with 403: renewal settles which it is.
            let refused = matches!(done.status, Some(401 | 403));
            if refused && auth.renewable() && renewals < 3 {
                renewals += 1;
                match auth.refused(used).await {
                    Ok(()) => continue,
                    Err(e) => {
                        return StepEnd::Answered(Verdict::Fatal {
                            message: format!(
                                "credentials refused (HTTP {}): {e}",
                                done.status.unwrap_or(401)
                            ),
                        });
                    }
                }
            }
            match verdict {
                Verdict::Retry { wait } => {
                    let throttled = done.status == Some(429);
                    if throttled {
                        done.throttled += 1;
                    }
                    if let Some(message) = wait.and_then(|wait| self.too_long(wait)) {
                        return StepEnd::Exhausted(message);
                    }
                    let Some(mut delay) = schedule.next() else {
                        return StepEnd::Exhausted(format!(
                            "{problem} after {} attempts; it will be retried on the next run",
                            done.attempts
                        ));
                    };
                    // 429s are paced, not budgeted; failures draw on the run's retry budget.
                    let cost = match end {
                        AttemptEnd::Throttled => 0,
                        AttemptEnd::NoAnswer => RetryBudget::TIMEOUT_COST,
                        _ => RetryBudget::RETRY_COST,
                    };
                    if cost > 0 && !self.budget.try_spend(cost) {
                        return StepEnd::Exhausted(format!(
                            "{problem} after {} attempts, and the run's retry budget is spent \
                             (too many failures); it will be retried on the next run",
                            done.attempts
                        ));
                    }
                    match wait {
                        // A 429 says how long: every worker waits that long.
                        Some(wait) if throttled => self.gate.pause_for(wait),
                        // A 5xx's Retry-After is about this request: only its row waits.
                        Some(wait) => delay = delay.max(wait),
                        // Throttled without a hint: everyone backs off, not just this row.
                        None if throttled => self.gate.pause_for(delay),
                        None => {}
                    }
                    if !self.sleep(delay).await {
                        return StepEnd::Stopped;
                    }
                }
                verdict => {
                    if matches!(verdict, Verdict::Created { .. } | Verdict::Conflict { .. }) {
                        auth.confirm(used);
                        let refund = match done.attempts {
                            1 => 1,
                            _ => RetryBudget::RETRY_COST,
                        };
                        self.budget.succeeded(refund);
                    }
                    return StepEnd::Answered(verdict);
                }
            }
        }
    }

    /// A step's headers, not yet authorised.
    fn headers(&self, idempotency_key: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(6);
        let content_type = HeaderValue::from_str(self.schema.content_type())
            .unwrap_or(HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(key) = idempotency_key.and_then(|key| HeaderValue::from_str(key).ok()) {
            headers.insert("idempotency-key", key);
        }
        headers
    }

    /// One HTTP request; network trouble is a retryable verdict, described in `problem`.
    async fn attempt(
        &self,
        done: &mut Submission,
        sender: &mut Sender,
        (method, url, mut headers, body): (Method, &url::Url, HeaderMap, Bytes),
        problem: &mut String,
    ) -> (Verdict, Used, AttemptEnd) {
        done.status = None;
        let used = match self.api.auth().authorize(&mut headers).await {
            Ok(used) => used,
            Err(e) => {
                let message = format!("cannot authenticate: {e}");
                return (
                    Verdict::Fatal { message },
                    Used::default(),
                    AttemptEnd::Answered,
                );
            }
        };
        let sent = sender.send(method, url, headers, body).await;
        // `attempts` counts requests that may have reached the server.
        if !matches!(&sent, Err(e) if e.nothing_sent()) {
            done.attempts += 1;
        }
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) => {
                done.status = e.status();
                *problem = e.to_string();
                let end = match e.nothing_sent() {
                    true => AttemptEnd::NotConnected,
                    false => AttemptEnd::NoAnswer,
                };
                return (Verdict::Retry { wait: None }, used, end);
            }
        };
        let status = answer.status;
        done.status = Some(status);
        // A refusal's body is kept for the audit; a success's is only held on to (no copy),
        // to say what it was should it not be what the target documents.
        done.last_body = answer.body.clone();
        if !(200..300).contains(&status) {
            let kept = &answer.body[..answer.body.len().min(MAX_KEPT_BODY)];
            let mut text = String::from_utf8_lossy(kept).into_owned();
            if answer.truncated || answer.body.len() > MAX_KEPT_BODY {
                text.push_str(" … (cut)");
            }
            done.response_body = Some(text);
            *problem = format!("HTTP {status}");
        }
        let end = match status {
            429 => AttemptEnd::Throttled,
            500.. => AttemptEnd::ServerError,
            _ => AttemptEnd::Answered,
        };
        let verdict = self.api.classify(status, &answer.headers, &answer.body);
        (verdict, used, end)
    }

    fn rejected(&self, done: &mut Submission, errors: Vec<FieldError>) {
        done.outcome = Outcome::Rejected {
            status: done.status.unwrap_or(400),
        };
        done.errors = errors;
        if done.errors.is_empty() {
            let message = format!("refused with HTTP {}", done.status.unwrap_or(400));
            done.errors.push(FieldError::remote(None, "", message));
        }
    }

    /// Going on is pointless: stop the run, naming the target and what to check.
    fn fatal(&self, done: &mut Submission, message: String) {
        let hint = self.api.auth_hint();
        let credentials = message.contains("credentials") || message.contains("authenticate");
        let message = if hint.is_empty() || !credentials {
            format!("target `{}`: {message}", self.name)
        } else {
            format!("target `{}`: {message} (hint: {hint})", self.name)
        };
        self.stop.stop(StopReason::Aborted(message.clone()));
        self.failed(done, &message)
    }

    fn failed(&self, done: &mut Submission, message: &str) {
        done.outcome = Outcome::Failed {
            status: done.status,
        };
        done.errors = vec![FieldError {
            field: None,
            column: String::new(),
            message: message.to_string(),
            source: crate::model::ErrorSource::Remote,
            code: ErrorCode::Unavailable,
        }];
    }

    /// Turns the API's field names into the user's column headers.
    fn name_columns(&self, errors: Vec<crate::http::problem::ApiError>) -> Vec<FieldError> {
        errors
            .into_iter()
            .map(|e| {
                let field = e
                    .field
                    .as_deref()
                    .and_then(|name| self.schema.field_for(name));
                let column = match (field, &e.field) {
                    (Some(f), _) => self.mapping.column_name(f).to_string(),
                    (None, Some(name)) => name.clone(),
                    (None, None) => String::new(),
                };
                FieldError::remote(field, column, e.message)
            })
            .collect()
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
