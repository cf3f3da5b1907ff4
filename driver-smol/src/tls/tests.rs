//! Mutual TLS over real QUIC on 127.0.0.1, run on smol, with every certificate generated at run
//! time; and the typed errors of loading PEM.
//!
//! Every test that touches the network runs under one time bound ([`run`]); nothing sleeps.

use std::error::Error;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use quinn::crypto::rustls::HandshakeData;

use super::*;

/// The most any network test may take; on loopback each takes milliseconds.
const BOUND: Duration = Duration::from_secs(20);

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Runs `test` on smol, failing if it does not finish within [`BOUND`].
fn run<T>(test: impl Future<Output = T>) -> T {
    smol::block_on(async {
        smol::future::or(async { Some(test.await) }, async {
            smol::Timer::after(BOUND).await;
            None
        })
        .await
        .expect("the test did not finish in time")
    })
}

/// A node's endpoint on 127.0.0.1: serves with `tls` and dials with it.
fn endpoint(tls: &TlsConfig) -> (quinn::Endpoint, SocketAddr) {
    let server = tls.quinn_server_config().expect("server config");
    let mut endpoint =
        quinn::Endpoint::server(server, (Ipv4Addr::LOCALHOST, 0).into()).expect("bind 127.0.0.1");
    endpoint.set_default_client_config(tls.quinn_client_config().expect("client config"));
    let addr = endpoint.local_addr().expect("local address");
    (endpoint, addr)
}

fn node(ca: &ClusterCa, name: &str) -> TlsConfig {
    ca.issue(name)
        .expect("issue")
        .tls_config(ca)
        .expect("tls config")
}

/// Accepts one connection and echoes one bidirectional stream on it. Returns the connection
/// (kept open) or why its handshake failed.
async fn serve_one(endpoint: quinn::Endpoint) -> Result<quinn::Connection, String> {
    let incoming = endpoint.accept().await.expect("the endpoint is open");
    let connection = accept(incoming)
        .await
        .map_err(|e| connection_failure_reason(&e))?;
    let (mut send, mut recv) = connection
        .accept_bi()
        .await
        .map_err(|e| connection_failure_reason(&e))?;
    let request = recv.read_to_end(64 * 1024).await.expect("read the request");
    send.write_all(&request).await.expect("echo");
    send.finish().expect("finish the echo");
    Ok(connection)
}

/// Dials `peer`, sends `message` on a new stream and reads the echo. Returns the connection
/// and the echo, or why the connection failed (during the handshake or right after, when the
/// server refused this node's certificate after the client had finished its side).
async fn dial_and_echo(
    endpoint: &quinn::Endpoint,
    peer: SocketAddr,
    message: &[u8],
) -> Result<(quinn::Connection, Vec<u8>), String> {
    let connection = connect(endpoint, peer).await.map_err(|e| e.to_string())?;
    let exchange = async {
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(message).await?;
        send.finish()?;
        Ok::<_, Box<dyn Error>>(recv.read_to_end(64 * 1024).await?)
    };
    match exchange.await {
        Ok(echo) => Ok((connection, echo)),
        Err(_) => Err(connection_failure_reason(&connection.closed().await)),
    }
}

/// `client` dials `server` and they try one echo: the client's outcome and the server's.
async fn attempt(
    client: &quinn::Endpoint,
    server: &quinn::Endpoint,
    server_addr: SocketAddr,
    message: &[u8],
) -> (
    Result<(quinn::Connection, Vec<u8>), String>,
    Result<quinn::Connection, String>,
) {
    let served = smol::spawn(serve_one(server.clone()));
    let dialed = dial_and_echo(client, server_addr, message).await;
    (dialed, served.await)
}

fn peer_certificate(connection: &quinn::Connection) -> CertificateDer<'static> {
    let chain = connection
        .peer_identity()
        .expect("the peer presented a certificate")
        .downcast::<Vec<CertificateDer<'static>>>()
        .expect("rustls peer identity");
    chain[0].clone()
}

fn handshake_data(connection: &quinn::Connection) -> HandshakeData {
    *connection
        .handshake_data()
        .expect("handshake data")
        .downcast::<HandshakeData>()
        .expect("rustls handshake data")
}

