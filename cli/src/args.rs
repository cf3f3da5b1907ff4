//! The command line: what `cohort` accepts, parsed by clap. Every default shown in the help is
//! the library's own constant, so the help cannot drift from what a node does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::builder::NonEmptyStringValueParser;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use cohort_tokio::{
    DEFAULT_CLUSTER_ID, DEFAULT_DATA_CENTER, DEFAULT_GOSSIP_INTERVAL, NodeConfig, ProtocolVersion,
};

/// The gossip interval a node uses when `--interval-ms` is not given, in milliseconds.
fn default_interval_ms() -> u64 {
    u64::try_from(DEFAULT_GOSSIP_INTERVAL.as_millis()).unwrap_or(u64::MAX)
}

/// cohort: cluster membership for Rust, from the command line.
#[derive(Debug, Parser)]
#[command(name = "cohort", version)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run one node (UDP gossip; `--driver tokio` or `smol`) and print its membership changes,
    /// one line each.
    ///
    /// Prints `ready id=<id> listen=<addr> rpc=<addr>` once bound (`rpc=none` for a node with
    /// no RPC: a smol node without TLS), then a line per membership event, each followed by
    /// `members live=<n> known=<n>`, and `stopped` after leaving. The lines are the same for
    /// both drivers. The node leaves the cluster gracefully on Ctrl-C, when its standard input
    /// closes, or when it reads a `stop` line.
    ///
    /// Mutual TLS with the smol driver, step by step: `cohort certs --dir certs --nodes a,b`
    /// writes a cluster CA and a certificate per node; `cohort agent --driver smol --tls-ca
    /// certs/ca.pem --tls-cert certs/a.pem --tls-key certs/a.key ...` runs node a serving RPC
    /// over QUIC (its address is the `rpc=` of the ready line); `cohort members --driver smol`
    /// with the same three flags and `--node <that address>` asks it for its members.
    Agent(Box<AgentArgs>),
    /// Ask a running node for its view of the membership (over RPC, its admin service) and
    /// print it as a table: id, address, data center, status, generation, key count.
    ///
    /// A tokio node answers over TCP; a smol node over QUIC with mutual TLS: pass
    /// `--driver smol` and the `--tls-*` files (any certificate of the same cluster CA, e.g.
    /// one more from `cohort certs`).
    Members(MembersArgs),
    /// Write a cluster CA and a certificate and key per node (PEM) into a folder, for trying
    /// the smol driver's mutual TLS by hand: `ca.pem`, `ca.key`, `<node>.pem`, `<node>.key`
    /// (keys readable by their owner only). A CA already in the folder is reused, so more
    /// nodes can be added later. For real deployments, use your own PKI.
    Certs(CertsArgs),
}

/// The settings of `cohort certs`.
#[derive(Debug, Args)]
pub(crate) struct CertsArgs {
    /// The folder to write into (made if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: PathBuf,

    /// The nodes to certify, comma separated; may be repeated. Each name becomes the
    /// certificate's common name and its file names.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',', required = true,
          value_parser = parse_node_name)]
    pub(crate) nodes: Vec<String>,

    /// The cluster's name, in the CA's name (when a new CA is made).
    #[arg(long, value_name = "ID", default_value = DEFAULT_CLUSTER_ID)]
    pub(crate) cluster: String,

    /// Replace node certificates already in the folder (the CA is always kept).
    #[arg(long)]
    pub(crate) force: bool,
}

/// A node name usable as a file name: letters, digits, `.`, `_` and `-`, not starting with `.`.
fn parse_node_name(raw: &str) -> Result<String, String> {
    let valid = !raw.is_empty()
        && !raw.starts_with('.')
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "{raw:?}: a node name here is letters, digits, '.', '_' and '-' (not starting with '.')"
        ))
    }
}

/// The settings of `cohort members`.
#[derive(Debug, Args)]
pub(crate) struct MembersArgs {
    /// The node to ask: its RPC address (`host:port`), the `rpc=` of its agent's ready line (by
    /// default a tokio node serves RPC on its gossip port, a smol node on a port of its own).
    #[arg(long, value_name = "ADDR")]
    pub(crate) node: String,

