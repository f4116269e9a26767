//! Access tokens fetched from a token endpoint, shared by every worker.
//!
//! One [`TokenSource`] per run: the first request fetches a token, every worker reuses it, it
//! is renewed shortly before it expires, and after a 401 it is renewed once — whoever sees the
//! 401 first renews, the others wait for and reuse the new token (single flight).
//!
//! Why not the `oauth2` crate: its standard token response needs snake_case `access_token` and
//! `token_type`, which Crayon's PascalCase `{AccessToken, ExpiresIn}` does not have, and Nexway's
//! token request is a JSON body rather than a form. One small client that reads every spelling,
//! with the request's dialect a [`TokenDialect`], serves all three flows.

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a token lives when the endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The longest lifetime a token is taken to have, whatever its endpoint says: it is renewed
/// at least daily.
const LONGEST_LIFETIME: Duration = Duration::from_secs(86_400);

/// A request for a token: its headers and body (the method is POST, the URL the source's).
pub struct TokenRequest {
    /// Headers, `Authorization` and `Content-Type` included.
    pub headers: HeaderMap,
    /// The body.
    pub body: String,
}

/// How a token endpoint is asked for a token: the grant and its encoding. The two RFC 6749
/// grants are here; a vendor with its own dialect (Nexway's JSON) implements it in its file.
pub trait TokenDialect: Send + Sync {
    /// The request for a new token, or (with `refresh`) for a renewal by refresh token.
    fn request(&self, refresh: Option<&SecretString>) -> TokenRequest;

    /// Whether renewals try the refresh token first (the full grant if it is refused).
    fn refreshes(&self) -> bool {
        false
    }

    /// The secret values its requests carry (client secrets, passwords), for redaction.
    fn secrets(&self) -> Vec<String>;
}

/// RFC 6749 §4.3 password grant, a form, the client in HTTP Basic (Crayon).
pub struct PasswordGrant {
    /// OAuth2 client id.
    pub client_id: SecretString,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
    /// The API user's name.
    pub username: SecretString,
    /// The API user's password.
    pub password: SecretString,
    /// Space-separated scopes.
    pub scope: Option<String>,
}

impl TokenDialect for PasswordGrant {
    fn request(&self, _refresh: Option<&SecretString>) -> TokenRequest {
        let mut fields = vec![
            ("grant_type", "password"),
            ("username", self.username.expose_secret()),
            ("password", self.password.expose_secret()),
        ];
        if let Some(scope) = &self.scope {
            fields.push(("scope", scope));
        }
        form_request(&self.client_id, &self.client_secret, &fields)
    }

    fn secrets(&self) -> Vec<String> {
        [&self.client_secret, &self.password]
            .map(|s| s.expose_secret().to_string())
            .to_vec()
    }
}

/// RFC 6749 §4.4 client credentials grant, a form, the client in HTTP Basic (Cradl).
pub struct ClientCredentials {
    /// OAuth2 client id.
    pub client_id: SecretString,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
    /// The `audience` parameter, where the server wants one.
    pub audience: Option<String>,
}

impl TokenDialect for ClientCredentials {
    fn request(&self, _refresh: Option<&SecretString>) -> TokenRequest {
        // Client authentication is HTTP Basic only (RFC 6749 §2.3: one method).
        let mut fields = vec![("grant_type", "client_credentials")];
        if let Some(audience) = &self.audience {
            fields.push(("audience", audience));
        }
        form_request(&self.client_id, &self.client_secret, &fields)
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.client_secret.expose_secret().to_string()]
    }
}

/// A form request with the client in HTTP Basic.
fn form_request(id: &SecretString, secret: &SecretString, fields: &[(&str, &str)]) -> TokenRequest {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, basic(id, secret));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    TokenRequest {
        headers,
        body: form_encode(fields),
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The endpoint refused the credentials (or answered something unreadable).
    #[error("the token endpoint {url} refused the credentials: {message}")]
    Refused {
        /// The token endpoint.
        url: String,
        /// What it said.
        message: String,
    },
    /// The endpoint could not be reached.
    #[error("cannot reach the token endpoint {url}: {message}")]
    Unreachable {
        /// The token endpoint.
        url: String,
        /// The transport error.
        message: String,
    },
    /// A token fetched right after a 401 was refused too.
    #[error("a freshly issued access token was refused as well")]
    FreshTokenRefused,
}

/// A token in use, with the generation it belongs to (to tell renewals apart).
#[derive(Clone)]
pub struct Lease {
    /// The access token.
    pub token: SecretString,
    /// Increases with every renewal.
    pub generation: u64,
}