#[test]
fn nodes_of_one_cluster_connect_both_ways_and_echo() {
    let ca = ClusterCa::generate("orders").unwrap();
    // Node b is certified by the same CA reloaded from its PEM (as a CLI would): the names
    // must survive the round trip for its certificate to chain to the original.
    let reloaded =
        ClusterCa::from_pem(ca.ca_cert_pem().as_bytes(), ca.ca_key_pem().as_bytes()).unwrap();
    let a_tls = node(&ca, "node-a");
    let b_tls = reloaded.issue("node-b").unwrap().tls_config(&ca).unwrap();
    run(async {
        let (a, a_addr) = endpoint(&a_tls);
        let (b, b_addr) = endpoint(&b_tls);
        for (client, client_tls, server, server_tls, server_addr, message) in [
            (&a, &a_tls, &b, &b_tls, b_addr, &b"from a to b"[..]),
            (&b, &b_tls, &a, &a_tls, a_addr, &b"from b to a"[..]),
        ] {
            let (dialed, served) = attempt(client, server, server_addr, message).await;
            let (client_side, echo) = dialed.expect("the client connects and gets its echo");
            let server_side = served.expect("the server accepts");
            assert_eq!(echo, message);
            // Both ends saw the other's certificate: the authentication is mutual.
            assert_eq!(peer_certificate(&server_side), client_tls.chain[0]);
            assert_eq!(peer_certificate(&client_side), server_tls.chain[0]);
            let server_view = handshake_data(&server_side);
            assert_eq!(server_view.protocol.as_deref(), Some(ALPN_PROTOCOL));
            assert_eq!(
                server_view.server_name.as_deref(),
                Some(CLUSTER_SERVER_NAME)
            );
            client_side.close(0u32.into(), b"done");
            server_side.close(0u32.into(), b"done");
        }
        a.close(0u32.into(), b"done");
        b.close(0u32.into(), b"done");
    });
}

#[test]
fn a_client_certified_by_another_ca_is_refused() {
    let ca = ClusterCa::generate("orders").unwrap();
    let other = ClusterCa::generate("orders").unwrap();
    let server_tls = node(&ca, "server");
    // Trusts the cluster CA (so it accepts the server) but holds a certificate of another CA.
    let intruder_tls = other.issue("intruder").unwrap().tls_config(&ca).unwrap();
    run(async {
        let (server, server_addr) = endpoint(&server_tls);
        let (intruder, _) = endpoint(&intruder_tls);
        let (dialed, served) = attempt(&intruder, &server, server_addr, b"let me in").await;
        let server_reason = served.expect_err("the server refuses the intruder");
        assert!(
            server_reason.contains("certificate") && server_reason.contains("unknown issuer"),
            "{server_reason}"
        );
        assert!(
            server_reason.contains("not signed by the cluster CA"),
            "{server_reason}"
        );
        let client_reason = dialed.expect_err("the intruder gets no echo");
        assert!(
            client_reason.contains("refused this node's certificate")
                && client_reason.contains("unknown issuer"),
            "{client_reason}"
        );
    });
}

#[test]
fn a_server_certified_by_another_ca_is_refused() {
    let ca = ClusterCa::generate("orders").unwrap();
    let other = ClusterCa::generate("orders").unwrap();
    let client_tls = node(&ca, "client");
    // Trusts the cluster CA (so it would accept the client) but serves a certificate of
    // another CA.
    let impostor_tls = other.issue("impostor").unwrap().tls_config(&ca).unwrap();
    run(async {
        let (client, _) = endpoint(&client_tls);
        let (impostor, impostor_addr) = endpoint(&impostor_tls);
        let (dialed, served) = attempt(&client, &impostor, impostor_addr, b"hello?").await;
        let client_reason = dialed.expect_err("the client refuses the impostor");
        assert!(
            client_reason.contains("peer certificate is not signed by the cluster CA")
                && client_reason.contains("UnknownIssuer"),
            "{client_reason}"
        );
        let server_reason = served.expect_err("the impostor's handshake fails");
        assert!(
            server_reason.contains("refused this node's certificate")
                && server_reason.contains("unknown issuer"),
            "{server_reason}"
        );
    });
}

/// A certificate of the cluster CA whose validity ended yesterday.
fn expired(ca: &ClusterCa, name: &str) -> TlsConfig {
    let now = SystemTime::now();
    let cert = ca
        .issue_with_validity(name, now - 30 * DAY, now - DAY)
        .unwrap();
    cert.tls_config(ca).unwrap()
}

#[test]
fn a_client_with_an_expired_certificate_is_refused() {
    let ca = ClusterCa::generate("orders").unwrap();
    let server_tls = node(&ca, "server");
    let expired_tls = expired(&ca, "old-node");
    run(async {
        let (server, server_addr) = endpoint(&server_tls);
        let (old, _) = endpoint(&expired_tls);
        let (dialed, served) = attempt(&old, &server, server_addr, b"still here").await;
        let server_reason = served.expect_err("the server refuses an expired certificate");
        assert!(
            server_reason.contains("peer certificate has expired"),
            "{server_reason}"
        );
        let client_reason = dialed.expect_err("the expired node gets no echo");
        assert!(
            client_reason.contains("refused this node's certificate")
                && client_reason.contains("expired"),
            "{client_reason}"
        );
    });
}

