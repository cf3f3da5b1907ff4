//! Random fault schedules over small clusters, with the invariants checked after every step.
//!
//! Owns [`run_schedule`] (whose documentation says what a schedule plays and what it checks),
//! what it reports ([`ScheduleReport`], [`ScheduleFailure`]) and the [`Step`]s. It only drives
//! the simulator; it never changes how the simulator or the nodes behave.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use cohort_core::hash::splitmix64;
use cohort_core::membership::is_reserved_key;
use cohort_core::{Event, MemberStatus};
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::{NetworkConfig, Sim, SimConfig, TraceKind};

/// The environment variable giving how many schedules a run covers (seeds `1..=N`).
pub const SCHEDULES_ENV: &str = "COHORT_SCHEDULES";

/// The environment variable that replays given schedules only (a comma-separated seed list).
pub const SCHEDULE_SEED_ENV: &str = "COHORT_SCHEDULE_SEED";

/// While time advances, the invariants are checked at least this often (virtual time).
pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// How long after healing the survivors have to converge (virtual time).
pub const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(90);

/// How long the survivors must stay converged once they are.
pub const STABLE_FOR: Duration = Duration::from_secs(3);

/// Keys the schedules set and delete.
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];

/// How many large keys a node may hold (`b00` ...).
const BULK_KEYS: u64 = 40;

/// The name of large key `i`.
fn bulk_key(i: u64) -> String {
    format!("b{i:02}")
}

/// A value of `bytes` hexadecimal digits that zstd cannot shrink much, derived from `salt`.
fn bulk_value(salt: u64, bytes: usize) -> String {
    let mut x = salt;
    let mut out = String::with_capacity(bytes + 16);
    while out.len() < bytes {
        x = splitmix64(x);
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(bytes);
    out
}

/// The largest skew that stays within the drift bound between any two nodes (each node is at
/// most this far from true time, so two nodes are at most twice this apart, below 500 ms).
const SKEW_WITHIN_MS: i64 = 200;

/// The seeds a run covers: those of [`SCHEDULE_SEED_ENV`] if it is set, else `1..=N` with `N`
/// from [`SCHEDULES_ENV`], else `1..=default_count`.
///
/// # Panics
///
/// When a variable is set but does not parse.
#[must_use]
pub fn seeds_from_env(default_count: u64) -> Vec<u64> {
    if let Ok(list) = std::env::var(SCHEDULE_SEED_ENV) {
        if !list.trim().is_empty() {
            return list
                .split(',')
                .map(|s| {
                    s.trim().parse().unwrap_or_else(|_| {
                        panic!("{SCHEDULE_SEED_ENV}={list:?}: not a list of seeds")
                    })
                })
                .collect();
        }
    }
    let count = match std::env::var(SCHEDULES_ENV) {
        Ok(n) if !n.trim().is_empty() => n
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SCHEDULES_ENV}={n:?}: not a count")),
        _ => default_count,
    };
    (1..=count).collect()
}

/// One action of a schedule. Slots are the simulator's ([`Sim`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Let virtual time pass.
    Advance(Duration),
    /// Crash a node that is up ([`Sim::crash`]).
    Crash(usize),
    /// Restart a slot with its next generation ([`Sim::restart`]): a node that is down comes
    /// back (a rejoin after a leave, a recovery after a crash), a node that is up is stopped
    /// and replaced at once (a process restarted without leaving).
    Restart(usize),
    /// Start a graceful leave ([`Sim::leave`]).
    Leave(usize),
    /// Stop a leaving node: the process exits, its leave announced or not ([`Sim::stop`]).
    Stop(usize),
    /// Pause a node: it handles nothing for this long ([`Sim::pause`]).
    Pause(usize, Duration),
    /// Cut every link between two groups, both ways.
    Partition(Vec<usize>, Vec<usize>),
    /// Cut the directed link `from -> to`.
    Cut(usize, usize),
    /// Cut every link of a node, both ways.
    Isolate(usize),
    /// Restore the link between two nodes, both ways.
    HealLink(usize, usize),
    /// Restore every link.
    HealAll,
    /// Change the network model.
    Network {
        /// The probability that a datagram is lost.
        loss: f64,
        /// The probability that a datagram is delivered twice.
        duplication: f64,
        /// The uniform extra latency (which reorders).
        jitter: Duration,
    },
    /// Set a node's wall-clock skew, in milliseconds (positive: ahead).
    Skew(usize, i64),
    /// Set a key on a live node.
    Set(usize, String, String),
    /// Delete a key of a live node.
    Delete(usize, String),
    /// Set many keys with large values that do not compress on a live node, so that its state
    /// no longer fits one datagram (deltas are cut by the budget, and so are resets): `count`
    /// keys `b00`, `b01`, ... of `bytes` bytes each, the values derived from `salt`.
    SetMany {
        /// The node.
        node: usize,
        /// How many keys.
        count: usize,
        /// The size of each value.
        bytes: usize,
        /// What the values are derived from.
        salt: u64,
    },
    /// Delete these keys of a live node (the ones that do not exist are skipped).
    DeleteMany(usize, Vec<String>),
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Advance(d) => write!(f, "advance {d:?}"),
            Self::Crash(n) => write!(f, "crash {n}"),
            Self::Restart(n) => write!(f, "restart {n}"),
            Self::Leave(n) => write!(f, "leave {n}"),
            Self::Stop(n) => write!(f, "stop {n}"),
            Self::Pause(n, d) => write!(f, "pause {n} for {d:?}"),
            Self::Partition(a, b) => write!(f, "partition {a:?} | {b:?}"),
            Self::Cut(a, b) => write!(f, "cut {a} -> {b}"),
            Self::Isolate(n) => write!(f, "isolate {n}"),
            Self::HealLink(a, b) => write!(f, "heal {a} <-> {b}"),
            Self::HealAll => write!(f, "heal all"),
            Self::Network {
                loss,
                duplication,
                jitter,
            } => write!(
                f,
                "network loss {loss} duplication {duplication} jitter {jitter:?}"
            ),
            Self::Skew(n, ms) => write!(f, "skew {n} {ms:+} ms"),
            Self::Set(n, k, v) => write!(f, "set {n} {k}={v}"),
            Self::Delete(n, k) => write!(f, "delete {n} {k}"),
            Self::SetMany {
                node,
                count,
                bytes,
                salt,
            } => write!(
                f,
                "set {count} keys of {bytes} bytes on {node} (salt {salt:#x})"
            ),
            Self::DeleteMany(n, keys) => write!(f, "delete {n} {keys:?}"),
        }
    }
}

