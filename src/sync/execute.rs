//! Sends a sync's changes (updates, reactivations, deactivations, deletions): each claimed in
//! the ledger before it leaves and settled when its answer comes, a few workers at once under
//! the run's rate limit, transient failures retried with backoff (at least the server's
//! `Retry-After`), no redirect followed.

use super::state::{ChangeEnd, SyncStore};
use crate::auth::Authenticator;
use crate::http::{Client, Sender};
use crate::submit::SubmitSettings;
use crate::targets::Api;
use crate::targets::lifecycle::{Action, Bodies, ChangeVerdict, classify_change};
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Most changes sent at once: a nightly sync changes few people, and a target's update
/// endpoints are often slower and more tightly limited than its create.
const WORKERS: usize = 4;

/// One change to send.
#[derive(Debug, Clone)]
pub struct Job {
    /// Who.
    pub identity: String,
    /// The target's id, when known (else it is looked up).
    pub remote_id: Option<String>,
    /// What.
    pub action: Action,
    /// The create body (password left out) as last sent, and as the file says now.
    pub before: Value,
    /// As the file says now.
    pub after: Value,
    /// The person's values, for a lookup.
    pub fields: crate::model::UserFields,
    /// What is recorded in the history (`{field: [before, after]}`).
    pub detail: String,
    /// The values recorded as sent once an update is done.
    pub record: std::collections::BTreeMap<String, String>,
}

/// How one change ended.
#[derive(Debug, Clone)]
pub struct Done {
    /// The job.
    pub job: Job,
    /// Its end.
    pub end: ChangeEnd,
    /// Why it did not succeed.
    pub message: Option<String>,
}

/// Why the changes stopped before the end.
#[derive(Debug, Clone)]
pub struct Fatal(pub String);

/// Shared by the workers of one execution.
pub struct Executor<'a> {
    /// The target's API.
    pub api: &'a dyn Api,
    /// Its credentials.
    pub auth: &'a Authenticator,
    /// Timeouts, rate and retries.
    pub submit: SubmitSettings,
    /// Where claims and ends are recorded.
    pub state: &'a dyn SyncStore,
    /// The sync run's id.
    pub run: i64,
    /// The HTTP client.
    pub client: Arc<Client>,
}

