//! An in-process fake "create user" API for trying roster, its tests and its benches, without
//! credentials and without anything leaving the machine.
//!
//! `POST /users` takes `{"email","firstName","lastName","username","phone","role","password"}`
//! and answers 201 with the user and its `id`; 400 RFC 7807 problem details with an `errors`
//! map for invalid fields; 409 for an email already taken. Optional faults: a rate limit
//! (429 + `Retry-After`), random 5xx and 429s, the first N attempts per email failing, a
//! delay, connections reset before processing, and **commit-then-drop** (the user is created,
//! then the connection closes without an answer). `Idempotency-Key` is honoured (a repeated
//! key with the same body replays the creation; with another body, 422), and `GET /users?email=`
//! looks a user up (as Cryptlex's `GET /v3/users?email=` and SCIM's filter do in their profiles).
//! With a token configured, requests need `Authorization: Bearer <token>` (else 401).
//! `GET /users` lists the store and `GET /_sandbox/stats` the counters, for tests.
//!
//! Every vendor profile is served too, under its name (`/cl2c/v1/cl2c/user`,
//! `/crayon/api/v1/connect/token/`…, see [`profiles`]), with that API's shapes and
//! authentication against [`SandboxCredentials`]; `profile` also serves one at the root.

mod lifecycle;
pub mod profiles;
mod rules;

pub use profiles::Profile;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use profiles::{AuthKind, problem};
use serde::Serialize;
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
    /// A profile also served at the root (the plain sandbox when `None`).
    pub profile: Option<Profile>,
    /// The credentials the vendor profiles accept.
    pub credentials: SandboxCredentials,
    /// Lifetime of issued tokens, in seconds.
    pub token_ttl_secs: u64,
    /// Issued tokens stop working after this many requests (to test renewal after a 401).
    pub token_uses: Option<u32>,
    /// Users a profile creates before answering Cradl's 429 "Limit Exceeded".
    pub quota: Option<u64>,
    /// Probability of answering 429 (with `Retry-After`) before doing anything.
    pub throttle_rate: f64,
    /// Probability of closing the connection without an answer before doing anything.
    pub reset_rate: f64,
    /// Probability of creating the user, then closing the connection without an answer.
    pub drop_after_commit_rate: f64,
    /// Create again when an email is taken (as APIs without a uniqueness rule do), so that a
    /// client's double send shows as a second creation instead of a 409.
    pub allow_duplicates: bool,
    /// The first N creations of each email are committed and then their answer is lost (the
    /// connection closes): deterministic lost answers for tests.
    pub drop_first_answers: u32,
    /// Creates handled at once (0 = any number), as a server with K workers or one database
    /// writer: beyond K in flight, requests queue (latency climbs with the queue) and some of
    /// them, their user created, answer 500 (`database is locked`), with the probability
    /// (in flight − K) / in flight.
    pub capacity: u32,
    /// `PATCH` of a user by id answers 501 Not Implemented, as a SCIM server without PATCH
    /// support does (its `ServiceProviderConfig` says `patch.supported: false`).
    pub no_patch: bool,
}

/// The credentials the vendor profiles accept (defaults: `sandbox-…`).
#[derive(Debug, Clone)]
pub struct SandboxCredentials {
    /// Bearer token (Cryptlex, SCIM; also accepted as a ready token by the token profiles).
    pub token: String,
    /// cl2c `X-API-Key`.
    pub api_key: String,
    /// cl2c `tenant`.
    pub tenant: String,
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: String,
    /// Password-grant user name.
    pub username: String,
    /// Password-grant password.
    pub password: String,
    /// Nexway realm.
    pub realm: String,
}

impl Default for SandboxCredentials {
    fn default() -> Self {
        SandboxCredentials {
            token: "sandbox-token".into(),
            api_key: "sandbox-key".into(),
            tenant: "sandbox-tenant".into(),
            client_id: "sandbox-client".into(),
            client_secret: "sandbox-secret".into(),
            username: "sandbox-user".into(),
            password: "sandbox-password".into(),
            realm: "sandbox".into(),
        }
    }
}

