//! debug
mod common;
use cohort_core::MemberStatus;
use cohort_sim::Sim;
use common::{config, ms};
#[test]
fn dbg() {
    let mut sim = Sim::new(
        config(1, cohort_core::node::Protocol::Cohort).with_configure(|slot, node| {
            node.metadata = vec![("key-0".into(), format!("v{slot}"))];
        }),
    );
    let n = 100;
    sim.add_nodes(n);
    for step in 0..30 {
        sim.advance(ms(100));
        let mut live = 0;
        let mut keys = 0;
        let mut views = 0;
        for o in 0..n {
            for s in 0..n {
                if o == s {
                    continue;
                }
                if sim.status(o, s) == Some(MemberStatus::Live) {
                    live += 1;
                }
                if sim.value(o, s, "key-0").is_some() {
                    keys += 1;
                }
            }
        }
        let _ = &mut views;
        println!(
            "t={} live_pairs={live} key_pairs={keys} converged={}",
            (step + 1) * 100,
            sim.is_converged()
        );
        if sim.is_converged() {
            break;
        }
    }
}
