//! `cohort`: the command line of cohort.
//!
//! `cohort agent` runs one node (UDP gossip, on the tokio driver or with `--driver smol` on the
//! smol one) and prints its membership changes as lines, or as JSON objects with `--json`. It is
//! how to try a cluster by hand, and what the real-process tests start:
//!
//! ```text
//! cargo run -p cohort-cli -- agent --name a --listen 127.0.0.1:7000 --dc eu
//! cargo run -p cohort-cli -- agent --name b --listen 127.0.0.1:7001 --seeds 127.0.0.1:7000
//! ```
//!
//! Output, one line each, the same for both drivers: `ready id=<id> listen=<addr> rpc=<addr>`
//! once bound (`rpc=none` when the node serves no RPC: a smol node without TLS), then for every
//! event
//! `joined <id>`, `recovered <id>`, `unready <id>`, `failed <id>`, `left <id>`,
//! `removed <id>`, `key <id> <key>=<value>` (`<key>` alone when deleted), `lagged missed=<n>`,
//! `skew <addr>`, `suspect` or `bad-cluster <addr>` (skew and bad-cluster at most once a second
//! per sender, then with ` suppressed=<n>`, how many more were held back), each followed by
//! `members live=<n> known=<n>`; `stopped` once the node has left. Ids print as
//! `name/generation@address`. With `--json` each line is one object whose `"event"` names it
//! (`ready`, `joined`, ..., `key`, `members`, `stopped`; `ready` has `id`, `listen` and `rpc`,
//! `null` without RPC); members are objects with `id`, `name`,
//! `generation`, `addr`, `status` and `keys`. The node leaves the cluster gracefully on Ctrl-C,
//! when its standard input closes, or when it reads a `stop` line.
//!
//! With `--driver smol --tls-ca FILE --tls-cert FILE --tls-key FILE` the node serves RPC over
//! QUIC with mutual TLS. `cohort certs --dir DIR --nodes a,b,c` writes such files (a cluster CA
//! and node certificates, PEM) for trying it by hand.
//!
//! `--dangerous-clock-offset-ms MS` runs the node's wall clock MS milliseconds ahead of the
//! system clock (behind when negative), for fault tests only (a warning says so on standard
//! error): beyond the drift bound its peers print `skew <addr>` lines about it and keep their
//! own clocks.
//!
//! With `--cluster-key-file FILE` (or the environment variable `COHORT_CLUSTER_KEY`, never an
//! argument) the agent authenticates its gossip with that key (64 hexadecimal digits; every
//! node of the cluster needs it): datagrams without a valid tag are dropped, and reported as
//! `unauthenticated <addr>` lines at most once a second per sender.
//!
//! `cohort members --node ADDR` asks a running node for its view of the membership over RPC (its
//! admin service) and prints a table (`--json` for one object); `--driver smol` and the three TLS
//! flags ask a smol node over QUIC.
//!
//! A smol node's own tasks run on smol's executor; the command's shell around it (signals,
//! standard input) is a current-thread tokio runtime whichever the driver.
//!
//! This is a binary crate of its own so that users of the libraries (`cohort-core`,
//! `cohort-tokio`, `cohort-smol`) never compile its dependencies (clap, serde_json, tokio's
//! signal handling).
//! Usage errors exit with status 2, a node that cannot start with status 1.

mod args;
mod certs;
mod drivers;
mod output;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::args::{AgentArgs, Cli, Command, Driver, DriverArgs, MembersArgs};
use crate::drivers::{AgentNode, builder};
use crate::output::{Line, Output};