    /// The driver of the node asked, and its TLS files.
    #[command(flatten)]
    pub(crate) driver: DriverArgs,

    /// Print one JSON object (the node's snapshot) instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    /// How long the call may take once connected, in milliseconds (connecting has its own
    /// bound of 5 s).
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub(crate) timeout_ms: u64,
}

/// The settings of `cohort agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The node's name, unique in the cluster (a restart keeps it and takes a new generation).
    #[arg(long, value_name = "NAME", value_parser = NonEmptyStringValueParser::new())]
    pub(crate) name: String,

    /// The address the gossip socket binds (port 0 for any free port).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: SocketAddr,

    /// Peers to contact first (`host:port` or `ip:port`), comma separated; may be repeated.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub(crate) seeds: Vec<String>,

    /// The address peers send to, if not the listen address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) public: Option<SocketAddr>,

    /// This node's data center.
    #[arg(long, value_name = "DC", default_value = DEFAULT_DATA_CENTER)]
    pub(crate) dc: String,

    /// The cluster to join (nodes of other clusters are refused).
    #[arg(long, value_name = "ID", default_value = DEFAULT_CLUSTER_ID)]
    pub(crate) cluster: String,

    /// The membership protocol: `chitchat` (chitchat's gossip; joins real chitchat clusters)
    /// or `cohort` (cohort nodes only; per-node cost independent of the cluster's size). Every
    /// node of a cluster must use the same.
    #[arg(long, value_enum, value_name = "MODE", default_value = "chitchat")]
    pub(crate) mode: Mode,

    /// Cohort mode: the time between probes, in milliseconds.
    #[arg(
        long = "probe-interval-ms",
        value_name = "MS",
        default_value_t = default_probe_interval_ms(),
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub(crate) probe_interval_ms: u64,

    /// How often a gossip round runs (chitchat mode), in milliseconds.
    #[arg(
        long = "interval-ms",
        value_name = "MS",
        default_value_t = default_interval_ms(),
        value_parser = clap::value_parser!(u64).range(1..),
    )]
    pub(crate) interval_ms: u64,

    /// This incarnation's generation [default: the wall clock in milliseconds at start].
    #[arg(long, value_name = "G")]
    pub(crate) generation: Option<u64>,

    /// Send bare chitchat datagrams, so that real chitchat nodes understand this node.
    #[arg(long)]
    pub(crate) chitchat_compatible: bool,

    /// The protocol version of the gossip rounds this node starts [default: the driver's].
    #[arg(long, value_enum, value_name = "VERSION")]
    pub(crate) protocol: Option<Protocol>,

    /// A key-value to publish from the start, as `key=value`; may be repeated.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub(crate) meta: Vec<(String, String)>,

    /// Print every line as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,

    /// Authenticate gossip with the cluster key in FILE (64 hexadecimal digits; every node of
    /// the cluster needs the same). The key can also come from the environment variable
    /// COHORT_CLUSTER_KEY, never from an argument (arguments are visible to every user of the
    /// machine). Not with --chitchat-compatible.
    #[arg(long, value_name = "FILE")]
    pub(crate) cluster_key_file: Option<PathBuf>,

    /// DANGEROUS, for fault testing only: run this node's wall clock MS milliseconds ahead of
    /// the system clock (behind when negative). Its hybrid logical clock, the timestamps its
    /// gossip and RPC carry and its default generation all follow. Beyond the drift bound
    /// (500 ms) its peers refuse its timestamps, report it (`skew <addr>` lines) and keep
    /// their own clocks, and its RPC exchanges fail with a clock-skew status. Never use it in
    /// production.
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub(crate) dangerous_clock_offset_ms: Option<i64>,

    /// Do not watch standard input (by default, its closing or a `stop` line makes the node
    /// leave): for running under a service manager or with no input attached. Ctrl-C and
    /// SIGTERM still make it leave gracefully.
    #[arg(long)]
    pub(crate) ignore_stdin: bool,

    /// The driver to run the node on, and its TLS files.
    #[command(flatten)]
    pub(crate) driver: DriverArgs,
}

