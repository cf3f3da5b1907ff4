//! Real processes: five `cohort-node` processes on loopback form a cluster; one is killed with
//! SIGKILL and marked failed by the others, restarted with a new generation and seen to rejoin;
//! another stops gracefully and is marked left quickly. Every wait is bounded, and every child
//! is killed when the test ends, even when it fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cohort-node");
const WAIT: Duration = Duration::from_secs(20);

/// One child process and the lines it printed so far.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    id: String,
    listen: SocketAddr,
}

impl Proc {
    fn start(name: &str, listen: SocketAddr, seeds: &[SocketAddr]) -> Self {
        let seeds: Vec<String> = seeds.iter().map(ToString::to_string).collect();
        let mut child = Command::new(BIN)
            .args(["--name", name, "--listen", &listen.to_string()])
            .args(["--seeds", &seeds.join(","), "--interval-ms", "100"])
            .args(["--cluster", "processes"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cohort-node starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proc = Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
            id: String::new(),
            listen,
        };
        let ready = proc.wait_line(|l| l.starts_with("ready "));
        // `ready id=<id> listen=<addr>`
        let mut parts = ready.split_whitespace().skip(1);
        proc.id = parts
            .next()
            .and_then(|p| p.strip_prefix("id="))
            .expect("an id")
            .to_owned();
        proc.listen = parts
            .next()
            .and_then(|p| p.strip_prefix("listen="))
            .and_then(|a| a.parse().ok())
            .expect("a listen address");
        proc
    }

    /// Waits (at most [`WAIT`]) for a line matching `pred`, among those printed since the last
    /// match; returns it.
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        if let Some(pos) = self.seen.iter().position(|l| pred(l)) {
            let line = self.seen[pos].clone();
            self.seen.drain(..=pos);
            return line;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no matching line within {WAIT:?}; recent lines: {:?}",
                    self.name,
                    self.seen.iter().rev().take(8).collect::<Vec<_>>()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: the process exited; lines: {:?}", self.name, self.seen)
                }
            }
        }
    }

    /// Takes every line printed so far into `seen`.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    fn wait_members(&mut self, live: usize) {
        let want = format!("members live={live} ");
        self.wait_line(|l| l.starts_with(&want));
    }
}

/// Kills every child when dropped (also when a test panics).
struct Cluster(Vec<Proc>);

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[test]
fn five_processes_kill_restart_and_leave() {
    let mut cluster = Cluster(Vec::new());
    let first = Proc::start("p0", loopback(), &[]);
    let seed = first.listen;
    cluster.0.push(first);
    for i in 1..5 {
        cluster
            .0
            .push(Proc::start(&format!("p{i}"), loopback(), &[seed]));
    }
    for p in &mut cluster.0 {
        p.wait_members(5);
    }

    // SIGKILL p4: the others mark it failed.
    let victim_id = cluster.0[4].id.clone();
    let victim_addr = cluster.0[4].listen;
    cluster.0[4].child.kill().expect("SIGKILL");
    let _ = cluster.0[4].child.wait();
    let killed_at = Instant::now();
    for p in &mut cluster.0[..4] {
        p.wait_line(|l| l == format!("failed {victim_id}"));
    }
    let detect = killed_at.elapsed();

    // Restart it on the same address: a new generation, which the others see join while the
    // old one is removed for good.
    let restarted = Proc::start("p4", victim_addr, &[seed]);
    assert_ne!(restarted.id, victim_id, "a new generation");
    let new_id = restarted.id.clone();
    cluster.0[4] = restarted;
    for p in &mut cluster.0[..4] {
        p.wait_line(|l| l == format!("removed {victim_id}"));
    }
    for p in &mut cluster.0[..4] {
        p.wait_line(|l| l == format!("joined {new_id}"));
    }
    cluster.0[4].wait_members(5);

    // p3 stops gracefully (its standard input closes): marked left quickly, before any
    // failure detector could have fired.
    let leaver_id = cluster.0[3].id.clone();
    drop(cluster.0[3].stdin.take());
    let stopped_at = Instant::now();
    cluster.0[3].wait_line(|l| l == "stopped");
    let status = cluster.0[3].child.wait().expect("p3 exits");
    assert!(status.success(), "a graceful stop exits 0: {status}");
    let mut left_after = Duration::ZERO;
    for i in [0, 1, 2, 4] {
        cluster.0[i].wait_line(|l| l == format!("left {leaver_id}"));
        left_after = left_after.max(stopped_at.elapsed());
    }
    for i in [0, 1, 2, 4] {
        cluster.0[i].drain();
        assert!(
            !cluster.0[i]
                .seen
                .iter()
                .any(|l| l == &format!("failed {leaver_id}")),
            "a graceful departure is not a failure"
        );
    }
    eprintln!("crash detected by all after {detect:?}; departure seen by all after {left_after:?}");
    // Printed, not asserted: the crash takes the failure detector's timeout, the leave a round
    // trip; what proves the leave was announced is the `left` line with no `failed` line above.
}
