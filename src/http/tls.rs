//! TLS for every connection: rustls with ring and the platform's verifier, trusting the
//! system's roots or the bundle named by `SSL_CERT_FILE` / `SSL_CERT_DIR`.

use super::TransportError;
use rustls_platform_verifier::BuilderVerifierExt;
use std::sync::{Arc, OnceLock};

/// The connector of every TLS connection, built once (loading the roots reads files).
pub fn connector() -> Result<tokio_rustls::TlsConnector, TransportError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_platform_verifier())
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    });
    match config {
        Ok(config) => Ok(tokio_rustls::TlsConnector::from(config.clone())),
        Err(message) => Err(TransportError::Setup(message.clone())),
    }
}
