//! PEM loading and checking, shared by the listener ([`crate::tls`]), the upstream clients
//! ([`crate::upstream`]), Redis over TLS, and config validation: a leaf that knows files and
//! rustls only.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be used. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no valid PEM.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material (unsupported key, key not matching the certificate, ...).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA bundle cannot verify client certificates.
    #[error("client_ca: {0}")]
    ClientCa(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File { path: path.to_owned(), message: message.to_string() }
}

/// The ring provider, the only one tier1 builds.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file; an empty file is an error.
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("no usable private key: {e}")))
}

/// A certificate chain with its key, checked to belong together (a rotation that has written the
/// new certificate but not yet the new key is refused rather than served).
pub(crate) fn certified_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let signing = provider().key_provider.load_private_key(key.clone_key())?;
    CertifiedKey::new(certs.clone(), signing).keys_match()?;
    Ok((certs, key))
}

/// A hash of the files' contents (an unreadable file hashes as its error), to notice rotation
/// whether the file was rewritten in place or swapped through a symlink.
pub(crate) fn fingerprint<'a>(paths: impl IntoIterator<Item = &'a Path>) -> u64 {
    let mut h = DefaultHasher::new();
    for path in paths {
        match std::fs::read(path) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

/// The listener's server config: the certificate, client verification when `client_ca` is set,
/// and ALPN offering h2 then http/1.1.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let (certs, key) = certified_key(cert, key)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, format!("invalid CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// An RSA signing key from a PKCS#8 PEM text (a Google service account's `private_key`); `Err`
/// says what is wrong with it, never what it holds.
pub(crate) fn rsa_pkcs8(pem: &str) -> Result<ring::signature::RsaKeyPair, &'static str> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    let der =
        PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| "not a PKCS#8 PEM private key")?;
    ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
        .map_err(|_| "not an RSA private key (2048 to 8192 bits) to sign with")
}