/// Renewals after a 401 in a row, with no request succeeding in between, before the
/// credentials themselves are judged refused.
const MAX_UNCONFIRMED_RENEWALS: u32 = 3;

struct Live {
    token: SecretString,
    renew_at: Instant,
    generation: u64,
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    refresh: Option<SecretString>,
    generation: u64,
    /// Renewals after a 401 since a request last succeeded.
    unconfirmed_renewals: u32,
}

/// A shared, self-renewing access token.
pub struct TokenSource {
    url: String,
    dialect: Box<dyn TokenDialect>,
    client: std::sync::Arc<crate::http::Client>,
    state: Mutex<State>,
    /// The newest generation a request has succeeded with.
    confirmed: AtomicU64,
    fetches: AtomicU64,
}

impl TokenSource {
    /// A source fetching tokens from `url` in `dialect`, over `client`.
    pub fn new(
        url: String,
        dialect: Box<dyn TokenDialect>,
        client: std::sync::Arc<crate::http::Client>,
    ) -> TokenSource {
        TokenSource {
            url,
            dialect,
            client,
            state: Mutex::default(),
            confirmed: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        }
    }

    /// Every secret value this source knows: the grant's credentials, the client's
    /// `Authorization` header, and the tokens it holds now.
    pub async fn secrets(&self) -> Vec<String> {
        let mut values = self.dialect.secrets();
        let request = self.dialect.request(None);
        for value in request.headers.get_all(AUTHORIZATION) {
            if let Ok(text) = value.to_str() {
                super::push_header_secret(&mut values, text);
            }
        }
        let state = self.state.lock().await;
        values.extend(
            state
                .live
                .as_ref()
                .map(|l| l.token.expose_secret().to_string()),
        );
        values.extend(
            state
                .refresh
                .as_ref()
                .map(|r| r.expose_secret().to_string()),
        );
        values
    }

    /// The token endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many tokens were fetched so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current token, fetched or renewed first when needed.
    pub async fn lease(&self) -> Result<Lease, TokenError> {
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live
            && Instant::now() < live.renew_at
        {
            return Ok(Lease {
                token: live.token.clone(),
                generation: live.generation,
            });
        }
        self.renew(&mut state).await
    }

    /// A request with `generation`'s token succeeded: that token is good.
    pub fn confirm(&self, generation: u64) {
        self.confirmed.fetch_max(generation, Ordering::Relaxed);
    }

    /// The token of `generation` got a 401: renew it once (if nobody has yet) and hand back
    /// the token to retry with. Fresh tokens refused again and again, with no request
    /// succeeding in between, mean the credentials themselves are refused.
    pub async fn refused(&self, generation: u64) -> Result<Lease, TokenError> {
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live {
            if live.generation > generation {
                return Ok(Lease {
                    token: live.token.clone(),
                    generation: live.generation,
                });
            }
            if self.confirmed.load(Ordering::Relaxed) >= live.generation {
                state.unconfirmed_renewals = 0;
            }
        }
        if state.unconfirmed_renewals >= MAX_UNCONFIRMED_RENEWALS {
            tracing::warn!(
                renewals = state.unconfirmed_renewals,
                "fresh tokens refused again and again: the credentials are refused"
            );
            return Err(TokenError::FreshTokenRefused);
        }
        state.unconfirmed_renewals += 1;
        self.renew(&mut state).await
    }

