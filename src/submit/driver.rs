//! The submit stage's moving part: lanes of workers that take claimed users, send each one's
//! requests (what every answer means is [`super::decide`]'s), look people up, run follow-up
//! steps, hand generated passwords over, and record each outcome.

use super::decide::{self, Action, AttemptEnd, ConflictOn, Context, Seen, StepState};
use super::{MAX_KEPT_BODY, Submitter};
use crate::auth::scheme::Used;
use crate::http::Sender;
use crate::ledger::now_ms;
use crate::ledger::writer::LedgerSender;
use crate::model::{ErrorCode, FieldError, Outcome, Person, StopReason, Submission};
use crate::report::PasswordStatus;
use crate::targets::Verdict;
use bytes::Bytes;
use http::Method;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// What a conflict answer turned out to mean.
enum Settled {
    /// The person existed, and no attempt of roster's can have created them.
    Exists,
    /// The person exists, probably by an earlier attempt of roster's.
    OursUnconfirmed,
    /// Another person holds a value of this row's: refused, with these messages.
    Refused(Vec<FieldError>),
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

impl Submitter {
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
            let what = crate::model::panic_message(panic.as_ref());
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
        self.scrub(&mut done).await;
        done
    }

    /// Replaces every secret in what is kept of the answers (a server may echo the request
    /// or its credentials in a refusal) by `***`: the row's password and every credential.
    async fn scrub(&self, done: &mut Submission) {
        if done.errors.is_empty() && done.response_body.is_none() {
            return;
        }
        let redactor = crate::model::Redactor::new(self.api.auth().secrets().await)
            .with(done.user.fields.get(crate::model::Field::Password));
        for error in &mut done.errors {
            if let std::borrow::Cow::Owned(clean) = redactor.scrub(&error.message) {
                error.message = clean;
            }
        }
        if let Some(body) = &mut done.response_body
            && let std::borrow::Cow::Owned(clean) = redactor.scrub(body)
        {
            *body = clean;
        }
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
                        let problem = decide::unlike_a_success(
                            self.api.as_ref(),
                            self.name,
                            done.status.unwrap_or(200),
                            remote_id.as_deref(),
                            &done.last_body,
                        );
                        if let Some(problem) = problem {
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
        let on = decide::conflict_on(self.schema.as_ref(), &errors, &done.user, declared);
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

    /// Sleeps for `wait`; false if the run stopped first.
    async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = self.stop.stopped() => false,
        }
    }