impl Executor<'_> {
    /// Sends every job, [`WORKERS`] at a time; a fatal answer (credentials refused) stops
    /// the rest, which are returned unsent.
    pub async fn run(&self, jobs: Vec<Job>) -> (Vec<Done>, Option<Fatal>) {
        let limiter = limiter(self.submit.rate, self.submit.burst);
        let queue = std::sync::Mutex::new(jobs.into_iter());
        let fatal: std::sync::Mutex<Option<Fatal>> = std::sync::Mutex::new(None);
        let workers = (0..WORKERS).map(|_| async {
            let mut sender = self.client.sender();
            let mut done = Vec::new();
            loop {
                if fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
                    break;
                }
                let Some(job) = queue.lock().ok().and_then(|mut q| q.next()) else {
                    break;
                };
                match self.one(&mut sender, limiter.as_ref(), job).await {
                    Ok(d) => done.push(d),
                    Err(f) => {
                        if let Ok(mut slot) = fatal.lock() {
                            slot.get_or_insert(f);
                        }
                    }
                }
            }
            done
        });
        let done = futures_util::future::join_all(workers)
            .await
            .into_iter()
            .flatten()
            .collect();
        (done, fatal.into_inner().ok().flatten())
    }

    async fn one(
        &self,
        sender: &mut Sender,
        limiter: Option<&DefaultDirectRateLimiter>,
        mut job: Job,
    ) -> Result<Done, Fatal> {
        let claim = self
            .state
            .claim(self.run, &job.identity, job.action.word(), &job.detail)
            .map_err(|e| Fatal(e.to_string()))?;
        let end = self.attempt(sender, limiter, &mut job).await;
        let (end, status, message) = match end {
            Ok(v) => v,
            Err(Fatal(message)) => {
                let _ = self
                    .state
                    .settle(claim, ChangeEnd::Failed, None, Some(&message));
                return Err(Fatal(message));
            }
        };
        self.state
            .settle(claim, end, status, message.as_deref())
            .map_err(|e| Fatal(e.to_string()))?;
        // The person's record moves on with each answer, not at the end: a run killed half
        // way through resumes with what is left.
        let recorded = match (job.action, end) {
            (Action::Update, ChangeEnd::Done) => self.state.record_sent(&job.identity, &job.record),
            (Action::Reactivate, ChangeEnd::Done) => self.state.set_status(&job.identity, "active"),
            (Action::Deactivate, ChangeEnd::Done) => {
                self.state.set_status(&job.identity, "deactivated")
            }
            // Deleted at the target, by roster or by someone else: a person still in the
            // input is created again by the next sync.
            (_, ChangeEnd::Gone) | (Action::Delete, ChangeEnd::Done) => {
                self.state.set_status(&job.identity, "deleted")
            }
            _ => Ok(()),
        };
        recorded.map_err(|e| Fatal(e.to_string()))?;
        Ok(Done { job, end, message })
    }

    async fn attempt(
        &self,
        sender: &mut Sender,
        limiter: Option<&DefaultDirectRateLimiter>,
        job: &mut Job,
    ) -> Result<(ChangeEnd, Option<u16>, Option<String>), Fatal> {
        if job.remote_id.is_none() {
            job.remote_id = self.look_up(sender, limiter, job).await?;
        }
        let Some(remote_id) = job.remote_id.clone() else {
            return Ok((
                ChangeEnd::Failed,
                None,
                Some("the target's id for this person is not known and no lookup found it".into()),
            ));
        };
        let current = match self.api.reads_before_change() {
            false => None,
            true => {
                let url = self.api.user_url(&remote_id).unwrap_or_default();
                match self.send(sender, limiter, Method::GET, &url, None).await? {
                    Answer::Verdict(ChangeVerdict::Done, _, body) => {
                        serde_json::from_slice::<Value>(&body).ok()
                    }
                    Answer::Verdict(ChangeVerdict::Gone, status, _) => {
                        return Ok((
                            ChangeEnd::Gone,
                            Some(status),
                            Some("the target no longer holds this user".into()),
                        ));
                    }
                    Answer::Verdict(_, status, body) => {
                        return Ok((
                            ChangeEnd::Failed,
                            Some(status),
                            Some(format!(
                                "reading the user first: HTTP {status}: {}",
                                crate::http::problem::summary(&body)
                            )),
                        ));
                    }
                    Answer::Failed(message) => return Ok((ChangeEnd::Failed, None, Some(message))),
                }
            }
        };
        let bodies = Bodies {
            before: &job.before,
            after: &job.after,
            current: current.as_ref(),
            user: &job.fields,
        };
        let change = match self.api.change(job.action, &remote_id, bodies) {
            Ok(change) => change,
            Err(why) => return Ok((ChangeEnd::Refused, None, Some(why))),
        };
        let mut answer = self
            .send(sender, limiter, change.method, &change.url, change.body)
            .await?;
        if let Answer::Verdict(ChangeVerdict::Rejected { .. }, 405 | 501, _) = answer {
            // The server does not take this method (SCIM's PATCH is optional): read the user
            // and send the target's fallback, when it has one.
            let url = self.api.user_url(&remote_id).unwrap_or_default();
            let read = match &current {
                Some(current) => Some(current.clone()),
                None => match self.send(sender, limiter, Method::GET, &url, None).await? {
                    Answer::Verdict(ChangeVerdict::Done, _, body) => {
                        serde_json::from_slice(&body).ok()
                    }
                    _ => None,
                },
            };
            let bodies = Bodies {
                before: &job.before,
                after: &job.after,
                current: read.as_ref(),
                user: &job.fields,
            };
            if let Some(fallback) = self.api.fallback(job.action, &remote_id, bodies) {
                answer = self
                    .send(
                        sender,
                        limiter,
                        fallback.method,
                        &fallback.url,
                        fallback.body,
                    )
                    .await?;
            }
        }
        match answer {
            Answer::Verdict(ChangeVerdict::Done, status, _) => {
                Ok((ChangeEnd::Done, Some(status), None))
            }
            Answer::Verdict(ChangeVerdict::Gone, status, _) => Ok((
                ChangeEnd::Gone,
                Some(status),
                Some("the target no longer holds this user".into()),
            )),
            Answer::Verdict(ChangeVerdict::Rejected { message }, status, _) => {
                Ok((ChangeEnd::Refused, Some(status), Some(message)))
            }
            Answer::Verdict(_, status, body) => Ok((
                ChangeEnd::Failed,
                Some(status),
                Some(format!(
                    "HTTP {status}: {}",
                    crate::http::problem::summary(&body)
                )),
            )),
            Answer::Failed(message) => Ok((ChangeEnd::Failed, None, Some(message))),
        }
    }

    /// The remote id of a person the ledger holds without one (recorded as `exists`).
    async fn look_up(
        &self,
        sender: &mut Sender,
        limiter: Option<&DefaultDirectRateLimiter>,
        job: &Job,
    ) -> Result<Option<String>, Fatal> {
        let Some(url) = self.api.lookup_url(&job.identity, &job.fields) else {
            return Ok(None);
        };
        Ok(
            match self.send(sender, limiter, Method::GET, &url, None).await? {
                Answer::Verdict(ChangeVerdict::Done, _, body) => {
                    self.api.lookup_id(&body, &job.identity)
                }
                _ => None,
            },
        )
    }

    /// Sends one request, retrying transient failures; a fatal answer is an `Err`.
    async fn send(
        &self,
        sender: &mut Sender,
        limiter: Option<&DefaultDirectRateLimiter>,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, Fatal> {
        let parsed = url::Url::parse(url).map_err(|e| {
            Fatal(format!(
                "`{}` is not a URL: {e}",
                crate::http::redact_query(url)
            ))
        })?;
        let body = Bytes::from(body.unwrap_or_default());
        let retry = self.submit.retry;
        let mut renewed = false;
        let mut attempt = 0u32;
        loop {
            if let Some(limiter) = limiter {
                limiter.until_ready().await;
            }
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::ACCEPT,
                HeaderValue::from_static("application/json"),
            );
            if !body.is_empty() {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            let used = self
                .auth
                .authorize(&mut headers)
                .await
                .map_err(|e| Fatal(e.to_string()))?;
            let sent = sender
                .send(method.clone(), &parsed, headers, body.clone())
                .await;
            let wait = match sent {
                Ok(answer) => {
                    if answer.status == 401 && self.auth.renewable() && !renewed {
                        renewed = true;
                        self.auth
                            .refused(used)
                            .await
                            .map_err(|e| Fatal(e.to_string()))?;
                        continue;
                    }
                    let verdict = classify_change(answer.status, &answer.headers, &answer.body);
                    match verdict {
                        ChangeVerdict::Fatal { message } => return Err(Fatal(message)),
                        ChangeVerdict::Retry { wait } if attempt < retry.max_retries => wait,
                        verdict => {
                            self.auth.confirm(used);
                            return Ok(Answer::Verdict(
                                verdict,
                                answer.status,
                                answer.body.to_vec(),
                            ));
                        }
                    }
                }
                Err(e) if attempt < retry.max_retries => {
                    let _ = e;
                    None
                }
                Err(e) => return Ok(Answer::Failed(e.to_string())),
            };
            let backoff = retry
                .base_delay
                .saturating_mul(1 << attempt.min(16))
                .min(retry.max_delay);
            let pause = wait.unwrap_or(Duration::ZERO).max(backoff);
            if pause > self.submit.max_wait {
                return Ok(Answer::Failed(format!(
                    "the target asked to wait {}s, longer than --max-wait",
                    pause.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

enum Answer {
    Verdict(ChangeVerdict, u16, Vec<u8>),
    Failed(String),
}

fn limiter(rate: f64, burst: u32) -> Option<DefaultDirectRateLimiter> {
    if rate <= 0.0 {
        return None;
    }
    let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rate))?
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("max(1) is non-zero"));
    Some(RateLimiter::direct(quota))
}
