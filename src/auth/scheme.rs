//! How a target's requests are authenticated: nothing, fixed headers, or a fetched token.

use super::token::{Lease, TokenError, TokenSource};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// A target's authentication.
pub enum Authenticator {
    /// No credentials.
    None,
    /// Fixed headers (`Authorization: Bearer …`, `X-API-Key`, `tenant`), values secret.
    Headers(Vec<(HeaderName, SecretString)>),
    /// A token from a token endpoint, renewed as needed.
    Token(Arc<TokenSource>),
    /// Credentials are missing: sending is impossible (a dry run or validation still works).
    Missing(String),
}

/// What a request was authorised with, so a 401 can renew exactly that token.
#[derive(Debug, Clone, Copy, Default)]
pub struct Used {
    generation: Option<u64>,
}

impl Authenticator {
    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: SecretString) -> Authenticator {
        let value = SecretString::from(format!("Bearer {}", token.expose_secret()));
        Authenticator::Headers(vec![(http::header::AUTHORIZATION, value)])
    }

    /// The secret values of fixed headers (whole, and after their scheme word), which need
    /// no token fetched: for redacting what a dry run prints.
    pub fn header_secrets(&self) -> Vec<String> {
        let mut values = Vec::new();
        if let Authenticator::Headers(headers) = self {
            for (_, value) in headers {
                super::push_header_secret(&mut values, value.expose_secret());
            }
        }
        values
    }

    /// Every secret value requests are authorised with, tokens held now included.
    pub async fn secrets(&self) -> Vec<String> {
        match self {
            Authenticator::Token(source) => source.secrets().await,
            _ => self.header_secrets(),
        }
    }

    /// Whether a 401 can be cured by renewing the token.
    pub fn renewable(&self) -> bool {
        matches!(self, Authenticator::Token(_))
    }

    /// Fails when credentials are missing, and fetches the first token, so wrong credentials
    /// stop the run before any row is sent.
    pub async fn check(&self) -> Result<(), AuthError> {
        match self {
            Authenticator::Missing(message) => Err(AuthError::Missing(message.clone())),
            Authenticator::Token(source) => source.lease().await.map(|_| ()).map_err(Into::into),
            _ => Ok(()),
        }
    }

    /// Adds the credentials to a request's headers.
    pub async fn authorize(&self, headers: &mut HeaderMap) -> Result<Used, AuthError> {
        match self {
            Authenticator::None => Ok(Used::default()),
            Authenticator::Headers(pairs) => {
                for (name, value) in pairs {
                    let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| {
                        AuthError::Missing(format!("`{name}` is not a valid header value"))
                    })?;
                    value.set_sensitive(true);
                    headers.insert(name.clone(), value);
                }
                Ok(Used::default())
            }
            Authenticator::Token(source) => {
                let lease = source.lease().await?;
                Ok(with_lease(headers, &lease))
            }
            Authenticator::Missing(message) => Err(AuthError::Missing(message.clone())),
        }
    }

    /// The request authorised with `used` succeeded.
    pub fn confirm(&self, used: Used) {
        if let (Authenticator::Token(source), Some(generation)) = (self, used.generation) {
            source.confirm(generation);
        }
    }

    /// The request authorised with `used` got a 401: renew the token once. `Ok` means retry.
    pub async fn refused(&self, used: Used) -> Result<(), AuthError> {
        match (self, used.generation) {
            (Authenticator::Token(source), Some(generation)) => source
                .refused(generation)
                .await
                .map(|_| ())
                .map_err(Into::into),
            _ => Err(AuthError::Token(TokenError::FreshTokenRefused)),
        }
    }
}

fn with_lease(headers: &mut HeaderMap, lease: &Lease) -> Used {
    let value = format!("Bearer {}", lease.token.expose_secret());
    if let Ok(mut value) = HeaderValue::from_str(&value) {
        value.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, value);
    }
    Used {
        generation: Some(lease.generation),
    }
}

/// Why a request could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Credentials are not configured.
    #[error("{0}")]
    Missing(String),
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
}
