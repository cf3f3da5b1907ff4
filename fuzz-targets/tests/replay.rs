//! Replays the fuzz corpora on stable, as ordinary tests: every file of
//! `fuzz/corpus/<target>/` and of `fuzz/regressions/<target>/` (the inputs of crashes found,
//! kept once fixed) through the target's function. A corpus folder that is missing or empty
//! fails the test, so that it cannot pass by replaying nothing.

use std::fs;
use std::path::{Path, PathBuf};

use cohort_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir`, sorted (none if it does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable folder").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of `target`'s corpus and regressions.
fn replay(target: &str) {
    let run = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .unwrap_or_else(|| panic!("no target {target} in TARGETS"));
    let corpus = fuzz_dir().join("corpus").join(target);
    let corpus_inputs = inputs(&corpus);
    assert!(
        !corpus_inputs.is_empty(),
        "the corpus {} is missing or empty",
        corpus.display()
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    for path in corpus_inputs.iter().chain(&regressions) {
        let bytes = fs::read(path).expect("a readable input");
        // Name the input if it fails.
        eprintln!("{target}: {}", path.display());
        run(&bytes);
    }
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        /// Every target has a test here, and a cargo-fuzz binary.
        #[test]
        fn every_target_is_replayed() {
            let tested = [$(stringify!($target)),*];
            let targets: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
            assert_eq!(targets, tested, "TARGETS and the replay tests differ");
            for target in targets {
                let binary = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
                assert!(binary.is_file(), "no cargo-fuzz target {}", binary.display());
            }
        }
    };
}

replay_tests!(
    gossip_codec,
    envelope,
    rpc_frames,
    rpc_connection,
    node_datagram,
    node_enveloped,
    node_keyed,
    rkyv_access,
    cohort_mode_packet,
);