impl AgentArgs {
    /// The seeds given, without empty entries (`--seeds ""` means none).
    pub(crate) fn seeds(&self) -> impl Iterator<Item = &str> + '_ {
        self.seeds
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

/// The drivers a node can run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Driver {
    /// cohort-tokio: RPC over TCP, on the gossip port.
    #[default]
    Tokio,
    /// cohort-smol: RPC over QUIC with mutual TLS (with the `--tls-*` files; without them, no
    /// RPC).
    Smol,
}

/// `--driver` and the TLS files, shared by `cohort agent` and `cohort members`.
#[derive(Debug, Args)]
pub(crate) struct DriverArgs {
    /// The driver. Gossip is the same protocol on both, so agents of either driver form one
    /// cluster; RPC differs (tokio: TCP; smol: QUIC with mutual TLS, given the three --tls-*
    /// files).
    #[arg(long, value_enum, value_name = "DRIVER", default_value_t = Driver::Tokio)]
    pub(crate) driver: Driver,

    /// The cluster CA certificate (PEM), with --driver smol: only peers whose certificate it
    /// signed are accepted. Give all three --tls-* files or none.
    ///
    /// `cohort certs --dir certs --nodes a,b` writes them: certs/ca.pem, and certs/a.pem and
    /// certs/a.key for node a (the same for b).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    pub(crate) tls_ca: Option<PathBuf>,

    /// The certificate (PEM) to present, signed by the cluster CA, with --driver smol.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert, with --driver smol.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_cert"])]
    pub(crate) tls_key: Option<PathBuf>,
}

/// The three TLS files, when given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlsFiles<'a> {
    /// The cluster CA certificate.
    pub(crate) ca: &'a Path,
    /// The certificate to present.
    pub(crate) cert: &'a Path,
    /// Its key.
    pub(crate) key: &'a Path,
}

impl DriverArgs {
    /// The TLS files (clap makes sure it is all three or none).
    pub(crate) fn tls(&self) -> Option<TlsFiles<'_>> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
            _ => None,
        }
    }

    /// What clap cannot say: the TLS files go with the smol driver only, and a call to a smol
    /// node (`tls_needed`) cannot be made without them.
    fn check(&self, tls_needed: bool) -> Result<(), String> {
        let any_tls = self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_key.is_some();
        match self.driver {
            Driver::Tokio if any_tls => Err("--tls-ca, --tls-cert and --tls-key need --driver \
                                             smol (the tokio driver's RPC is plain TCP)"
                .to_owned()),
            Driver::Smol if tls_needed && !any_tls => Err("--driver smol needs --tls-ca, \
                                                            --tls-cert and --tls-key (a smol \
                                                            node answers over mutual TLS only)"
                .to_owned()),
            Driver::Tokio | Driver::Smol => Ok(()),
        }
    }
}

impl Cli {
    /// Parses the command line as [`Parser::parse`] does, with the checks clap cannot express;
    /// a usage error is printed and exits with status 2.
    pub(crate) fn parse_checked() -> Self {
        match Self::try_parse_checked_from(std::env::args_os()) {
            Ok(cli) => cli,
            Err(error) => error.exit(),
        }
    }

    /// As [`Cli::parse_checked`], from `args`, returning the error.
    pub(crate) fn try_parse_checked_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Self::try_parse_from(args)?;
        let (name, driver, tls_needed) = match &cli.command {
            Command::Agent(args) => ("agent", &args.driver, false),
            Command::Members(args) => ("members", &args.driver, true),
            Command::Certs(_) => return Ok(cli),
        };
        if let Err(message) = driver.check(tls_needed) {
            let mut command = Self::command();
            command.build();
            let error = match command.find_subcommand_mut(name) {
                Some(sub) => sub.error(ErrorKind::ArgumentConflict, message),
                None => command.error(ErrorKind::ArgumentConflict, message),
            };
            return Err(error);
        }
        Ok(cli)
    }
}

