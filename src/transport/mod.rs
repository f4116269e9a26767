//! Sending one HTTP request and reading its whole answer.
//!
//! Requests to the target's own origin (scheme, host, port) go over a connection each worker
//! keeps to itself, through hyper's HTTP/1 connection API, with TLS by rustls and the
//! platform's verifier as in reqwest. Everything else goes through reqwest: other hosts (a
//! follow-up step elsewhere), and every request when a proxy is set in the environment
//! (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`; reqwest honours them and `NO_PROXY`).
//!
//! Why not reqwest for all: a worker sends one request at a time, so a connection of its own
//! needs no pool, and profiles of a 200,000-row import showed reqwest's per-request layers
//! (the URL re-parsed by the redirect layer even with redirects off, the pool checkout, a
//! client and connector cloned per request) as a third of the sending threads' user time.

mod direct;
mod tls;

pub use tls::install_provider;

use bytes::Bytes;
use http::{HeaderMap, Method};
use reqwest::Url;
use std::sync::Arc;
use std::time::Duration;

/// The user agent of every request.
pub const USER_AGENT: &str = concat!("roster/", env!("CARGO_PKG_VERSION"));

/// Most bytes of an answer's body read: a longer (or endless) body is cut there, so a hostile
/// server costs bounded memory. A user, a token or an error answer is far smaller.
pub const MAX_BODY: usize = 1024 * 1024;

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

/// Reads a body's frames up to [`MAX_BODY`] bytes: `(bytes, truncated)`.
pub(crate) async fn read_capped<B>(mut body: B) -> Result<(Bytes, bool), B::Error>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        let room = MAX_BODY - out.len();
        if data.len() > room {
            out.extend_from_slice(&data[..room]);
            return Ok((out.freeze(), true));
        }
        out.extend_from_slice(&data);
    }
    Ok((out.freeze(), false))
}

/// Why a request got no (whole) answer, or the transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The HTTP client or TLS could not be set up (no request was made).
    #[error("{0}")]
    Setup(String),
    /// No connection could be made (name lookup, refused, TLS handshake): nothing was sent.
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

/// The run's way to the target: shared by the lanes, handing each worker a [`Sender`].
pub struct Transport {
    /// Where workers keep connections of their own (`None` behind a proxy).
    origin: Option<Arc<direct::Origin>>,
    /// One reqwest client (connection pool) per lane, for all other requests.
    clients: Vec<reqwest::Client>,
    timeout: Duration,
}

/// Settings of a [`Transport`].
#[derive(Debug, Clone, Copy)]
pub struct TransportSettings {
    /// Whole-request timeout (connect included).
    pub timeout: Duration,
    /// Most connections kept per host by a lane's reqwest pool.
    pub pool_size: usize,
    /// How many lanes (threads with their own connections).
    pub lanes: usize,
}

impl Transport {
    /// A transport to `endpoint` (the target's create URL).
    pub fn new(endpoint: &Url, settings: TransportSettings) -> Result<Transport, TransportError> {
        let connect_timeout = settings.timeout.min(Duration::from_secs(10));
        let origin = match proxy_in_environment() {
            Some(_) => None,
            None => direct::Origin::of(endpoint, connect_timeout)?.map(Arc::new),
        };
        let clients = (0..settings.lanes.max(1))
            .map(|_| reqwest_client(settings.timeout, settings.pool_size))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Transport {
            origin,
            clients,
            timeout: settings.timeout,
        })
    }

    /// How many lanes the transport serves.
    pub fn lanes(&self) -> usize {
        self.clients.len()
    }

    /// Whether requests to the endpoint's origin go over the workers' own connections.
    pub fn is_direct(&self) -> bool {
        self.origin.is_some()
    }

    /// A worker's sender on `lane`; its connection is opened on first use.
    pub fn sender(&self, lane: usize) -> Sender {
        Sender {
            direct: self.origin.clone().map(direct::Connection::new),
            client: self.clients[lane % self.clients.len()].clone(),
            timeout: self.timeout,
        }
    }
}

/// How one worker sends: over its own connection to the target's origin, else through its
/// lane's reqwest pool. Used by one task at a time.
pub struct Sender {
    direct: Option<direct::Connection>,
    client: reqwest::Client,
    timeout: Duration,
}

impl Sender {
    /// Sends one request and reads its whole answer, within the transport's timeout.
    pub async fn send(
        &mut self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        let sent = async {
            match &mut self.direct {
                Some(connection) if connection.serves(url) => {
                    connection.send(method, url, headers, body).await
                }
                _ => send_reqwest(&self.client, method, url, headers, body).await,
            }
        };
        // A connection is held by the request while in use, so one cut short by the timeout
        // (perhaps mid-answer) is dropped with it, never used again.
        tokio::time::timeout(self.timeout, sent)
            .await
            .unwrap_or(Err(TransportError::Timeout))
    }
}

/// The proxy variable set in the environment, if any.
fn proxy_in_environment() -> Option<&'static str> {
    const VARIABLES: [&str; 6] = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    VARIABLES
        .into_iter()
        .find(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// A reqwest client (one connection pool) with the run's timeouts.
fn reqwest_client(timeout: Duration, pool_size: usize) -> Result<reqwest::Client, TransportError> {
    install_provider();
    reqwest::Client::builder()
        // A request carrying credentials or a person never follows a redirect: a 3xx is
        // an answer, refused with its Location named.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(pool_size.max(1))
        .tcp_nodelay(true)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| TransportError::Setup(format!("cannot build the HTTP client: {e}")))
}

async fn send_reqwest(
    client: &reqwest::Client,
    method: Method,
    url: &Url,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, TransportError> {
    let mut request = client.request(method, url.clone()).headers(headers);
    if !body.is_empty() {
        request = request.body(body);
    }
    let response = request.send().await.map_err(|e| {
        let root = root_cause(&e);
        if e.is_timeout() {
            TransportError::Timeout
        } else if e.is_connect() {
            TransportError::Connect(root)
        } else {
            TransportError::Failed(root)
        }
    })?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let (body, truncated) =
        read_response_capped(response)
            .await
            .map_err(|e| match e.is_timeout() {
                true => TransportError::Timeout,
                false => TransportError::Cut {
                    status,
                    reason: root_cause(&e),
                },
            })?;
    Ok(Answer {
        status,
        headers,
        body,
        truncated,
    })
}

/// A reqwest answer's body up to [`MAX_BODY`] bytes: `(bytes, truncated)`.
pub(crate) async fn read_response_capped(
    mut response: reqwest::Response,
) -> Result<(Bytes, bool), reqwest::Error> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out.freeze(), true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out.freeze(), false))
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