#[test]
fn a_server_with_an_expired_certificate_is_refused() {
    let ca = ClusterCa::generate("orders").unwrap();
    let client_tls = node(&ca, "client");
    let expired_tls = expired(&ca, "old-node");
    run(async {
        let (client, _) = endpoint(&client_tls);
        let (old, old_addr) = endpoint(&expired_tls);
        let (dialed, served) = attempt(&client, &old, old_addr, b"hello").await;
        let client_reason = dialed.expect_err("the client refuses an expired certificate");
        assert!(
            client_reason.contains("peer certificate has expired"),
            "{client_reason}"
        );
        assert!(served.is_err(), "the expired node's handshake fails");
    });
}

#[test]
fn a_certificate_that_is_not_valid_yet_is_refused() {
    let ca = ClusterCa::generate("orders").unwrap();
    let server_tls = node(&ca, "server");
    let now = SystemTime::now();
    let early_tls = ca
        .issue_with_validity("early-node", now + DAY, now + 30 * DAY)
        .unwrap()
        .tls_config(&ca)
        .unwrap();
    run(async {
        let (server, server_addr) = endpoint(&server_tls);
        let (early, _) = endpoint(&early_tls);
        let (dialed, served) = attempt(&early, &server, server_addr, b"too soon").await;
        let server_reason = served.expect_err("the server refuses a future certificate");
        assert!(
            server_reason.contains("peer certificate is not valid yet"),
            "{server_reason}"
        );
        assert!(dialed.is_err(), "the early node gets no echo");
    });
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let ca = ClusterCa::generate("orders").unwrap();
    let server_tls = node(&ca, "server");
    // A client that trusts the cluster CA but presents no certificate of its own.
    let mut anonymous = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(Arc::clone(&server_tls.roots))
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    let anonymous =
        quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(anonymous).unwrap()));
    run(async {
        let (server, server_addr) = endpoint(&server_tls);
        let mut client = quinn::Endpoint::client((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        client.set_default_client_config(anonymous);
        let (dialed, served) = attempt(&client, &server, server_addr, b"anyone home?").await;
        let server_reason = served.expect_err("the server requires a client certificate");
        assert!(
            server_reason.contains("presented no certificate"),
            "{server_reason}"
        );
        let client_reason = dialed.expect_err("the anonymous client gets no echo");
        assert!(
            client_reason.contains("requires a certificate"),
            "{client_reason}"
        );
    });
}

#[test]
fn a_client_of_another_protocol_is_refused() {
    let ca = ClusterCa::generate("orders").unwrap();
    let server_tls = node(&ca, "server");
    let client_tls = node(&ca, "client");
    // A valid node certificate, but another ALPN protocol.
    let mut other = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(Arc::clone(&client_tls.roots))
        .with_client_auth_cert(client_tls.chain.clone(), client_tls.key.clone_key())
        .unwrap();
    other.alpn_protocols = vec![b"other-rpc/1".to_vec()];
    let other = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(other).unwrap()));
    run(async {
        let (server, server_addr) = endpoint(&server_tls);
        let mut client = quinn::Endpoint::client((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        client.set_default_client_config(other);
        let (dialed, served) = attempt(&client, &server, server_addr, b"hello").await;
        let server_reason = served.expect_err("the server requires cohort's ALPN protocol");
        assert!(
            server_reason.contains("no common ALPN protocol"),
            "{server_reason}"
        );
        let client_reason = dialed.expect_err("the other protocol's client gets no echo");
        assert!(
            client_reason.contains("no common ALPN protocol"),
            "{client_reason}"
        );
    });
}

// --- Loading PEM ---------------------------------------------------------------------------

struct Pems {
    ca: String,
    cert: String,
    key: String,
}

fn pems() -> Pems {
    let ca = ClusterCa::generate("orders").unwrap();
    let node = ca.issue("node-1").unwrap();
    Pems {
        ca: ca.ca_cert_pem().to_owned(),
        cert: node.cert_pem,
        key: node.key_pem,
    }
}

fn load(ca: &str, cert: &str, key: &str) -> Result<TlsConfig, TlsError> {
    TlsConfig::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes())
}

#[test]
fn valid_pem_loads() {
    let p = pems();
    let tls = load(&p.ca, &p.cert, &p.key).unwrap();
    assert_eq!(tls.roots.len(), 1);
    assert_eq!(tls.chain.len(), 1);
    // The configurations build from it.
    tls.quinn_server_config().unwrap();
    tls.quinn_client_config().unwrap();
}

#[test]
fn garbage_is_not_pem() {
    let p = pems();
    let err = load("this is not a certificate", &p.cert, &p.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::NotPem { origin, .. }
            if origin.input == PemInput::CaCertificate && origin.path.is_none()),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("cluster CA certificate is not PEM")
    );
    let err = load(&p.ca, &p.cert, "\u{0}\u{1}binary").unwrap_err();
    assert!(
        matches!(&err, TlsError::NotPem { origin, .. } if origin.input == PemInput::NodeKey),
        "{err:?}"
    );
}