impl SandboxCredentials {
    /// Each credential beside the `ROSTER_*` variable that carries it.
    fn slots(&mut self) -> [(&'static str, &mut String); 8] {
        [
            ("ROSTER_TOKEN", &mut self.token),
            ("ROSTER_API_KEY", &mut self.api_key),
            ("ROSTER_TENANT", &mut self.tenant),
            ("ROSTER_CLIENT_ID", &mut self.client_id),
            ("ROSTER_CLIENT_SECRET", &mut self.client_secret),
            ("ROSTER_USERNAME", &mut self.username),
            ("ROSTER_PASSWORD", &mut self.password),
            ("ROSTER_REALM", &mut self.realm),
        ]
    }

    /// The `ROSTER_*` variables that authenticate against these credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut copy = self.clone();
        copy.slots()
            .into_iter()
            .map(|(name, value)| (name, value.clone()))
            .collect()
    }

    /// These credentials with each variable that `lookup` finds non-empty taking its place.
    pub fn overridden_by(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        for (name, slot) in self.slots() {
            if let Some(value) = lookup(name).filter(|v| !v.is_empty()) {
                *slot = value;
            }
        }
        self
    }
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
            profile: None,
            credentials: SandboxCredentials::default(),
            token_ttl_secs: 3600,
            token_uses: None,
            quota: None,
            throttle_rate: 0.0,
            reset_rate: 0.0,
            drop_after_commit_rate: 0.0,
            capacity: 0,
            allow_duplicates: false,
            drop_first_answers: 0,
            no_patch: false,
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
    /// The profile that stored it.
    #[serde(skip)]
    pub profile: Option<Profile>,
    /// A password was given (in the body, or set afterwards).
    #[serde(skip)]
    pub has_password: bool,
    /// A hash of the password the sandbox received, to check what a password file says.
    #[serde(skip)]
    pub password_hash: Option<u64>,
    /// Status as sent (`ENABLED`, `DISABLED`), when the API has one.
    #[serde(skip)]
    pub status: Option<String>,
    /// The resource as last sent, the password left out (what the store does not model:
    /// title, roles, metadata), in the profile's own shape.
    #[serde(skip)]
    pub resource: serde_json::Value,
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
    /// Tokens issued by the token endpoints.
    pub tokens_issued: u64,
    /// Requests refused for their credentials.
    pub unauthorized: u64,
    /// Passwords set by a follow-up call.
    pub passwords_set: u64,
    /// Connections closed without an answer (reset, or after the commit).
    pub dropped: u64,
    /// Creations replayed for a repeated `Idempotency-Key`.
    pub replayed: u64,
    /// Of the faults, 500s answered after the user was created (over `capacity`).
    pub failed_after_commit: u64,
    /// Changes to users that changed something (`PATCH`/`PUT` by id).
    pub updated: u64,
    /// Users deleted.
    pub deleted: u64,
}

/// One request to a create endpoint, as the sandbox saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Arrival, in milliseconds since the sandbox started.
    pub at_ms: u64,
    /// The answer's status; 0 when the connection was closed without one.
    pub status: u16,
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
    tokens_issued: AtomicU64,
    unauthorized: AtomicU64,
    passwords_set: AtomicU64,
    dropped: AtomicU64,
    replayed: AtomicU64,
    failed_after_commit: AtomicU64,
    updated: AtomicU64,
    deleted: AtomicU64,
}

/// Unwound out of a handler to close its connection without an answer. `resume_unwind` skips
/// the panic hook, so nothing is printed; the connection's task ends and the socket closes.
struct DropConnection;

struct IssuedToken {
    expires: std::time::Instant,
    uses_left: Option<u32>,
}

