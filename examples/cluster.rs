//! A real three-node cluster on loopback, in one process, with the tokio driver.
//!
//! Run it with `cargo run --example cluster`. It starts three nodes in two data centers
//! (`eu-west` and `us-east`) gossiping over UDP on 127.0.0.1 every 100 ms, prints the membership
//! as it converges, picks replicas with the data-center aware selector, reads the cluster clock a
//! few times, then shuts every node down gracefully and exits. It takes about a second and exits
//! with an error (code 1) if the cluster does not form within 10 seconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cohort_examples::show;
use cohort_tokio::{ConnectionConfig, Consistency, DATA_CENTER_KEY, Event, Node, NodeBuilder};

const INTERVAL: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(10);

async fn start(
    name: &str,
    dc: &str,
    seeds: &[SocketAddr],
) -> Result<Node, cohort_tokio::ConnectError> {
    // Port 0: the system picks a free port, and the node advertises the one it got.
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    NodeBuilder::new(
        name,
        ConnectionConfig::new(any, any, seeds.iter().map(ToString::to_string)),
    )
    .cluster_id("example")
    .data_center(dc)
    .gossip_interval(INTERVAL)
    .metadata(
        "role",
        if name == "node-1" {
            "coordinator"
        } else {
            "worker"
        },
    )
    .connect()
    .await
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let first = start("node-1", "eu-west", &[]).await?;
    println!("node-1 listening on {} (eu-west)", first.public_addr());
    // Watch node-1's view of the cluster form.
    let mut events = first.membership_events();
    let seed = [first.public_addr()];
    let second = start("node-2", "eu-west", &seed).await?;
    let third = start("node-3", "us-east", &seed).await?;
    println!("node-2 listening on {} (eu-west)", second.public_addr());
    println!("node-3 listening on {} (us-east)", third.public_addr());

    let converge = async {
        let mut joined = 0;
        while joined < 2 {
            match events.next().await {
                Some(Event::Joined(m)) => {
                    joined += 1;
                    println!(
                        "[{:>4} ms] node-1 sees {} join (data center {})",
                        started.elapsed().as_millis(),
                        m.id,
                        m.get(DATA_CENTER_KEY).unwrap_or("?")
                    );
                }
                Some(_) => {}
                None => break,
            }
        }
        println!("node-1's membership: {}", show(&first.members()));
    };
    if tokio::time::timeout(DEADLINE, converge).await.is_err() {
        return Err("node-1 did not see the cluster form within 10 s".into());
    }
    for node in [&second, &third] {
        node.wait_for_members(|m| m.live_count() == 3, DEADLINE)
            .await?;
    }
    println!(
        "[{:>4} ms] converged: every node sees 3 live members",
        started.elapsed().as_millis()
    );

    // Replica selection from node-1 (eu-west): the DC-aware selector prefers the other data
    // center, and never returns node-1 itself.
    for consistency in [Consistency::One, Consistency::Two, Consistency::All] {
        let picked = first.select_nodes(consistency)?;
        let names: Vec<String> = picked
            .iter()
            .map(|c| format!("{} ({}, rpc {})", c.id().name(), c.data_center(), c.addr()))
            .collect();
        println!("select {consistency:?} from node-1: {}", names.join(", "));
    }
    match first.select_nodes(Consistency::Three) {
        Ok(picked) => println!("select Three: {} nodes", picked.len()),
        Err(e) => println!("select Three from node-1: {e} (only two other members)"),
    }

    // The cluster clock: hybrid logical timestamps, unique and ordered, read without waiting.
    let a = first.clock().now();
    let b = first.clock().now();
    let c = third.clock().now();
    println!("clock node-1: {a}");
    println!("clock node-1: {b} (later than the first: {})", b > a);
    println!("clock node-3: {c}");

    // Graceful shutdown: each node announces its departure; the others see it leave at once.
    third.shutdown().await;
    first
        .wait_for_members(|m| m.live_count() == 2, DEADLINE)
        .await?;
    println!(
        "[{:>4} ms] node-3 left; node-1 sees: {}",
        started.elapsed().as_millis(),
        show(&first.members())
    );
    second.shutdown().await;
    first.shutdown().await;
    println!(
        "[{:>4} ms] all nodes shut down",
        started.elapsed().as_millis()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster example failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