#[test]
fn a_truncated_pem_is_not_pem() {
    let p = pems();
    let truncated = &p.cert[..p.cert.find("-----END").unwrap()];
    let err = load(&p.ca, truncated, &p.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::NotPem { origin, reason }
            if origin.input == PemInput::NodeCertificate && reason.contains("end marker")),
        "{err:?}"
    );
}

#[test]
fn a_key_without_a_certificate_is_refused() {
    let p = pems();
    // The key file given where the certificate belongs.
    let err = load(&p.ca, &p.key, &p.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoCertificate { origin } if origin.input == PemInput::NodeCertificate),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the node certificate holds no certificate (no CERTIFICATE section)"
    );
    // And where the CA certificate belongs.
    let err = load(&p.key, &p.cert, &p.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoCertificate { origin } if origin.input == PemInput::CaCertificate),
        "{err:?}"
    );
}

#[test]
fn a_certificate_without_a_key_is_refused() {
    let p = pems();
    let err = load(&p.ca, &p.cert, &p.cert).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoPrivateKey { origin } if origin.input == PemInput::NodeKey),
        "{err:?}"
    );
}

#[test]
fn two_keys_are_refused() {
    let p = pems();
    let other = pems();
    let two = format!("{}{}", p.key, other.key);
    let err = load(&p.ca, &p.cert, &two).unwrap_err();
    assert!(
        matches!(err, TlsError::SeveralPrivateKeys { count: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn the_key_of_another_certificate_is_a_mismatch() {
    let p = pems();
    let other = pems();
    let err = load(&p.ca, &p.cert, &other.key).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the node private key does not belong to the node certificate"
    );

    let ca = ClusterCa::generate("a").unwrap();
    let other_ca = ClusterCa::generate("b").unwrap();
    let err = ClusterCa::from_pem(
        ca.ca_cert_pem().as_bytes(),
        other_ca.ca_key_pem().as_bytes(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TlsError::KeyMismatch { key, .. } if key.input == PemInput::CaKey),
        "{err:?}"
    );
}

#[test]
fn a_certificate_section_that_is_not_a_certificate_is_unusable() {
    let p = pems();
    let bogus = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let err = load(bogus, &p.cert, &p.key).unwrap_err();
    assert!(
        matches!(&err, TlsError::Unusable { origin, .. } if origin.input == PemInput::CaCertificate),
        "{err:?}"
    );
}

/// A directory of its own under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "cohort-smol-{test}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn files_load_and_errors_name_the_file() {
    let p = pems();
    let dir = TempDir::new("files");
    let ca = dir.write("ca.pem", &p.ca);
    let cert = dir.write("node.pem", &p.cert);
    let key = dir.write("node.key", &p.key);
    TlsConfig::from_pem_files(&ca, &cert, &key).unwrap();

    let missing = dir.0.join("missing.key");
    let err = TlsConfig::from_pem_files(&ca, &cert, &missing).unwrap_err();
    assert!(
        matches!(&err, TlsError::Unreadable { origin, source }
            if origin.input == PemInput::NodeKey
                && origin.path.as_deref() == Some(missing.as_path())
                && source.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with("cannot read the node private key file ")
            && message.contains(&*missing.to_string_lossy()),
        "{message}"
    );

    let garbage = dir.write("garbage.pem", "garbage");
    let err = TlsConfig::from_pem_files(&garbage, &cert, &key).unwrap_err();
    assert!(matches!(err, TlsError::NotPem { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&*garbage.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn debug_shows_no_key_material() {
    let ca = ClusterCa::generate("orders").unwrap();
    let node_cert = ca.issue("node-1").unwrap();
    let tls = node_cert.tls_config(&ca).unwrap();
    for (debug, key_pem) in [
        (format!("{tls:?}"), &node_cert.key_pem),
        (format!("{tls:#?}"), &node_cert.key_pem),
        (format!("{node_cert:?}"), &node_cert.key_pem),
        (format!("{ca:?}"), &ca.ca_key_pem().to_owned()),
    ] {
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        for line in key_pem.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!debug.contains(line), "{debug} shows key material");
        }
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}

#[test]
fn issuing_checks_its_input() {
    let ca = ClusterCa::generate("orders").unwrap();
    assert!(matches!(
        ca.issue("").unwrap_err(),
        TlsError::InvalidName { .. }
    ));
    let now = SystemTime::now();
    assert!(matches!(
        ca.issue_with_validity("node-1", now, now).unwrap_err(),
        TlsError::InvalidValidity
    ));
    assert!(matches!(
        ClusterCa::generate("").unwrap_err(),
        TlsError::InvalidName { .. }
    ));
}