/// What one schedule did, when every invariant held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleReport {
    /// The schedule's seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Steps played: the random ones and the healing ones.
    pub steps: u64,
    /// Checkpoints: how many times the whole set of invariants was checked.
    pub checkpoints: u64,
    /// Individual checks made at the checkpoints and on the events (a clock reading, a member's
    /// status, a key's value, an event's generation).
    pub checks: u64,
    /// Crashes, restarts and leaves played.
    pub crashes: u64,
    /// Restarts played (in place or of a node that was down).
    pub restarts: u64,
    /// Leaves started.
    pub leaves: u64,
    /// Partitions, cuts and isolations played.
    pub cuts: u64,
    /// Skews beyond the drift bound set.
    pub skews_beyond_bound: u64,
    /// Nodes up and converged at the end.
    pub survivors: usize,
    /// Virtual time from the end of healing to convergence.
    pub converged_after: Duration,
    /// Virtual time of the whole schedule.
    pub virtual_time: Duration,
    /// `ClockSkew` events reported (timestamps refused).
    pub clock_skew_events: u64,
    /// `Joined`, `Recovered` or `Unready` events about a generation that some other node
    /// already knew was superseded, reported by a node that did not know it yet (allowed; see
    /// [`run_schedule`]).
    pub stale_revivals: u64,
}

/// Why a schedule failed: enough to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleFailure {
    /// The schedule's seed.
    pub seed: u64,
    /// The index of the step after which the invariant failed (steps count from 0; the
    /// healing and convergence phases continue the count).
    pub step: usize,
    /// The phase: `start`, `faults`, `healing`, `convergence` or `stable`.
    pub phase: &'static str,
    /// Virtual time of the failure.
    pub at: Duration,
    /// What failed.
    pub message: String,
    /// The steps played so far (the last ones, at most 40), oldest first.
    pub recent_steps: Vec<String>,
}

impl fmt::Display for ScheduleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schedule {} failed after step {} ({} phase, virtual time {:?}): {}",
            self.seed, self.step, self.phase, self.at, self.message
        )?;
        writeln!(f, "steps so far:")?;
        for s in &self.recent_steps {
            writeln!(f, "  {s}")?;
        }
        write!(
            f,
            "replay: {SCHEDULE_SEED_ENV}={seed} cargo nextest run -p cohort-sim --test schedules --no-capture\n\
             or: cargo run --release -p cohort-sim --bin schedules -- --seed {seed} --verbose",
            seed = self.seed
        )
    }
}

impl std::error::Error for ScheduleFailure {}

