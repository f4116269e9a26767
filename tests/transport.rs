//! How requests travel: over TLS verified against the trusted roots, through a proxy named in
//! the environment, and over kept connections that servers close.

#[macro_use]
mod support;

use roster::http::Client;
use roster_sandbox::SandboxConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{TestSandbox, WorkDir, people_csv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A TLS front for the sandbox on 127.0.0.1 (certificate for `localhost`, issued by the test
/// CA in `tests/fixtures/tls/ca.pem`), passing the plain bytes on to `upstream`.
struct TlsFront {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    fn start(upstream: &str) -> TlsFront {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain = CertificateDer::pem_file_iter(fixture("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        TlsFront {
            port,
            _runtime: runtime,
        }
    }
}

#[test]
fn https_targets_are_reached_over_tls_verified_against_the_trusted_roots() {
    let server = TestSandbox::start(SandboxConfig::default());
    let front = TlsFront::start(&server.url());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(40));
    let url = format!("https://localhost:{}", front.port);
    let ca = fixture("ca.pem");
    let run = work.roster_with_env(
        &WorkDir::import_args(&url, "people.csv", &["--json"]),
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    run.expect_code(0);
    assert_eq!(run.json()["created"], 40, "{}", run.context());
    assert_eq!(server.sandbox.users().len(), 40);
}

#[test]
fn an_untrusted_certificate_sends_nothing_and_says_why() {
    let server = TestSandbox::start(SandboxConfig::default());
    let front = TlsFront::start(&server.url());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(3));
    let url = format!("https://localhost:{}", front.port);
    let other_ca = fixture("other-ca.pem");
    let run = work.roster_with_env(
        &WorkDir::import_args(&url, "people.csv", &["--json", "--max-retries", "0"]),
        &[("SSL_CERT_FILE", other_ca.to_str().unwrap())],
    );
    assert_ne!(run.code(), 0, "{}", run.context());
    assert!(server.sandbox.users().is_empty(), "nothing reached the API");
    let said = format!("{}{}", run.stderr(), work.read("people.errors.csv"));
    assert!(said.contains("certificate"), "the reason is given: {said}");
}

#[test]
fn a_proxy_in_the_environment_carries_the_requests() {
    // The sandbox understands absolute-form requests, so it can stand in for the proxy; the
    // target's own host does not exist, so only requests through the proxy arrive.
    let server = TestSandbox::start(SandboxConfig::default());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(10));
    let run = work.roster_with_env(
        &WorkDir::import_args(
            "http://roster-proxy-test.invalid",
            "people.csv",
            &["--json"],
        ),
        &[("HTTP_PROXY", &server.url())],
    );
    run.expect_code(0);
    assert_eq!(run.json()["created"], 10, "{}", run.context());
    assert_eq!(server.sandbox.users().len(), 10);
}

/// A CONNECT proxy on 127.0.0.1: opens a tunnel to the host the client asks for, counting
/// the tunnels it opened.
fn connect_proxy(tunnels: Arc<AtomicUsize>) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let tunnels = tunnels.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let Some(target) = head
                    .strip_prefix("CONNECT ")
                    .and_then(|rest| rest.split_whitespace().next())
                else {
                    let _ = client.write_all(b"HTTP/1.1 405 CONNECT only\r\n\r\n").await;
                    return;
                };
                // The certificate is for `localhost`; the tunnel goes to the same port here.
                let target = target.replace("localhost", "127.0.0.1");
                let Ok(mut server) = TcpStream::connect(target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                tunnels.fetch_add(1, Ordering::SeqCst);
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (url, runtime)
}

#[test]
fn an_https_target_is_reached_through_a_proxys_connect_tunnel() {
    let server = TestSandbox::start(SandboxConfig::default());
    let front = TlsFront::start(&server.url());
    let tunnels = Arc::new(AtomicUsize::new(0));
    let (proxy, _proxy_runtime) = connect_proxy(tunnels.clone());
    let work = WorkDir::new();
    work.write("people.csv", &people_csv(12));
    let url = format!("https://localhost:{}", front.port);
    let ca = fixture("ca.pem");
    let run = work.roster_with_env(
        &WorkDir::import_args(&url, "people.csv", &["--json", "--concurrency", "2"]),
        &[
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
            ("HTTPS_PROXY", &proxy),
        ],
    );
    run.expect_code(0);
    assert_eq!(run.json()["created"], 12, "{}", run.context());
    let opened = tunnels.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&opened),
        "every request went through the proxy, over at most one tunnel per worker: {opened}"
    );
}

/// A server answering 201 to each request on a connection, then closing it: after `per`
/// answers with `Connection: close`, or silently once idle for a moment when `per` is 0.
async fn closing_server(per: usize, connections: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/users", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut answered = 0;
                let mut buffer = vec![0u8; 4096];
                let mut seen = Vec::new();
                loop {
                    let read =
                        tokio::time::timeout(Duration::from_millis(50), socket.read(&mut buffer));
                    let n = match read.await {
                        Ok(Ok(0) | Err(_)) => return,
                        Ok(Ok(n)) => n,
                        // Idle: a keep-alive timeout closes the connection without a word.
                        Err(_) if per == 0 && answered > 0 => return,
                        Err(_) => continue,
                    };
                    seen.extend_from_slice(&buffer[..n]);
                    // Requests here have a 2-byte body after the blank line.
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    if seen.len() < end + 4 + 2 {
                        continue;
                    }
                    seen.drain(..end + 6);
                    answered += 1;
                    let close = per > 0 && answered == per;
                    let answer = format!(
                        "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n\
                         content-length: 2\r\n{}\r\n{{}}",
                        if close { "connection: close\r\n" } else { "" }
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn send_in_turn(per: usize, requests: usize, pause: Duration) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connections = Arc::new(AtomicUsize::new(0));
        let url = closing_server(per, connections.clone()).await;
        let url = url::Url::parse(&url).unwrap();
        let client = Client::new(Duration::from_secs(10)).unwrap();
        assert!(
            !client.is_proxied(&url),
            "no proxy here: the worker's own connection"
        );
        let mut sender = client.sender();
        for i in 0..requests {
            let answer = sender
                .send(
                    http::Method::POST,
                    &url,
                    http::HeaderMap::new(),
                    bytes::Bytes::from_static(b"{}"),
                )
                .await
                .unwrap_or_else(|e| panic!("request {i} got no answer: {e}"));
            assert_eq!(answer.status, 201);
            tokio::time::sleep(pause).await;
        }
        connections.load(Ordering::SeqCst)
    })
}

#[test]
fn a_connection_the_server_closes_after_answering_is_replaced() {
    let connections = send_in_turn(3, 10, Duration::ZERO);
    assert_eq!(
        connections, 4,
        "three answers a connection: 10 requests need 4"
    );
}

#[test]
fn a_kept_connection_the_server_dropped_while_idle_is_replaced() {
    let connections = send_in_turn(0, 3, Duration::from_millis(300));
    assert_eq!(
        connections, 3,
        "each request after an idle spell on a new connection"
    );
}