/// The membership protocols, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// chitchat's Scuttlebutt gossip (joins real chitchat clusters).
    Chitchat,
    /// cohort mode (cohort nodes only; for large clusters).
    Cohort,
}

impl From<Mode> for cohort_tokio::Protocol {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Chitchat => Self::Chitchat,
            Mode::Cohort => Self::Cohort,
        }
    }
}

fn default_probe_interval_ms() -> u64 {
    u64::try_from(cohort_tokio::DEFAULT_PROBE_INTERVAL.as_millis()).unwrap_or(100)
}

/// The gossip protocol versions, as named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// Uncompressed digest (every chitchat 0.13 node reads it).
    V0,
    /// Digest as a block stream, possibly zstd-compressed.
    V1,
}

impl From<Protocol> for ProtocolVersion {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::V0 => Self::V0,
            Protocol::V1 => Self::V1,
        }
    }
}

/// Parses a `--meta key=value`. The key must be non-empty and neither reserved for cohort nor
/// one the node publishes itself; the value may be empty.
fn parse_meta(raw: &str) -> Result<(String, String), String> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {raw:?}"));
    };
    if key.is_empty() {
        return Err("the key is empty".to_owned());
    }
    // The core's rule, so that a bad key is a usage error here rather than a failed start.
    NodeConfig::check_metadata_key(key).map_err(|e| e.to_string())?;
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn agent(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        let argv = ["cohort", "agent", "--name", "a", "--listen", "127.0.0.1:0"];
        let cli = Cli::try_parse_checked_from(argv.iter().chain(args))?;
        match cli.command {
            Command::Agent(agent) => Ok(*agent),
            Command::Members(_) | Command::Certs(_) => {
                unreachable!("the agent subcommand was parsed")
            }
        }
    }

    #[test]
    fn the_command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_library_constants() {
        let a = agent(&[]).expect("parses");
        assert_eq!(a.cluster, DEFAULT_CLUSTER_ID);
        assert_eq!(a.dc, DEFAULT_DATA_CENTER);
        assert_eq!(
            u128::from(a.interval_ms),
            DEFAULT_GOSSIP_INTERVAL.as_millis()
        );
        assert_eq!(a.protocol, None);
        assert_eq!(a.mode, Mode::Chitchat);
        assert_eq!(
            u128::from(a.probe_interval_ms),
            cohort_tokio::DEFAULT_PROBE_INTERVAL.as_millis()
        );
        let cohort = agent(&["--mode", "cohort", "--probe-interval-ms", "50"]).expect("parses");
        assert_eq!(cohort.mode, Mode::Cohort);
        assert_eq!(cohort.probe_interval_ms, 50);
        assert!(agent(&["--mode", "swim"]).is_err());
        assert_eq!(a.generation, None);
        assert!(!a.chitchat_compatible && !a.json);
        assert_eq!(a.seeds().count(), 0);
        assert_eq!(
            a.dangerous_clock_offset_ms, None,
            "the system clock by default"
        );
    }

    #[test]
    fn the_clock_offset_takes_signed_milliseconds() {
        let a = agent(&["--dangerous-clock-offset-ms", "5000"]).expect("parses");
        assert_eq!(a.dangerous_clock_offset_ms, Some(5_000));
        let a = agent(&["--dangerous-clock-offset-ms", "-250"]).expect("a negative offset parses");
        assert_eq!(a.dangerous_clock_offset_ms, Some(-250));
        for bad in ["x", "1.5", ""] {
            let err = agent(&["--dangerous-clock-offset-ms", bad]).expect_err("not a number");
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn seeds_are_comma_separated_and_repeatable() {
        let a = agent(&["--seeds", "127.0.0.1:1,h:2", "--seeds", "127.0.0.1:3"]).expect("parses");
        assert_eq!(
            a.seeds().collect::<Vec<_>>(),
            ["127.0.0.1:1", "h:2", "127.0.0.1:3"]
        );
        let a = agent(&["--seeds", ""]).expect("an empty list parses");
        assert_eq!(a.seeds().count(), 0);
    }

    #[test]
    fn meta_protocol_and_flags() {
        let a = agent(&[
            "--meta",
            "role=indexer",
            "--meta",
            "empty=",
            "--meta",
            "eq=a=b",
            "--protocol",
            "v1",
            "--chitchat-compatible",
            "--json",
            "--generation",
            "7",
        ])
        .expect("parses");
        assert_eq!(
            a.meta,
            [
                ("role".to_owned(), "indexer".to_owned()),
                ("empty".to_owned(), String::new()),
                ("eq".to_owned(), "a=b".to_owned()),
            ]
        );
        assert_eq!(
            a.protocol.map(ProtocolVersion::from),
            Some(ProtocolVersion::V1)
        );
        assert!(a.chitchat_compatible && a.json);
        assert_eq!(a.generation, Some(7));
    }

    #[test]
    fn driver_and_tls_files() {
        let a = agent(&[]).expect("parses");
        assert_eq!(a.driver.driver, Driver::Tokio, "tokio by default");
        assert!(a.driver.tls().is_none());
        let a = agent(&["--driver", "smol"]).expect("smol without TLS: gossip only");
        assert_eq!(a.driver.driver, Driver::Smol);
        assert!(a.driver.tls().is_none());
        let tls = [
            "--tls-ca",
            "ca.pem",
            "--tls-cert",
            "a.pem",
            "--tls-key",
            "a.key",
        ];
        let a = agent(&[&["--driver", "smol"][..], &tls].concat()).expect("smol with TLS");
        let files = a.driver.tls().expect("the three files");
        assert_eq!(
            (files.ca, files.cert, files.key),
            (Path::new("ca.pem"), Path::new("a.pem"), Path::new("a.key"))
        );

        // TLS with tokio, or not all three: usage errors.
        let err = agent(&tls).expect_err("TLS needs smol");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--driver smol"), "{err}");
        let err = agent(&[&["--driver", "tokio"][..], &tls].concat()).expect_err("TLS needs smol");
        assert_eq!(err.exit_code(), 2);
        for partial in [&tls[..2], &tls[2..], &tls[..4], &tls[2..]] {
            let err = agent(&[&["--driver", "smol"][..], partial].concat())
                .expect_err("all three or none");
            assert_eq!(err.exit_code(), 2, "{partial:?}: {err}");
        }
        let err = agent(&["--driver", "quic"]).expect_err("no such driver");
        assert_eq!(err.exit_code(), 2);

        // `members` of a smol node needs the files; of a tokio node it refuses them.
        let members = |args: &[&str]| {
            Cli::try_parse_checked_from(
                ["cohort", "members", "--node", "127.0.0.1:1"]
                    .iter()
                    .chain(args),
            )
        };
        members(&[&["--driver", "smol"][..], &tls].concat()).expect("smol with TLS");
        members(&[]).expect("tokio");
        let err = members(&["--driver", "smol"]).expect_err("smol needs TLS");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--tls-ca"), "{err}");
        let err = members(&tls).expect_err("TLS needs smol");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        let bad: &[&[&str]] = &[
            &["--meta", "novalue"],
            &["--meta", "=v"],
            &["--meta", "__cohort/leaving=1"],
            &["--meta", "data_center=x"],
            &["--meta", "rpc_addr=x"],
            &["--protocol", "v9"],
            &["--interval-ms", "0"],
            &["--interval-ms", "-5"],
            &["--generation", "x"],
            &["--public", "nowhere"],
            &["--unknown"],
            &["--name", ""],
        ];
        for args in bad {
            let err = agent(args).expect_err("refused");
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
        let err = Cli::try_parse_from(["cohort", "agent", "--name", "a"]).expect_err("no listen");
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["cohort", "agent", "--name", "a", "--listen", "x:1"])
            .expect_err("not an address");
        assert_eq!(err.exit_code(), 2);
    }
}
