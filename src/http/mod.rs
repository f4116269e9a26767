//! The one HTTP stack every request goes through (creates, lookups, follow-up steps, tokens):
//! hyper's HTTP/1 client, TLS by rustls with the platform's verifier, proxies as the
//! environment names them, and the server's own words parsed ([`problem`], [`wait`]).
//!
//! Each worker holds a [`Sender`]: its own connections, one per [route](route::Route), opened
//! on first use and replaced when the server closes them. A worker sends one request at a
//! time, so a connection of its own needs no pool; a profile of a 200,000-row import showed a
//! pooled client's per-request layers (the pool checkout, redirect handling, the URL parsed
//! again) as a third of the sending threads' time.
//!
//! What no request does: follow a redirect (a request carries credentials and a person; a 3xx
//! is an answer), or read more than [`MAX_BODY`] bytes of a body.

pub mod problem;
mod route;
mod tls;
pub mod wait;

use bytes::Bytes;
use http::{HeaderMap, Method};
use route::{Connection, Route};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The user agent of every request.
pub const USER_AGENT: &str = concat!("roster/", env!("CARGO_PKG_VERSION"));

/// Most bytes of an answer's body read: a longer (or endless) body is cut there, so a hostile
/// server costs bounded memory. A user, a token or an error answer is far smaller.
pub const MAX_BODY: usize = 1024 * 1024;

/// The longest a connection may take to open (TLS and a proxy's tunnel included).
const MAX_CONNECT: Duration = Duration::from_secs(10);

/// Most connections a worker keeps (one per route: the target, a token endpoint…).
const KEPT_CONNECTIONS: usize = 4;

/// An HTTP answer, read whole (up to [`MAX_BODY`]).
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The answer's headers.
    pub headers: HeaderMap,
    /// The body, or its first [`MAX_BODY`] bytes.
    pub body: Bytes,
    /// The body was longer than [`MAX_BODY`] and was cut.
    pub truncated: bool,
}

/// Why a request got no (whole) answer, or the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// TLS or the proxy settings could not be set up (no request was made).
    #[error("{0}")]
    Setup(String),
    /// No connection could be made (name lookup, refused, TLS handshake, the proxy's tunnel):
    /// nothing was sent.
    #[error("could not connect ({0})")]
    Connect(String),
    /// No whole answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The status came, then the body was cut off.
    #[error("HTTP {status}, then the response was cut off ({reason})")]
    Cut {
        /// The status that came.
        status: u16,
        /// What went wrong.
        reason: String,
    },
    /// The connection failed after the request may have left.
    #[error("the connection failed ({0})")]
    Failed(String),
}

impl TransportError {
    /// Whether the request certainly never reached the server.
    pub fn nothing_sent(&self) -> bool {
        matches!(self, TransportError::Connect(_) | TransportError::Setup(_))
    }

    /// The status that came before the failure, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            TransportError::Cut { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What every connection of a run shares: TLS, the proxies named in the environment
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, read once) and the timeouts.
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    proxies: hyper_util::client::proxy::matcher::Matcher,
    timeout: Duration,
    connect_timeout: Duration,
}

impl Client {
    /// A client whose requests each get `timeout` for their whole answer.
    pub fn new(timeout: Duration) -> Result<Arc<Client>, TransportError> {
        Ok(Arc::new(Client {
            tls: tls::connector()?,
            proxies: hyper_util::client::proxy::matcher::Matcher::from_env(),
            timeout,
            connect_timeout: timeout.min(MAX_CONNECT),
        }))
    }

    /// A worker's sender; its connections are opened on first use, on the runtime that
    /// drives it.
    pub fn sender(self: &Arc<Self>) -> Sender {
        Sender {
            client: self.clone(),
            connections: Vec::new(),
            last: None,
        }
    }

    /// Sends one request on a connection of its own (token endpoints: rare, and wherever
    /// they are).
    pub async fn send_once(
        self: &Arc<Self>,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        self.sender().send(method, url, headers, body).await
    }