/// Runs the schedule of `seed` and checks every invariant.
///
/// From the seed it builds a small cluster (3 to 6 nodes, every node a seed of every other),
/// converges it, then plays a random sequence of [`Step`]s: crashes, restarts (in place or of a
/// node that was down), graceful leaves and the process exit after them, pauses, partitions,
/// directed cuts and isolations and their healing, datagram loss, duplication and jitter, clock
/// skew within and beyond the drift bound, key sets and deletes (some large enough that a
/// node's state no longer fits one datagram), and time advancing. A third of the schedules
/// collect dead nodes after 8 s and a third collect tombstones after 4 s, so that collection,
/// and the reset of a peer that missed one, happen within the run. Then it heals everything
/// (every link, no loss, every skew back within the bound, leaving nodes stopped, each node
/// that is down restarted or left down at random, the last pause over) and runs until every
/// survivor has converged, and for a while longer.
///
/// The invariants, checked at every checkpoint (after each step, and every
/// [`CHECK_INTERVAL`] of virtual time while time advances):
///
/// - **No resurrected generation.** Read from every event every node reported, in order, and
///   from every node's member list: once a node has known generation `h` of a name (in its
///   member list or in an event), it never reports a generation below `h` joining, recovering
///   or live, nor lists one as live, even after `h` itself was collected; once it saw a
///   generation leave, it never reports it live again, even after collecting it.
/// - **The HLC never goes backwards.** Each running node's clock reading
///   ([`SharedHlc::last`](cohort_core::SharedHlc::last)) is at least its previous one within an
///   incarnation (a restarted node starts a new clock), and it is never further ahead than the
///   highest wall-clock reading of that node during the incarnation plus the drift bound: a
///   timestamp from beyond the bound is refused and moves nothing.
/// - **Events agree with the membership** ([`Sim::check_views`]), and **no phantom value**:
///   any value a node holds for another's key is one that node set in its current generation.
/// - **After healing, every survivor converges, and no key is lost:** every node that is up
///   sees every other one live (its current generation), sees no departed generation (crashed,
///   stopped, left or superseded) live, and holds every key each survivor set in its current
///   generation with its latest value, and none it deleted. The cluster must still be
///   converged [`STABLE_FOR`] later. (A protocol transient could break that: a dead
///   generation's last heartbeats, held by one survivor, reaching another that had failed it
///   earlier revive it there until the detector fails it again. It is kept strict because no
///   schedule has shown it; if one does, that is the first thing to look for.)
///
/// What is deliberately not claimed, because the design does not guarantee it:
///
/// - Keys of a generation that crashed, stopped or left may vanish (a restart starts with no
///   keys; the simulator forgets what the old generation set).
/// - While a clock is skewed beyond the bound its timestamps are refused (reported as
///   [`Event::ClockSkew`]); its gossip is still applied, so membership is unaffected.
/// - Across nodes, a node may report a generation live after *another* node learnt that it was
///   superseded: heartbeats travel by gossip, and a node that has not heard of the restart yet
///   (nor has the peer that relays the old generation's last heartbeats) cannot tell. Such
///   events are counted ([`ScheduleReport::stale_revivals`]), not failed; the node that learns
///   of the newer generation drops the old one at once, and convergence is checked after.
///
/// Everything runs in the simulator's virtual time, seeded: the same seed gives the same
/// schedule, the same run and the same report.
///
/// # Errors
///
/// The first invariant that failed, or the panic of a step, with the step and how to replay.
pub fn run_schedule(seed: u64) -> Result<ScheduleReport, ScheduleFailure> {
    run(Runner::new(seed, None))
}

/// [`run_schedule`], handing `log` each step as it is played (`"<index> <phase> <virtual
/// time> <step>"`) and each entry of the simulator's trace (`"  <virtual time> node <slot>
/// <entry>"`: the events every node reported, starts, crashes, stops), to debug a failure.
///
/// # Errors
///
/// As [`run_schedule`].
pub fn run_schedule_logged(
    seed: u64,
    mut log: impl FnMut(&str),
) -> Result<ScheduleReport, ScheduleFailure> {
    run(Runner::new(seed, Some(&mut log)))
}

fn run(mut runner: Runner<'_>) -> Result<ScheduleReport, ScheduleFailure> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| runner.run()));
    match outcome {
        Ok(Ok(())) => Ok(runner.report()),
        Ok(Err(message)) => Err(runner.failure(message)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned());
            Err(runner.failure(format!("panicked: {message}")))
        }
    }
}

/// The schedule's own random choices (the simulator has its own generator).
struct Dice(Xoshiro256PlusPlus);

impl Dice {
    /// A uniform number in `[0, n)` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        let i = self.below(items.len() as u64) as usize;
        Some(items[i])
    }

    fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// What one node incarnation knows: the highest generation of each slot it has heard of, and
/// the generations it saw leave.
#[derive(Clone, Debug, Default)]
struct Knowledge {
    highest: Vec<u64>,
    left: BTreeSet<(usize, u64)>,
}

/// One incarnation's clock: its last reading, and the highest wall clock it was given.
#[derive(Clone, Copy, Debug, Default)]
struct ClockWatch {
    generation: u64,
    last: u64,
    max_wall_ms: u64,
}

