//! Runs a membership scenario over many seeds in the simulator and prints one `key=value` line
//! per metric (percentiles over seeds).
//!
//! ```text
//! cargo run --release -p cohort-sim --bin simulate -- --scenario join --nodes 1000 --seeds 20
//! ```
//!
//! Scenarios:
//!
//! - `join`: N nodes start within one gossip interval, all seeded with node 0; measures the
//!   time and rounds until every node sees every other live and holds its keys.
//! - `crash`: join, converge, run `--warmup-s`, crash one node (not the seed node; chosen by
//!   the seed), and measure the time until every survivor sees it failed (`detect_secs`) and
//!   until the first does (`detect_first_secs`).
//! - `steady`: join, converge, run `--warmup-s`, then measure bytes and datagrams sent per node
//!   per second over `--duration-s` (with `--loss`: the false positives over that time).
//! - `churn`: as `steady`, while 1% of the nodes leave (gracefully) and join again per minute
//!   and every node changes a key every 10 s.
//! - `joinone`: join, converge, run `--warmup-s`, start one more node, and measure the time
//!   and rounds until 99% and 100% of the nodes see it live.
//! - `keychange`: join, converge, run `--warmup-s`, change one key of one node, and measure
//!   the time and rounds until 99% and 100% of the nodes see the new value.
//! - `rapid`: join, converge, run `--warmup-s`, then 1% of the nodes (at least one) lose 80%
//!   of what they receive for `--duration-s`: measures the time until every healthy node sees
//!   every lossy one failed, and the failures of healthy nodes seen by healthy nodes.
//!
//! `--protocol v0|v1` runs chitchat mode; `--protocol cohort` runs cohort mode (its probe
//! interval is `--interval-ms`).
//!
//! Run `simulate --help` for every option.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cohort_core::MemberStatus;
use cohort_core::node::Protocol;
use cohort_core::wire::ProtocolVersion;
use cohort_sim::{Sim, SimConfig, SimError, percentile};

const HELP: &str = "\
simulate: run a cohort membership scenario in the deterministic simulator

USAGE: simulate [OPTIONS]

  --scenario join|crash|steady|churn|joinone|keychange|rapid
                                 what to measure (default join)
  --nodes N                      cluster size (default 100)
  --seeds S                      number of seeds (default 20)
  --seed-base B                  first seed (default 1; seeds are B..B+S)
  --interval-ms MS               gossip interval (default 100)
  --protocol v0|v1|cohort        chitchat mode with V0 or V1 Syns, or cohort mode (default v0)
  --duration-s S                 steady: measurement window (default 60)
  --warmup-s S                   crash, steady: time run after convergence (default 5)
  --deadline-s S                 virtual deadline of each wait (default 120)
  --initial-interval-ms MS       failure detector prior mean interval (default: the gossip interval,
                                 as chitchat's perf tests; chitchat's library default is 5000)
  --phi F                        failure detector phi threshold (default 8)
  --fd-window N                  failure detector sampling window per peer (default 1000, chitchat's;
                                 each peer's window holds N intervals, so memory grows as N x nodes^2)
  --keys-per-node K              keys each node starts with (default 1)
  --loss P                       datagram loss probability (default 0)
  --dup P                        datagram duplication probability (default 0)
  --latency-ms MS                base one-way latency (default 1)
  --jitter-ms MS                 uniform extra latency (default 1)
  --jobs J                       seeds run in parallel (default: available cores)
  --verbose                      also print one line per seed
  --progress                     steady: report virtual and wall time on stderr every virtual second
  --help                         this text
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Join,
    Crash,
    Steady,
    Churn,
    JoinOne,
    KeyChange,
    Rapid,
}

