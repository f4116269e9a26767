//! An in-process fake "create user" API for trying roster, its tests and its benches, without
//! credentials and without anything leaving the machine.
//!
//! `POST /users` takes `{"email","firstName","lastName","username","phone","role","password"}`
//! and answers 201 with the user and its `id`; 400 RFC 7807 problem details with an `errors`
//! map for invalid fields; 409 for an email already taken. Optional faults: a rate limit
//! (429 + `Retry-After`), random 5xx, the first N attempts per email failing, a delay.
//! With a token configured, requests need `Authorization: Bearer <token>` (else 401).
//! `GET /users` lists the store and `GET /_sandbox/stats` the counters, for tests.

mod rules;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Fault and limit knobs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Requests per second allowed before answering 429 (0 = no limit).
    pub rate: f64,
    /// The `Retry-After` seconds sent with a 429.
    pub retry_after_secs: u64,
    /// Probability of answering 500/502/503 before doing anything.
    pub fail_rate: f64,
    /// The first N attempts for each email fail with 503 (deterministic faults for tests).
    pub fail_first: u32,
    /// Delay before answering each request.
    pub delay: Duration,
    /// Seed of the fault generator.
    pub seed: u64,
    /// When set, requests must carry `Authorization: Bearer <token>` or get 401.
    pub token: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            rate: 0.0,
            retry_after_secs: 1,
            fail_rate: 0.0,
            fail_first: 0,
            delay: Duration::ZERO,
            seed: 1,
            token: None,
        }
    }
}

/// A user as the sandbox stored it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoredUser {
    /// The id given at creation.
    pub id: String,
    /// Lower-cased email: the uniqueness key.
    pub email: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Login name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Role.
    pub role: String,
}

/// The sandbox's counters.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SandboxStats {
    /// Every request received on `POST /users`.
    pub requests: u64,
    /// Users created.
    pub created: u64,
    /// 409 answers.
    pub conflicts: u64,
    /// 400 answers.
    pub invalid: u64,
    /// 429 answers.
    pub throttled: u64,
    /// Injected 5xx answers.
    pub faults: u64,
    /// Most requests being handled at once.
    pub peak_in_flight: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    created: AtomicU64,
    conflicts: AtomicU64,
    invalid: AtomicU64,
    throttled: AtomicU64,
    faults: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
}

struct Shared {
    config: SandboxConfig,
    users: Mutex<HashMap<String, StoredUser>>,
    attempts: Mutex<HashMap<String, u32>>,
    rng: Mutex<fastrand::Rng>,
    limiter: Option<DefaultDirectRateLimiter>,
    counters: Counters,
}