    /// For an uncertain row answered "exists": the remote id, when the target can look the
    /// user up and finds it.
    async fn look_up(&self, done: &mut Submission, sender: &mut Sender) -> Option<String> {
        let url = self
            .api
            .lookup_url(&done.user.identity, &done.user.fields)?;
        let url = url::Url::parse(&url).ok()?;
        for _ in 0..3 {
            // The slot is given back (as teaching nothing) when the lookup's turn ends.
            let _slot = self.throttle.acquire(&self.stop).await?;
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
                    if wait > self.settings.max_wait {
                        // The create's own answers decide whether the run waits that long.
                        return None;
                    }
                    self.throttle.pause_all(wait);
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

    /// Sends one request until it gets a final answer, doing what [`decide::next`] says of
    /// each answer: retry after backoff, renew a refused token, give up, or stop the run.
    async fn run_step(
        &self,
        done: &mut Submission,
        sender: &mut Sender,
        method: Method,
        url: &url::Url,
        body: Bytes,
        idempotency_key: Option<String>,
    ) -> StepEnd {
        let mut state = StepState::new(self.settings.retry.schedule(), done.attempts);
        loop {
            let Some(slot) = self.throttle.acquire(&self.stop).await else {
                return StepEnd::Stopped;
            };
            let started = now_ms();
            done.first_attempt_ms.get_or_insert(started);
            done.last_attempt_ms = Some(started);
            let headers = self.headers(idempotency_key.as_deref());
            let sent_at = tokio::time::Instant::now();
            let (seen, used) = self
                .attempt(done, sender, (method.clone(), url, headers, body.clone()))
                .await;
            tracing::debug!(
                row = done.user.row,
                attempt = done.attempts,
                status = seen.status,
                latency_ms = sent_at.elapsed().as_millis() as u64,
                problem = %seen.problem,
                "attempt"
            );
            if seen.end.leaves_doubt() {
                done.user.uncertain = true;
            }
            if seen.status == Some(429) {
                done.throttled += 1;
            }
            state.attempts = done.attempts;
            let ctx = Context {
                target: self.name,
                max_wait: self.settings.max_wait,
                renewable: self.api.auth().renewable(),
                breaker_tripped: slot.done(seen.end, sent_at.elapsed()),
                failures_in_a_row: self.throttle.failures_in_a_row(),
            };
            let status = seen.status;
            match decide::next(&mut state, seen, &ctx, &self.throttle.budget) {
                Action::Finish(verdict) => {
                    if matches!(verdict, Verdict::Created { .. } | Verdict::Conflict { .. }) {
                        self.api.auth().confirm(used);
                    }
                    return StepEnd::Answered(verdict);
                }
                Action::Renew => {
                    tracing::info!(status, "renewing the refused token");
                    if let Err(e) = self.api.auth().refused(used).await {
                        return StepEnd::Answered(Verdict::Fatal {
                            message: format!(
                                "credentials refused (HTTP {}): {e}",
                                status.unwrap_or(401)
                            ),
                        });
                    }
                }
                Action::Retry { delay, pause_all } => {
                    if let Some(wait) = pause_all {
                        self.throttle.pause_all(wait);
                    }
                    tracing::debug!(
                        row = done.user.row,
                        delay_ms = delay.as_millis() as u64,
                        "retrying"
                    );
                    if !self.sleep(delay).await {
                        return StepEnd::Stopped;
                    }
                }
                Action::GiveUp(mut message) => {
                    if message.contains("budget") {
                        self.throttle.budget_spent();
                    }
                    // The server's last word, not only its status: "HTTP 500 after 6
                    // attempts" tells the user nothing they can act on.
                    if let Some(status) = done.status.filter(|s| !(200..300).contains(s)) {
                        let said = crate::http::problem::summary(&done.last_body);
                        if !done.last_body.is_empty() && said != "no body" {
                            message.push_str(&format!(" (the last answer, HTTP {status}: {said})"));
                        }
                    }
                    return StepEnd::Exhausted(message);
                }
                Action::StopRun { run, row } => {
                    self.stop.stop(StopReason::RetryLater(run));
                    return StepEnd::Exhausted(row);
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

    /// One HTTP request; network trouble is a retryable verdict, described in the answer's
    /// `problem`.
    async fn attempt(
        &self,
        done: &mut Submission,
        sender: &mut Sender,
        (method, url, mut headers, body): (Method, &url::Url, HeaderMap, Bytes),
    ) -> (Seen, Used) {
        done.status = None;
        let used = match self.api.auth().authorize(&mut headers).await {
            Ok(used) => used,
            Err(e) => {
                let message = format!("cannot authenticate: {e}");
                let seen = Seen {
                    verdict: Verdict::Fatal {
                        message: message.clone(),
                    },
                    end: AttemptEnd::Answered,
                    status: None,
                    problem: message,
                };
                return (seen, Used::default());
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
                let end = match e.nothing_sent() {
                    true => AttemptEnd::NotConnected,
                    false => AttemptEnd::NoAnswer,
                };
                let seen = Seen {
                    verdict: Verdict::Retry { wait: None },
                    end,
                    status: done.status,
                    problem: e.to_string(),
                };
                return (seen, used);
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
        }
        let end = match status {
            429 => AttemptEnd::Throttled,
            500.. => AttemptEnd::ServerError,
            _ => AttemptEnd::Answered,
        };
        let seen = Seen {
            verdict: self.api.classify(status, &answer.headers, &answer.body),
            end,
            status: Some(status),
            problem: format!("HTTP {status}"),
        };
        (seen, used)
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
