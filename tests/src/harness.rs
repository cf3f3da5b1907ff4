//! Running a scenario over several seeds, and reporting a failure so that it can be replayed.
//!
//! Owns [`SimError`], [`seeds`] and [`run_seeds`]. A failing scenario names its seed and the
//! command that replays exactly that run (`COHORT_SIM_SEED=<seed>`).

use std::fmt;
use std::panic::{self, AssertUnwindSafe, Location};
use std::time::Duration;

/// The environment variable that replaces a test's seeds (a comma-separated list).
pub const SEED_ENV: &str = "COHORT_SIM_SEED";

/// Why a scenario step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimError {
    /// A condition was not reached within its virtual deadline.
    Timeout {
        /// The run's seed.
        seed: u64,
        /// What was awaited.
        condition: String,
        /// The deadline (virtual time from the call).
        deadline: Duration,
        /// Virtual time since the start of the run when it gave up.
        at: Duration,
        /// Where the scenario waited.
        location: &'static Location<'static>,
    },
}

impl SimError {
    /// The seed of the failed run.
    #[must_use]
    pub fn seed(&self) -> u64 {
        match self {
            Self::Timeout { seed, .. } => *seed,
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout {
                seed,
                condition,
                deadline,
                at,
                location,
            } => write!(
                f,
                "{condition} not reached within {deadline:?} of virtual time \
                 (waited at {location}, virtual clock {at:?}, seed {seed}); \
                 replay with {SEED_ENV}={seed}"
            ),
        }
    }
}

impl std::error::Error for SimError {}

/// The seeds to run: those in `COHORT_SIM_SEED` (comma-separated) if it is set, else
/// `defaults`.
///
/// # Panics
///
/// When `COHORT_SIM_SEED` is set but is not a list of integers.
#[must_use]
pub fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var(SEED_ENV) {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{SEED_ENV}={list:?}: not a list of seeds"))
            })
            .collect(),
        _ => defaults.to_vec(),
    }
}

/// Runs `scenario` once per seed ([`seeds`]`(defaults)`), in order.
///
/// When a run returns an error or panics, this panics with the seed, the error, and the
/// command that replays that seed alone. The test name in the command is the current thread's
/// name (libtest and nextest name the test thread after the test).
///
/// # Panics
///
/// When a scenario fails, as described.
pub fn run_seeds(defaults: &[u64], mut scenario: impl FnMut(u64) -> Result<(), SimError>) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<test name>")
        .to_owned();
    for seed in seeds(defaults) {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| scenario(seed)));
        let message = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned()),
        };
        panic!(
            "scenario failed with seed {seed}: {message}\n\
             replay: {SEED_ENV}={seed} cargo nextest run -p cohort-sim --no-capture -E 'test(={test})'"
        );
    }
}