struct Runner<'a> {
    /// Where steps and trace entries are logged, if anywhere.
    sink: Option<&'a mut dyn FnMut(&str)>,
    seed: u64,
    dice: Dice,
    sim: Sim,
    phase: &'static str,
    step: usize,
    log: Vec<String>,
    /// Per slot, the keys its current generation set (`Some`) or deleted (`None`).
    expected: Vec<BTreeMap<String, Option<String>>>,
    /// Per slot, the values its current generation ever set, per key.
    history: Vec<BTreeMap<String, BTreeSet<String>>>,
    knowledge: Vec<Knowledge>,
    /// Per slot, the highest generation any other node knew of.
    highest_anywhere: Vec<u64>,
    clocks: Vec<ClockWatch>,
    /// The latest end of a pause played (virtual time).
    paused_until: Duration,
    trace_cursor: usize,
    drift_ms: u64,
    report: ScheduleReport,
    converged_at: Option<Duration>,
}

impl<'a> Runner<'a> {
    fn new(seed: u64, sink: Option<&'a mut dyn FnMut(&str)>) -> Self {
        let mut dice = Dice(Xoshiro256PlusPlus::seed_from_u64(splitmix64(
            seed ^ 0x5c4e_d01e_0000_0000,
        )));
        // Short grace periods in some schedules, so that dead nodes and tombstones are
        // collected (and peers that missed a collection are reset) within the run.
        let dead_grace = [8, 30, 24 * 3_600][dice.below(3) as usize];
        let tombstone_grace = [4, 60, 3_600][dice.below(3) as usize];
        let mut config = SimConfig::new(seed)
            .with_fast_failure_detection()
            .with_grace_period(Duration::from_secs(tombstone_grace));
        config.failure_detector.dead_node_grace_period = Duration::from_secs(dead_grace);
        let drift_ms = u64::try_from(config.max_clock_drift.as_millis()).unwrap_or(u64::MAX);
        let nodes = dice.range(3, 6) as usize;
        let mut sim = Sim::new(config);
        let all: Vec<usize> = (0..nodes).collect();
        for _ in 0..nodes {
            sim.add_node_with_seeds(&all);
        }
        Self {
            sink,
            seed,
            dice,
            sim,
            phase: "start",
            step: 0,
            log: Vec::new(),
            expected: vec![BTreeMap::new(); nodes],
            history: vec![BTreeMap::new(); nodes],
            knowledge: vec![Knowledge::default(); nodes],
            highest_anywhere: vec![0; nodes],
            clocks: vec![ClockWatch::default(); nodes],
            paused_until: Duration::ZERO,
            trace_cursor: 0,
            drift_ms,
            report: ScheduleReport {
                seed,
                nodes,
                ..ScheduleReport::default()
            },
            converged_at: None,
        }
    }

    fn run(&mut self) -> Result<(), String> {
        for i in 0..self.sim.len() {
            self.started(i);
        }
        self.checkpoint()?;
        self.advance_checked(Duration::from_secs(3))?;
        if let Err(why) = self.converged() {
            return Err(format!("the fresh cluster did not converge in 3 s: {why}"));
        }

        self.phase = "faults";
        let steps = self.dice.range(10, 40);
        for _ in 0..steps {
            let step = self.next_step();
            self.play(step)?;
        }

        self.phase = "healing";
        for step in self.healing_steps() {
            self.play(step)?;
        }

        self.phase = "convergence";
        let healed_at = self.sim.now();
        loop {
            match self.converged() {
                Ok(()) => break,
                Err(why) if self.sim.now() - healed_at >= CONVERGENCE_DEADLINE => {
                    return Err(format!(
                        "the survivors {:?} did not converge within {CONVERGENCE_DEADLINE:?} of healing: {why}",
                        self.sim.live_nodes()
                    ));
                }
                Err(_) => self.advance_checked(CHECK_INTERVAL)?,
            }
        }
        self.converged_at = Some(self.sim.now() - healed_at);

        self.phase = "stable";
        self.advance_checked(STABLE_FOR)?;
        self.converged()
            .map_err(|why| format!("converged, then no longer {STABLE_FOR:?} later: {why}"))
    }

    /// Slot `node` started a new generation: what it publishes from the start (its data
    /// center, its RPC address) is all it has set.
    fn started(&mut self, node: usize) {
        let keys = self
            .sim
            .node(node)
            .map(|n| n.local_member().keys)
            .unwrap_or_default();
        self.expected[node] = keys
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        self.history[node] = keys
            .into_iter()
            .map(|(k, v)| (k, BTreeSet::from([v])))
            .collect();
    }

    // ------------------------------------------------------------------ the schedule

