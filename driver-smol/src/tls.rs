//! Mutual TLS for RPC over QUIC: the cluster CA, node certificates, and the quinn
//! configurations that make both ends of every connection prove they belong to the cluster.
//!
//! This module owns loading and checking PEM input ([`TlsConfig`]), issuing certificates for
//! tests, examples and the command line ([`ClusterCa`], [`NodeCertificate`]), building the
//! rustls/quinn configurations, and saying in one line why a handshake was refused.
//!
//! It must never offer a way around verification (anything insecure would be named
//! `dangerous_*`; there is none), print or log key material, or own sockets and tasks (the
//! driver does).
//!
//! # Trust model
//!
//! A cluster has one CA. Every node holds a certificate signed by it and the matching key; a
//! connection is established only when *both* ends present a certificate that chains to the
//! cluster CA, is within its validity period, and is meant for TLS client and server use.
//! The CA is the cluster's boundary: a node certified by another CA is refused whichever side
//! it dials from. Session resumption is disabled, so every connection verifies the peer's
//! chain afresh (an expired certificate is refused at the next connection, not at the end of
//! a ticket's lifetime).
//!
//! # Server names
//!
//! Nodes dial each other by socket address (the advertised RPC address from the membership),
//! not by host name, and a node's address may change (DHCP, containers, a public address that
//! differs from the listening one). Certificates therefore do not name addresses: every node
//! certificate carries the fixed DNS name [`CLUSTER_SERVER_NAME`] as its subject alternative
//! name, and every client sends that name as SNI and verifies the server's certificate against
//! it. What the server name proves is "a member of this cluster" (the CA decides membership);
//! the node's own name is in the certificate's subject common name, for logs and for a
//! driver that wants to match it against the membership after the handshake. Re-issuing a
//! certificate is never needed when a node moves.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The DNS name that every node certificate carries and that every client sends as SNI.
///
/// Nodes dial socket addresses, so the name identifies the cluster, not a host: see the
/// [module documentation](self#server-names) for why.
pub const CLUSTER_SERVER_NAME: &str = "cohort.cluster";

/// The ALPN protocol of cohort's RPC over QUIC; both ends require it.
pub const ALPN_PROTOCOL: &[u8] = b"cohort-rpc/1";

/// How long a certificate from [`ClusterCa::issue`] is valid: one year (365 days).
pub const DEFAULT_NODE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How long a CA from [`ClusterCa::generate`] is valid: ten years (3,650 days).
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// How far before "now" a generated certificate starts to be valid, so that a peer whose
/// clock is somewhat behind accepts a certificate issued a moment ago.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Which input of the TLS set-up an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemInput {
    /// The cluster CA certificate(s): the trust roots.
    CaCertificate,
    /// The cluster CA's private key (only [`ClusterCa::from_pem`] reads it).
    CaKey,
    /// This node's certificate chain.
    NodeCertificate,
    /// This node's private key.
    NodeKey,
}

impl fmt::Display for PemInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CaCertificate => "cluster CA certificate",
            Self::CaKey => "cluster CA key",
            Self::NodeCertificate => "node certificate",
            Self::NodeKey => "node private key",
        })
    }
}

/// Where a PEM input came from: which input and, when it was read from a file, the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemOrigin {
    /// Which input.
    pub input: PemInput,
    /// The file it was read from, if it was.
    pub path: Option<PathBuf>,
}

impl PemOrigin {
    fn bytes(input: PemInput) -> Self {
        Self { input, path: None }
    }

    fn file(input: PemInput, path: &Path) -> Self {
        Self {
            input,
            path: Some(path.to_path_buf()),
        }
    }
}

impl fmt::Display for PemOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} file {}", self.input, path.display()),
            None => write!(f, "{}", self.input),
        }
    }
}

