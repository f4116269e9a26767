//! One request's decisions, with no I/O and no clock: what an attempt's answer means for the
//! next step ([`next`]: finish, renew the token, retry after a delay, give up, or stop the
//! run), whose a conflict is ([`conflict_on`]), and whether a 2xx is the success the target
//! documents ([`unlike_a_success`]). The driver ([`super::driver`]) does what they say.

use crate::http::problem::{self, ApiError};
use crate::model::{Field, Person};
use crate::targets::{Api, Schema, Verdict};
use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

use super::throttle::RetryBudget;

/// How long the run waits for a server by default before it stops (`--max-wait`).
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(300);

/// Most token renewals one request may ask for before its refusal is final.
pub const MAX_RENEWALS: u32 = 3;

/// How many times and how fast a submission is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// The first backoff ceiling.
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// A fresh schedule of backoff delays for one submission: exponential ceilings (backon)
    /// with full jitter, i.e. each delay uniform in `[0, ceiling]` so retries spread out.
    pub fn schedule(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        self.ceilings()
            .map(|ceiling| ceiling.mul_f64(fastrand::f64()))
    }

    /// The schedule's ceilings, without jitter.
    pub fn ceilings(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.base_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_retries as usize)
            .build()
    }
}

/// How one attempt ended, for the run's flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
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

impl AttemptEnd {
    /// Whether the request may have reached the server and been acted on without an answer
    /// saying so: the row becomes uncertain.
    pub fn leaves_doubt(self) -> bool {
        matches!(self, AttemptEnd::ServerError | AttemptEnd::NoAnswer)
    }

    /// Whether this is a server failure the circuit breaker counts.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            AttemptEnd::ServerError | AttemptEnd::NoAnswer | AttemptEnd::NotConnected
        )
    }
}

/// What one attempt came back with.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The target's reading of the answer (a transport failure reads as a retry).
    pub verdict: Verdict,
    /// How it ended, for flow control.
    pub end: AttemptEnd,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// What went wrong, in words (`HTTP 503`, a transport error), for messages.
    pub problem: String,
}

/// What the run knows besides the answer.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The target's name, for messages.
    pub target: &'a str,
    /// The longest wait the run accepts from a server.
    pub max_wait: Duration,
    /// Whether a refused token can be renewed.
    pub renewable: bool,
    /// Whether the circuit breaker tripped on this attempt.
    pub breaker_tripped: bool,
    /// Failures in a row so far (for the breaker's message).
    pub failures_in_a_row: u32,
}

/// One request's progress: requests that may have reached the server, renewals asked for,
/// and what is left of its backoff schedule.
pub struct StepState {
    /// Requests that may have reached the server, this one included.
    pub attempts: u32,
    /// Token renewals asked for.
    pub renewals: u32,
    schedule: Box<dyn Iterator<Item = Duration> + Send>,
}