struct Shared {
    config: SandboxConfig,
    users: Mutex<HashMap<(Profile, String), StoredUser>>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
    refresh_tokens: Mutex<std::collections::HashSet<String>>,
    revoked: std::sync::atomic::AtomicBool,
    attempts: Mutex<HashMap<String, u32>>,
    /// Creations per email (more than one only with `allow_duplicates`).
    creations: Mutex<HashMap<String, u32>>,
    /// Changes that changed something, and deletions, per email.
    changes: Mutex<HashMap<String, u32>>,
    /// `Idempotency-Key` → (body hash, email created under it).
    idempotency: Mutex<HashMap<String, (u64, String)>>,
    log: Mutex<Vec<LoggedRequest>>,
    started: std::time::Instant,
    rng: Mutex<fastrand::Rng>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// `capacity` workers.
    workers: Option<tokio::sync::Semaphore>,
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
        let workers =
            (config.capacity > 0).then(|| tokio::sync::Semaphore::new(config.capacity as usize));
        let shared = Arc::new(Shared {
            rng: Mutex::new(fastrand::Rng::with_seed(config.seed)),
            config,
            users: Mutex::default(),
            tokens: Mutex::default(),
            refresh_tokens: Mutex::default(),
            revoked: Default::default(),
            attempts: Mutex::default(),
            creations: Mutex::default(),
            changes: Mutex::default(),
            idempotency: Mutex::default(),
            log: Mutex::default(),
            started: std::time::Instant::now(),
            limiter,
            workers,
            counters: Counters::default(),
        });
        let mut app = Router::new();
        for profile in Profile::ALL {
            let routes = profile_routes(profile).merge(lifecycle::user_routes(profile));
            app = app.nest(&format!("/{}", profile.name()), routes);
        }
        let root = shared.config.profile.unwrap_or(Profile::Sandbox);
        let app = app
            .merge(profile_routes(root))
            .merge(lifecycle::user_routes(root))
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

    /// The users one profile stored, ordered by email.
    pub fn users_of(&self, profile: Profile) -> Vec<StoredUser> {
        sorted_users(&self.shared)
            .into_iter()
            .filter(|u| u.profile.unwrap_or(Profile::Sandbox) == profile)
            .collect()
    }

    /// Stores a user as if created earlier, so an import meets an existing account.
    pub fn seed_user(&self, profile: Profile, email: &str) {
        let n = self.shared.counters.created.fetch_add(1, Ordering::Relaxed) + 1;
        let email = email.to_lowercase();
        let user = StoredUser {
            id: profile.id(n),
            email: email.clone(),
            first_name: "Seeded".into(),
            last_name: "User".into(),
            username: Some(email.clone()),
            phone: None,
            role: "user".into(),
            profile: Some(profile),
            has_password: false,
            password_hash: None,
            status: None,
            resource: serde_json::json!({"email": email, "firstName": "Seeded", "lastName": "User"}),
        };
        let mut users = self.shared.users.lock().unwrap_or_else(|p| p.into_inner());
        users.insert((profile, email), user);
    }

    /// Whether the user `email` of `profile` holds exactly `password` (the sandbox keeps a
    /// hash of every password it received, at creation or set afterwards).
    pub fn holds_password(&self, profile: Profile, email: &str, password: &str) -> bool {
        let users = lock(&self.shared.users);
        users
            .get(&(profile, email.to_lowercase()))
            .and_then(|u| u.password_hash)
            == Some(password_hash(password))
    }

    /// From now on every credential is refused (credentials revoked mid-run).
    pub fn revoke_credentials(&self) {
        self.shared.revoked.store(true, Ordering::SeqCst);
    }

    /// The counters so far.
    pub fn stats(&self) -> SandboxStats {
        snapshot(&self.shared.counters)
    }

    /// Creations per email (lower-cased); above 1 only with `allow_duplicates`.
    pub fn creations(&self) -> HashMap<String, u32> {
        lock(&self.shared.creations).clone()
    }

