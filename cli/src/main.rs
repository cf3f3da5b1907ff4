//! `cohort`: the command line of cohort.
//!
//! `cohort agent` runs one node (the tokio driver, UDP gossip) and prints its membership changes
//! as lines, or as JSON objects with `--json`. It is how to try a cluster by hand, and what the
//! real-process tests start:
//!
//! ```text
//! cargo run -p cohort-cli -- agent --name a --listen 127.0.0.1:7000 --dc eu
//! cargo run -p cohort-cli -- agent --name b --listen 127.0.0.1:7001 --seeds 127.0.0.1:7000
//! ```
//!
//! Output, one line each: `ready id=<id> listen=<addr>` once bound, then for every event
//! `joined <id>`, `recovered <id>`, `unready <id>`, `failed <id>`, `left <id>`,
//! `removed <id>`, `key <id> <key>=<value>` (`<key>` alone when deleted), `lagged missed=<n>`,
//! `skew <addr>`, `suspect` or `bad-cluster <addr>`, each followed by
//! `members live=<n> known=<n>`; `stopped` once the node has left. Ids print as
//! `name/generation@address`. With `--json` each line is one object whose `"event"` names it
//! (`ready`, `joined`, ..., `key`, `members`, `stopped`); members are objects with `id`, `name`,
//! `generation`, `addr`, `status` and `keys`. The node leaves the cluster gracefully on Ctrl-C,
//! when its standard input closes, or when it reads a `stop` line.
//!
//! `cohort certs --dir DIR --nodes a,b,c` writes a cluster CA and node certificates (PEM) for
//! trying the smol driver's mutual TLS by hand.
//!
//! This is a binary crate of its own so that users of the libraries (`cohort-core`,
//! `cohort-tokio`) never compile its dependencies (clap, serde_json, tokio's signal handling).
//! Usage errors exit with status 2, a node that cannot start with status 1.

mod args;
mod certs;
mod output;

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cohort_tokio::{ConnectError, ConnectionConfig, NodeBuilder};

use crate::args::{AgentArgs, Cli, Command, MembersArgs};
use crate::output::{Line, Output};

fn main() -> ExitCode {
    // Prints usage errors (exit 2), `--help` and `--version` (exit 0) itself.
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(args) => agent(args),
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

/// `cohort members`: one RPC call to a node's admin service.
fn members(args: MembersArgs) -> ExitCode {
    run_to_exit(ask_members(&args), |text| print!("{text}"))
}

/// Asks `args.node` for its members and renders the answer.
async fn ask_members(args: &MembersArgs) -> Result<String, String> {
    use cohort_tokio::admin::{AdminService, MembersReply, MembersRequest};

    let target = tokio::net::lookup_host(args.node.as_str())
        .await
        .map_err(|e| format!("{}: {e}", args.node))?
        .next()
        .ok_or_else(|| format!("{}: no address", args.node))?;
    // A node of its own, alone in a cluster of its own, only to make the call.
    let any = std::net::SocketAddr::new(
        if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        },
        0,
    );
    let probe = NodeBuilder::new(
        "cohort-members",
        ConnectionConfig::new(any, any, Vec::<String>::new()),
    )
    .cluster_id("cohort-members-probe")
    .rpc_deadline(Some(Duration::from_millis(args.timeout_ms)))
    .connect()
    .await
    .map_err(|e| e.to_string())?;
    let reply = probe
        .rpc_client::<AdminService>(target)
        .call(&MembersRequest)
        .await;
    probe.shutdown().await;
    let reply = reply.map_err(|status| format!("{}: {status}", args.node))?;
    let snapshot: MembersReply = reply.deserialize().map_err(|s| s.to_string())?;
    Ok(if args.json {
        format!("{}\n", output::members_json(&snapshot))
    } else {
        output::members_table(&snapshot)
    })
}

/// `cohort agent`: runs the node on a current-thread runtime until it is told to stop.
fn agent(args: AgentArgs) -> ExitCode {
    run_to_exit(run(args), |()| {})
}

/// Starts the node, prints its events until a stop is asked, then leaves gracefully.
async fn run(args: AgentArgs) -> Result<(), ConnectError> {
    let out = Output { json: args.json };
    let ignore_stdin = args.ignore_stdin;
    let public = args.public.unwrap_or(args.listen);
    let seeds: Vec<String> = args.seeds().map(str::to_owned).collect();
    let mut builder =
        NodeBuilder::new(args.name, ConnectionConfig::new(args.listen, public, seeds))
            .cluster_id(args.cluster)
            .data_center(args.dc)
            .gossip_interval(Duration::from_millis(args.interval_ms))
            .chitchat_compatible(args.chitchat_compatible);
    if let Some(protocol) = args.protocol {
        builder = builder.protocol_version(protocol.into());
    }
    if let Some(generation) = args.generation {
        builder = builder.generation(generation);
    }
    for (key, value) in args.meta {
        builder = builder.metadata(key, value);
    }
    let node = builder.connect().await?;
    let mut events = node.membership_events();
    out.emit(&Line::Ready {
        id: node.id(),
        listen: node.listen_addr(),
    });

    let stdin_closed = async {
        if ignore_stdin {
            std::future::pending::<()>().await;
        }
        let _ = stop_on_stdin().await;
    };
    tokio::pin!(stdin_closed);
    let ctrl_c = async {
        // If the handler cannot be installed, Ctrl-C keeps its default effect; stdin still
        // stops the node.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c);
    let terminate = terminated();
    tokio::pin!(terminate);
    loop {
        tokio::select! {
            () = &mut stdin_closed => break,
            () = &mut ctrl_c => break,
            () = &mut terminate => break,
            event = events.next() => {
                let Some(event) = event else { break };
                out.emit(&Line::from_event(&event));
                out.emit(&Line::members(&node.members()));
            }
        }
    }
    node.shutdown().await;
    out.emit(&Line::Stopped);
    Ok(())
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