#[derive(Clone, Debug)]
struct Args {
    scenario: Scenario,
    nodes: usize,
    seeds: u64,
    seed_base: u64,
    interval: Duration,
    protocol: ProtocolVersion,
    mode: Protocol,
    duration: Duration,
    warmup: Duration,
    deadline: Duration,
    initial_interval: Option<Duration>,
    phi: f64,
    fd_window: usize,
    keys_per_node: usize,
    loss: f64,
    dup: f64,
    latency: Duration,
    jitter: Duration,
    jobs: usize,
    verbose: bool,
    progress: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            scenario: Scenario::Join,
            nodes: 100,
            seeds: 20,
            seed_base: 1,
            interval: Duration::from_millis(100),
            protocol: ProtocolVersion::V0,
            mode: Protocol::Chitchat,
            duration: Duration::from_secs(60),
            warmup: Duration::from_secs(5),
            deadline: Duration::from_secs(120),
            initial_interval: None,
            phi: 8.0,
            fd_window: 1_000,
            keys_per_node: 1,
            loss: 0.0,
            dup: 0.0,
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(1),
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
            verbose: false,
            progress: false,
        }
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args::default();
    while let Some(flag) = argv.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        if flag == "--verbose" {
            args.verbose = true;
            continue;
        }
        if flag == "--progress" {
            args.progress = true;
            continue;
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        let integer = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a whole number"))
        };
        let millis =
            |v: &str| -> Result<Duration, String> { Ok(Duration::from_secs_f64(number(v)? / 1e3)) };
        let secs =
            |v: &str| -> Result<Duration, String> { Ok(Duration::from_secs_f64(number(v)?)) };
        match flag.as_str() {
            "--scenario" => {
                args.scenario = match value.as_str() {
                    "join" => Scenario::Join,
                    "crash" => Scenario::Crash,
                    "steady" => Scenario::Steady,
                    "churn" => Scenario::Churn,
                    "joinone" => Scenario::JoinOne,
                    "keychange" => Scenario::KeyChange,
                    "rapid" => Scenario::Rapid,
                    other => return Err(format!("unknown scenario {other:?}")),
                }
            }
            "--nodes" => {
                args.nodes = usize::try_from(integer(&value)?).map_err(|e| e.to_string())?
            }
            "--seeds" => args.seeds = integer(&value)?,
            "--seed-base" => args.seed_base = integer(&value)?,
            "--interval-ms" => args.interval = millis(&value)?,
            "--protocol" => match value.to_ascii_lowercase().as_str() {
                "v0" | "0" => args.protocol = ProtocolVersion::V0,
                "v1" | "1" => args.protocol = ProtocolVersion::V1,
                "cohort" => args.mode = Protocol::Cohort,
                other => return Err(format!("unknown protocol {other:?}")),
            },
            "--duration-s" => args.duration = secs(&value)?,
            "--warmup-s" => args.warmup = secs(&value)?,
            "--deadline-s" => args.deadline = secs(&value)?,
            "--initial-interval-ms" => args.initial_interval = Some(millis(&value)?),
            "--phi" => args.phi = number(&value)?,
            "--fd-window" => {
                args.fd_window = usize::try_from(integer(&value)?).map_err(|e| e.to_string())?;
            }
            "--keys-per-node" => {
                args.keys_per_node =
                    usize::try_from(integer(&value)?).map_err(|e| e.to_string())?;
            }
            "--loss" => args.loss = number(&value)?,
            "--dup" => args.dup = number(&value)?,
            "--latency-ms" => args.latency = millis(&value)?,
            "--jitter-ms" => args.jitter = millis(&value)?,
            "--jobs" => {
                args.jobs = usize::try_from(integer(&value)?)
                    .map_err(|e| e.to_string())?
                    .max(1);
            }
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if args.nodes < 2 {
        return Err("--nodes must be at least 2".to_owned());
    }
    Ok(Some(args))
}