    /// Every request to a create endpoint, in arrival order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        let mut log = lock(&self.shared.log).clone();
        log.sort_by_key(|r| r.at_ms);
        log
    }

    /// Changes by id that changed something (updates, deactivations, reactivations) and
    /// deletions, per email (lower-cased): a repeated change that finds the user as asked is
    /// not counted.
    pub fn changes(&self) -> HashMap<String, u32> {
        lock(&self.shared.changes).clone()
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

/// What the sandbox keeps of a password: a hash, enough to compare.
fn password_hash(password: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(password.as_bytes())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        tokens_issued: get(&c.tokens_issued),
        unauthorized: get(&c.unauthorized),
        passwords_set: get(&c.passwords_set),
        dropped: get(&c.dropped),
        failed_after_commit: get(&c.failed_after_commit),
        updated: get(&c.updated),
        deleted: get(&c.deleted),
        replayed: get(&c.replayed),
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

/// The routes of one profile: create, token endpoint, Crayon's set-password call.
fn profile_routes(profile: Profile) -> Router<Arc<Shared>> {
    let mut router = Router::new();
    for path in profile.create_paths() {
        let create = post(
            move |State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes| {
                create_user(shared, profile, headers, body)
            },
        );
        let create = match profile {
            Profile::Sandbox | Profile::Cryptlex | Profile::Scim | Profile::Nexway => {
                create.get(move |State(shared): State<Arc<Shared>>, query: axum::extract::RawQuery| async move {
                    look_up(&shared, profile, query.0.as_deref().unwrap_or(""))
                })
            }
            _ => create,
        };
        router = router.route(path, create);
    }
    for path in profile.token_paths() {
        router = router.route(
            path,
            post(
                move |State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes| async move {
                    issue_token(&shared, profile, &headers, &body)
                },
            ),
        );
    }
    if profile == Profile::Crayon {
        // `GET /api/v1/users/user/?userName=…`: the user holding a user name.
        for path in ["/api/v1/users/user/", "/api/v1/users/user"] {
            router = router.route(
                path,
                get(
                    move |State(shared): State<Arc<Shared>>,
                          headers: HeaderMap,
                          query: axum::extract::RawQuery| async move {
                        crayon_user_by_name(&shared, &headers, query.0.as_deref().unwrap_or(""))
                    },
                ),
            );
        }
        for path in [
            "/api/v1/users/{id}/changepassword/",
            "/api/v1/users/{id}/changepassword",
        ] {
            router = router.route(path, put(change_password));
        }
    }
    router
}

/// Whether a request carries credentials this profile accepts.
fn authorized(shared: &Shared, profile: Profile, headers: &HeaderMap) -> bool {
    let config = &shared.config;
    let open_sandbox = matches!(profile.auth(), AuthKind::Optional) && config.token.is_none();
    if shared.revoked.load(Ordering::SeqCst) {
        return open_sandbox;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let creds = &config.credentials;
    match profile.auth() {
        AuthKind::Optional => match &config.token {
            Some(token) => bearer == Some(token.as_str()),
            None => true,
        },
        AuthKind::Bearer => bearer == Some(creds.token.as_str()),
        AuthKind::ApiKey => {
            let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
            get("tenant") == Some(creds.tenant.as_str())
                && get("x-api-key") == Some(creds.api_key.as_str())
        }
        AuthKind::Issued => bearer.is_some_and(|b| b == creds.token || use_token(shared, b)),
    }
}

/// Spends one use of an issued token; false when it is unknown, expired or used up.
fn use_token(shared: &Shared, token: &str) -> bool {
    let mut tokens = shared.tokens.lock().unwrap_or_else(|p| p.into_inner());
    let Some(issued) = tokens.get_mut(token) else {
        return false;
    };
    if std::time::Instant::now() >= issued.expires {
        return false;
    }
    match &mut issued.uses_left {
        Some(0) => false,
        Some(n) => {
            *n -= 1;
            true
        }
        None => true,
    }
}

/// `Authorization: Basic` → (id, secret).
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// The token endpoints: Crayon's password grant, Cradl's client credentials (both forms with
/// HTTP Basic), Nexway's JSON `{realmName, grantType, …}`.
fn issue_token(shared: &Shared, profile: Profile, headers: &HeaderMap, body: &[u8]) -> Response {
    let creds = &shared.config.credentials;
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str);
    let client_ok = basic_auth(headers)
        .is_some_and(|(id, secret)| id == creds.client_id && secret == creds.client_secret);
    let accepted = !shared.revoked.load(Ordering::SeqCst)
        && match profile {
            Profile::Crayon => {
                client_ok
                    && field("grant_type") == Some("password")
                    && field("username") == Some(creds.username.as_str())
                    && field("password") == Some(creds.password.as_str())
            }
            Profile::Cradl => client_ok && field("grant_type") == Some("client_credentials"),
            Profile::Nexway => {
                let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let get = |k: &str| json.get(k).and_then(|v| v.as_str());
                // A client id, when sent, must come with its right secret whatever the grant.
                let client_ok = match get("clientId") {
                    Some(id) => {
                        id == creds.client_id
                            && get("clientSecret") == Some(creds.client_secret.as_str())
                    }
                    None => true,
                };
                get("realmName") == Some(creds.realm.as_str())
                    && client_ok
                    && match get("grantType") {
                        Some("client_credentials") => {
                            get("clientId") == Some(creds.client_id.as_str())
                                && get("clientSecret") == Some(creds.client_secret.as_str())
                        }
                        Some("password") => {
                            get("username") == Some(creds.username.as_str())
                                && get("password") == Some(creds.password.as_str())
                        }
                        Some("refresh_token") => get("refreshToken").is_some_and(|r| {
                            shared
                                .refresh_tokens
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .contains(r)
                        }),
                        _ => false,
                    }
            }
            _ => false,
        };
    if !accepted {
        shared.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({"error": "invalid_client", "error_description": "the credentials were refused"});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let n = shared
        .counters
        .tokens_issued
        .fetch_add(1, Ordering::Relaxed)
        + 1;
    let token = format!("{}-token-{n}-{:08x}", profile.name(), fastrand::u32(..));
    let ttl = shared.config.token_ttl_secs.max(1);
    shared
        .tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            token.clone(),
            IssuedToken {
                expires: std::time::Instant::now() + Duration::from_secs(ttl),
                uses_left: shared.config.token_uses,
            },
        );
    let body = match profile {
        Profile::Crayon => serde_json::json!({
            "AccessToken": token, "IdentityToken": null, "Error": null,
            "ExpiresIn": ttl, "TokenType": "Bearer", "RefreshToken": null,
        }),
        Profile::Nexway => {
            let refresh = format!("refresh-{n}");
            shared
                .refresh_tokens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(refresh.clone());
            serde_json::json!({
                "access_token": token, "expires_in": ttl, "refresh_expires_in": 1800,
                "refresh_token": refresh, "token_type": "bearer",
            })
        }
        _ => serde_json::json!({"access_token": token, "expires_in": ttl, "token_type": "Bearer"}),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Crayon's `PUT /api/v1/users/{id}/changepassword/` with `{UserId, NewPassword}` → `true`.
async fn change_password(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&shared, Profile::Crayon, &headers) {
        shared.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Profile::Crayon.unauthorized();
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let password = json
        .get("NewPassword")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if password.len() < 8 {
        return Profile::Crayon.refuse(rules::Refusal::Fields(vec![(
            "NewPassword",
            vec!["Passwords must be at least 8 characters.".into()],
        )]));
    }
    let mut users = shared.users.lock().unwrap_or_else(|p| p.into_inner());
    match users
        .values_mut()
        .find(|u| u.profile == Some(Profile::Crayon) && u.id == id)
    {
        Some(user) => {
            user.has_password = true;
            user.password_hash = Some(password_hash(password));
            shared
                .counters
                .passwords_set
                .fetch_add(1, Ordering::Relaxed);
            (StatusCode::OK, axum::Json(true)).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"ErrorCode": "NotFound", "Message": "User not found"})),
        )
            .into_response(),
    }
}

/// Logs the request's arrival and answer around [`create_or_refuse`]; a dropped connection is
/// logged with status 0, then unwound.
async fn create_user(
    shared: Arc<Shared>,
    profile: Profile,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at_ms = shared.started.elapsed().as_millis() as u64;
    let answer = create_or_refuse(&shared, profile, headers, body).await;
    let status = answer.as_ref().map_or(0, |r| r.status().as_u16());
    lock(&shared.log).push(LoggedRequest { at_ms, status });
    match answer {
        Some(response) => response,
        None => {
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            std::panic::resume_unwind(Box::new(DropConnection))
        }
    }
}

/// Rolls the dice for one fault of probability `p`.
fn roll(shared: &Shared, p: f64) -> bool {
    p > 0.0 && lock(&shared.rng).f64() < p
}

/// The create endpoint's work; `None` closes the connection without an answer.
async fn create_or_refuse(
    shared: &Arc<Shared>,
    profile: Profile,
    headers: HeaderMap,
    body: Bytes,
) -> Option<Response> {
    let counters = &shared.counters;
    let _in_flight = InFlight::enter(counters);
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let config = &shared.config;
    if roll(shared, config.reset_rate) {
        return None;
    }
    if !authorized(shared, profile, &headers) {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        return Some(profile.unauthorized());
    }
    // Over capacity: wait for a worker (the queue is the latency), and maybe fail after the
    // commit, as a server whose database is locked does.
    let in_flight = counters.in_flight.load(Ordering::Acquire);
    let fail_after_commit = config.capacity > 0
        && in_flight > u64::from(config.capacity)
        && roll(
            shared,
            (in_flight - u64::from(config.capacity)) as f64 / in_flight as f64,
        );
    let _worker = match &shared.workers {
        Some(workers) => Some(workers.acquire().await.ok()?),
        None => None,
    };
    if !config.delay.is_zero() {
        tokio::time::sleep(config.delay).await;
    }
    let over_limit = shared.limiter.as_ref().is_some_and(|l| l.check().is_err());
    if over_limit || roll(shared, config.throttle_rate) {
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
        return Some(response);
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
            return Some(problem(
                status,
                "Injected fault",
                "the sandbox failed on purpose",
                None,
            ));
        }
    }
    // Count attempts per email before judging the body, so refused requests count too.
    let raw = profile.read(&body);
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
    let input = match raw.and_then(|raw| profile.validate(raw)) {
        Ok(input) => input,
        Err(refusal) => {
            counters.invalid.fetch_add(1, Ordering::Relaxed);
            return Some(profile.refuse(refusal));
        }
    };
    if attempt <= config.fail_first {
        counters.faults.fetch_add(1, Ordering::Relaxed);
        return Some(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Injected fault",
            "try again",
            None,
        ));
    }
    let key = (profile, input.email.clone());
    // IETF Idempotency-Key draft: the same key and body replay the first answer; the same
    // key with another body is refused.
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body_hash = xxhash_rust::xxh3::xxh3_64(&body);
    if let Some(idem) = &idempotency_key {
        let seen = lock(&shared.idempotency).get(idem).cloned();
        match seen {
            Some((hash, _)) if hash != body_hash => {
                return Some(problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Idempotency key reused",
                    "this Idempotency-Key was used with a different request body",
                    None,
                ));
            }
            Some((_, email)) => {
                if let Some(user) = lock(&shared.users).get(&(profile, email)).cloned() {
                    counters.replayed.fetch_add(1, Ordering::Relaxed);
                    return Some(profile.created(&user));
                }
            }
            None => {}
        }
    }
    let mut users = lock(&shared.users);
    if users.contains_key(&key) && !config.allow_duplicates {
        counters.conflicts.fetch_add(1, Ordering::Relaxed);
        drop(users);
        return Some(profile.duplicate(&input.email));
    }
    // A user name is unique too where the API has one: another person holding it is a
    // refusal of this row's user name, not "the user exists".
    if let Some(name) = input
        .username
        .as_deref()
        .filter(|_| profile.has_usernames())
        && let Some(holder) = users.values().find(|u| {
            u.profile == Some(profile)
                && u.email != input.email
                && u.username
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    {
        let _ = holder;
        counters.conflicts.fetch_add(1, Ordering::Relaxed);
        drop(users);
        return Some(profile.username_taken(name));
    }
    if let Some(quota) = config.quota
        && users.keys().filter(|(p, _)| *p == profile).count() as u64 >= quota
    {
        drop(users);
        counters.throttled.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({"message": "Limit Exceeded"});
        return Some((StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response());
    }
    let n = counters.created.fetch_add(1, Ordering::Relaxed) + 1;
    let user = StoredUser {
        id: profile.id(n),
        username: input
            .username
            .or_else(|| (profile != Profile::Sandbox).then(|| input.email.clone())),
        email: input.email,
        first_name: input.first_name,
        last_name: input.last_name,
        phone: input.phone,
        role: input.role.unwrap_or_else(|| "user".to_string()),
        profile: Some(profile),
        has_password: input.password.is_some(),
        password_hash: input.password.as_deref().map(password_hash),
        status: input.status,
        resource: lifecycle::kept_resource(&body),
    };
    *lock(&shared.creations)
        .entry(user.email.clone())
        .or_insert(0) += 1;
    if let Some(idem) = idempotency_key {
        lock(&shared.idempotency).insert(idem, (body_hash, user.email.clone()));
    }
    users.insert(key, user.clone());
    drop(users);
    let creations = lock(&shared.creations)
        .get(&user.email)
        .copied()
        .unwrap_or(0);
    if creations <= config.drop_first_answers || roll(shared, config.drop_after_commit_rate) {
        return None;
    }
    if fail_after_commit {
        counters.faults.fetch_add(1, Ordering::Relaxed);
        counters.failed_after_commit.fetch_add(1, Ordering::Relaxed);
        return Some(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "database is locked",
            None,
        ));
    }
    Some(profile.created(&user))
}

/// Crayon's `GET /api/v1/users/user/?userName=x`: the User resource, or 404.
fn crayon_user_by_name(shared: &Shared, headers: &HeaderMap, query: &str) -> Response {
    if !authorized(shared, Profile::Crayon, headers) {
        return Profile::Crayon.unauthorized();
    }
    let wanted = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("userName"))
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let found = sorted_users(shared).into_iter().find(|u| {
        u.profile == Some(Profile::Crayon)
            && u.username
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&wanted))
    });
    match found {
        Some(user) => Profile::Crayon.created(&user),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"ErrorCode": "NotFound", "Message": "User not found"})),
        )
            .into_response(),
    }
}