/// Why TLS material could not be loaded, generated or turned into a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {origin}: {source}")]
    Unreadable {
        /// The input and its file.
        origin: PemOrigin,
        /// What the operating system said.
        source: io::Error,
    },
    /// The input is not PEM (no PEM section at all, or a malformed one).
    #[error("the {origin} is not PEM: {reason}")]
    NotPem {
        /// The input.
        origin: PemOrigin,
        /// What is wrong with it.
        reason: String,
    },
    /// The input is PEM but holds no `CERTIFICATE` section.
    #[error("the {origin} holds no certificate (no CERTIFICATE section)")]
    NoCertificate {
        /// The input.
        origin: PemOrigin,
    },
    /// The input is PEM but holds no private key section (PKCS#8, PKCS#1 or SEC1).
    #[error("the {origin} holds no private key (no PRIVATE KEY section)")]
    NoPrivateKey {
        /// The input.
        origin: PemOrigin,
    },
    /// The input holds more than one private key, and which one is meant is unclear.
    #[error("the {origin} holds {count} private keys; expected one")]
    SeveralPrivateKeys {
        /// The input.
        origin: PemOrigin,
        /// How many keys it holds.
        count: usize,
    },
    /// A certificate or key is well-formed PEM but its content cannot be used.
    #[error("the {origin} cannot be used: {reason}")]
    Unusable {
        /// The input.
        origin: PemOrigin,
        /// Why, as the TLS library put it.
        reason: String,
    },
    /// The private key is not the key of the certificate it is paired with.
    #[error("the {key} does not belong to the {cert}")]
    KeyMismatch {
        /// The certificate input.
        cert: PemOrigin,
        /// The key input.
        key: PemOrigin,
    },
    /// A node or cluster name cannot go into a certificate.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A validity period that ends before it starts.
    #[error("the validity period ends before it starts")]
    InvalidValidity,
    /// Generating a key or signing a certificate failed.
    #[error("cannot generate a certificate: {source}")]
    Generate {
        /// The certificate library's error.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// Building the TLS configuration failed.
    #[error("cannot build the TLS configuration: {source}")]
    Config {
        /// The TLS library's error.
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl TlsError {
    fn generate(source: rcgen::Error) -> Self {
        Self::Generate {
            source: Box::new(source),
        }
    }

    fn config(source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Config {
            source: Box::new(source),
        }
    }
}

/// The crypto provider of every configuration here: ring, TLS 1.3 only (QUIC requires it).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// All PEM sections of `pem` that rustls-pki-types knows, in order.
fn pem_sections(pem: &[u8], origin: &PemOrigin) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NotPem {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
    if sections.is_empty() {
        return Err(TlsError::NotPem {
            origin: origin.clone(),
            reason: "no PEM section (\"-----BEGIN ...-----\") found".to_owned(),
        });
    }
    Ok(sections)
}

/// Every certificate in `pem`, in order; at least one.
fn parse_certificates(
    pem: &[u8],
    origin: &PemOrigin,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = pem_sections(pem, origin)?
        .into_iter()
        .filter_map(|(kind, der)| CertificateDer::from_pem(kind, der))
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: origin.clone(),
        });
    }
    Ok(certs)
}

/// The one private key in `pem`.
fn parse_private_key(pem: &[u8], origin: &PemOrigin) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut keys: Vec<_> = pem_sections(pem, origin)?
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der))
        .collect();
    match keys.len() {
        0 => Err(TlsError::NoPrivateKey {
            origin: origin.clone(),
        }),
        1 => Ok(keys.remove(0)),
        count => Err(TlsError::SeveralPrivateKeys {
            origin: origin.clone(),
            count,
        }),
    }
}

/// Checks that rustls can use `key` with `chain` and that the key is the end-entity
/// certificate's (when the key can tell its public half, which ring's keys can).
fn check_key_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_origin: &PemOrigin,
    key_origin: &PemOrigin,
) -> Result<(), TlsError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::Unusable {
            origin: key_origin.clone(),
            reason: e.to_string(),
        })?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_origin.clone(),
            key: key_origin.clone(),
        }),
        Err(e) => Err(TlsError::Unusable {
            origin: cert_origin.clone(),
            reason: e.to_string(),
        }),
    }
}