fn main() -> ExitCode {
    // Prints usage errors (exit 2), `--help` and `--version` (exit 0) itself.
    let cli = Cli::parse_checked();
    match cli.command {
        Command::Agent(args) => agent(*args),
        Command::Members(args) => members(args),
        Command::Certs(args) => match certs::certs(&args) {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cohort: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs `work` on a current-thread runtime; an error is printed as `cohort: <error>` and exits 1.
fn run_to_exit<T, E: std::fmt::Display>(
    work: impl Future<Output = Result<T, E>>,
    done: impl FnOnce(T),
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cohort: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(value) => {
            done(value);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cohort: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The smol driver's TLS settings from the three files, if given. A file that cannot be read or
/// is not what it should be is an error naming it.
fn load_tls(driver: &DriverArgs) -> Result<Option<cohort_smol::TlsConfig>, String> {
    driver
        .tls()
        .map(|files| {
            cohort_smol::TlsConfig::from_pem_files(files.ca, files.cert, files.key)
                .map_err(|e| e.to_string())
        })
        .transpose()
}

/// `cohort members`: one RPC call to a node's admin service.
fn members(args: MembersArgs) -> ExitCode {
    run_to_exit(ask_members(&args), |text| print!("{text}"))
}

/// Asks `args.node` for its members and renders the answer.
async fn ask_members(args: &MembersArgs) -> Result<String, String> {
    let target = tokio::net::lookup_host(args.node.as_str())
        .await
        .map_err(|e| format!("{}: {e}", args.node))?
        .next()
        .ok_or_else(|| format!("{}: no address", args.node))?;
    // A node of its own, alone in a cluster of its own, only to make the call.
    let any = SocketAddr::new(
        if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        },
        0,
    );
    let deadline = Some(Duration::from_millis(args.timeout_ms));
    let no_seeds = Vec::<String>::new();
    let reply = match args.driver.driver {
        Driver::Tokio => {
            let probe = cohort_tokio::NodeBuilder::new(
                PROBE_NAME,
                cohort_tokio::ConnectionConfig::new(any, any, no_seeds),
            )
            .cluster_id(PROBE_CLUSTER)
            .rpc_deadline(deadline)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
            ask(&probe, target).await
        }
        Driver::Smol => {
            // The parser made sure the files were given.
            let tls = load_tls(&args.driver)?
                .ok_or("--driver smol needs --tls-ca, --tls-cert and --tls-key")?;
            let probe = cohort_smol::NodeBuilder::new(
                PROBE_NAME,
                cohort_smol::ConnectionConfig::new(any, any, no_seeds),
            )
            .cluster_id(PROBE_CLUSTER)
            .rpc_deadline(deadline)
            .tls(tls)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
            ask(&probe, target).await
        }
    };
    let snapshot = reply.map_err(|status| format!("{}: {status}", args.node))?;
    Ok(if args.json {
        format!("{}\n", output::members_json(&snapshot))
    } else {
        output::members_table(&snapshot)
    })
}

/// The probe node's name and cluster (nobody else's, so that it joins no one).
const PROBE_NAME: &str = "cohort-members";
const PROBE_CLUSTER: &str = "cohort-members-probe";

/// One admin call from `probe` to `target`; the probe then stops.
async fn ask(
    probe: &impl AgentNode,
    target: SocketAddr,
) -> Result<cohort_tokio::admin::MembersReply, cohort_tokio::Status> {
    let reply = probe.admin_members(target).await;
    probe.shutdown().await;
    reply
}

/// `cohort agent`: runs the node on a current-thread runtime until it is told to stop.
fn agent(args: AgentArgs) -> ExitCode {
    run_to_exit(run(args), |()| {})
}

/// Starts the node on the driver asked for, prints its events until a stop is asked, then
/// leaves gracefully.
async fn run(args: AgentArgs) -> Result<(), String> {
    let out = Output { json: args.json };
    if let Some(offset) = args.dangerous_clock_offset_ms {
        // On standard error: standard output keeps its documented lines.
        eprintln!(
            "cohort: warning: this node's wall clock is offset by {offset:+} ms \
             (--dangerous-clock-offset-ms), for fault testing only"
        );
    }
    let stop = stop_asked(args.ignore_stdin);
    match args.driver.driver {
        Driver::Tokio => {
            let node = builder!(cohort_tokio, &args)
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            watch(&node, out, stop).await;
        }
        Driver::Smol => {
            let tls = load_tls(&args.driver)?;
            let mut builder = builder!(cohort_smol, &args);
            if let Some(tls) = tls {
                builder = builder.tls(tls);
            }
            let node = builder.connect().await.map_err(|e| e.to_string())?;
            watch(&node, out, stop).await;
        }
    }
    Ok(())
}

/// Prints `node`'s ready line, then its events, each followed by the membership counts, until
/// `stop` completes or the events end; then leaves gracefully and prints `stopped`. The one
/// loop of both drivers.
async fn watch(node: &impl AgentNode, out: Output, stop: impl Future<Output = ()>) {
    let mut events = node.membership_events();
    out.emit(&Line::Ready {
        id: node.id(),
        listen: node.listen_addr(),
        rpc: node.rpc(),
    });
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            event = events.next() => {
                let Some(event) = event else { break };
                out.emit(&Line::from_event(&event));
                out.emit(&Line::members(&node.members()));
            }
        }
    }
    node.shutdown().await;
    out.emit(&Line::Stopped);
}

/// Completes when the node is asked to stop: Ctrl-C, SIGTERM, or (unless `ignore_stdin`) its
/// standard input closing or reading a `stop` line.
async fn stop_asked(ignore_stdin: bool) {
    let stdin_closed = async {
        if ignore_stdin {
            std::future::pending::<()>().await;
        }
        let _ = stop_on_stdin().await;
    };
    let ctrl_c = async {
        // If the handler cannot be installed, Ctrl-C keeps its default effect; stdin still
        // stops the node.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = stdin_closed => {}
        () = ctrl_c => {}
        () = terminated() => {}
    }
}
/// Completes when the process is asked to terminate (SIGTERM, as service managers and
/// `docker stop` send it); never where there is no such signal.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Fires when standard input closes or reads a `stop` line. A plain thread reads it: a
/// blocking read on the runtime would hold up its shutdown.
fn stop_on_stdin() -> tokio::sync::oneshot::Receiver<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = stop_tx.send(());
    });
    stop_rx
}
