//! Runs many random fault schedules in the simulator ([`cohort_sim::run_schedule`]) and prints
//! how many ran, their steps and checks, the failures, and the wall time.
//!
//! ```text
//! cargo run --release -p cohort-sim --bin schedules -- 10000
//! cargo run --release -p cohort-sim --bin schedules -- --seed 1234 --verbose
//! ```
//!
//! Run `schedules --help` for every option.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cohort_sim::{ScheduleFailure, ScheduleReport, run_schedule, run_schedule_logged};

const HELP: &str = "\
schedules: run random fault schedules over small clusters in the deterministic simulator,
checking the invariants after every step

USAGE: schedules [COUNT] [OPTIONS]

  COUNT               how many schedules (seeds FIRST..FIRST+COUNT; default 1000)
  --first S           first seed (default 1)
  --seed S            run only the schedule of seed S (repeatable)
  --jobs J            schedules run in parallel (default: available cores)
  --verbose           print every step of the schedules run with --seed, and each failure in full
  --help              this text
";

struct Args {
    count: u64,
    first: u64,
    seeds: Vec<u64>,
    jobs: usize,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        count: 1_000,
        first: 1,
        seeds: Vec::new(),
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--first" => args.first = value("--first")?,
            "--seed" => {
                let seed = value("--seed")?;
                args.seeds.push(seed);
            }
            "--jobs" => args.jobs = usize::try_from(value("--jobs")?.max(1)).unwrap_or(1),
            "--verbose" => args.verbose = true,
            "--help" | "-h" => return Err(String::new()),
            count => {
                args.count = count
                    .parse()
                    .map_err(|e| format!("{count}: not a count ({e})"))?;
            }
        }
    }
    Ok(args)
}

#[derive(Default)]
struct Totals {
    ran: u64,
    steps: u64,
    checkpoints: u64,
    checks: u64,
    virtual_time: Duration,
    crashes: u64,
    restarts: u64,
    leaves: u64,
    cuts: u64,
    skews_beyond_bound: u64,
    clock_skew_events: u64,
    stale_revivals: u64,
    converged_max: Duration,
    nodes: [u64; 7],
    failures: Vec<ScheduleFailure>,
}

impl Totals {
    fn add(&mut self, outcome: Result<ScheduleReport, ScheduleFailure>) {
        self.ran += 1;
        match outcome {
            Ok(r) => {
                self.steps += r.steps;
                self.checkpoints += r.checkpoints;
                self.checks += r.checks;
                self.virtual_time += r.virtual_time;
                self.crashes += r.crashes;
                self.restarts += r.restarts;
                self.leaves += r.leaves;
                self.cuts += r.cuts;
                self.skews_beyond_bound += r.skews_beyond_bound;
                self.clock_skew_events += r.clock_skew_events;
                self.stale_revivals += r.stale_revivals;
                self.converged_max = self.converged_max.max(r.converged_after);
                if let Some(n) = self.nodes.get_mut(r.nodes) {
                    *n += 1;
                }
            }
            Err(f) => self.failures.push(f),
        }
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprint!("{HELP}");
            return ExitCode::from(2);
        }
    };
    let seeds: Vec<u64> = if args.seeds.is_empty() {
        (args.first..args.first.saturating_add(args.count)).collect()
    } else {
        args.seeds.clone()
    };
    let started = Instant::now();
    let totals = Mutex::new(Totals::default());
    if !args.seeds.is_empty() && args.verbose {
        for &seed in &seeds {
            let outcome = run_schedule_logged(seed, |line| println!("seed {seed}: {line}"));
            totals.lock().expect("totals").add(outcome);
        }
    } else {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..args.jobs.min(seeds.len()).max(1) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&seed) = seeds.get(i) else { break };
                        let outcome = run_schedule(seed);
                        totals.lock().expect("totals").add(outcome);
                    }
                });
            }
        });
    }
    let wall = started.elapsed();
    let mut t = totals.into_inner().expect("totals");
    t.failures.sort_by_key(|f| f.seed);
    println!("schedules={}", t.ran);
    println!("passed={}", t.ran - t.failures.len() as u64);
    println!("failed={}", t.failures.len());
    println!("steps={}", t.steps);
    println!("checkpoints={}", t.checkpoints);
    println!("checks={}", t.checks);
    println!("virtual_secs={:.1}", t.virtual_time.as_secs_f64());
    println!(
        "crashes={} restarts={} leaves={} cuts={} skews_beyond_bound={} clock_skew_events={}",
        t.crashes, t.restarts, t.leaves, t.cuts, t.skews_beyond_bound, t.clock_skew_events
    );
    println!("stale_revivals={}", t.stale_revivals);
    println!(
        "cluster_sizes=3:{} 4:{} 5:{} 6:{}",
        t.nodes[3], t.nodes[4], t.nodes[5], t.nodes[6]
    );
    println!(
        "max_convergence_after_healing_secs={:.3}",
        t.converged_max.as_secs_f64()
    );
    println!("jobs={}", args.jobs);
    println!("wall_secs={:.2}", wall.as_secs_f64());
    for f in &t.failures {
        if args.verbose {
            println!("\n{f}");
        } else {
            println!(
                "FAILED seed={} step={} phase={}: {}",
                f.seed, f.step, f.phase, f.message
            );
        }
    }
    if t.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