/// Reads a whole file, naming it in the error.
fn read_file(input: PemInput, path: &Path) -> Result<(Vec<u8>, PemOrigin), TlsError> {
    let origin = PemOrigin::file(input, path);
    match std::fs::read(path) {
        Ok(bytes) => Ok((bytes, origin)),
        Err(source) => Err(TlsError::Unreadable { origin, source }),
    }
}

/// What a node needs for mutual TLS: the cluster CA certificate(s) it trusts, its own
/// certificate chain and its private key.
///
/// Loading checks everything that can be checked without a peer: the input is PEM, holds
/// what it should, the CA certificates parse as trust roots, and the key belongs to the node
/// certificate. Validity dates and the chain to the CA are checked at every handshake (a
/// certificate that is not valid yet may be loaded ahead of time).
///
/// `Debug` shows no key material.
pub struct TlsConfig {
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsConfig {
    fn clone(&self) -> Self {
        Self {
            roots: Arc::clone(&self.roots),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_certificates", &self.roots.len())
            .field("certificate_chain", &self.chain.len())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl TlsConfig {
    /// Loads the configuration from PEM: `ca_pem` holds the cluster CA certificate(s) (more
    /// than one while a CA is being rotated), `cert_pem` this node's certificate followed by
    /// any intermediates, and `key_pem` this node's private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        Self::load(
            ca_pem,
            &PemOrigin::bytes(PemInput::CaCertificate),
            cert_pem,
            &PemOrigin::bytes(PemInput::NodeCertificate),
            key_pem,
            &PemOrigin::bytes(PemInput::NodeKey),
        )
    }

    /// Loads the configuration from three PEM files, as [`TlsConfig::from_pem`] does; errors
    /// name the file.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let (ca_pem, ca_origin) = read_file(PemInput::CaCertificate, ca.as_ref())?;
        let (cert_pem, cert_origin) = read_file(PemInput::NodeCertificate, cert.as_ref())?;
        let (key_pem, key_origin) = read_file(PemInput::NodeKey, key.as_ref())?;
        Self::load(
            &ca_pem,
            &ca_origin,
            &cert_pem,
            &cert_origin,
            &key_pem,
            &key_origin,
        )
    }

    fn load(
        ca_pem: &[u8],
        ca_origin: &PemOrigin,
        cert_pem: &[u8],
        cert_origin: &PemOrigin,
        key_pem: &[u8],
        key_origin: &PemOrigin,
    ) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in parse_certificates(ca_pem, ca_origin)? {
            roots.add(ca).map_err(|e| TlsError::Unusable {
                origin: ca_origin.clone(),
                reason: e.to_string(),
            })?;
        }
        let chain = parse_certificates(cert_pem, cert_origin)?;
        let key = parse_private_key(key_pem, key_origin)?;
        check_key_pair(&chain, &key, cert_origin, key_origin)?;
        Ok(Self {
            roots: Arc::new(roots),
            chain,
            key,
        })
    }

    /// The QUIC server configuration: presents this node's certificate and *requires* a
    /// client certificate that chains to the cluster CA (no anonymous clients), with the
    /// cohort ALPN protocol and no session resumption.
    pub(crate) fn quinn_server_config(&self) -> Result<quinn::ServerConfig, TlsError> {
        let provider = provider();
        // The builder's defaults require a client certificate, verify its chain, validity
        // dates and key usage, and refuse anonymous clients; nothing here relaxes them.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&self.roots), provider.clone())
                .build()
                .map_err(TlsError::config)?;
        let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(TlsError::config)?;
        crypto.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        crypto.session_storage = Arc::new(NoServerSessionStorage {});
        crypto.send_tls13_tickets = 0;
        let crypto = QuicServerConfig::try_from(crypto).map_err(TlsError::config)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// The QUIC client configuration: presents this node's certificate and verifies the
    /// server's chain against the cluster CA and [`CLUSTER_SERVER_NAME`], with the cohort ALPN
    /// protocol and no session resumption. Connect with [`connect`].
    pub(crate) fn quinn_client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::config)?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(TlsError::config)?;
        crypto.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
        crypto.resumption = Resumption::disabled();
        let crypto = QuicClientConfig::try_from(crypto).map_err(TlsError::config)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }
}