/// What one seed measured.
#[derive(Clone, Debug, Default)]
struct Outcome {
    seed: u64,
    error: Option<String>,
    converge_secs: Option<f64>,
    converge_rounds: Option<u64>,
    detect_secs: Option<f64>,
    detect_first_secs: Option<f64>,
    /// joinone, keychange: until 99% and 100% of the nodes saw it.
    reach99_secs: Option<f64>,
    reach100_secs: Option<f64>,
    /// rapid: until every healthy node saw every lossy node failed.
    lossy_failed_secs: Option<f64>,
    /// rapid: failures of healthy nodes reported by healthy nodes.
    healthy_failures: u64,
    /// rapid: (healthy observer, lossy node) pairs not failed at the end.
    lossy_not_failed_at_end: u64,
    bytes_per_node_per_sec: Vec<f64>,
    datagrams_per_node_per_sec: Vec<f64>,
    false_positives: u64,
    failed_events: u64,
    decode_errors: u64,
    max_datagram_bytes: u64,
    virtual_secs: f64,
    wall_secs: f64,
    trace_hash: u64,
}

fn config(args: &Args, seed: u64) -> SimConfig {
    let mut config = SimConfig::new(seed)
        .with_gossip_interval(args.interval)
        .with_protocol(args.protocol)
        .with_mode(args.mode)
        .with_loss(args.loss)
        .with_duplication(args.dup);
    config.failure_detector.initial_interval = args.initial_interval.unwrap_or(args.interval);
    config.failure_detector.phi_threshold = args.phi;
    config.failure_detector.sampling_window_size = args.fd_window;
    config.network.base_latency = args.latency;
    config.network.jitter = args.jitter;
    config.record_trace = false;
    let keys = args.keys_per_node;
    config.with_configure(move |slot, node| {
        node.metadata = (0..keys)
            .map(|k| (format!("key-{k}"), format!("value-{slot}-{k}")))
            .collect();
    })
}

fn run_seed(args: &Args, seed: u64) -> Outcome {
    let mut outcome = Outcome {
        seed,
        ..Outcome::default()
    };
    let mut sim = Sim::new(config(args, seed));
    if let Err(e) = scenario(args, &mut sim, &mut outcome) {
        outcome.error = Some(e.to_string());
    }
    let metrics = sim.metrics();
    outcome.false_positives = metrics.false_positives.len() as u64;
    outcome.failed_events = metrics.failed_events;
    outcome.decode_errors = metrics.network.decode_errors;
    outcome.max_datagram_bytes = metrics.network.max_datagram_bytes;
    outcome.virtual_secs = metrics.virtual_time.as_secs_f64();
    outcome.trace_hash = metrics.trace_hash;
    outcome.wall_secs = sim.wall_elapsed().as_secs_f64();
    outcome
}