/// `GET …?email=x` (sandbox, Cryptlex) or `?filter=userName eq "x"` (SCIM): the matching
/// users in the profile's list shape.
fn look_up(shared: &Shared, profile: Profile, query: &str) -> Response {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let wanted = params.get("email").cloned().or_else(|| {
        let filter = params.get("filter")?;
        let (_, value) = filter.split_once(" eq ")?;
        Some(value.trim().trim_matches('"').to_string())
    });
    let users: Vec<StoredUser> = sorted_users(shared)
        .into_iter()
        .filter(|u| u.profile.unwrap_or(Profile::Sandbox) == profile)
        .filter(|u| match (profile, &wanted) {
            (_, None) => true,
            // Nexway's filters match by "contains", as its reference says.
            (Profile::Nexway, Some(w)) => u.email.contains(&w.to_lowercase()),
            (_, Some(w)) => u.email.eq_ignore_ascii_case(w),
        })
        .collect();
    match profile {
        Profile::Scim => {
            let resources: Vec<serde_json::Value> = users
                .iter()
                .map(|u| serde_json::json!({"id": u.id, "userName": u.email}))
                .collect();
            axum::Json(serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": resources.len(), "Resources": resources,
            }))
            .into_response()
        }
        Profile::Cryptlex => axum::Json(
            users
                .iter()
                .map(|u| serde_json::json!({"id": u.id, "email": u.email, "firstName": u.first_name, "lastName": u.last_name}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        _ => axum::Json(users).into_response(),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(snapshot(&shared.counters)).into_response()
}