/// A node certificate and its private key, in PEM, as [`ClusterCa::issue`] makes them.
///
/// `Debug` shows the certificate but not the key.
#[derive(Clone)]
pub struct NodeCertificate {
    /// The certificate (signed by the cluster CA), PEM.
    pub cert_pem: String,
    /// The certificate's private key (PKCS#8), PEM. Secret.
    pub key_pem: String,
}

impl fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl NodeCertificate {
    /// The TLS configuration of the node that holds this certificate, trusting `ca`.
    pub fn tls_config(&self, ca: &ClusterCa) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_pem(
            ca.ca_cert_pem().as_bytes(),
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
        )
    }
}

/// A cluster's certificate authority: it issues the node certificates that [`TlsConfig`]
/// loads. Meant for tests, examples and a command that makes certificates; a production
/// cluster may use any CA whose certificates meet the same profile (a `cohort.cluster` DNS
/// name, TLS client and server use).
///
/// `Debug` shows the certificate but not the key.
///
/// ```
/// use cohort_smol::ClusterCa;
///
/// # fn main() -> Result<(), cohort_smol::TlsError> {
/// let ca = ClusterCa::generate("orders")?;
/// // Keep these two secret-safe: whoever has the key can admit nodes to the cluster.
/// let (ca_cert_pem, ca_key_pem) = (ca.ca_cert_pem().to_owned(), ca.ca_key_pem().to_owned());
///
/// // Later, or in another process: load the CA and certify a node.
/// let ca = ClusterCa::from_pem(ca_cert_pem.as_bytes(), ca_key_pem.as_bytes())?;
/// let node_1 = ca.issue("node-1")?;
/// let tls = node_1.tls_config(&ca)?;
/// println!("{tls:?}"); // no key material
/// # Ok(())
/// # }
/// ```
pub struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A fresh ECDSA P-256 key pair.
fn generate_key() -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(TlsError::generate)
}

