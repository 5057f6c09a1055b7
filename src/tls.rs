//! TLS material: listener certificates and upstream CA bundles, loaded and checked when the
//! config is validated, and the rustls certificate resolver that serves the current one.
//!
//! A listener with `[server.tls]` (or `[server.admin_tls]`) is bound with a
//! [`ConfigCertResolver`], which looks the certificate up in the live config on every
//! handshake. The reloader watches the certificate and key files like `routes.toml`
//! itself, so a renewed certificate is validated and swapped in without a restart, and a
//! broken one is rejected while the last good one keeps serving.
//!
//! A provider's `ca_file` replaces the system roots for that provider only: its
//! certificates become the trust anchors Pingora's rustls connector verifies the upstream
//! (certificate chain and host name) against.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::utils::tls::WrappedX509;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::proxy::GatewayState;

/// A listener's certificate chain and private key, as loaded from its files.
#[derive(Clone)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub certified: Arc<CertifiedKey>,
    /// SHA-256 over both files' bytes (part of the config version).
    pub digest: [u8; 32],
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("ListenerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

/// Trust anchors for one provider's upstream connections.
#[derive(Clone)]
pub struct CaBundle {
    pub file: PathBuf,
    pub certs: Arc<[WrappedX509]>,
    /// SHA-256 of the file (part of the config version and of the connection-pool key).
    pub digest: [u8; 32],
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("file", &self.file)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl CaBundle {
    /// A connection-pool group for peers verified against this bundle, so a connection
    /// verified under one trust setting is never reused under another.
    pub fn group_key(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.digest[..8]);
        u64::from_le_bytes(b)
    }
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// The certificates of a PEM file, in order.
fn pem_certs(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &bytes[..])
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    for c in &certs {
        if x509_parser::parse_x509_certificate(c.as_ref()).is_err() {
            return Err(format!(
                "{} contains a certificate that cannot be parsed",
                path.display()
            ));
        }
    }
    Ok(certs)
}

/// Loads a certificate chain (leaf first) and its private key (PKCS#8, PKCS#1 or SEC1 PEM)
/// and checks that they belong together.
pub fn load_listener(cert_file: &Path, key_file: &Path) -> Result<ListenerTls, String> {
    let cert_bytes = read(cert_file, "certificate")?;
    let key_bytes = read(key_file, "private key")?;
    let certified = certified_key(&cert_bytes, cert_file, &key_bytes, key_file)?;
    let mut h = Sha256::new();
    h.update(&cert_bytes);
    h.update([0u8]);
    h.update(&key_bytes);
    Ok(ListenerTls {
        cert_file: cert_file.to_path_buf(),
        key_file: key_file.to_path_buf(),
        certified: Arc::new(certified),
        digest: h.finalize().into(),
    })
}

fn certified_key(
    cert_bytes: &[u8],
    cert_file: &Path,
    key_bytes: &[u8],
    key_file: &Path,
) -> Result<CertifiedKey, String> {
    let certs = pem_certs(cert_bytes, cert_file)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_bytes[..])
        .map_err(|_| format!("{} is not valid PEM", key_file.display()))?
        .ok_or_else(|| format!("{} contains no PEM private key", key_file.display()))?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| format!("{}: unsupported private key type", key_file.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        // Could not be checked (unusual key encoding): the handshake will tell.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(_) => Err(format!(
            "the private key in {} does not match the certificate in {}",
            key_file.display(),
            cert_file.display()
        )),
    }
}

/// Loads a PEM CA bundle (one or more certificates).
pub fn load_ca(file: &Path) -> Result<CaBundle, String> {
    let bytes = read(file, "CA bundle")?;
    let certs = pem_certs(&bytes, file)?;
    let mut store = rustls::RootCertStore::empty();
    let wrapped: Vec<WrappedX509> = certs
        .into_iter()
        .map(|c| {
            store
                .add(c.clone())
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", file.display()))?;
            // Parsed above, so pingora's parser (which panics on bad DER) accepts it.
            Ok(WrappedX509::new(
                c.as_ref().to_vec(),
                pingora::utils::tls::parse_x509,
            ))
        })
        .collect::<Result<_, String>>()?;
    Ok(CaBundle {
        file: file.to_path_buf(),
        certs: wrapped.into(),
        digest: Sha256::digest(&bytes).into(),
    })
}

/// A rustls server config from PEM text (the TLS mode of the simulated providers).
pub fn server_config_from_pem(
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let ck = certified_key(
        cert_pem.as_bytes(),
        Path::new("certificate"),
        key_pem.as_bytes(),
        Path::new("key"),
    )?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(Arc::new(ck))));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Which listener a resolver serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

/// Serves the certificate of the live config for one listener. Whether a listener speaks
/// TLS is decided at start; if a reload drops its table, the certificate it started with
/// keeps serving until the restart that applies the change.
pub struct ConfigCertResolver {
    state: Arc<GatewayState>,
    listener: Listener,
    initial: Arc<CertifiedKey>,
}

impl std::fmt::Debug for ConfigCertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigCertResolver")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ConfigCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let config = self.state.config.load();
        let current = match self.listener {
            Listener::Public => config.server.tls.as_ref(),
            Listener::Admin => config.server.admin_tls.as_ref(),
        };
        Some(
            current
                .map(|t| t.certified.clone())
                .unwrap_or_else(|| self.initial.clone()),
        )
    }
}

/// Pingora TLS settings for `listener` when the config gives it a certificate (HTTP/1.1).
pub fn listener_settings(state: &Arc<GatewayState>, listener: Listener) -> Option<TlsSettings> {
    let config = state.config.load();
    let tls = match listener {
        Listener::Public => config.server.tls.as_ref()?,
        Listener::Admin => config.server.admin_tls.as_ref()?,
    };
    let resolver = ConfigCertResolver {
        state: state.clone(),
        listener,
        initial: tls.certified.clone(),
    };
    // `intermediate` only records paths; with a resolver set they are never read.
    let mut settings = TlsSettings::intermediate("", "").ok()?;
    settings.set_cert_resolver(Arc::new(resolver));
    Some(settings)
}