    async fn renew(&self, state: &mut State) -> Result<Lease, TokenError> {
        let fetched = match state.refresh.clone().filter(|_| self.dialect.refreshes()) {
            // The refresh token first, the full grant if it is refused.
            Some(refresh) => match self.fetch(Some(&refresh)).await {
                Ok(token) => token,
                Err(_) => self.fetch(None).await?,
            },
            None => self.fetch(None).await?,
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        state.generation += 1;
        tracing::info!(
            token_url = %crate::http::redact_query(&self.url),
            generation = state.generation,
            lifetime_s = fetched.lifetime.as_secs(),
            "{}",
            match state.generation {
                1 => "token fetched",
                _ => "token renewed",
            }
        );
        // Renew a tenth of the lifetime early (at least 1 s, at most a minute).
        let margin = (fetched.lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let now = Instant::now();
        let renew_at = now
            .checked_add(fetched.lifetime.saturating_sub(margin))
            .unwrap_or(now);
        state.refresh = fetched.refresh;
        state.live = Some(Live {
            token: fetched.access.clone(),
            renew_at,
            generation: state.generation,
        });
        Ok(Lease {
            token: fetched.access,
            generation: state.generation,
        })
    }

    async fn fetch(&self, refresh: Option<&SecretString>) -> Result<Fetched, TokenError> {
        let TokenRequest { mut headers, body } = self.dialect.request(refresh);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        // A token URL may hold a secret in its query: it is never shown whole.
        let shown = crate::http::redact_query(&self.url);
        let unreachable = |message: String| TokenError::Unreachable {
            url: shown.clone(),
            message,
        };
        let url = url::Url::parse(&self.url).map_err(|e| unreachable(e.to_string()))?;
        let answer = self
            .client
            .send_once(http::Method::POST, &url, headers, body.into())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !(200..300).contains(&answer.status) {
            // A server may echo the grant it refused: its secrets are starred.
            let summary = crate::http::problem::summary(&answer.body);
            let redactor = crate::model::Redactor::new(self.dialect.secrets());
            return Err(TokenError::Refused {
                url: shown,
                message: format!("HTTP {}: {}", answer.status, redactor.scrub(&summary)),
            });
        }
        read_token(&answer.body).ok_or_else(|| TokenError::Refused {
            url: shown,
            message: "the answer holds no access token".into(),
        })
    }
}

/// `Authorization: Basic` for a client id and secret (RFC 7617), marked sensitive.
pub fn basic(id: &SecretString, secret: &SecretString) -> http::HeaderValue {
    use base64::Engine;
    let pair = format!("{}:{}", id.expose_secret(), secret.expose_secret());
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = http::HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

struct Fetched {
    access: SecretString,
    refresh: Option<SecretString>,
    lifetime: Duration,
}

/// Reads a token response in any common spelling: `access_token`, `accessToken`,
/// `AccessToken` (and the same for `expires_in` and `refresh_token`), also inside a `data`
/// envelope.
fn read_token(body: &[u8]) -> Option<Fetched> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let map = value.as_object()?;
    let map = match map.get("data").and_then(Value::as_object) {
        Some(inner) if find(inner, "accesstoken").is_some() => inner,
        _ => map,
    };
    let access = find(map, "accesstoken")
        .or_else(|| find(map, "token"))?
        .as_str()
        .filter(|s| !s.is_empty())?;
    let lifetime = find(map, "expiresin")
        .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
        .filter(|s| *s > 0.0)
        .and_then(|s| crate::http::wait::seconds_from_server(s, LONGEST_LIFETIME))
        .unwrap_or(DEFAULT_LIFETIME);
    let refresh = find(map, "refreshtoken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(SecretString::from);
    Some(Fetched {
        access: SecretString::from(access),
        refresh,
        lifetime,
    })
}

/// A key compared without case and `_`.
fn find<'a>(map: &'a serde_json::Map<String, Value>, squashed: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| {
            k.chars()
                .filter(|c| *c != '_')
                .flat_map(char::to_lowercase)
                .eq(squashed.chars())
        })
        .map(|(_, v)| v)
}

/// `application/x-www-form-urlencoded` (the `url` crate's own encoder).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_are_read_in_every_spelling() {
        let t = read_token(br#"{"access_token":"a","expires_in":60,"refresh_token":"r"}"#).unwrap();
        assert_eq!(t.access.expose_secret(), "a");
        assert_eq!(t.lifetime, Duration::from_secs(60));
        assert_eq!(t.refresh.unwrap().expose_secret(), "r");
        let t =
            read_token(br#"{"AccessToken":"b","ExpiresIn":"3600","TokenType":"Bearer"}"#).unwrap();
        assert_eq!(t.access.expose_secret(), "b");
        assert_eq!(t.lifetime, Duration::from_secs(3600));
        let t = read_token(br#"{"data":{"accessToken":"c"}}"#).unwrap();
        assert_eq!(t.access.expose_secret(), "c");
        assert_eq!(t.lifetime, DEFAULT_LIFETIME);
        assert!(read_token(br#"{"error":"invalid_client"}"#).is_none());
        let t = read_token(br#"{"access_token":"d","expires_in":1e300}"#).unwrap();
        assert_eq!(
            t.lifetime, LONGEST_LIFETIME,
            "a hostile lifetime is bounded"
        );
        let t = read_token(br#"{"access_token":"e","expires_in":"NaN"}"#).unwrap();
        assert_eq!(t.lifetime, DEFAULT_LIFETIME);
        assert!(read_token(b"not json").is_none());
    }

    #[test]
    fn forms_are_percent_encoded() {
        assert_eq!(
            form_encode(&[("username", "a b@c.co"), ("password", "p&=ß")]),
            "username=a+b%40c.co&password=p%26%3D%C3%9F"
        );
    }
}