/// A running sandbox server.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Sandbox {
    /// Starts the sandbox on `127.0.0.1:port` (0 = any free port) in the current tokio runtime.
    pub async fn start(config: SandboxConfig, port: u16) -> std::io::Result<Sandbox> {
        let limiter = (config.rate > 0.0).then(|| {
            let period = Duration::from_secs_f64(1.0 / config.rate);
            let quota = Quota::with_period(period).expect("a positive rate has a period");
            // Allow a second's worth at once, as real APIs' windows do.
            let burst = NonZeroU32::new(config.rate.ceil().max(1.0) as u32).expect("at least 1");
            RateLimiter::direct(quota.allow_burst(burst))
        });
        let shared = Arc::new(Shared {
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed)),
            config,
            users: Mutex::default(),
            attempts: Mutex::default(),
            limiter,
            counters: Counters::default(),
        });
        let app = Router::new()
            .route("/users", post(create_user).get(list_users))
            .route("/_sandbox/stats", get(stats))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Sandbox {
            addr,
            shared,
            shutdown: Some(shutdown),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give roster (`--base-url`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every stored user, ordered by email.
    pub fn users(&self) -> Vec<StoredUser> {
        sorted_users(&self.shared)
    }

    /// The counters so far.
    pub fn stats(&self) -> SandboxStats {
        snapshot(&self.shared.counters)
    }

    /// Requests received per email (lower-cased).
    pub fn attempts(&self) -> HashMap<String, u32> {
        self.shared
            .attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn sorted_users(shared: &Shared) -> Vec<StoredUser> {
    let users = shared.users.lock().unwrap_or_else(|p| p.into_inner());
    let mut list: Vec<StoredUser> = users.values().cloned().collect();
    list.sort_by(|a, b| a.email.cmp(&b.email));
    list
}

fn snapshot(c: &Counters) -> SandboxStats {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    SandboxStats {
        requests: get(&c.requests),
        created: get(&c.created),
        conflicts: get(&c.conflicts),
        invalid: get(&c.invalid),
        throttled: get(&c.throttled),
        faults: get(&c.faults),
        peak_in_flight: get(&c.peak_in_flight),
    }
}

/// Decrements the in-flight counter however the handler ends.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counters) -> Self {
        let now = c.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        c.peak_in_flight.fetch_max(now, Ordering::AcqRel);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn problem(
    status: StatusCode,
    title: &str,
    detail: &str,
    errors: Option<serde_json::Value>,
) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(errors) = errors {
        body["errors"] = errors;
    }
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

async fn create_user(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counters = &shared.counters;
    let _in_flight = InFlight::enter(counters);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let config = &shared.config;
    if let Some(token) = &config.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given.and_then(|v| v.strip_prefix("Bearer ")) != Some(token.as_str()) {
            return problem(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "missing or invalid bearer token",
                None,
            );
        }
    }
    if !config.delay.is_zero() {
        tokio::time::sleep(config.delay).await;
    }
    if let Some(limiter) = &shared.limiter
        && limiter.check().is_err()
    {
        counters.throttled.fetch_add(1, Ordering::Relaxed);
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "slow down",
            None,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(config.retry_after_secs),
        );
        return response;
    }
    if config.fail_rate > 0.0 {
        let (roll, pick) = {
            let mut rng = shared.rng.lock().unwrap_or_else(|p| p.into_inner());
            (rng.f64(), rng.usize(0..3))
        };
        if roll < config.fail_rate {
            counters.faults.fetch_add(1, Ordering::Relaxed);
            let status = [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
            ][pick];
            return problem(
                status,
                "Injected fault",
                "the sandbox failed on purpose",
                None,
            );
        }
    }
    // Count attempts per email before judging the body, so refused requests count too.
    let raw = rules::parse(&body);
    let attempt = {
        let email = match &raw {
            Ok(raw) => raw.email_key(),
            // Only a malformed body is read a second time, leniently, for its email.
            Err(_) => rules::email_of(&body),
        };
        let mut attempts = shared.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(email).or_insert(0);
        *n += 1;
        *n
    };
    let input = match raw.and_then(rules::validate) {
        Ok(input) => input,
        Err(rules::Refusal::Body(detail)) => {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            return problem(StatusCode::BAD_REQUEST, "Bad Request", &detail, None);
        }
        Err(rules::Refusal::Fields(errors)) => {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            let map: serde_json::Map<String, serde_json::Value> = errors
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            return problem(
                StatusCode::BAD_REQUEST,
                "One or more validation errors occurred.",
                "see errors",
                Some(serde_json::Value::Object(map)),
            );
        }
    };
    if attempt <= config.fail_first {
        counters.faults.fetch_add(1, Ordering::Relaxed);
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Injected fault",
            "try again",
            None,
        );
    }
    let mut users = shared.users.lock().unwrap_or_else(|p| p.into_inner());
    if users.contains_key(&input.email) {
        counters.conflicts.fetch_add(1, Ordering::Relaxed);
        drop(users);
        return problem(
            StatusCode::CONFLICT,
            "Conflict",
            "a user with this email already exists",
            None,
        );
    }
    let id = format!(
        "usr_{:06}",
        counters.created.fetch_add(1, Ordering::Relaxed) + 1
    );
    let user = StoredUser {
        id,
        email: input.email,
        first_name: input.first_name,
        last_name: input.last_name,
        username: input.username,
        phone: input.phone,
        role: input.role.unwrap_or_else(|| "user".to_string()),
    };
    users.insert(user.email.clone(), user.clone());
    drop(users);
    (StatusCode::CREATED, axum::Json(user)).into_response()
}

async fn list_users(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(sorted_users(&shared)).into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(snapshot(&shared.counters)).into_response()
}
