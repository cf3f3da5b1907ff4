//! `cohort certs`: a cluster CA and node certificates in a folder, for trying the smol
//! driver's mutual TLS by hand.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cohort_smol::{ClusterCa, TlsError};

use crate::args::CertsArgs;

/// The CA's files in the folder.
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// Why the certificates could not be written.
#[derive(Debug)]
pub(crate) enum CertsError {
    Io(PathBuf, std::io::Error),
    Tls(TlsError),
    Exists(PathBuf),
}

impl std::fmt::Display for CertsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(path, error) => write!(f, "{}: {error}", path.display()),
            Self::Tls(error) => write!(f, "{error}"),
            Self::Exists(path) => write!(
                f,
                "{} exists (pass --force to replace the node certificates)",
                path.display()
            ),
        }
    }
}

impl From<TlsError> for CertsError {
    fn from(error: TlsError) -> Self {
        Self::Tls(error)
    }
}

/// Writes `contents` to `path`; a private key is readable by its owner only.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), CertsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let io = |e| CertsError::Io(path.to_owned(), e);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    Ok(())
}

/// Writes the CA (or reuses the one already in the folder) and a certificate and key per
/// node. Returns the lines to print: every file written or reused.
pub(crate) fn certs(args: &CertsArgs) -> Result<Vec<String>, CertsError> {
    let dir = &args.dir;
    fs::create_dir_all(dir).map_err(|e| CertsError::Io(dir.clone(), e))?;
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let mut lines = Vec::new();
    let ca = if ca_cert.exists() && ca_key.exists() {
        let read = |p: &Path| fs::read(p).map_err(|e| CertsError::Io(p.to_owned(), e));
        let ca = ClusterCa::from_pem(&read(&ca_cert)?, &read(&ca_key)?)?;
        lines.push(format!("reused {}", ca_cert.display()));
        ca
    } else {
        let ca = ClusterCa::generate(&args.cluster)?;
        write(&ca_cert, ca.ca_cert_pem(), false)?;
        write(&ca_key, ca.ca_key_pem(), true)?;
        lines.push(format!("wrote {}", ca_cert.display()));
        lines.push(format!("wrote {}", ca_key.display()));
        ca
    };
    let mut issued = Vec::new();
    for name in &args.nodes {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        for path in [&cert, &key] {
            if path.exists() && !args.force {
                return Err(CertsError::Exists(path.clone()));
            }
        }
        issued.push((ca.issue(name)?, cert, key));
    }
    for (node, cert, key) in issued {
        write(&cert, &node.cert_pem, false)?;
        write(&key, &node.key_pem, true)?;
        lines.push(format!("wrote {}", cert.display()));
        lines.push(format!("wrote {}", key.display()));
    }
    Ok(lines)
}
