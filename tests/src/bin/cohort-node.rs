//! `cohort-node`: one cohort node (tokio driver, UDP gossip) run from the command line, printing
//! its membership changes as lines. The real-process tests start several of these; it is also a
//! quick way to try a cluster by hand:
//!
//! ```text
//! cargo run -p cohort-sim --bin cohort-node -- --name a --listen 127.0.0.1:7000
//! cargo run -p cohort-sim --bin cohort-node -- --name b --listen 127.0.0.1:7001 --seeds 127.0.0.1:7000
//! ```
//!
//! Output, one line each: `ready id=<id> listen=<addr>` once bound, then for every event
//! `joined <id>`, `recovered <id>`, `unready <id>`, `failed <id>`, `left <id>`,
//! `removed <id>`, `key <id> <key>=<value>` (`<key>` alone when deleted), `lagged missed=<n>`,
//! `skew <addr>` or `suspect`, each followed by `members live=<n> known=<n>`. Ids print as
//! `name/generation@address`. The node leaves gracefully and prints `stopped` when its
//! standard input closes or reads `stop`.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use cohort_tokio::{ClusterEvent, ConnectionConfig, Members, NodeBuilder};
use tokio_stream::StreamExt;

const USAGE: &str = "usage: cohort-node --name NAME --listen ADDR [--public ADDR] \
[--seeds A,B,...] [--dc DC] [--cluster ID] [--interval-ms MS] [--generation G]";

struct Args {
    name: String,
    listen: SocketAddr,
    public: Option<SocketAddr>,
    seeds: Vec<String>,
    dc: String,
    cluster: String,
    interval: Duration,
    generation: Option<u64>,
}

fn parse() -> Result<Args, String> {
    let mut name = None;
    let mut listen = None;
    let mut public = None;
    let mut seeds = Vec::new();
    let mut dc = "default".to_owned();
    let mut cluster = "cohort".to_owned();
    let mut interval = Duration::from_millis(1_000);
    let mut generation = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--name" => name = Some(value()?),
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--public" => public = Some(value()?.parse().map_err(|e| format!("--public: {e}"))?),
            "--seeds" => {
                seeds = value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--dc" => dc = value()?,
            "--cluster" => cluster = value()?,
            "--interval-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--interval-ms: {e}"))?;
                interval = Duration::from_millis(ms);
            }
            "--generation" => {
                generation = Some(value()?.parse().map_err(|e| format!("--generation: {e}"))?);
            }
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(Args {
        name: name.ok_or_else(|| format!("--name is required\n{USAGE}"))?,
        listen: listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?,
        public,
        seeds,
        dc,
        cluster,
        interval,
        generation,
    })
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the parent went away) is not worth a panic.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn summary(members: &Members) -> String {
    format!(
        "members live={} known={}",
        members.live_count(),
        members.all().len()
    )
}

fn describe(event: &ClusterEvent) -> String {
    match event {
        ClusterEvent::Joined(m) => format!("joined {}", m.id),
        ClusterEvent::Recovered(m) => format!("recovered {}", m.id),
        ClusterEvent::Unready(m) => format!("unready {}", m.id),
        ClusterEvent::Failed(m) => format!("failed {}", m.id),
        ClusterEvent::Left(m) => format!("left {}", m.id),
        ClusterEvent::Removed(id) => format!("removed {id}"),
        ClusterEvent::KeyChanged { member, key, value } => match value {
            Some(v) => format!("key {} {key}={v}", member.id),
            None => format!("key {} {key}", member.id),
        },
        ClusterEvent::Lagged { missed, .. } => format!("lagged missed={missed}"),
        ClusterEvent::ClockSkew { from, .. } => format!("skew {from}"),
        ClusterEvent::SelfSuspected => "suspect".to_owned(),
        ClusterEvent::BadCluster { from } => format!("bad-cluster {from}"),
        other => format!("event {other:?}"),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let public = args.public.unwrap_or(args.listen);
    let mut builder = NodeBuilder::new(
        args.name,
        ConnectionConfig::new(args.listen, public, args.seeds),
    )
    .cluster_id(args.cluster)
    .data_center(args.dc)
    .gossip_interval(args.interval);
    if let Some(generation) = args.generation {
        builder = builder.generation(generation);
    }
    let node = builder.connect().await.map_err(|e| e.to_string())?;
    let mut events = node.membership_events();
    say(&format!(
        "ready id={} listen={}",
        node.id(),
        node.listen_addr()
    ));

    // Standard input closing (or a `stop` line) asks for a graceful departure.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = stop_tx.send(());
    });

    loop {
        tokio::select! {
            _ = &mut stop_rx => break,
            event = events.next() => {
                let Some(event) = event else { break };
                say(&describe(&event));
                say(&summary(&node.members()));
            }
        }
    }
    node.shutdown().await;
    say("stopped");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cohort-node: {e}");
            ExitCode::FAILURE
        }
    }
}