    fn next_step(&mut self) -> Step {
        let n = self.sim.len();
        let up: Vec<usize> = (0..n).filter(|&i| self.sim.is_up(i)).collect();
        let down: Vec<usize> = (0..n).filter(|&i| !self.sim.is_up(i)).collect();
        let live = self.sim.live_nodes();
        let leaving: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&i| !self.sim.is_live(i))
            .collect();
        let d = &mut self.dice;
        let step = match d.below(100) {
            0..30 => None,
            30..38 => d.pick(&up).map(Step::Crash),
            38..46 => {
                let from = if down.is_empty() || d.chance(1, 4) {
                    &up
                } else {
                    &down
                };
                d.pick(from).map(Step::Restart)
            }
            46..51 => d.pick(&live).map(Step::Leave),
            51..55 => d.pick(&leaving).map(Step::Stop),
            55..59 => d
                .pick(&up)
                .map(|i| Step::Pause(i, Duration::from_millis(d.range(50, 4_000)))),
            59..64 => {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for i in 0..n {
                    if d.chance(1, 2) { &mut a } else { &mut b }.push(i);
                }
                (!a.is_empty() && !b.is_empty()).then_some(Step::Partition(a, b))
            }
            64..67 => {
                let from = d.below(n as u64) as usize;
                let to = d.below(n as u64) as usize;
                (from != to).then_some(Step::Cut(from, to))
            }
            67..69 => Some(Step::Isolate(d.below(n as u64) as usize)),
            69..73 => {
                let a = d.below(n as u64) as usize;
                let b = d.below(n as u64) as usize;
                (a != b).then_some(Step::HealLink(a, b))
            }
            73..76 => Some(Step::HealAll),
            76..80 => Some(Step::Network {
                loss: [0.0, 0.0, 0.05, 0.1, 0.3, 0.6][d.below(6) as usize],
                duplication: [0.0, 0.05, 0.2][d.below(3) as usize],
                jitter: Duration::from_millis([1, 5, 50][d.below(3) as usize]),
            }),
            80..86 => {
                let node = d.below(n as u64) as usize;
                let ms = if d.chance(1, 2) {
                    d.range(0, 2 * SKEW_WITHIN_MS as u64) as i64 - SKEW_WITHIN_MS
                } else {
                    let far = d.range(600, 30_000) as i64;
                    if d.chance(1, 2) { far } else { -far }
                };
                Some(Step::Skew(node, ms))
            }
            86..88 => d.pick(&live).map(|node| Step::SetMany {
                node,
                count: d.range(1, BULK_KEYS) as usize,
                bytes: d.range(200, 4_000) as usize,
                salt: d.0.next_u64(),
            }),
            88..90 => d.pick(&live).map(|node| {
                let keys = (0..BULK_KEYS)
                    .filter(|_| d.chance(1, 2))
                    .map(bulk_key)
                    .collect();
                Step::DeleteMany(node, keys)
            }),
            90..96 => d.pick(&live).map(|i| {
                let key = KEYS[d.below(KEYS.len() as u64) as usize].to_owned();
                Step::Set(i, key, format!("v{}", self.step))
            }),
            _ => d.pick(&live).map(|i| {
                let key = KEYS[d.below(KEYS.len() as u64) as usize].to_owned();
                Step::Delete(i, key)
            }),
        };
        step.unwrap_or_else(|| {
            // Mostly short, sometimes long enough for detection, collection and GC.
            let ms = match self.dice.below(10) {
                0..5 => self.dice.range(10, 300),
                5..9 => self.dice.range(300, 3_000),
                _ => self.dice.range(3_000, 15_000),
            };
            Step::Advance(Duration::from_millis(ms))
        })
    }

    /// Heal everything; stop the leaving nodes; restart each node that is down, or leave it
    /// down (at least one node runs); let the last pause end.
    fn healing_steps(&mut self) -> Vec<Step> {
        let n = self.sim.len();
        let mut steps = vec![
            Step::HealAll,
            Step::Network {
                loss: 0.0,
                duplication: 0.0,
                jitter: NetworkConfig::default().jitter,
            },
        ];
        for i in 0..n {
            let ms = self.dice.range(0, 2 * SKEW_WITHIN_MS as u64) as i64 - SKEW_WITHIN_MS;
            steps.push(Step::Skew(i, ms));
        }
        let mut up_after = 0;
        for i in 0..n {
            if self.sim.is_up(i) && !self.sim.is_live(i) {
                steps.push(Step::Stop(i));
            } else if self.sim.is_live(i) {
                up_after += 1;
            }
        }
        for i in 0..n {
            if !self.sim.is_live(i) && self.dice.chance(1, 2) {
                steps.push(Step::Restart(i));
                up_after += 1;
            }
        }
        if up_after == 0 {
            steps.push(Step::Restart(self.dice.below(n as u64) as usize));
        }
        if let Some(pause) = self.paused_until.checked_sub(self.sim.now()) {
            if !pause.is_zero() {
                steps.push(Step::Advance(pause));
            }
        }
        steps
    }

    fn play(&mut self, step: Step) -> Result<(), String> {
        let line = format!("{} {} {:?} {step}", self.step, self.phase, self.sim.now());
        if let Some(sink) = self.sink.as_mut() {
            sink(&line);
        }
        self.log.push(line);
        self.report.steps += 1;
        let sim = &mut self.sim;
        match &step {
            Step::Advance(d) => {
                self.advance_checked(*d)?;
            }
            Step::Crash(i) => {
                sim.crash(*i);
                self.report.crashes += 1;
            }
            Step::Restart(i) => {
                sim.restart(*i);
                self.started(*i);
                self.report.restarts += 1;
            }
            Step::Leave(i) => {
                sim.leave(*i);
                self.report.leaves += 1;
            }
            Step::Stop(i) => sim.stop(*i),
            Step::Pause(i, d) => {
                sim.pause(*i, *d);
                self.paused_until = self.paused_until.max(sim.now() + *d);
            }
            Step::Partition(a, b) => {
                sim.partition(a, b);
                self.report.cuts += 1;
            }
            Step::Cut(a, b) => {
                sim.cut(*a, *b);
                self.report.cuts += 1;
            }
            Step::Isolate(i) => {
                sim.isolate(*i);
                self.report.cuts += 1;
            }
            Step::HealLink(a, b) => sim.heal_both(*a, *b),
            Step::HealAll => sim.heal_all(),
            Step::Network {
                loss,
                duplication,
                jitter,
            } => sim.set_network(NetworkConfig {
                loss: *loss,
                duplication: *duplication,
                jitter: *jitter,
                ..NetworkConfig::default()
            }),
            Step::Skew(i, ms) => {
                sim.set_clock_skew_ms(*i, *ms);
                if ms.unsigned_abs() > SKEW_WITHIN_MS as u64 {
                    self.report.skews_beyond_bound += 1;
                }
            }
            Step::Set(i, key, value) => {
                sim.set(*i, key, value);
                self.expected[*i].insert(key.clone(), Some(value.clone()));
                self.history[*i]
                    .entry(key.clone())
                    .or_default()
                    .insert(value.clone());
            }
            Step::Delete(i, key) => {
                sim.delete(*i, key);
                self.expected[*i].insert(key.clone(), None);
            }
            Step::SetMany {
                node,
                count,
                bytes,
                salt,
            } => {
                for k in 0..*count as u64 {
                    let key = bulk_key(k);
                    let value = bulk_value(salt ^ k, *bytes);
                    sim.set(*node, &key, &value);
                    self.history[*node]
                        .entry(key.clone())
                        .or_default()
                        .insert(value.clone());
                    self.expected[*node].insert(key, Some(value));
                }
            }
            Step::DeleteMany(i, keys) => {
                for key in keys {
                    sim.delete(*i, key);
                    self.expected[*i].insert(key.clone(), None);
                }
            }
        }
        if !matches!(step, Step::Advance(_)) {
            self.checkpoint()?;
        }
        self.step += 1;
        Ok(())
    }

    /// Advances virtual time in slices of at most [`CHECK_INTERVAL`], with a checkpoint after
    /// each.
    fn advance_checked(&mut self, duration: Duration) -> Result<(), String> {
        let mut left = duration;
        while !left.is_zero() {
            let slice = left.min(CHECK_INTERVAL);
            self.sim.advance(slice);
            left -= slice;
            self.checkpoint()?;
        }
        Ok(())
    }

    // ------------------------------------------------------------------ invariants

    fn checkpoint(&mut self) -> Result<(), String> {
        self.report.checkpoints += 1;
        self.check_events()?;
        self.check_members()?;
        self.check_clocks()?;
        self.sim
            .check_views()
            .map_err(|e| format!("events disagree with the membership: {e}"))?;
        self.report.checks += 1;
        self.check_values()
    }

    /// Reads the events reported since the last checkpoint, in order, and checks that none
    /// brings an older generation, or one that left, back to life.
    fn check_events(&mut self) -> Result<(), String> {
        let n = self.sim.len();
        let trace = self.sim.trace();
        for entry in &trace[self.trace_cursor..] {
            if let Some(sink) = self.sink.as_mut() {
                sink(&format!(
                    "  {:?} node {} {}",
                    entry.at,
                    entry.node,
                    describe(&entry.kind)
                ));
            }
            let o = entry.node;
            match &entry.kind {
                TraceKind::Started(id) => {
                    self.knowledge[o] = Knowledge {
                        highest: vec![0; n],
                        left: BTreeSet::new(),
                    };
                    self.knowledge[o].highest[o] = id.generation();
                }
                TraceKind::Event(event) => {
                    let (id, revived, left) = match event {
                        Event::Joined(m) | Event::Recovered(m) | Event::Unready(m) => {
                            (&m.id, true, false)
                        }
                        Event::Left(m) => (&m.id, false, true),
                        Event::Failed(m) | Event::Reset(m) => (&m.id, false, false),
                        Event::KeyChanged { member, .. } => (&member.id, false, false),
                        _ => continue,
                    };
                    let Some(s) = self.sim.slot_of(id) else {
                        continue;
                    };
                    let g = id.generation();
                    let known = &mut self.knowledge[o];
                    self.report.checks += 1;
                    if revived {
                        if known.highest[s] > g {
                            return Err(format!(
                                "resurrected generation: at {:?} node {o} reported {} live ({}) \
                                 although it knew generation {} of that name",
                                entry.at,
                                id,
                                event_name(event),
                                known.highest[s]
                            ));
                        }
                        if known.left.contains(&(s, g)) {
                            return Err(format!(
                                "resurrected departure: at {:?} node {o} reported {id} live ({}) \
                                 after it saw it leave",
                                entry.at,
                                event_name(event)
                            ));
                        }
                        if self.highest_anywhere[s] > g {
                            // Another node knew a newer generation, this one did not: the
                            // heartbeat came by gossip from a node that had not heard of the
                            // restart either (see the module's notes). Counted, not failed.
                            self.report.stale_revivals += 1;
                        }
                    }
                    known.highest[s] = known.highest[s].max(g);
                    if left {
                        known.left.insert((s, g));
                    }
                    let h = &mut self.highest_anywhere[s];
                    *h = (*h).max(g);
                }
                _ => {}
            }
        }
        self.trace_cursor = trace.len();
        Ok(())
    }

    /// Checks each running node's member list against what it knew, then learns from it.
    fn check_members(&mut self) -> Result<(), String> {
        for o in 0..self.sim.len() {
            let Some(node) = self.sim.node(o) else {
                continue;
            };
            let members = node.members();
            let known = &mut self.knowledge[o];
            let mut highest = known.highest.clone();
            for m in members.all() {
                if let Some(s) = self.sim.slot_of(&m.id) {
                    highest[s] = highest[s].max(m.id.generation());
                }
            }
            for m in members.all() {
                let Some(s) = self.sim.slot_of(&m.id) else {
                    continue;
                };
                let g = m.id.generation();
                self.report.checks += 1;
                if matches!(m.status, MemberStatus::Live | MemberStatus::Unready) {
                    if highest[s] > g {
                        return Err(format!(
                            "resurrected generation: node {o} lists {} as {} although it knows \
                             generation {} of that name",
                            m.id, m.status, highest[s]
                        ));
                    }
                    if known.left.contains(&(s, g)) {
                        return Err(format!(
                            "resurrected departure: node {o} lists {} as {} after it saw it leave",
                            m.id, m.status
                        ));
                    }
                }
                if m.status == MemberStatus::Left {
                    known.left.insert((s, g));
                }
            }
            for (s, h) in highest.iter().enumerate().filter(|&(s, _)| s != o) {
                let any = &mut self.highest_anywhere[s];
                *any = (*any).max(*h);
            }
            known.highest = highest;
        }
        Ok(())
    }

    /// The HLC of each running node never goes back within its incarnation, and is never
    /// further ahead than its own highest wall clock plus the drift bound.
    fn check_clocks(&mut self) -> Result<(), String> {
        for i in 0..self.sim.len() {
            let Some(node) = self.sim.node(i) else {
                continue;
            };
            let generation = node.id().generation();
            let wall = self.sim.wall(i).as_unix_millis();
            let watch = &mut self.clocks[i];
            if watch.generation != generation {
                *watch = ClockWatch {
                    generation,
                    last: 0,
                    max_wall_ms: wall,
                };
            }
            watch.max_wall_ms = watch.max_wall_ms.max(wall);
            let Some(reading) = node.clock().last() else {
                continue;
            };
            self.report.checks += 2;
            let packed = reading.packed_time();
            if packed < watch.last {
                return Err(format!(
                    "the HLC went backwards: node {i} (generation {generation}) read {reading:?}, \
                     after {} ms / counter {}",
                    watch.last >> 16,
                    watch.last & 0xffff
                ));
            }
            watch.last = packed;
            let bound = watch.max_wall_ms.saturating_add(self.drift_ms);
            if reading.millis() > bound {
                return Err(format!(
                    "the HLC ran past the drift bound: node {i} (generation {generation}) read \
                     {} ms, its wall clock was at most {} ms and the bound is {} ms",
                    reading.millis(),
                    watch.max_wall_ms,
                    self.drift_ms
                ));
            }
        }
        Ok(())
    }

    /// Any value a running node holds for another's key was set by that node's generation.
    fn check_values(&mut self) -> Result<(), String> {
        let n = self.sim.len();
        for o in 0..n {
            let Some(node) = self.sim.node(o) else {
                continue;
            };
            for s in (0..n).filter(|&s| s != o) {
                let id = self.sim.id(s);
                let Some(state) = node.node_state(&id) else {
                    continue;
                };
                for (key, value) in state.visible() {
                    if is_reserved_key(key) {
                        continue;
                    }
                    self.report.checks += 1;
                    let set = self.history[s].get(key).is_some_and(|h| h.contains(value));
                    if !set {
                        return Err(format!(
                            "phantom value: node {o} holds {key}={} for {id}, which never set it",
                            abbreviate(value)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the nodes that are up have converged; if not, why.
    fn converged(&mut self) -> Result<(), String> {
        let live = self.sim.live_nodes();
        for &o in &live {
            let Some(node) = self.sim.node(o) else {
                continue;
            };
            let members = node.members();
            for &s in live.iter().filter(|&&s| s != o) {
                let id = self.sim.id(s);
                let Some(member) = members.get(&id) else {
                    return Err(format!("node {o} does not know {id}"));
                };
                if member.status != MemberStatus::Live {
                    return Err(format!("node {o} sees {id} as {}", member.status));
                }
                for (key, value) in &self.expected[s] {
                    self.report.checks += 1;
                    if member.get(key) != value.as_deref() {
                        return Err(format!(
                            "lost key: node {o} sees {key}={} on {id}, which last set {}",
                            member
                                .get(key)
                                .map_or_else(|| "(none)".to_owned(), abbreviate),
                            value
                                .as_deref()
                                .map_or_else(|| "(deleted)".to_owned(), abbreviate)
                        ));
                    }
                }
            }
            for m in members.all() {
                if m.id == *node.id()
                    || !matches!(m.status, MemberStatus::Live | MemberStatus::Unready)
                {
                    continue;
                }
                self.report.checks += 1;
                let current = self
                    .sim
                    .slot_of(&m.id)
                    .is_some_and(|s| self.sim.is_live(s) && self.sim.id(s) == m.id);
                if !current {
                    return Err(format!(
                        "node {o} sees the departed {} as {}",
                        m.id, m.status
                    ));
                }
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ results

    fn report(&self) -> ScheduleReport {
        let mut report = self.report.clone();
        report.survivors = self.sim.live_nodes().len();
        report.converged_after = self.converged_at.unwrap_or_default();
        report.virtual_time = self.sim.now();
        report.clock_skew_events = self.sim.metrics().clock_skew_events;
        report
    }

    fn failure(&self, message: String) -> ScheduleFailure {
        let from = self.log.len().saturating_sub(40);
        ScheduleFailure {
            seed: self.seed,
            step: self.step,
            phase: self.phase,
            at: self.sim.now(),
            message,
            recent_steps: self.log[from..].to_vec(),
        }
    }
}

/// A trace entry on one line.
fn describe(kind: &TraceKind) -> String {
    let member =
        |m: &cohort_core::Member| format!("{} ({}, heartbeat {})", m.id, m.status, m.heartbeat);
    match kind {
        TraceKind::Event(Event::Joined(m)) => format!("Joined {}", member(m)),
        TraceKind::Event(Event::Recovered(m)) => format!("Recovered {}", member(m)),
        TraceKind::Event(Event::Unready(m)) => format!("Unready {}", member(m)),
        TraceKind::Event(Event::Failed(m)) => format!("Failed {}", member(m)),
        TraceKind::Event(Event::Left(m)) => format!("Left {}", member(m)),
        TraceKind::Event(Event::Reset(m)) => format!("Reset {}", member(m)),
        TraceKind::Event(Event::Removed(id)) => format!("Removed {id}"),
        TraceKind::Event(Event::KeyChanged {
            member: m,
            key,
            value,
            ..
        }) => format!(
            "KeyChanged {} {key}={}",
            member(m),
            value
                .as_deref()
                .map_or_else(|| "(none)".to_owned(), abbreviate)
        ),
        TraceKind::Event(Event::ClockSkew { from, .. }) => format!("ClockSkew from {from}"),
        TraceKind::Started(id) => format!("Started {id}"),
        TraceKind::Crashed(id) => format!("Crashed {id}"),
        TraceKind::Stopped(id) => format!("Stopped {id}"),
        TraceKind::LeaveStarted(id) => format!("LeaveStarted {id}"),
        other => {
            let mut text = format!("{other:?}");
            text.truncate(160);
            text
        }
    }
}

/// A value for a message: short ones whole, long ones by their start and length.
fn abbreviate(value: &str) -> String {
    if value.len() <= 24 {
        format!("{value:?}")
    } else {
        format!("{:?}... ({} bytes)", &value[..16], value.len())
    }
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Joined(_) => "Joined",
        Event::Recovered(_) => "Recovered",
        Event::Unready(_) => "Unready",
        _ => "event",
    }
}