fn scenario(args: &Args, sim: &mut Sim, out: &mut Outcome) -> Result<(), SimError> {
    sim.add_nodes(args.nodes);
    let c = sim.run_until_converged(args.deadline)?;
    out.converge_secs = Some(c.elapsed.as_secs_f64());
    out.converge_rounds = Some(c.rounds);
    match args.scenario {
        Scenario::Join => {}
        Scenario::Crash => {
            sim.advance(args.warmup);
            // Any node but the seed node 0, chosen by the seed.
            let victim =
                1 + (cohort_core::hash::mix64(out.seed) % (args.nodes as u64 - 1)) as usize;
            sim.crash(victim);
            sim.run_until_detected(victim, args.deadline)?;
            let d = &sim.detections()[0];
            out.detect_secs = d.all_after.map(|d| d.as_secs_f64());
            out.detect_first_secs = d.first_after.map(|d| d.as_secs_f64());
        }
        Scenario::JoinOne => {
            sim.advance(args.warmup);
            let start = sim.now();
            let newcomer = sim.add_node();
            let (r99, r100) = reach(sim, args, |sim, o| {
                sim.status(o, newcomer) == Some(MemberStatus::Live)
            })?;
            out.reach99_secs = Some((r99 - start).as_secs_f64());
            out.reach100_secs = Some((r100 - start).as_secs_f64());
        }
        Scenario::KeyChange => {
            sim.advance(args.warmup);
            let owner = 1 + (cohort_core::hash::mix64(out.seed) % (args.nodes as u64 - 1)) as usize;
            let value = format!("changed-{}", out.seed);
            let start = sim.now();
            sim.set(owner, "key-0", &value);
            let (r99, r100) = reach(sim, args, |sim, o| {
                sim.value(o, owner, "key-0").as_deref() == Some(value.as_str())
            })?;
            out.reach99_secs = Some((r99 - start).as_secs_f64());
            out.reach100_secs = Some((r100 - start).as_secs_f64());
        }
        Scenario::Rapid => {
            sim.advance(args.warmup);
            let lossy_count = (args.nodes / 100).max(1);
            let lossy: Vec<usize> = (0..lossy_count)
                .map(|i| 1 + (i * (args.nodes - 1)) / lossy_count)
                .collect();
            for &l in &lossy {
                sim.set_ingress_loss(l, 0.8);
            }
            let healthy: Vec<usize> = (0..args.nodes).filter(|n| !lossy.contains(n)).collect();
            let start = sim.now();
            let failed_before = sim.metrics().failed_events;
            let _ = failed_before;
            let all_failed = |sim: &Sim| {
                healthy.iter().all(|&o| {
                    lossy
                        .iter()
                        .all(|&l| sim.status(o, l) != Some(MemberStatus::Live))
                })
            };
            let end = start + args.duration;
            let mut first_all: Option<Duration> = None;
            while sim.now() < end {
                sim.advance(Duration::from_millis(100));
                if first_all.is_none() && all_failed(sim) {
                    first_all = Some(sim.now() - start);
                }
            }
            out.lossy_failed_secs = first_all.map(|d| d.as_secs_f64());
            out.lossy_not_failed_at_end = healthy
                .iter()
                .map(|&o| {
                    lossy
                        .iter()
                        .filter(|&&l| sim.status(o, l) == Some(MemberStatus::Live))
                        .count() as u64
                })
                .sum();
            out.healthy_failures = sim
                .false_positives()
                .iter()
                .filter(|f| {
                    sim.slot_of(&f.subject).is_some_and(|s| !lossy.contains(&s))
                        && !lossy.contains(&f.observer)
                })
                .count() as u64;
        }
        Scenario::Steady | Scenario::Churn => {
            sim.advance(args.warmup);
            sim.start_window();
            let end = sim.now() + args.duration;
            let churn = args.scenario == Scenario::Churn;
            // 1% of the nodes leave and join again per minute; every node changes a key every
            // 10 s (one node at a time, in turn).
            let leave_every =
                Duration::from_secs(60).div_f64((args.nodes as f64 / 100.0).max(1e-9));
            let key_every = Duration::from_secs(10).div_f64(args.nodes as f64);
            let mut next_leave = sim.now() + leave_every;
            let mut next_key = sim.now() + key_every;
            let mut key_turn = 0usize;
            let mut key_round = 0u64;
            let mut rejoin: Vec<(Duration, usize)> = Vec::new();
            let step = if churn {
                key_every.min(Duration::from_millis(10))
            } else {
                Duration::from_secs(1)
            };
            while sim.now() < end {
                sim.advance((end - sim.now()).min(step));
                if churn {
                    let now = sim.now();
                    while next_key <= now {
                        let node = key_turn % args.nodes;
                        key_turn += 1;
                        if key_turn % args.nodes == 0 {
                            key_round += 1;
                        }
                        if sim.is_live(node) {
                            sim.set(node, "key-0", &format!("v{key_round}"));
                        }
                        next_key += key_every;
                    }
                    while next_leave <= now {
                        let node = 1
                            + (cohort_core::hash::mix64(out.seed ^ next_leave.as_nanos() as u64)
                                % (args.nodes as u64 - 1)) as usize;
                        if sim.is_live(node) {
                            sim.leave(node);
                            rejoin.push((now + Duration::from_secs(5), node));
                        }
                        next_leave += leave_every;
                    }
                    rejoin.retain(|&(at, node)| {
                        if at > now {
                            return true;
                        }
                        if sim.is_up(node) {
                            sim.stop(node);
                        }
                        sim.restart(node);
                        false
                    });
                }
                if args.progress {
                    eprintln!(
                        "progress seed={} virtual_secs={:.1} wall_secs={:.1}",
                        out.seed,
                        sim.now().as_secs_f64(),
                        sim.wall_elapsed().as_secs_f64()
                    );
                }
            }
            for rate in sim.window_rates() {
                out.bytes_per_node_per_sec.push(rate.bytes_per_sec);
                out.datagrams_per_node_per_sec.push(rate.datagrams_per_sec);
            }
        }
    }
    Ok(())
}

