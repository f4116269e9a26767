//! Where a request's bytes go — straight to its origin, or through the proxy the environment
//! names — and the connections that carry them.

use super::{Answer, Client, TransportError, USER_AGENT, read_capped, root_cause};
use bytes::Bytes;
use http::header::{HOST, PROXY_AUTHORIZATION, USER_AGENT as USER_AGENT_HEADER};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::Url;

/// One scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    https: bool,
    /// The host as written in a URL (an IPv6 address in brackets).
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &Url) -> Result<Origin, TransportError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => {
                return Err(TransportError::Setup(format!(
                    "`{other}:` is not a scheme roster sends to (http or https)"
                )));
            }
        };
        let host = url
            .host()
            .ok_or_else(|| TransportError::Setup("the URL has no host".into()))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(match https {
            true => 443,
            false => 80,
        });
        Ok(Origin { https, host, port })
    }

    fn of_uri(uri: &Uri) -> Result<Origin, TransportError> {
        let url = Url::parse(&uri.to_string())
            .map_err(|e| TransportError::Setup(format!("the proxy's URL is not valid: {e}")))?;
        Origin::of(&url)
    }

    /// `host` or `host:port` (the port only when it is not the scheme's own).
    fn authority(&self) -> String {
        match (self.https, self.port) {
            (true, 443) | (false, 80) => self.host.clone(),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The name the server's certificate must carry.
    fn server_name(&self) -> Result<ServerName<'static>, TransportError> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_string())
            .map_err(|e| TransportError::Setup(format!("`{bare}` is not a TLS name: {e}")))
    }

    /// A TCP connection to the first of the host's addresses that answers.
    async fn tcp(&self) -> Result<TcpStream, TransportError> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, self.port))
            .await
            .map_err(|e| TransportError::Connect(format!("cannot resolve {bare}: {e}")))?
            .collect();
        let mut last = None;
        for address in addresses {
            match TcpStream::connect(address).await {
                Ok(stream) => {
                    // One write per request; waiting to coalesce would only add latency.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(TransportError::Connect(match last {
            Some(e) => e.to_string(),
            None => format!("{bare} has no address"),
        }))
    }
}

/// How a request reaches its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Route {
    /// Straight to the URL's origin.
    Direct(Origin),
    /// Through an HTTP proxy that forwards plain-HTTP requests written in absolute form.
    Forward {
        proxy: Origin,
        auth: Option<HeaderValue>,
    },
    /// Through a CONNECT tunnel a proxy opens to an HTTPS origin (TLS end to end).
    Tunnel {
        proxy: Uri,
        dest: Origin,
        auth: Option<HeaderValue>,
    },
}

impl Route {
    /// The route to `url` under the client's proxy settings. A URL holding credentials is
    /// refused: they would travel in every request line and log.
    pub(super) fn of(client: &Client, url: &Url) -> Result<Route, TransportError> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TransportError::Setup(
                "a URL with a user name or password in it is refused: credentials belong in \
                 the environment"
                    .into(),
            ));
        }
        let dest = Origin::of(url)?;
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|e| TransportError::Setup(format!("not a request URL: {e}")))?;
        Ok(match client.proxies.intercept(&uri) {
            None => Route::Direct(dest),
            Some(proxy) if !dest.https => Route::Forward {
                proxy: Origin::of_uri(proxy.uri())?,
                auth: proxy.basic_auth().cloned(),
            },
            Some(proxy) => Route::Tunnel {
                proxy: proxy.uri().clone(),
                dest,
                auth: proxy.basic_auth().cloned(),
            },
        })
    }

    /// The request's `Host` header: the origin's name.
    pub(super) fn host(&self, url: &Url) -> Result<HeaderValue, TransportError> {
        let origin = match self {
            Route::Direct(origin) | Route::Tunnel { dest: origin, .. } => origin.clone(),
            Route::Forward { .. } => Origin::of(url)?,
        };
        HeaderValue::from_str(&origin.authority())
            .map_err(|e| TransportError::Setup(format!("not a host name: {e}")))
    }
}

/// Why a request did not get an answer over a connection, and whether it left.
pub(super) enum Failure {
    /// The connection was closed before the request was written: it can go on another.
    NotSent(Box<Request<Full<Bytes>>>),
    /// Anything else.
    Error(TransportError),
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        Failure::Error(e)
    }
}

/// One HTTP/1 connection, driven by a task of its own on the runtime that opened it.
pub(super) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// It carried a request already (a kept connection the server may have closed since).
    reused: bool,
}