impl ClusterCa {
    /// Generates a new CA (ECDSA P-256) for the cluster `cluster_name`, valid for
    /// [`DEFAULT_CA_VALIDITY`] from an hour ago. It signs node certificates directly (no
    /// intermediate CAs).
    pub fn generate(cluster_name: &str) -> Result<Self, TlsError> {
        if cluster_name.is_empty() {
            return Err(TlsError::InvalidName {
                name: cluster_name.to_owned(),
                reason: "the cluster name is empty",
            });
        }
        let key = generate_key()?;
        let mut params = CertificateParams::default();
        // The subject names the cluster and the key: two CAs never share a name, so a node of
        // another CA is refused as "unknown issuer" even if both clusters have the same name.
        let key_id: String = params.key_identifier(&key)[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "cohort");
        subject.push(
            DnType::CommonName,
            format!("cohort CA of {cluster_name} ({key_id})"),
        );
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + DEFAULT_CA_VALIDITY).into();
        let cert = params.self_signed(&key).map_err(TlsError::generate)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an existing CA from its certificate and private key (PEM). The key must be the
    /// certificate's; the first certificate in `cert_pem` is the CA's, and
    /// [`ca_cert_pem`](Self::ca_cert_pem) gives `cert_pem` back as it was.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let cert_origin = PemOrigin::bytes(PemInput::CaCertificate);
        let key_origin = PemOrigin::bytes(PemInput::CaKey);
        let cert = parse_certificates(cert_pem, &cert_origin)?.remove(0);
        let key = parse_private_key(key_pem, &key_origin)?;
        check_key_pair(std::slice::from_ref(&cert), &key, &cert_origin, &key_origin)?;
        let key_pair = KeyPair::try_from(&key).map_err(|e| TlsError::Unusable {
            origin: key_origin.clone(),
            reason: e.to_string(),
        })?;
        let key_pem = key_pair.serialize_pem();
        let issuer = Issuer::from_ca_cert_der(&cert, key_pair).map_err(|e| TlsError::Unusable {
            origin: cert_origin.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            issuer,
            cert_pem: String::from_utf8_lossy(cert_pem).into_owned(),
            key_pem,
        })
    }

    /// The CA certificate, PEM: every node's trust root.
    pub fn ca_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (PKCS#8), PEM. Secret: whoever has it can admit nodes.
    pub fn ca_key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a certificate for the node `node_name`, valid for [`DEFAULT_NODE_VALIDITY`]
    /// from an hour ago (so that a peer whose clock is a little behind accepts it).
    pub fn issue(&self, node_name: &str) -> Result<NodeCertificate, TlsError> {
        let now = SystemTime::now();
        self.issue_with_validity(node_name, now - BACKDATE, now + DEFAULT_NODE_VALIDITY)
    }

    /// Issues a certificate for the node `node_name`, valid from `not_before` to `not_after`
    /// (both may be in the past or the future, e.g. to test that expired certificates are
    /// refused).
    ///
    /// The certificate has a fresh ECDSA P-256 key, the subject common name `node_name`, the
    /// DNS name [`CLUSTER_SERVER_NAME`], and may serve as TLS client and server.
    pub fn issue_with_validity(
        &self,
        node_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<NodeCertificate, TlsError> {
        if node_name.is_empty() {
            return Err(TlsError::InvalidName {
                name: node_name.to_owned(),
                reason: "the node name is empty",
            });
        }
        if not_after <= not_before {
            return Err(TlsError::InvalidValidity);
        }
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "cohort");
        subject.push(DnType::CommonName, node_name);
        params.distinguished_name = subject;
        let server_name = CLUSTER_SERVER_NAME.try_into().map_err(TlsError::generate)?;
        params.subject_alt_names = vec![SanType::DnsName(server_name)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = generate_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(TlsError::generate)?;
        Ok(NodeCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// One line saying why a connection failed or was closed, for logs: for a refused handshake,
/// which side refused which certificate and why ("peer certificate is not signed by the
/// cluster CA ...", "this node's certificate was refused by the peer: it has expired or is not
/// valid yet ..."), with the TLS library's own words when they are known.
pub(crate) fn connection_failure_reason(error: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError;
    match error {
        // Detected here: rustls's error text is the reason.
        ConnectionError::TransportError(e) => match tls_alert(u64::from(e.code)) {
            Some(alert) => format!("{} ({})", refused_by_us(alert, &e.reason), e.reason),
            None => e.to_string(),
        },
        // Detected by the peer, which sent its TLS alert (and, with quinn, its reason text).
        ConnectionError::ConnectionClosed(close) => match tls_alert(u64::from(close.error_code)) {
            Some(alert) => {
                let detail = String::from_utf8_lossy(&close.reason);
                match detail.is_empty() {
                    true => refused_by_peer(alert, ""),
                    false => format!("{} (peer said: {detail})", refused_by_peer(alert, &detail)),
                }
            }
            None => error.to_string(),
        },
        ConnectionError::TimedOut => "the peer did not answer (timed out)".to_owned(),
        other => other.to_string(),
    }
}

/// The TLS alert carried by a QUIC CRYPTO_ERROR code (0x100 + alert), if it is one.
fn tls_alert(code: u64) -> Option<u8> {
    (0x100..=0x1ff)
        .contains(&code)
        .then(|| u8::try_from(code - 0x100).unwrap_or(u8::MAX))
}

/// What an alert says about a certificate, in words that fit after "certificate"; `detail`
/// (rustls's error text, when known) tells an expired certificate from one not valid yet.
fn alert_meaning(alert: u8, detail: &str) -> Option<&'static str> {
    Some(match alert {
        42 => "is malformed or not valid for the cluster name",
        43 => "is not meant for this use (key usage)",
        44 => "was revoked",
        45 if detail.contains("expired") => "has expired",
        45 if detail.contains("not valid yet") => "is not valid yet",
        45 => "has expired or is not valid yet",
        46 => "was refused",
        48 => "is not signed by the cluster CA (unknown issuer)",
        49 => "was refused (access denied)",
        // What webpki reports when an issuer of the same name did not sign the certificate.
        51 => "is not signed by the cluster CA (bad signature)",
        _ => return None,
    })
}

fn refused_by_us(alert: u8, detail: &str) -> String {
    match (alert, alert_meaning(alert, detail)) {
        (_, Some(meaning)) => format!("peer certificate {meaning}"),
        (116, _) => "the peer presented no certificate".to_owned(),
        (120, _) => "the peer does not speak cohort RPC (no common ALPN protocol)".to_owned(),
        _ => format!("TLS handshake failed here (alert {alert})"),
    }
}

fn refused_by_peer(alert: u8, detail: &str) -> String {
    match (alert, alert_meaning(alert, detail)) {
        (_, Some(meaning)) => format!("the peer refused this node's certificate: it {meaning}"),
        (116, _) => "the peer requires a certificate and this node presented none".to_owned(),
        (120, _) => "the peer does not speak cohort RPC (no common ALPN protocol)".to_owned(),
        _ => format!("the peer refused the TLS handshake (alert {alert})"),
    }
}

/// Logs a connection to or from `peer` that failed or was closed with `error`.
pub(crate) fn warn_connection_failed(
    peer: SocketAddr,
    direction: &'static str,
    error: &quinn::ConnectionError,
) {
    tracing::warn!(
        %peer,
        direction,
        reason = %connection_failure_reason(error),
        "RPC connection refused or failed"
    );
}

/// Why dialing a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    /// The endpoint could not start the connection (stopping, bad address, no client config).
    #[error("cannot dial {peer}: {source}")]
    Start {
        peer: SocketAddr,
        source: quinn::ConnectError,
    },
    /// The handshake failed.
    #[error("connection to {peer} failed: {}", connection_failure_reason(.source))]
    Connection {
        peer: SocketAddr,
        source: quinn::ConnectionError,
    },
}

/// Dials `peer` from `endpoint` (whose default client configuration comes from
/// [`TlsConfig::quinn_client_config`]) with [`CLUSTER_SERVER_NAME`], logging a failed
/// handshake.
///
/// In TLS 1.3 the client finishes its handshake before the server has checked the client's
/// certificate, so a node whose certificate the server refuses may get a connection here that
/// is closed right after: its first stream fails, and [`quinn::Connection::closed`] then gives
/// the error that [`connection_failure_reason`] explains.
pub(crate) async fn connect(
    endpoint: &quinn::Endpoint,
    peer: SocketAddr,
) -> Result<quinn::Connection, DialError> {
    let connecting = endpoint
        .connect(peer, CLUSTER_SERVER_NAME)
        .map_err(|source| DialError::Start { peer, source })?;
    connecting.await.map_err(|source| {
        warn_connection_failed(peer, "outgoing", &source);
        DialError::Connection { peer, source }
    })
}

/// Completes the handshake of an incoming connection, logging (and returning) the error if it
/// is refused.
pub(crate) async fn accept(
    incoming: quinn::Incoming,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let peer = incoming.remote_address();
    incoming.await.inspect_err(|error| {
        warn_connection_failed(peer, "incoming", error);
    })
}

#[cfg(test)]
mod tests;