impl StepState {
    /// A request about to be sent for the first time, `attempts` already spent on its row.
    pub fn new(schedule: impl Iterator<Item = Duration> + Send + 'static, attempts: u32) -> Self {
        StepState {
            attempts,
            renewals: 0,
            schedule: Box::new(schedule),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A final answer.
    Finish(Verdict),
    /// The credentials were refused: renew the token and send again.
    Renew,
    /// Send again after `delay`; when `pause_all` is set, every worker waits that long first.
    Retry {
        /// This request's wait.
        delay: Duration,
        /// The wait every worker observes (a 429's).
        pause_all: Option<Duration>,
    },
    /// No more attempts: the row fails with this message (a re-run retries it).
    GiveUp(String),
    /// Going on is pointless for the whole run: it stops with "try again later" (`run`), and
    /// the row fails with `row`.
    StopRun {
        /// Why the run stops.
        run: String,
        /// The row's message.
        row: String,
    },
}

/// The next step after an attempt that `seen` describes. Spends from (and refunds to) the
/// run's retry `budget`; everything else is a function of its inputs.
pub fn next(state: &mut StepState, seen: Seen, ctx: &Context, budget: &RetryBudget) -> Action {
    let problem = &seen.problem;
    if seen.end.is_failure() && ctx.breaker_tripped {
        return Action::StopRun {
            run: format!(
                "target `{}` keeps failing: {} requests in a row without a good answer (last: \
                 {problem}); stopping — run again later to resume",
                ctx.target, ctx.failures_in_a_row
            ),
            row: format!("{problem}; the run stopped"),
        };
    }
    // Some APIs (Cradl) answer an expired token with 403: renewal settles which it is.
    if matches!(seen.status, Some(401 | 403)) && ctx.renewable && state.renewals < MAX_RENEWALS {
        state.renewals += 1;
        return Action::Renew;
    }
    let wait = match seen.verdict {
        Verdict::Retry { wait } => wait,
        verdict => {
            if matches!(verdict, Verdict::Created { .. } | Verdict::Conflict { .. }) {
                let refund = match state.attempts {
                    1 => 1,
                    _ => RetryBudget::RETRY_COST,
                };
                budget.succeeded(refund);
            }
            return Action::Finish(verdict);
        }
    };
    if let Some(wait) = wait.filter(|w| *w > ctx.max_wait) {
        let message = format!(
            "target `{}` asked to wait {} (Retry-After or a rate-limit reset), longer than \
             --max-wait {}; run again later",
            ctx.target,
            humantime::format_duration(Duration::from_secs(wait.as_secs())),
            humantime::format_duration(ctx.max_wait),
        );
        return Action::StopRun {
            run: message.clone(),
            row: message,
        };
    }
    let Some(mut delay) = state.schedule.next() else {
        return Action::GiveUp(format!(
            "{problem} after {} attempts; it will be retried on the next run",
            state.attempts
        ));
    };
    // 429s are paced, not budgeted; failures draw on the run's retry budget.
    let cost = match seen.end {
        AttemptEnd::Throttled => 0,
        AttemptEnd::NoAnswer => RetryBudget::TIMEOUT_COST,
        _ => RetryBudget::RETRY_COST,
    };
    if cost > 0 && !budget.try_spend(cost) {
        return Action::GiveUp(format!(
            "{problem} after {} attempts, and the run's retry budget is spent (too many \
             failures); it will be retried on the next run",
            state.attempts
        ));
    }
    let throttled = seen.status == Some(429);
    let pause_all = match wait {
        // A 429 says how long: every worker waits that long.
        Some(wait) if throttled => Some(wait),
        // A 5xx's Retry-After is about this request: only its row waits.
        Some(wait) => {
            delay = delay.max(wait);
            None
        }
        // Throttled without a hint: everyone backs off, not just this row.
        None if throttled => Some(delay),
        None => None,
    };
    Action::Retry { delay, pause_all }
}

/// What a conflict's messages say is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictOn {
    /// This row's identity: the person exists.
    Identity,
    /// Another field's value (a user name another person holds).
    Field(Field),
    /// The answer does not say.
    Unknown,
}

/// Whose a conflict is: the row's own identity when a message quotes its email, names the
/// email field, the user name roster sent in its place, or the user as a whole; another
/// field's when it names one (two people sharing a user name); else unknown, unless the
/// target declared the answer means "exists".
pub fn conflict_on(
    schema: &dyn Schema,
    errors: &[ApiError],
    user: &Person,
    declared: bool,
) -> ConflictOn {
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
            .and_then(|f| schema.field_for(problem::conflict_field_name(f)))
            .or_else(|| {
                problem::field_named_in(&e.message).and_then(|f| schema.field_for(f.as_str()))
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

/// Why a 2xx answer to a create is not the success the target documents (another status,
/// no id where it returns one: a wrong `--base-url` answering a web page), if it is not.
pub fn unlike_a_success(
    api: &dyn Api,
    target: &str,
    status: u16,
    remote_id: Option<&str>,
    body: &[u8],
) -> Option<String> {
    let what = match (api.success_status(status), remote_id) {
        (false, _) => format!("HTTP {status}, not the documented success"),
        (true, None) if api.returns_id() => format!("HTTP {status} without the new user's id"),
        _ => return None,
    };
    let body = String::from_utf8_lossy(&body[..body.len().min(240)]);
    let start: String = body.trim().chars().take(120).collect();
    let start = match start.is_empty() {
        true => "an empty body".to_string(),
        false => format!("`{start}`"),
    };
    Some(format!(
        "target `{target}` answered {what} ({start}): not what it documents; the person may \
         exist (hint: check --base-url); a re-run retries"
    ))
}

#[cfg(test)]
mod tests {
    //! Table tests of one request's decisions, ported from the scenarios `tests/faults.rs`
    //! plays over real sockets: each row is a script of answers, played through [`next`] by a
    //! driver that sleeps (in paused tokio time) for what it is told to wait. It checks the
    //! final action, the attempts made and the virtual time it took.

    use super::*;
    use crate::http::wait::LONGEST_SERVER_WAIT;
    use tokio::time::Instant;

    fn answer(status: u16, verdict: Verdict) -> Seen {
        let end = match status {
            429 => AttemptEnd::Throttled,
            500.. => AttemptEnd::ServerError,
            _ => AttemptEnd::Answered,
        };
        Seen {
            verdict,
            end,
            status: Some(status),
            problem: format!("HTTP {status}"),
        }
    }

    fn created() -> Seen {
        answer(
            201,
            Verdict::Created {
                remote_id: Some("u1".into()),
            },
        )
    }

    fn retry(status: u16, wait: Option<u64>) -> Seen {
        answer(
            status,
            Verdict::Retry {
                wait: wait.map(Duration::from_secs),
            },
        )
    }

    fn lost() -> Seen {
        Seen {
            verdict: Verdict::Retry { wait: None },
            end: AttemptEnd::NoAnswer,
            status: None,
            problem: "connection reset".into(),
        }
    }

    fn refused(status: u16) -> Seen {
        answer(
            status,
            Verdict::Fatal {
                message: "credentials refused".into(),
            },
        )
    }

    /// How a played script ended.
    #[derive(Debug)]
    struct Played {
        last: Action,
        attempts: u32,
        renewals: u32,
        elapsed: Duration,
        paused_all: Vec<Duration>,
    }

    /// Plays `script` (one answer per attempt) until an action other than a retry or a
    /// renewal. Backoff delays are the schedule's ceilings (no jitter), so times are exact.
    async fn play(script: Vec<Seen>, ctx: Context<'_>, budget: &RetryBudget) -> Played {
        let policy = RetryPolicy::default();
        let mut state = StepState::new(policy.ceilings(), 0);
        let started = Instant::now();
        let mut paused_all = Vec::new();
        for seen in script {
            state.attempts += u32::from(seen.end != AttemptEnd::NotConnected);
            match next(&mut state, seen, &ctx, budget) {
                Action::Retry { delay, pause_all } => {
                    if let Some(pause) = pause_all {
                        paused_all.push(pause);
                        tokio::time::sleep(pause).await;
                    }
                    tokio::time::sleep(delay).await;
                }
                Action::Renew => {}
                last => {
                    return Played {
                        last,
                        attempts: state.attempts,
                        renewals: state.renewals,
                        elapsed: started.elapsed(),
                        paused_all,
                    };
                }
            }
        }
        panic!("the script ran out before a final action");
    }

    /// The virtual clock moved by `expected` (tokio's timer rounds each sleep up to the next
    /// millisecond).
    fn assert_about(elapsed: Duration, expected: Duration) {
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_millis(10),
            "{elapsed:?}, not about {expected:?}"
        );
    }

    fn ctx() -> Context<'static> {
        Context {
            target: "sandbox",
            max_wait: DEFAULT_MAX_WAIT,
            renewable: false,
            breaker_tripped: false,
            failures_in_a_row: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_answer_is_final() {
        let played = play(vec![created()], ctx(), &RetryBudget::default()).await;
        assert!(matches!(
            played.last,
            Action::Finish(Verdict::Created { .. })
        ));
        assert_eq!(played.attempts, 1);
        assert_about(played.elapsed, Duration::ZERO);
    }

    /// faults.rs: 5xx, 429s, resets and lost answers mixed, every row ends created.
    #[tokio::test(start_paused = true)]
    async fn transient_failures_back_off_exponentially_then_succeed() {
        let script = vec![retry(503, None), lost(), retry(502, None), created()];
        let played = play(script, ctx(), &RetryBudget::default()).await;
        assert!(matches!(
            played.last,
            Action::Finish(Verdict::Created { .. })
        ));
        assert_eq!(played.attempts, 4);
        // Ceilings 100 ms, 200 ms, 400 ms.
        assert_about(played.elapsed, Duration::from_millis(700));
        assert!(played.paused_all.is_empty(), "a 5xx pauses only its row");
    }

    /// faults.rs: a 429 storm pauses the whole run for Retry-After.
    #[tokio::test(start_paused = true)]
    async fn a_429_with_retry_after_pauses_every_worker_that_long() {
        let script = vec![retry(429, Some(2)), created()];
        let played = play(script, ctx(), &RetryBudget::default()).await;
        assert!(matches!(
            played.last,
            Action::Finish(Verdict::Created { .. })
        ));
        assert_eq!(played.paused_all, vec![Duration::from_secs(2)]);
        assert_about(played.elapsed, Duration::from_millis(2100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_without_a_hint_pauses_everyone_for_the_backoff() {
        let played = play(
            vec![retry(429, None), created()],
            ctx(),
            &RetryBudget::default(),
        )
        .await;
        assert_eq!(played.paused_all, vec![Duration::from_millis(100)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_5xx_retry_after_is_a_floor_for_its_own_row_only() {
        let played = play(
            vec![retry(503, Some(3)), created()],
            ctx(),
            &RetryBudget::default(),
        )
        .await;
        assert!(played.paused_all.is_empty());
        assert_about(played.elapsed, Duration::from_secs(3));
    }

    /// The regression: Retry-After 1e20 panicked the run and exited 0; now it stops the run
    /// with "try again later" and nothing waits.
    #[tokio::test(start_paused = true)]
    async fn a_wait_beyond_max_wait_stops_the_run_at_once() {
        let played = play(
            vec![answer(
                429,
                Verdict::Retry {
                    wait: Some(LONGEST_SERVER_WAIT),
                },
            )],
            ctx(),
            &RetryBudget::default(),
        )
        .await;
        match played.last {
            Action::StopRun { run, .. } => assert!(run.contains("--max-wait"), "{run}"),
            other => panic!("{other:?}"),
        }
        assert_about(played.elapsed, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_run_out_after_the_policy_and_say_so() {
        let script = (0..6).map(|_| retry(503, None)).collect();
        let played = play(script, ctx(), &RetryBudget::default()).await;
        match played.last {
            Action::GiveUp(m) => assert!(m.contains("after 6 attempts"), "{m}"),
            other => panic!("{other:?}"),
        }
        // 100 + 200 + 400 + 800 + 1600 ms of backoff between six attempts.
        assert_about(played.elapsed, Duration::from_millis(3100));
    }

    /// faults.rs: a target that keeps failing stops the run instead of burning the file.
    #[tokio::test(start_paused = true)]
    async fn a_tripped_breaker_stops_the_run() {
        let ctx = Context {
            breaker_tripped: true,
            failures_in_a_row: 30,
            ..ctx()
        };
        let played = play(vec![retry(500, None)], ctx, &RetryBudget::default()).await;
        match played.last {
            Action::StopRun { run, row } => {
                assert!(run.contains("30 requests in a row"), "{run}");
                assert!(row.contains("HTTP 500"), "{row}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_budget_ends_retries_but_429s_are_not_budgeted() {
        let budget = RetryBudget::default();
        while budget.try_spend(1) {}
        let played = play(vec![retry(503, None)], ctx(), &budget).await;
        assert!(matches!(played.last, Action::GiveUp(ref m) if m.contains("budget")));
        let played = play(vec![retry(429, None), created()], ctx(), &budget).await;
        assert!(matches!(played.last, Action::Finish(_)), "{played:?}");
    }

    /// faults.rs: revoked credentials stop the run within seconds: a renewable token is
    /// renewed a few times, then the refusal is final.
    #[tokio::test(start_paused = true)]
    async fn a_refused_token_is_renewed_then_the_refusal_is_final() {
        let ctx = Context {
            renewable: true,
            ..ctx()
        };
        let played = play(vec![refused(401), created()], ctx, &RetryBudget::default()).await;
        assert!(matches!(
            played.last,
            Action::Finish(Verdict::Created { .. })
        ));
        assert_eq!(played.renewals, 1);
        let script = (0..5).map(|_| refused(401)).collect();
        let played = play(script, ctx, &RetryBudget::default()).await;
        assert!(matches!(played.last, Action::Finish(Verdict::Fatal { .. })));
        assert_eq!(played.renewals, MAX_RENEWALS);
        let played = play(
            vec![refused(403)],
            super::tests::ctx(),
            &RetryBudget::default(),
        )
        .await;
        assert!(
            matches!(played.last, Action::Finish(Verdict::Fatal { .. })),
            "fixed credentials cannot be renewed"
        );
    }

    #[test]
    fn only_answers_that_may_have_acted_leave_doubt() {
        assert!(AttemptEnd::ServerError.leaves_doubt());
        assert!(AttemptEnd::NoAnswer.leaves_doubt());
        assert!(!AttemptEnd::NotConnected.leaves_doubt());
        assert!(AttemptEnd::NotConnected.is_failure());
        assert!(!AttemptEnd::Throttled.is_failure());
    }

    #[test]
    fn schedule_is_bounded_and_jittered_below_the_ceiling() {
        let policy = RetryPolicy {
            max_retries: 4,
            ..RetryPolicy::default()
        };
        let delays: Vec<Duration> = policy.schedule().collect();
        assert_eq!(delays.len(), 4);
        for (i, d) in delays.iter().enumerate() {
            assert!(*d <= policy.base_delay * 2u32.pow(i as u32), "{i}: {d:?}");
        }
    }

    fn person(email: &str, username: Option<&str>) -> Person {
        let mut fields = crate::model::UserFields::default();
        fields.set(Field::Email, Some(email.to_string()));
        fields.set(Field::Username, username.map(str::to_string));
        Person {
            row: 2,
            identity: email.to_string(),
            fields,
            body: Vec::new(),
            content_hash: 0,
            cells: Vec::new(),
            generated_password: false,
            remote_id: None,
            uncertain: false,
            warnings: Vec::new(),
        }
    }

    fn said(field: Option<&str>, message: &str) -> Vec<ApiError> {
        vec![ApiError {
            field: field.map(str::to_string),
            message: message.into(),
        }]
    }

    #[test]
    fn a_conflict_is_the_identitys_only_when_the_answer_says_so() {
        let schema = crate::targets::sandbox::SandboxSchema::new();
        let ann = person("ann@x.io", Some("ann"));
        let on = |errors: Vec<ApiError>, declared| conflict_on(&schema, &errors, &ann, declared);
        assert_eq!(
            on(said(None, "ann@x.io is already taken"), false),
            ConflictOn::Identity
        );
        assert_eq!(
            on(said(Some("email"), "already exists"), false),
            ConflictOn::Identity
        );
        assert_eq!(
            on(said(Some("username"), "already exists"), false),
            ConflictOn::Field(Field::Username),
            "another person's user name is not this person"
        );
        assert_eq!(on(said(None, "conflict"), false), ConflictOn::Unknown);
        assert_eq!(on(said(None, "conflict"), true), ConflictOn::Identity);
        let bo = person("bo@x.io", None);
        assert_eq!(
            conflict_on(&schema, &said(Some("userName"), "taken"), &bo, false),
            ConflictOn::Identity,
            "the user name sent was the email"
        );
    }
}