impl Connection {
    /// Opens a connection for `route`, within the client's connect timeout.
    pub(super) async fn open(client: &Client, route: &Route) -> Result<Connection, TransportError> {
        let opening = async {
            match route {
                Route::Direct(origin) | Route::Forward { proxy: origin, .. } => {
                    let tcp = origin.tcp().await?;
                    match origin.https {
                        false => handshake(tcp).await,
                        true => handshake(tls(client, origin, tcp).await?).await,
                    }
                }
                Route::Tunnel { proxy, dest, auth } => {
                    let tcp = tunnel(proxy, dest, auth.clone()).await?;
                    handshake(tls(client, dest, tcp).await?).await
                }
            }
        };
        let sender = tokio::time::timeout(client.connect_timeout, opening)
            .await
            .unwrap_or_else(|_| Err(TransportError::Connect("connect timed out".into())))?;
        Ok(Connection {
            sender,
            reused: false,
        })
    }

    /// Whether the server still holds the connection open.
    pub(super) fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends one request on this connection, or (when a kept connection turns out to be
    /// closed before the request was written) on a new one, once, as a pool would.
    #[allow(clippy::too_many_arguments)] // one request's parts, passed through once
    pub(super) async fn send(
        &mut self,
        client: &Client,
        route: &Route,
        host: &HeaderValue,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        let request = request(route, host, method, url, headers, body)?;
        match self.send_request(request).await {
            Ok(answer) => Ok(answer),
            Err(Failure::NotSent(request)) if self.reused => {
                *self = Connection::open(client, route).await?;
                match self.send_request(*request).await {
                    Ok(answer) => Ok(answer),
                    Err(Failure::NotSent(_)) => Err(TransportError::Connect(
                        "the connection closed at once".into(),
                    )),
                    Err(Failure::Error(e)) => Err(e),
                }
            }
            Err(Failure::NotSent(_)) => Err(TransportError::Connect(
                "the connection closed at once".into(),
            )),
            Err(Failure::Error(e)) => Err(e),
        }
    }

    async fn send_request(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, Failure> {
        if self.sender.ready().await.is_err() {
            return Err(Failure::NotSent(Box::new(request)));
        }
        self.reused = true;
        let response = match self.sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut e) => {
                return Err(match e.take_message() {
                    Some(unsent) => Failure::NotSent(Box::new(unsent)),
                    None => Failure::Error(TransportError::Failed(root_cause(&e.into_error()))),
                });
            }
        };
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        let (body, truncated) = read_capped(body).await.map_err(|e| TransportError::Cut {
            status,
            reason: root_cause(&e),
        })?;
        Ok(Answer {
            status,
            headers: parts.headers,
            body,
            truncated,
        })
    }
}

/// The request for `url` on `route`: origin-form (`/path?query`) to an origin or through a
/// tunnel, absolute-form to a forwarding proxy (with its credentials).
fn request(
    route: &Route,
    host: &HeaderValue,
    method: Method,
    url: &Url,
    mut headers: HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, TransportError> {
    let target = match route {
        Route::Forward { .. } => url.as_str(),
        _ => &url[url::Position::BeforePath..url::Position::AfterQuery],
    };
    let uri = Uri::try_from(target)
        .map_err(|e| TransportError::Setup(format!("`{target}` is not a request target: {e}")))?;
    headers.insert(HOST, host.clone());
    if !headers.contains_key(USER_AGENT_HEADER) {
        headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
    }
    if let Route::Forward {
        auth: Some(auth), ..
    } = route
    {
        headers.insert(PROXY_AUTHORIZATION, auth.clone());
    }
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// TLS to `origin` over `tcp`, verified against the trusted roots.
async fn tls(
    client: &Client,
    origin: &Origin,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TransportError> {
    client
        .tls
        .connect(origin.server_name()?, tcp)
        .await
        .map_err(|e| TransportError::Connect(format!("TLS: {e}")))
}

/// A CONNECT tunnel through `proxy` to `dest` (hyper-util's tunnel connector).
async fn tunnel(
    proxy: &Uri,
    dest: &Origin,
    auth: Option<HeaderValue>,
) -> Result<TcpStream, TransportError> {
    use tower_service::Service;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let mut tunnel = Tunnel::new(proxy.clone(), connector);
    if let Some(auth) = auth {
        tunnel = tunnel.with_auth(auth);
    }
    let dest: Uri = format!("https://{}:{}", dest.host, dest.port)
        .parse()
        .map_err(|e| TransportError::Setup(format!("not a tunnel destination: {e}")))?;
    std::future::poll_fn(|cx| tunnel.poll_ready(cx))
        .await
        .map_err(|e| TransportError::Connect(format!("the proxy: {}", root_cause(&e))))?;
    let io = tunnel
        .call(dest)
        .await
        .map_err(|e| TransportError::Connect(format!("the proxy's tunnel: {}", root_cause(&e))))?;
    Ok(io.into_inner())
}

/// Starts HTTP/1 on `io`; the connection is driven by a task of its own on this runtime.
async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, TransportError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| TransportError::Connect(root_cause(&e)))?;
    tokio::spawn(async move {
        // Ends when the server closes or the sender is dropped; its error reaches the request.
        let _ = connection.await;
    });
    Ok(sender)
}
