//! Clock throughput: cohort's `Hlc` and `SharedHlc` side by side with `uhlc` and datacake's
//! HLC (`datacake-crdt` 0.4.1, the version datacake-node 0.4.1 uses), single thread and 2
//! threads, in one run.
//!
//! `cargo bench -p cohort-benches --bench clock`
//!
//! Throughput is timestamps per second (criterion's `elem/s`). "given wall" means the wall time
//! is passed in (a driver reads the system clock once per batch); "with clock read" means
//! every timestamp reads `SystemTime::now()` as uhlc and datacake do internally.

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cohort_core::{Hlc, HlcConfig, NodeTag, SharedHlc, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The wall time, read once. Clocks that are given the wall time all get this one.
fn fixed_wall() -> WallTime {
    WallTime::try_from(SystemTime::now()).expect("system clock in range")
}

fn read_wall() -> WallTime {
    WallTime::try_from(SystemTime::now()).expect("system clock in range")
}

/// Runs `op` `iters` times in total, split over `threads` threads started together; returns
/// the elapsed wall time.
fn run_threads<S, F>(threads: usize, iters: u64, state: Arc<S>, op: F) -> Duration
where
    S: Send + Sync + 'static,
    F: Fn(&S) + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    let per_thread = iters / threads as u64;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (barrier, state, op) = (Arc::clone(&barrier), Arc::clone(&state), op.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    op(&state);
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("bench thread");
    }
    start.elapsed()
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock/1-thread");
    g.throughput(Throughput::Elements(1));
    let wall = fixed_wall();

    // The floor for every "with clock read" figure: the system clock read alone.
    g.bench_function("SystemTime::now alone (floor)", |b| {
        b.iter(|| black_box(read_wall()))
    });
    let mut hlc = Hlc::new(HlcConfig::new(NodeTag::new(1)));
    g.bench_function("cohort Hlc::now (given wall)", |b| {
        b.iter(|| black_box(hlc.now(black_box(wall))))
    });
    let shared = SharedHlc::new(HlcConfig::new(NodeTag::new(1)));
    g.bench_function("cohort SharedHlc::now (given wall)", |b| {
        b.iter(|| black_box(shared.now(black_box(wall))))
    });
    let shared = SharedHlc::new(HlcConfig::new(NodeTag::new(1)));
    g.bench_function("cohort SharedHlc::now (with clock read)", |b| {
        b.iter(|| black_box(shared.now(read_wall())))
    });
    let uhlc = uhlc::HLC::default();
    g.bench_function("uhlc new_timestamp", |b| {
        b.iter(|| black_box(uhlc.new_timestamp()))
    });
    let mut datacake = datacake_crdt::HLCTimestamp::now(0, 1);
    g.bench_function("datacake HLCTimestamp::send", |b| {
        b.iter(|| black_box(datacake.send()))
    });
    g.finish();
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("clock/2-threads");
    g.throughput(Throughput::Elements(1));

    g.bench_function("cohort SharedHlc::now (given wall)", |b| {
        let shared = Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(1))));
        // The wall time is fixed per run: threads only contend on the atomic.
        let wall = fixed_wall();
        b.iter_custom(|iters| {
            run_threads(2, iters, Arc::clone(&shared), move |s| {
                black_box(s.now(black_box(wall)).ok());
            })
        })
    });
    g.bench_function("cohort SharedHlc::now (with clock read)", |b| {
        let shared = Arc::new(SharedHlc::new(HlcConfig::new(NodeTag::new(1))));
        b.iter_custom(|iters| {
            run_threads(2, iters, Arc::clone(&shared), |s| {
                black_box(s.now(read_wall()).ok());
            })
        })
    });
    g.bench_function("cohort Hlc::now behind a Mutex (with clock read)", |b| {
        let clock = Arc::new(Mutex::new(Hlc::new(HlcConfig::new(NodeTag::new(1)))));
        b.iter_custom(|iters| {
            run_threads(2, iters, Arc::clone(&clock), |c| {
                let wall = read_wall();
                black_box(c.lock().expect("not poisoned").now(wall).ok());
            })
        })
    });
    g.bench_function("uhlc new_timestamp", |b| {
        let uhlc = Arc::new(uhlc::HLC::default());
        b.iter_custom(|iters| {
            run_threads(2, iters, Arc::clone(&uhlc), |h| {
                black_box(h.new_timestamp());
            })
        })
    });
    g.bench_function("datacake HLCTimestamp::send behind a Mutex", |b| {
        // datacake-node serializes its clock through an actor; a mutex is the cheapest
        // equivalent that lets two threads share it.
        let clock = Arc::new(Mutex::new(datacake_crdt::HLCTimestamp::now(0, 1)));
        b.iter_custom(|iters| {
            run_threads(2, iters, Arc::clone(&clock), |c| {
                black_box(c.lock().expect("not poisoned").send().ok());
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = single_thread, two_threads
}
criterion_main!(benches);
