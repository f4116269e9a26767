//! A worker's own HTTP/1 connection to the target's origin.

use super::{Answer, TransportError, USER_AGENT, root_cause, tls};
use bytes::Bytes;
use http::header::{HOST, USER_AGENT as USER_AGENT_HEADER};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use reqwest::Url;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Where connections go: one scheme, host and port.
pub struct Origin {
    scheme: String,
    host: url::Host<String>,
    port: u16,
    /// The `Host` header.
    authority: HeaderValue,
    /// For `https`: the TLS connector and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

impl Origin {
    /// The origin of `url`, or `None` where reqwest must send (credentials in the URL, a
    /// scheme other than http/https).
    pub fn of(url: &Url, connect_timeout: Duration) -> Result<Option<Origin>, TransportError> {
        let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
            return Ok(None);
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Ok(None);
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let Ok(authority) = HeaderValue::from_str(&authority) else {
            return Ok(None);
        };
        let tls = match url.scheme() {
            "http" => None,
            "https" => {
                let name = match &host {
                    url::Host::Domain(domain) => ServerName::try_from(domain.to_string()),
                    url::Host::Ipv4(ip) => Ok(ServerName::from(std::net::IpAddr::V4(*ip))),
                    url::Host::Ipv6(ip) => Ok(ServerName::from(std::net::IpAddr::V6(*ip))),
                };
                let Ok(name) = name else { return Ok(None) };
                Some((tls::connector()?, name))
            }
            _ => return Ok(None),
        };
        Ok(Some(Origin {
            scheme: url.scheme().to_string(),
            host: host.to_owned(),
            port,
            authority,
            tls,
            connect_timeout,
        }))
    }

    fn serves(&self, url: &Url) -> bool {
        url.scheme() == self.scheme
            && url.port_or_known_default() == Some(self.port)
            && url.host().is_some_and(|host| host.to_owned() == self.host)
            && url.username().is_empty()
            && url.password().is_none()
    }

    /// A new connection, TLS included, within the connect timeout.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let connecting = async {
            let tcp = self.tcp().await?;
            match &self.tls {
                None => handshake(tcp).await,
                Some((connector, name)) => {
                    let stream = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| TransportError::Connect(format!("TLS: {e}")))?;
                    handshake(stream).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .unwrap_or_else(|_| Err(TransportError::Connect("connect timed out".into())))
    }

    /// A TCP connection to the first of the host's addresses that answers.
    async fn tcp(&self) -> Result<TcpStream, TransportError> {
        let addresses: Vec<SocketAddr> = match &self.host {
            url::Host::Ipv4(ip) => vec![SocketAddr::new((*ip).into(), self.port)],
            url::Host::Ipv6(ip) => vec![SocketAddr::new((*ip).into(), self.port)],
            url::Host::Domain(domain) => tokio::net::lookup_host((domain.as_str(), self.port))
                .await
                .map_err(|e| TransportError::Connect(format!("cannot resolve {domain}: {e}")))?
                .collect(),
        };
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
            None => "the host has no address".to_string(),
        }))
    }
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

/// One worker's connection, opened on first use and reopened when the server closed it.
pub struct Connection {
    origin: Arc<Origin>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// Not connected yet.
    pub fn new(origin: Arc<Origin>) -> Connection {
        Connection {
            origin,
            sender: None,
        }
    }

    /// Whether `url` is on this connection's origin.
    pub fn serves(&self, url: &Url) -> bool {
        self.origin.serves(url)
    }

    /// Sends one request and reads the whole answer. A kept connection the server closed
    /// before the request was written is replaced once, as reqwest's pool does.
    pub async fn send(
        &mut self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Answer, TransportError> {
        let mut request = self.request(method, url, headers, body)?;
        loop {
            // Taken out while in use: a request that fails or is cancelled drops it.
            let (mut sender, reused) = match self.sender.take() {
                Some(sender) if !sender.is_closed() => (sender, true),
                _ => (self.origin.connect().await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(TransportError::Connect(
                    "the connection closed at once".into(),
                ));
            }
            let response = match sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    Some(_) => return Err(TransportError::Connect(root_cause(e.error()))),
                    None => return Err(TransportError::Failed(root_cause(&e.into_error()))),
                },
            };
            let (parts, body) = response.into_parts();
            let status = parts.status.as_u16();
            let (body, truncated) =
                super::read_capped(body)
                    .await
                    .map_err(|e| TransportError::Cut {
                        status,
                        reason: root_cause(&e),
                    })?;
            // A body cut short leaves the rest unread on the wire: that connection is done.
            if !truncated {
                self.sender = Some(sender);
            }
            return Ok(Answer {
                status,
                headers: parts.headers,
                body,
                truncated,
            });
        }
    }

    fn request(
        &self,
        method: Method,
        url: &Url,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, TransportError> {
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let uri = Uri::try_from(target).map_err(|e| {
            TransportError::Connect(format!("`{target}` is not a request path: {e}"))
        })?;
        headers.insert(HOST, self.origin.authority.clone());
        if !headers.contains_key(USER_AGENT_HEADER) {
            headers.insert(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT));
        }
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }
}