/// Runs until `sees(sim, observer)` holds for 99% and then for 100% of the live nodes (checked
/// every 5 ms of virtual time); returns when each happened.
fn reach(
    sim: &mut Sim,
    args: &Args,
    sees: impl Fn(&Sim, usize) -> bool,
) -> Result<(Duration, Duration), SimError> {
    let mut r99 = None;
    let deadline = sim.now() + args.deadline;
    loop {
        let live = sim.live_nodes();
        let seeing = live.iter().filter(|&&o| sees(sim, o)).count();
        if r99.is_none() && seeing * 100 >= live.len() * 99 {
            r99 = Some(sim.now());
        }
        if seeing == live.len() {
            let now = sim.now();
            return Ok((r99.unwrap_or(now), now));
        }
        if sim.now() >= deadline {
            return Err(SimError::Timeout {
                seed: sim.seed(),
                condition: "reach".to_owned(),
                deadline: args.deadline,
                at: sim.now(),
                location: std::panic::Location::caller(),
            });
        }
        sim.advance(Duration::from_millis(5));
    }
}

fn print_percentiles(name: &str, mut values: Vec<f64>, integer: bool) {
    if values.is_empty() {
        return;
    }
    for p in [50.0, 99.0] {
        if let Some(v) = percentile(&mut values, p) {
            if integer {
                println!("{name}_p{p}={v:.0}");
            } else {
                println!("{name}_p{p}={v:.3}");
            }
        }
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    if integer {
        println!("{name}_max={max:.0}");
    } else {
        println!("{name}_max={max:.3}");
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let seeds: Vec<u64> = (args.seed_base..args.seed_base + args.seeds).collect();
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(seeds.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else {
                        break;
                    };
                    let outcome = run_seed(&args, seed);
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(outcome);
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    results.sort_by_key(|o| o.seed);
    let wall_total = started.elapsed().as_secs_f64();

    let scenario = match args.scenario {
        Scenario::Join => "join",
        Scenario::Crash => "crash",
        Scenario::Steady => "steady",
        Scenario::Churn => "churn",
        Scenario::JoinOne => "joinone",
        Scenario::KeyChange => "keychange",
        Scenario::Rapid => "rapid",
    };
    println!("scenario={scenario}");
    println!("nodes={}", args.nodes);
    println!("seeds={}", seeds.len());
    println!("seed_base={}", args.seed_base);
    println!("interval_ms={}", args.interval.as_millis());
    println!(
        "protocol={}",
        match (args.mode, args.protocol) {
            (Protocol::Cohort, _) => "cohort",
            (_, ProtocolVersion::V0) => "v0",
            _ => "v1",
        }
    );
    println!("loss={}", args.loss);
    println!("fd_window={}", args.fd_window);
    println!("phi={}", args.phi);
    println!(
        "initial_interval_ms={}",
        args.initial_interval.unwrap_or(args.interval).as_millis()
    );
    let collect = |f: &dyn Fn(&Outcome) -> Option<f64>| -> Vec<f64> {
        results.iter().filter_map(f).collect()
    };
    print_percentiles(
        "converge_rounds",
        collect(&|o| o.converge_rounds.map(|r| r as f64)),
        true,
    );
    print_percentiles("converge_secs", collect(&|o| o.converge_secs), false);
    print_percentiles("detect_secs", collect(&|o| o.detect_secs), false);
    print_percentiles(
        "detect_first_secs",
        collect(&|o| o.detect_first_secs),
        false,
    );
    let interval = args.interval.as_secs_f64();
    print_percentiles("reach99_secs", collect(&|o| o.reach99_secs), false);
    print_percentiles("reach100_secs", collect(&|o| o.reach100_secs), false);
    print_percentiles(
        "reach99_rounds",
        collect(&|o| o.reach99_secs.map(|s| (s / interval).ceil())),
        true,
    );
    print_percentiles(
        "reach100_rounds",
        collect(&|o| o.reach100_secs.map(|s| (s / interval).ceil())),
        true,
    );
    if args.scenario == Scenario::Rapid {
        print_percentiles(
            "lossy_failed_secs",
            collect(&|o| o.lossy_failed_secs),
            false,
        );
        println!(
            "lossy_never_all_failed={}",
            results
                .iter()
                .filter(|o| o.lossy_failed_secs.is_none())
                .count()
        );
        println!(
            "lossy_live_pairs_at_end={}",
            results
                .iter()
                .map(|o| o.lossy_not_failed_at_end)
                .sum::<u64>()
        );
        println!(
            "healthy_failures_total={}",
            results.iter().map(|o| o.healthy_failures).sum::<u64>()
        );
    }
    let pooled = |f: &dyn Fn(&Outcome) -> &Vec<f64>| -> Vec<f64> {
        results.iter().flat_map(|o| f(o).iter().copied()).collect()
    };
    let bytes = pooled(&|o| &o.bytes_per_node_per_sec);
    let datagrams = pooled(&|o| &o.datagrams_per_node_per_sec);
    if !bytes.is_empty() {
        println!("duration_s={}", args.duration.as_secs_f64());
        println!(
            "bytes_per_node_per_sec_mean={:.0}",
            bytes.iter().sum::<f64>() / bytes.len() as f64
        );
        print_percentiles("bytes_per_node_per_sec", bytes, true);
        println!(
            "datagrams_per_node_per_sec_mean={:.1}",
            datagrams.iter().sum::<f64>() / datagrams.len() as f64
        );
        print_percentiles("datagrams_per_node_per_sec", datagrams, false);
    }
    println!(
        "false_positives_total={}",
        results.iter().map(|o| o.false_positives).sum::<u64>()
    );
    println!(
        "failed_events_total={}",
        results.iter().map(|o| o.failed_events).sum::<u64>()
    );
    println!(
        "decode_errors_total={}",
        results.iter().map(|o| o.decode_errors).sum::<u64>()
    );
    println!(
        "max_datagram_bytes={}",
        results
            .iter()
            .map(|o| o.max_datagram_bytes)
            .max()
            .unwrap_or(0)
    );
    println!(
        "virtual_secs_total={:.1}",
        results.iter().map(|o| o.virtual_secs).sum::<f64>()
    );
    print_percentiles("wall_secs_per_seed", collect(&|o| Some(o.wall_secs)), false);
    println!("wall_secs_total={wall_total:.2}");
    println!("jobs={}", args.jobs.min(seeds.len()).max(1));
    let failures: Vec<&Outcome> = results.iter().filter(|o| o.error.is_some()).collect();
    println!("failures={}", failures.len());
    if args.verbose {
        for o in &results {
            println!(
                "seed.{}=converge_secs:{:?} converge_rounds:{:?} detect_secs:{:?} false_positives:{} virtual_secs:{:.1} wall_secs:{:.2} trace_hash:{:016x}",
                o.seed,
                o.converge_secs,
                o.converge_rounds,
                o.detect_secs,
                o.false_positives,
                o.virtual_secs,
                o.wall_secs,
                o.trace_hash
            );
        }
    }
    for o in &failures {
        eprintln!(
            "seed {} failed: {}",
            o.seed,
            o.error.as_deref().unwrap_or_default()
        );
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