    /// Whether a proxy stands between this client and `url`.
    pub fn is_proxied(&self, url: &Url) -> bool {
        matches!(
            Route::of(self, url),
            Ok(Route::Forward { .. } | Route::Tunnel { .. })
        )
    }
}

/// How one worker sends: over connections of its own, one per route. Used by one task at a
/// time.
pub struct Sender {
    client: Arc<Client>,
    /// The newest first.
    connections: Vec<(Route, Connection)>,
    /// The route and `Host` header of the last origin sent to (`scheme://host:port`): a
    /// worker sends to one origin almost always, and working them out per request (a URL
    /// parsed again, strings formatted) cost a tenth of the e2e throughput.
    last: Option<(String, Route, http::HeaderValue)>,
}

impl Sender {
    /// Sends one request and reads its whole answer, within the client's timeout. A kept
    /// connection the server closed before the request was written is replaced once.
    pub async fn send(
        &mut self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        let origin = &url[..url::Position::BeforePath];
        let (route, host) = match &self.last {
            Some((cached, route, host)) if cached == origin => (route.clone(), host.clone()),
            _ => {
                let route = Route::of(&self.client, url)?;
                let host = route.host(url)?;
                self.last = Some((origin.to_string(), route.clone(), host.clone()));
                (route, host)
            }
        };
        let kept = self
            .connections
            .iter()
            .position(|(r, _)| *r == route)
            .map(|i| self.connections.remove(i).1);
        let sent = async {
            // Taken out while in use: a request that fails or is cut short by the timeout
            // (perhaps mid-answer) drops its connection with it.
            let mut connection = match kept {
                Some(connection) => connection,
                None => Connection::open(&self.client, &route).await?,
            };
            let answer = connection
                .send(&self.client, &route, &host, method, url, headers, body)
                .await?;
            Ok::<_, TransportError>((answer, connection))
        };
        let (answer, connection) = tokio::time::timeout(self.client.timeout, sent)
            .await
            .unwrap_or(Err(TransportError::Timeout))?;
        // A body cut short leaves the rest unread on the wire: that connection is done.
        if !answer.truncated && connection.is_open() {
            self.connections.insert(0, (route, connection));
            self.connections.truncate(KEPT_CONNECTIONS);
        }
        Ok(answer)
    }
}

/// A URL with its query's values and any user name or password replaced by `***`, for
/// messages (a query may carry a secret: `?client_secret=…`).
pub fn redact_query(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.split_once('?') {
            Some((path, _)) => format!("{path}?***"),
            None => url.to_string(),
        };
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let _ = parsed.set_username("***");
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let keys: Vec<String> = parsed.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let query = keys
            .iter()
            .map(|k| format!("{k}=***"))
            .collect::<Vec<_>>()
            .join("&");
        parsed.set_query(Some(&query));
    }
    parsed.to_string()
}

/// Reads a body's frames up to [`MAX_BODY`] bytes: `(bytes, truncated)`. A body in one
/// frame (the usual small answer) is passed on as it is, without a copy.
async fn read_capped<B>(mut body: B) -> Result<(Bytes, bool), B::Error>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    let mut first: Option<Bytes> = None;
    let mut more = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        let held = first.as_ref().map_or(0, Bytes::len) + more.len();
        let room = MAX_BODY - held;
        if data.len() > room {
            if let Some(first) = first.take() {
                more.extend_from_slice(&first);
            }
            more.extend_from_slice(&data[..room]);
            return Ok((more.freeze(), true));
        }
        match first.take() {
            None if more.is_empty() => first = Some(data),
            Some(earlier) => {
                more.extend_from_slice(&earlier);
                more.extend_from_slice(&data);
            }
            None => more.extend_from_slice(&data),
        }
    }
    Ok((first.unwrap_or_else(|| more.freeze()), false))
}

/// The innermost cause of an error, for a message that says what happened (never a URL with
/// credentials: the causes are I/O, DNS and protocol errors).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(source) = root.source() {
        root = source;
    }
    root.to_string()
}
