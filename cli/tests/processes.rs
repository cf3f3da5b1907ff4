//! Real processes of the `cohort` command, on loopback: five `cohort agent` processes form a
//! cluster; one is killed with SIGKILL and marked failed by the others, restarted with a new
//! generation and seen to rejoin; another stops gracefully and is marked left quickly. Ctrl-C
//! (SIGINT) is a graceful departure too. Two agents with `--json` print parseable events, the
//! joiner's metadata included. `--help` shows the library's defaults, and bad arguments are
//! usage errors. The smol driver: two agents with mutual TLS (files from `cohort certs`) join and
//! leave with the same lines as tokio agents, `cohort members --driver smol` asks one over QUIC,
//! a tokio agent and a smol agent gossip together, and TLS flags out of place are usage errors.
//! Faults: a paused (SIGSTOP) agent is failed then recovered; an agent whose clock is offset
//! beyond the drift bound (`--dangerous-clock-offset-ms`) is reported by the others and does
//! not drag their clocks; and, for each driver, an agent killed with SIGKILL and restarted in
//! the middle of a stream of RPC calls (made by a node in the test process) leaves no call
//! hanging past its deadline, and the cluster converges again.
//! Cohort mode: five agents with `--mode cohort` (four tokio, one smol) fail a SIGKILLed
//! one, see its restart rejoin and a graceful stop leave, and refuse a chitchat-mode agent
//! (each side prints `protocol-mismatch`).
//! Every wait is bounded, and every child is killed when the test ends, even when it fails.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_tokio::admin::MembersReply;
use cohort_tokio::{
    DEFAULT_CLUSTER_ID, DEFAULT_DATA_CENTER, DEFAULT_GOSSIP_INTERVAL, Members, Status, StatusCode,
    Timestamp, WaitError, WallTime,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cohort");
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
    /// The RPC address of the ready line (`None` for `rpc=none`).
    rpc: Option<SocketAddr>,
    /// Every line received so far, matched or not.
    history: Vec<String>,
}

impl Proc {
    /// Starts `cohort agent` named `name` on `listen`, joining through `seeds`, with `extra`
    /// arguments; does not wait for it to be ready.
    fn spawn(name: &str, listen: SocketAddr, seeds: &[SocketAddr], extra: &[&str]) -> Self {
        let seeds: Vec<String> = seeds.iter().map(ToString::to_string).collect();
        let mut child = Command::new(BIN)
            .arg("agent")
            .args(["--name", name, "--listen", &listen.to_string()])
            .args(["--seeds", &seeds.join(","), "--interval-ms", "100"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cohort agent starts");
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
        Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
            id: String::new(),
            listen,
            rpc: None,
            history: Vec::new(),
        }
    }

    /// Starts a text agent of the cluster `processes` and waits until it is ready.
    fn start(name: &str, listen: SocketAddr, seeds: &[SocketAddr]) -> Self {
        Self::start_with(name, listen, seeds, &[])
    }

    /// As [`Proc::start`], with `extra` arguments.
    fn start_with(name: &str, listen: SocketAddr, seeds: &[SocketAddr], extra: &[&str]) -> Self {
        let mut args = vec!["--cluster", "processes"];
        args.extend_from_slice(extra);
        let mut proc = Self::spawn(name, listen, seeds, &args);
        let ready = proc.wait_line(|l| l.starts_with("ready "));
        // `ready id=<id> listen=<addr> rpc=<addr>|none`
        let parts: Vec<&str> = ready.split_whitespace().skip(1).collect();
        let [id, listen, rpc] = parts[..] else {
            panic!("{name}: not a ready line: {ready}")
        };
        proc.id = id.strip_prefix("id=").expect("an id").to_owned();
        proc.listen = listen
            .strip_prefix("listen=")
            .and_then(|a| a.parse().ok())
            .expect("a listen address");
        proc.rpc = match rpc.strip_prefix("rpc=").expect("an RPC address") {
            "none" => None,
            addr => Some(addr.parse().expect("an RPC address")),
        };
        proc
    }

    /// Waits (at most [`WAIT`]) for a line matching `pred`, among those printed since the last
    /// match; returns it.
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_line_until(Instant::now() + WAIT, pred)
    }

    /// As [`Proc::wait_line`], until `deadline`.
    fn wait_line_until(&mut self, deadline: Instant, pred: impl Fn(&str) -> bool) -> String {
        if let Some(pos) = self.seen.iter().position(|l| pred(l)) {
            let line = self.seen[pos].clone();
            self.seen.drain(..=pos);
            return line;
        }
        loop {
            let line = self.next_line(deadline);
            if pred(&line) {
                return line;
            }
            self.seen.push(line);
        }
    }

    /// The next line printed, waiting until `deadline` at most (then the test fails, showing
    /// the last lines).
    fn next_line(&mut self, deadline: Instant) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.history.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "{}: no matching line in time; recent lines: {:?}",
                self.name,
                self.seen.iter().rev().take(8).collect::<Vec<_>>()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: the process exited; lines: {:?}", self.name, self.seen)
            }
        }
    }

    /// Takes every line printed so far into `seen`.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.history.push(line.clone());
            self.seen.push(line);
        }
    }

    fn wait_members(&mut self, live: usize) {
        let want = format!("members live={live} ");
        self.wait_line(|l| l.starts_with(&want));
    }

    /// Starts a `--json` agent of the cluster `json` publishing `meta` (`key=value`) and waits
    /// until it is ready.
    fn start_json(name: &str, listen: SocketAddr, seeds: &[SocketAddr], meta: &str) -> Self {
        Self::start_json_with(name, listen, seeds, &["--cluster", "json", "--meta", meta])
    }

    /// Starts a `--json` agent with `extra` arguments and waits until it is ready.
    fn start_json_with(
        name: &str,
        listen: SocketAddr,
        seeds: &[SocketAddr],
        extra: &[&str],
    ) -> Self {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let mut proc = Self::spawn(name, listen, seeds, &args);
        let ready = proc.wait_json(|v| v["event"] == "ready");
        proc.id = ready["id"].as_str().expect("an id").to_owned();
        proc.listen = ready["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("a listen address");
        proc.rpc = match &ready["rpc"] {
            Value::Null => None,
            addr => Some(
                addr.as_str()
                    .and_then(|a| a.parse().ok())
                    .expect("an RPC address or null"),
            ),
        };
        proc
    }

    /// Waits (at most [`WAIT`]) for a line matching `pred` among every line printed so far;
    /// consumes none, so the order of the waits does not matter. Every line must be a JSON
    /// object naming its `event`.
    fn wait_json(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let name = self.name.clone();
        let parse = |line: &str| -> Value {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
            assert!(value["event"].is_string(), "{name}: no event: {line}");
            value
        };
        if let Some(found) = self.seen.iter().map(|l| parse(l)).find(|v| pred(v)) {
            return found;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let line = self.next_line(deadline);
            let value = parse(&line);
            self.seen.push(line);
            if pred(&value) {
                return value;
            }
        }
    }

    /// Sends the signal `name` (`INT`, `TERM`, ...) to the process.
    #[cfg(unix)]
    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid.clone()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} {pid}: {sent}");
    }

    /// Waits (at most [`WAIT`]) for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running after {WAIT:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

#[test]
fn json_lines_carry_members_and_metadata() {
    let mut cluster = Cluster(Vec::new());
    let alone = Proc::start_json("a", loopback(), &[], "role=seed");
    let seed = alone.listen;
    cluster.0.push(alone);
    cluster
        .0
        .push(Proc::start_json("b", loopback(), &[seed], "role=joiner"));
    let a_id = cluster.0[0].id.clone();
    let b_id = cluster.0[1].id.clone();
    let b_listen = cluster.0[1].listen;
    assert!(
        a_id.starts_with("a/") && b_id.starts_with("b/"),
        "{a_id} {b_id}"
    );

    // The first node sees the joiner join, as a member object.
    let joined =
        cluster.0[0].wait_json(|v| v["event"] == "joined" && v["member"]["id"] == b_id.as_str());
    let member = &joined["member"];
    assert_eq!(member["name"], "b");
    assert_eq!(member["addr"], b_listen.to_string());
    assert_eq!(member["status"], "live");
    let generation = member["generation"].as_u64().expect("a numeric generation");
    assert_eq!(b_id, format!("b/{generation}@{b_listen}"));
    assert!(member["keys"].is_object(), "{joined}");
    // The joiner's `--meta` reaches it as a key event, and the other way round.
    let key = cluster.0[0].wait_json(|v| {
        v["event"] == "key" && v["member"]["id"] == b_id.as_str() && v["key"] == "role"
    });
    assert_eq!(key["value"], "joiner");
    cluster.0[1].wait_json(|v| v["event"] == "joined" && v["member"]["id"] == a_id.as_str());
    let key = cluster.0[1].wait_json(|v| {
        v["event"] == "key" && v["member"]["id"] == a_id.as_str() && v["key"] == "role"
    });
    assert_eq!(key["value"], "seed");
    for p in &mut cluster.0 {
        let members = p.wait_json(|v| v["event"] == "members" && v["live"] == 2);
        assert_eq!(members["known"], 2);
    }

    // The joiner's standard input closes: it stops, exits 0, and is seen to leave.
    drop(cluster.0[1].stdin.take());
    cluster.0[1].wait_json(|v| v["event"] == "stopped");
    let status = cluster.0[1].wait_exit();
    assert!(status.success(), "a graceful stop exits 0: {status}");
    let left =
        cluster.0[0].wait_json(|v| v["event"] == "left" && v["member"]["id"] == b_id.as_str());
    assert_eq!(left["member"]["status"], "left");
}

/// Runs `cohort` with `args` and no input to its end (at most [`WAIT`]): its exit status,
/// standard output and standard error.
fn run_to_end(args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cohort starts");
    let read = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cohort {args:?} still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = |h: std::thread::JoinHandle<String>| h.join().expect("the reader thread");
    (status, text(stdout), text(stderr))
}

/// The help of one option: its line and the description below it, up to the next option.
fn option_help<'a>(help: &'a str, option: &str) -> &'a str {
    let start = help
        .find(&format!("  {option} "))
        .unwrap_or_else(|| panic!("{option} is not in the help:\n{help}"));
    let rest = &help[start + 2..];
    let end = rest
        .match_indices("\n  ")
        .map(|(i, _)| i)
        .find(|&i| rest[i..].trim_start().starts_with('-'))
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn agent_help_shows_the_library_defaults() {
    let (status, help, _) = run_to_end(&["agent", "--help"]);
    assert!(status.success(), "{status}");
    let interval_ms = DEFAULT_GOSSIP_INTERVAL.as_millis().to_string();
    for (option, default) in [
        ("--cluster", DEFAULT_CLUSTER_ID),
        ("--dc", DEFAULT_DATA_CENTER),
        ("--interval-ms", interval_ms.as_str()),
    ] {
        let text = option_help(&help, option);
        assert!(
            text.contains(&format!("[default: {default}]")),
            "{option} should show the default {default:?}:\n{text}"
        );
    }
    // The fault-injection option says what it is.
    let text = option_help(&help, "--dangerous-clock-offset-ms");
    assert!(
        text.contains("DANGEROUS") && text.contains("fault testing") && text.contains("skew"),
        "{text}"
    );
}

#[test]
fn bad_arguments_and_a_busy_address_fail() {
    let usage: &[&[&str]] = &[
        &["agent", "--name", "a"],
        &[
            "agent",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--meta",
            "novalue",
        ],
        &[
            "agent",
            "--name",
            "a",
            "--listen",
            "127.0.0.1:0",
            "--protocol",
            "v9",
        ],
        &["agent", "--name", "a", "--listen", "not-an-address"],
        &["nonsense"],
    ];
    for args in usage {
        let (status, stdout, stderr) = run_to_end(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }

    // A listen address already bound: a clear error and a failure status, no panic.
    let busy = std::net::UdpSocket::bind(loopback()).expect("a socket");
    let addr = busy.local_addr().expect("its address").to_string();
    for driver in ["tokio", "smol"] {
        let (status, stdout, stderr) = run_to_end(&[
            "agent", "--name", "a", "--listen", &addr, "--driver", driver,
        ]);
        assert_eq!(status.code(), Some(1), "{driver}: {stderr}");
        assert!(stdout.is_empty(), "{driver}: {stdout}");
        assert!(
            stderr.starts_with("cohort: cannot bind") && !stderr.contains("panicked"),
            "{driver}: {stderr}"
        );
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_gracefully() {
    let mut cluster = Cluster(Vec::new());
    let first = Proc::start("c0", loopback(), &[]);
    let seed = first.listen;
    cluster.0.push(first);
    cluster.0.push(Proc::start("c1", loopback(), &[seed]));
    for p in &mut cluster.0 {
        p.wait_members(2);
    }

    // SIGINT (what Ctrl-C sends) to c1, whose standard input stays open.
    let leaver_id = cluster.0[1].id.clone();
    cluster.0[1].signal("INT");
    cluster.0[1].wait_line(|l| l == "stopped");
    let status = cluster.0[1].wait_exit();
    assert!(status.success(), "Ctrl-C exits 0: {status}");
    cluster.0[0].wait_line(|l| l == format!("left {leaver_id}"));
    cluster.0[0].drain();
    assert!(
        !cluster.0[0]
            .seen
            .iter()
            .any(|l| l == &format!("failed {leaver_id}")),
        "a Ctrl-C is a graceful departure, not a failure"
    );
}

/// With `--ignore-stdin`, a closed standard input does not stop the node; SIGTERM (what service
/// managers send) makes it leave gracefully.
#[cfg(unix)]
#[test]
fn ignore_stdin_keeps_running_and_sigterm_leaves_gracefully() {
    let mut cluster = Cluster(Vec::new());
    let first = Proc::start("t0", loopback(), &[]);
    let seed = first.listen;
    cluster.0.push(first);
    cluster.0.push(Proc::start_with(
        "t1",
        loopback(),
        &[seed],
        &["--ignore-stdin"],
    ));
    for p in &mut cluster.0 {
        p.wait_members(2);
    }
    // Close t1's standard input: it keeps running (a later key from t0 still reaches it).
    drop(cluster.0[1].stdin.take());
    let t0_id = cluster.0[0].id.clone();
    drop(cluster.0[0].stdin.take());
    // t0 stops (its stdin closed); t1 sees it leave, so it was still running.
    cluster.0[0].wait_line(|l| l == "stopped");
    cluster.0[1].wait_line(|l| l == format!("left {t0_id}"));
    assert!(
        cluster.0[1].child.try_wait().expect("status").is_none(),
        "t1 still runs with its stdin closed"
    );
    cluster.0[1].signal("TERM");
    cluster.0[1].wait_line(|l| l == "stopped");
    let status = cluster.0[1].wait_exit();
    assert!(status.success(), "SIGTERM exits 0: {status}");
}

/// `cohort members --node ADDR` asks a running agent over RPC and prints its view as a table
/// (and as JSON with `--json`); a node that does not answer is a clear error.
#[test]
fn members_asks_a_running_node_over_rpc() {
    let mut cluster = Cluster(Vec::new());
    let first = Proc::start("m0", loopback(), &[]);
    let seed = first.listen;
    cluster.0.push(first);
    cluster.0.push(Proc::start_with(
        "m1",
        loopback(),
        &[seed],
        &["--dc", "west"],
    ));
    for p in &mut cluster.0 {
        p.wait_members(2);
    }
    let node = cluster.0[0].listen.to_string();
    let (status, table, stderr) = run_to_end(&["members", "--node", &node]);
    assert!(status.success(), "{status}: {stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[1].starts_with("m0 *") && lines[1].contains("live"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("m1") && lines[2].contains("west"),
        "{table}"
    );
    let (status, json, stderr) = run_to_end(&["members", "--node", &node, "--json"]);
    assert!(status.success(), "{status}: {stderr}");
    let value: Value = serde_json::from_str(json.trim()).expect("one JSON object");
    let members = value["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    assert_eq!(members[1]["name"], "m1");
    assert_eq!(members[1]["data_center"], "west");
    assert_eq!(members[1]["status"], "live");
    // Nobody there.
    let free = std::net::TcpListener::bind(loopback()).unwrap();
    let nowhere = free.local_addr().unwrap().to_string();
    drop(free);
    let (status, _, stderr) = run_to_end(&["members", "--node", &nowhere, "--timeout-ms", "2000"]);
    assert!(!status.success());
    assert!(stderr.contains("unavailable"), "{stderr}");
}

/// A folder of its own under the system's temporary folder, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("cohort-cli-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn certs_writes_a_ca_and_node_certificates_that_load_and_reuses_the_ca() {
    let dir = TempDir::new("certs");
    let path = dir.0.to_str().expect("a UTF-8 temporary path");
    let (status, out, err) = run_to_end(&["certs", "--dir", path, "--nodes", "a,b"]);
    assert!(status.success(), "{out}{err}");
    for file in ["ca.pem", "ca.key", "a.pem", "a.key", "b.pem", "b.key"] {
        assert!(dir.0.join(file).is_file(), "{file} written: {out}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.0.join("a.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "a key is its owner's only: {mode:o}");
    }
    let config = |node: &str| {
        cohort_smol::TlsConfig::from_pem_files(
            dir.0.join("ca.pem"),
            dir.0.join(format!("{node}.pem")),
            dir.0.join(format!("{node}.key")),
        )
    };
    config("a").expect("a's files load");
    config("b").expect("b's files load");
    let ca_before = std::fs::read(dir.0.join("ca.pem")).unwrap();

    // More nodes later: the same CA signs them.
    let (status, out, err) = run_to_end(&["certs", "--dir", path, "--nodes", "c"]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("reused"), "{out}");
    assert_eq!(std::fs::read(dir.0.join("ca.pem")).unwrap(), ca_before);
    config("c").expect("c's files load with the same CA");

    // Existing node files are not replaced without --force; bad names are usage errors.
    let (status, _, err) = run_to_end(&["certs", "--dir", path, "--nodes", "a"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("--force"), "{err}");
    let (status, _, _) = run_to_end(&["certs", "--dir", path, "--nodes", "a", "--force"]);
    assert!(status.success());
    let (status, _, err) = run_to_end(&["certs", "--dir", path, "--nodes", "../x"]);
    assert_eq!(status.code(), Some(2), "{err}");
}

/// `cohort certs` into `dir` for `nodes`; panics unless it succeeds.
fn certs(dir: &TempDir, nodes: &str) {
    let path = dir.0.to_str().expect("a UTF-8 temporary path");
    let (status, out, err) = run_to_end(&["certs", "--dir", path, "--nodes", nodes]);
    assert!(status.success(), "{out}{err}");
}

/// The `--driver smol` arguments with `dir`'s CA and `node`'s certificate and key.
fn smol_tls(dir: &TempDir, node: &str) -> Vec<String> {
    let file = |name: String| dir.0.join(name).to_str().expect("UTF-8").to_owned();
    vec![
        "--driver".to_owned(),
        "smol".to_owned(),
        "--tls-ca".to_owned(),
        file("ca.pem".to_owned()),
        "--tls-cert".to_owned(),
        file(format!("{node}.pem")),
        "--tls-key".to_owned(),
        file(format!("{node}.key")),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The kind of a text line (its first word) and how many fields follow it.
fn shape(line: &str) -> (String, usize) {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default().to_owned();
    (kind, words.count())
}

/// Two smol agents with mutual TLS (files from `cohort certs`) join each other with the same
/// lines as tokio agents (`ready` with an RPC address, `joined`, `members`), and a graceful stop
/// is seen as `left`, not `failed`.
#[test]
fn smol_agents_with_tls_join_and_leave_like_tokio_agents() {
    let dir = TempDir::new("smol-agents");
    certs(&dir, "s0,s1");
    let mut cluster = Cluster(Vec::new());
    let first = Proc::start_with("s0", loopback(), &[], &strs(&smol_tls(&dir, "s0")));
    let seed = first.listen;
    cluster.0.push(first);
    cluster.0.push(Proc::start_with(
        "s1",
        loopback(),
        &[seed],
        &strs(&smol_tls(&dir, "s1")),
    ));
    // A tokio pair of its own (it knows no smol agent), for the lines' shapes.
    let reference = Proc::start("r0", loopback(), &[]);
    let reference_seed = reference.listen;
    cluster.0.push(reference);
    cluster
        .0
        .push(Proc::start("r1", loopback(), &[reference_seed]));
    for p in &mut cluster.0 {
        p.wait_members(2);
    }
    let (s0, s1) = (cluster.0[0].id.clone(), cluster.0[1].id.clone());
    for (i, other) in [(0, &s1), (1, &s0)] {
        cluster.0[i].wait_line(|l| l == format!("joined {other}"));
    }
    for p in &cluster.0[..2] {
        let rpc = p.rpc.expect("a smol agent with TLS serves RPC");
        assert_ne!(rpc, p.listen, "QUIC has a UDP port of its own");
    }
    // Every kind of line the smol agents printed, with as many fields as the tokio agents'.
    let (r0, r1) = (cluster.0[2].id.clone(), cluster.0[3].id.clone());
    cluster.0[2].wait_line(|l| l == format!("joined {r1}"));
    cluster.0[3].wait_line(|l| l == format!("joined {r0}"));
    let mut shapes = std::collections::BTreeSet::new();
    let mut reference_shapes = std::collections::BTreeSet::new();
    for (i, p) in cluster.0.iter_mut().enumerate() {
        p.drain();
        let into = if i < 2 {
            &mut shapes
        } else {
            &mut reference_shapes
        };
        into.extend(p.history.iter().map(|l| shape(l)));
    }
    for kind in ["ready", "joined", "members"] {
        assert!(
            shapes.iter().any(|(k, _)| k == kind),
            "no {kind} line: {shapes:?}"
        );
    }
    assert!(
        shapes.is_subset(&reference_shapes),
        "smol lines {shapes:?} are not shaped as tokio's {reference_shapes:?}"
    );

    // s1 stops gracefully: s0 sees it leave.
    drop(cluster.0[1].stdin.take());
    cluster.0[1].wait_line(|l| l == "stopped");
    let status = cluster.0[1].wait_exit();
    assert!(status.success(), "a graceful stop exits 0: {status}");
    cluster.0[0].wait_line(|l| l == format!("left {s1}"));
    cluster.0[0].wait_members(1);
    cluster.0[0].drain();
    assert!(
        !cluster.0[0]
            .seen
            .iter()
            .any(|l| l == &format!("failed {s1}")),
        "a graceful departure is not a failure"
    );
}

/// A tokio agent and a smol agent (gossip is the same protocol) form one cluster: each sees the
/// other join, live, and their JSON lines have the same fields; the smol one leaves gracefully.
#[test]
fn a_tokio_agent_and_a_smol_agent_gossip_together() {
    let mut cluster = Cluster(Vec::new());
    let tokio_agent = Proc::start_json_with(
        "tokio",
        loopback(),
        &[],
        &["--cluster", "mixed", "--driver", "tokio"],
    );
    let seed = tokio_agent.listen;
    cluster.0.push(tokio_agent);
    cluster.0.push(Proc::start_json_with(
        "smol",
        loopback(),
        &[seed],
        &["--cluster", "mixed", "--driver", "smol"],
    ));
    assert!(cluster.0[0].rpc.is_some(), "a tokio agent serves RPC");
    assert_eq!(
        cluster.0[1].rpc, None,
        "a smol agent without TLS has no RPC"
    );
    let (t, s) = (cluster.0[0].id.clone(), cluster.0[1].id.clone());
    let mut joined = Vec::new();
    for (i, other) in [(0, &s), (1, &t)] {
        let event = cluster.0[i]
            .wait_json(|v| v["event"] == "joined" && v["member"]["id"] == other.as_str());
        assert_eq!(event["member"]["status"], "live", "{event}");
        joined.push(event);
        let members = cluster.0[i].wait_json(|v| v["event"] == "members" && v["live"] == 2);
        assert_eq!(members["known"], 2);
    }
    let fields = |v: &Value| -> Vec<String> {
        let mut names: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        names.sort();
        names
    };
    assert_eq!(fields(&joined[0]), fields(&joined[1]));
    assert_eq!(fields(&joined[0]["member"]), fields(&joined[1]["member"]));

    drop(cluster.0[1].stdin.take());
    cluster.0[1].wait_json(|v| v["event"] == "stopped");
    let status = cluster.0[1].wait_exit();
    assert!(status.success(), "a graceful stop exits 0: {status}");
    cluster.0[0].wait_json(|v| v["event"] == "left" && v["member"]["id"] == s.as_str());
}

/// `cohort members --driver smol` with TLS files asks a smol agent over QUIC and prints the
/// table; a certificate of another CA is refused.
#[test]
fn members_asks_a_smol_agent_over_quic_with_mutual_tls() {
    let dir = TempDir::new("smol-members");
    certs(&dir, "q0,q1,admin");
    let mut cluster = Cluster(Vec::new());
    let first = Proc::start_with("q0", loopback(), &[], &strs(&smol_tls(&dir, "q0")));
    let seed = first.listen;
    cluster.0.push(first);
    let q1_tls = smol_tls(&dir, "q1");
    let mut q1 = strs(&q1_tls);
    q1.extend(["--dc", "west"]);
    cluster
        .0
        .push(Proc::start_with("q1", loopback(), &[seed], &q1));
    for p in &mut cluster.0 {
        p.wait_members(2);
    }
    let node = cluster.0[0].rpc.expect("an RPC address").to_string();
    let mut args = vec!["members", "--node", &node];
    let admin = smol_tls(&dir, "admin");
    args.extend(strs(&admin));
    let (status, table, stderr) = run_to_end(&args);
    assert!(status.success(), "{status}: {stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(
        lines[1].starts_with("q0 *") && lines[1].contains("live"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("q1") && lines[2].contains("west") && lines[2].contains("live"),
        "{table}"
    );
    args.push("--json");
    let (status, json, stderr) = run_to_end(&args);
    assert!(status.success(), "{status}: {stderr}");
    let value: Value = serde_json::from_str(json.trim()).expect("one JSON object");
    let members = value["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["rpc_addr"], node.as_str());

    // A probe certified by another CA is not a member of this cluster: refused.
    let other = TempDir::new("smol-members-other");
    certs(&other, "admin");
    let mut args = vec!["members", "--node", &node, "--timeout-ms", "3000"];
    let stranger = smol_tls(&other, "admin");
    args.extend(strs(&stranger));
    let (status, stdout, stderr) = run_to_end(&args);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("cohort: ") && stderr.contains("unavailable"),
        "{stderr}"
    );
}

/// TLS flags out of place are usage errors (exit 2); a TLS file that cannot be read or is not
/// PEM is an error naming it (exit 1). Nothing is printed on standard output.
#[test]
fn tls_flags_out_of_place_and_bad_files_fail_clearly() {
    let dir = TempDir::new("tls-errors");
    certs(&dir, "a");
    let agent = ["agent", "--name", "a", "--listen", "127.0.0.1:0"];
    let tls = smol_tls(&dir, "a");
    let tls = strs(&tls);
    let (ca, cert, key) = (&tls[2..4], &tls[4..6], &tls[6..8]);
    let usage: Vec<Vec<&str>> = vec![
        // TLS with the tokio driver, by default or named.
        [&agent[..], &tls[2..]].concat(),
        [&agent[..], &["--driver", "tokio"], &tls[2..]].concat(),
        // Not all three.
        [&agent[..], &tls[..2], ca].concat(),
        [&agent[..], &tls[..2], cert, key].concat(),
        [&agent[..], &tls[..2], ca, key].concat(),
        // `members` of a smol node without them, or with them for a tokio node.
        vec!["members", "--node", "127.0.0.1:1", "--driver", "smol"],
        [&["members", "--node", "127.0.0.1:1"][..], &tls[2..]].concat(),
    ];
    for args in &usage {
        let (status, stdout, stderr) = run_to_end(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
    }

    // A missing file, and one that is not PEM: named, exit 1, no panic.
    let missing = dir.0.join("missing.pem");
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("written");
    for (bad, what) in [(&missing, "cannot read"), (&garbage, "not PEM")] {
        let bad = bad.to_str().expect("UTF-8");
        for args in [
            [&agent[..], &tls[..2], &["--tls-ca", bad], cert, key].concat(),
            [&agent[..], &tls[..2], ca, &["--tls-cert", bad], key].concat(),
            [&agent[..], &tls[..2], ca, cert, &["--tls-key", bad]].concat(),
        ] {
            let (status, stdout, stderr) = run_to_end(&args);
            assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
            assert!(stdout.is_empty(), "{args:?}: {stdout}");
            assert!(
                stderr.starts_with("cohort: ")
                    && stderr.contains(bad)
                    && stderr.contains(what)
                    && !stderr.contains("panicked"),
                "{args:?}: {stderr}"
            );
        }
    }
}

/// Agents sharing a cluster key (from a file) form a cluster; one with another key never
/// joins it; a key that is not 64 hexadecimal digits is a clear error.
#[test]
fn agents_with_a_cluster_key_keep_a_stranger_out() {
    let dir = TempDir::new("keys");
    std::fs::create_dir_all(&dir.0).unwrap();
    let ours = dir.0.join("ours.key");
    let theirs = dir.0.join("theirs.key");
    std::fs::write(&ours, format!("{}\n", "1f".repeat(32))).unwrap();
    std::fs::write(&theirs, "2e".repeat(32)).unwrap();
    let key_args = |path: &std::path::Path| {
        vec![
            "--cluster-key-file".to_owned(),
            path.to_str().expect("a UTF-8 path").to_owned(),
        ]
    };
    let ours_args = key_args(&ours);
    let ours_refs: Vec<&str> = ours_args.iter().map(String::as_str).collect();
    let mut cluster = Cluster(vec![Proc::start_with("a", loopback(), &[], &ours_refs)]);
    let seed = cluster.0[0].listen;
    cluster
        .0
        .push(Proc::start_with("b", loopback(), &[seed], &ours_refs));
    let theirs_args = key_args(&theirs);
    let theirs_refs: Vec<&str> = theirs_args.iter().map(String::as_str).collect();
    cluster
        .0
        .push(Proc::start_with("x", loopback(), &[seed], &theirs_refs));
    cluster.0[0].wait_members(2);
    cluster.0[1].wait_members(2);
    // a saw b join; x, which gossips to a every round, never appears.
    let x_id = cluster.0[2].id.clone();
    cluster.0[2].child.kill().unwrap();
    cluster.0[0].drain();
    assert!(
        !cluster.0[0].seen.iter().any(|line| line.contains(&x_id)),
        "x never appears at a: {:?}",
        cluster.0[0].seen
    );

    let bad = dir.0.join("bad.key");
    std::fs::write(&bad, "not a key").unwrap();
    let (status, _, err) = run_to_end(&[
        "agent",
        "--name",
        "y",
        "--listen",
        "127.0.0.1:0",
        "--cluster-key-file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("cluster key") && err.contains("bad.key"),
        "{err}"
    );
}

/// A process stopped (SIGSTOP) for longer than the detection time is marked failed by the
/// others, then recovered once it runs again (SIGCONT); nobody sees a running peer fail or
/// leave, the paused one included.
#[test]
fn a_paused_process_is_failed_then_recovered_and_nobody_else_moves() {
    let mut cluster = Cluster(vec![Proc::start("s0", loopback(), &[])]);
    let seed = cluster.0[0].listen;
    for i in 1..3 {
        cluster
            .0
            .push(Proc::start(&format!("s{i}"), loopback(), &[seed]));
    }
    for p in &mut cluster.0 {
        p.wait_members(3);
    }
    for p in &mut cluster.0 {
        p.drain();
        p.seen.clear();
    }
    let paused = cluster.0[2].id.clone();
    cluster.0[2].signal("STOP");
    for p in &mut cluster.0[..2] {
        p.wait_line(|l| l == format!("failed {paused}"));
    }
    cluster.0[2].signal("CONT");
    for p in &mut cluster.0[..2] {
        p.wait_line(|l| l == format!("recovered {paused}"));
    }
    // The paused one sees the others live again, whatever it thought meanwhile.
    cluster.0[2].wait_members(3);
    let others = [cluster.0[0].id.clone(), cluster.0[1].id.clone()];
    // Nor does the paused one declare them dead: it was starved, not they (the self-suspicion
    // guard).
    for p in &mut cluster.0 {
        p.drain();
        for line in &p.seen {
            let about_other = others.iter().any(|id| line.ends_with(id.as_str()));
            assert!(
                !(about_other && (line.starts_with("failed") || line.starts_with("left"))),
                "{}: a spurious event about a running peer: {line}",
                p.name
            );
        }
    }
}

// ------------------------------------------------------------ faults seen from a node in here

/// What the tests below need of a node of either driver running in the test process, to call
/// the agents' admin service and watch the membership.
trait Caller: Clone + Send + Sync + 'static {
    /// Asks `to`'s admin service for its members within `deadline`: the reply, and the
    /// timestamp its frame carried (the callee's hybrid logical clock when it answered).
    fn ask(
        &self,
        to: SocketAddr,
        deadline: Duration,
    ) -> impl Future<Output = Result<(MembersReply, Timestamp), Status>> + Send + 'static;
    /// Waits until `pred` holds for the membership.
    fn wait_members(
        &self,
        pred: impl FnMut(&Members) -> bool,
        timeout: Duration,
    ) -> impl Future<Output = Result<Members, WaitError>>;
    /// Leaves and stops.
    fn stop(&self) -> impl Future<Output = ()>;
}

/// Implements [`Caller`] for `$driver::Node` (both drivers have the same names, and the types
/// involved are core's).
macro_rules! caller {
    ($driver:ident) => {
        impl Caller for $driver::Node {
            fn ask(
                &self,
                to: SocketAddr,
                deadline: Duration,
            ) -> impl Future<Output = Result<(MembersReply, Timestamp), Status>> + Send + 'static
            {
                let client = self
                    .rpc_client::<$driver::admin::AdminService>(to)
                    .with_deadline(Some(deadline));
                async move {
                    let response = client.call(&$driver::admin::MembersRequest).await?;
                    Ok((response.deserialize()?, response.frame().header().timestamp))
                }
            }

            fn wait_members(
                &self,
                pred: impl FnMut(&Members) -> bool,
                timeout: Duration,
            ) -> impl Future<Output = Result<Members, WaitError>> {
                self.wait_for_members(pred, timeout)
            }

            fn stop(&self) -> impl Future<Output = ()> {
                self.shutdown()
            }
        }
    };
}

caller!(cohort_tokio);
caller!(cohort_smol);

/// A tokio runtime for the nodes and calls of this process, while the test's own thread waits
/// on the agents' lines.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The wall clock of this process, as the agents' clocks read it when not offset.
fn wall_now() -> WallTime {
    WallTime::saturating_from(std::time::SystemTime::now())
}

/// An agent whose wall clock is offset far beyond the drift bound
/// (`--dangerous-clock-offset-ms`) still joins (a live member), is reported by the others
/// (`skew <its address>` lines, again while gossip goes on), and does not drag their clocks:
/// the timestamps their RPC replies carry (their hybrid logical clocks, read by a node in this
/// process) stay within the bound of this process's wall clock, while the skewed agent's own
/// replies are refused with a clock-skew status.
#[test]
fn an_agent_with_a_skewed_clock_is_reported_and_drags_no_one() {
    const SKEW_MS: u64 = 5_000;
    const DRIFT_MS: u64 = 500; // the default drift bound, which the agents use
    let mut cluster = Cluster(vec![Proc::start("k0", loopback(), &[])]);
    let seed = cluster.0[0].listen;
    cluster.0.push(Proc::start("k1", loopback(), &[seed]));
    cluster.0.push(Proc::start_with(
        "fast",
        loopback(),
        &[seed],
        &["--dangerous-clock-offset-ms", &SKEW_MS.to_string()],
    ));
    // Its generation is its (offset) wall clock at start: seconds ahead of ours.
    let fast_id = cluster.0[2].id.clone();
    assert!(
        generation_of(&fast_id) > wall_now().as_unix_millis() + SKEW_MS / 2,
        "the offset reaches the agent's clock: {fast_id}"
    );
    for p in &mut cluster.0 {
        p.wait_members(3);
    }
    let fast_addr = cluster.0[2].listen;
    for p in &mut cluster.0[..2] {
        // Reported at once, then again while gossip goes on (at most once a second per
        // sender, with the count held back meanwhile).
        p.wait_line(|l| l.starts_with(&format!("skew {fast_addr} suppressed=")));
        p.drain();
        for line in [format!("joined {fast_id}"), format!("skew {fast_addr}")] {
            assert!(p.history.contains(&line), "{}: no {line:?}", p.name);
        }
    }
    // The skewed agent reports no one: the others are behind it.
    cluster.0[2].drain();
    assert!(
        !cluster.0[2].history.iter().any(|l| l.starts_with("skew ")),
        "{:?}",
        cluster.0[2].history
    );

    // Their clocks, as their RPC replies carry them.
    let rt = runtime();
    rt.block_on(async {
        let any = loopback();
        let probe = cohort_tokio::NodeBuilder::new(
            "probe",
            cohort_tokio::ConnectionConfig::new(any, any, Vec::<String>::new()),
        )
        .cluster_id("probe-of-skew")
        .connect()
        .await
        .expect("the probe starts");
        let deadline = Duration::from_secs(5);
        for p in &cluster.0[..2] {
            let rpc = p.rpc.expect("a tokio agent serves RPC");
            let (reply, stamp) = probe
                .ask(rpc, deadline)
                .await
                .unwrap_or_else(|status| panic!("{}: {status}", p.name));
            let wall = wall_now().as_unix_millis();
            assert!(
                stamp.millis() <= wall + DRIFT_MS,
                "{}: its clock reads {} ms, {} ms ahead of the wall clock: dragged",
                p.name,
                stamp.millis(),
                stamp.millis() - wall
            );
            assert_eq!(reply.members.len(), 3, "{reply:?}");
        }
        let fast_rpc = cluster.0[2].rpc.expect("a tokio agent serves RPC");
        let refused = probe.ask(fast_rpc, deadline).await.expect_err("skewed");
        assert_eq!(refused.code, StatusCode::ClockSkew, "{refused}");
        probe.stop().await;
    });
}

/// The generation of an agent's id (`name/generation@address`).
fn generation_of(id: &str) -> u64 {
    id.split_once('/')
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(generation, _)| generation.parse().ok())
        .unwrap_or_else(|| panic!("not an id: {id}"))
}

/// The deadline of every call of the RPC load.
const CALL_DEADLINE: Duration = Duration::from_secs(2);
/// How late past its deadline a call may finish (the machine may be busy): later is a hang.
const CALL_MARGIN: Duration = Duration::from_secs(1);
/// The pause between two calls of one caller.
const CALL_PACE: Duration = Duration::from_millis(10);
/// Callers per agent.
const CALLERS: usize = 2;
/// How long the whole kill-and-restart test may take.
const LOAD_TEST_BUDGET: Duration = Duration::from_secs(40);

/// How one call of the load ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Answered by the agent of this generation.
    Answered(u64),
    /// A typed error.
    Failed(StatusCode),
    /// Not finished by its deadline plus [`CALL_MARGIN`] (then abandoned).
    Hung,
}

/// One call of the load.
#[derive(Clone, Copy, Debug)]
struct Call {
    /// The agent called (its index).
    target: usize,
    started: Instant,
    took: Duration,
    outcome: Outcome,
}

impl Call {
    fn finished(&self) -> Instant {
        self.started + self.took
    }
}

/// One caller: calls agent `target` (at the address `addrs` holds for it now) again and again
/// until `stop`, each call with [`CALL_DEADLINE`], and sends each outcome to `calls`.
async fn call_in_a_loop<C: Caller>(
    caller: C,
    target: usize,
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    calls: Sender<Call>,
) {
    while !stop.load(Ordering::Relaxed) {
        let to = addrs.lock().expect("the addresses")[target];
        let started = Instant::now();
        let outcome =
            match tokio::time::timeout(CALL_DEADLINE + CALL_MARGIN, caller.ask(to, CALL_DEADLINE))
                .await
            {
                Err(_) => Outcome::Hung,
                Ok(Err(status)) => Outcome::Failed(status.code),
                Ok(Ok((reply, _))) => Outcome::Answered(
                    reply
                        .members
                        .iter()
                        .find(|row| row.local)
                        .map_or(0, |row| row.generation),
                ),
            };
        let call = Call {
            target,
            started,
            took: started.elapsed(),
            outcome,
        };
        if calls.send(call).is_err() {
            return;
        }
        tokio::time::sleep(CALL_PACE).await;
    }
}

/// The calls the load made, as they come in.
struct Load {
    incoming: Receiver<Call>,
    calls: Vec<Call>,
}

impl Load {
    /// Waits until `deadline` at most for a call matching `pred` (among every call so far).
    fn wait(&mut self, deadline: Instant, what: &str, pred: impl Fn(&Call) -> bool) -> Call {
        if let Some(call) = self.calls.iter().find(|c| pred(c)) {
            return *call;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(call) => {
                    self.calls.push(call);
                    if pred(&call) {
                        return call;
                    }
                }
                Err(_) => panic!(
                    "no call {what} in time; the last calls: {:?}",
                    self.calls.iter().rev().take(8).collect::<Vec<_>>()
                ),
            }
        }
    }
}

/// Three agents serve a steady stream of RPC calls (their admin service) from a node in this
/// process that joined their cluster; one agent is killed with SIGKILL in the middle of it and
/// restarted on the same address with a new generation. Every call ends, answered or with a
/// typed error, within its deadline plus a margin (a hang fails the test); the two other
/// agents answer every call all along; calls to the killed agent fail with typed errors while
/// it is down and are answered by its new generation after the restart (never by the old one);
/// and the cluster converges again: every agent and the node in here see the new generation
/// live and the old one gone.
fn kill_and_restart_under_rpc_load<C, F>(
    agent_args: impl Fn(&str) -> Vec<String>,
    caller: impl FnOnce(SocketAddr) -> F,
) where
    C: Caller,
    F: Future<Output = C>,
{
    let began = Instant::now();
    let budget = began + LOAD_TEST_BUDGET;
    let by = |wait: Duration| (Instant::now() + wait).min(budget);
    let start = |name: &str, listen: SocketAddr, seeds: &[SocketAddr]| {
        let args = agent_args(name);
        Proc::start_with(name, listen, seeds, &strs(&args))
    };
    let mut cluster = Cluster(vec![start("p0", loopback(), &[])]);
    let seed = cluster.0[0].listen;
    for name in ["p1", "p2"] {
        cluster.0.push(start(name, loopback(), &[seed]));
    }
    let rt = runtime();
    let caller = rt.block_on(caller(seed));
    // Three agents and the caller.
    for p in &mut cluster.0 {
        p.wait_line_until(by(WAIT), |l| l.starts_with("members live=4 "));
    }
    rt.block_on(caller.wait_members(|m| m.live_count() == 4, WAIT))
        .expect("the caller sees every agent live");

    let addrs: Vec<SocketAddr> = cluster
        .0
        .iter()
        .map(|p| p.rpc.expect("the agents serve RPC"))
        .collect();
    let addrs = Arc::new(Mutex::new(addrs));
    let stop = Arc::new(AtomicBool::new(false));
    let (sender, incoming) = channel();
    let mut callers = Vec::new();
    for target in 0..3 {
        for _ in 0..CALLERS {
            callers.push(rt.spawn(call_in_a_loop(
                caller.clone(),
                target,
                Arc::clone(&addrs),
                Arc::clone(&stop),
                sender.clone(),
            )));
        }
    }
    drop(sender);
    let mut load = Load {
        incoming,
        calls: Vec::new(),
    };
    let old_id = cluster.0[2].id.clone();
    let old_generation = generation_of(&old_id);
    for target in 0..3 {
        load.wait(by(WAIT), "answered before the kill", |c| {
            c.target == target && matches!(c.outcome, Outcome::Answered(_))
        });
    }

    // SIGKILL p2 under load; the others mark it failed.
    let victim_addr = cluster.0[2].listen;
    cluster.0[2].child.kill().expect("SIGKILL");
    let _ = cluster.0[2].child.wait();
    let killed_at = Instant::now();
    for p in &mut cluster.0[..2] {
        p.wait_line_until(by(WAIT), |l| l == format!("failed {old_id}"));
    }
    // Calls to it fail meanwhile (at least one, started after the kill, is over).
    load.wait(by(WAIT), "to the killed agent failing", |c| {
        c.target == 2 && c.started >= killed_at && matches!(c.outcome, Outcome::Failed(_))
    });

    // Restart it on the same address: a new generation.
    let restarted_at = Instant::now();
    let restarted = start("p2", victim_addr, &[seed]);
    let new_id = restarted.id.clone();
    let new_generation = generation_of(&new_id);
    assert!(new_generation > old_generation, "{new_id} after {old_id}");
    addrs.lock().expect("the addresses")[2] = restarted.rpc.expect("it serves RPC");
    cluster.0[2] = restarted;

    // The cluster converges again: the new generation live everywhere, the old one gone.
    for p in &mut cluster.0[..2] {
        p.wait_line_until(by(WAIT), |l| l == format!("removed {old_id}"));
    }
    for p in &mut cluster.0[..2] {
        p.wait_line_until(by(WAIT), |l| l == format!("joined {new_id}"));
    }
    cluster.0[2].wait_line_until(by(WAIT), |l| l.starts_with("members live=4 "));
    let seen = rt
        .block_on(caller.wait_members(
            |m| {
                let live = m.live().any(|x| x.id.to_string() == new_id);
                let old = m.all().iter().any(|x| x.id.to_string() == old_id);
                live && !old && m.live_count() == 4
            },
            budget.saturating_duration_since(Instant::now()),
        ))
        .unwrap_or_else(|e| panic!("the caller does not converge: {e}"));
    assert_eq!(seen.live_count(), 4);

    // Calls to it are answered again, by the new generation; and to everyone after that.
    let answered = load.wait(by(WAIT), "answered by the restarted agent", |c| {
        c.target == 2 && c.outcome == Outcome::Answered(new_generation)
    });
    let after = answered.finished();
    for target in 0..3 {
        load.wait(by(WAIT), "answered after the restart", |c| {
            c.target == target && c.started >= after && matches!(c.outcome, Outcome::Answered(_))
        });
    }

    // Stop the load: every caller ends within one more call.
    stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for task in callers {
            tokio::time::timeout(CALL_DEADLINE + CALL_MARGIN * 2, task)
                .await
                .expect("a caller ends after its last call")
                .expect("a caller does not panic");
        }
    });
    load.calls.extend(load.incoming.try_iter());
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), caller.stop())
            .await
            .expect("the caller stops");
    });

    // Every call ended, in time, answered or with a typed error.
    let calls = &load.calls;
    let late: Vec<&Call> = calls
        .iter()
        .filter(|c| c.outcome == Outcome::Hung || c.took > CALL_DEADLINE + CALL_MARGIN)
        .collect();
    assert!(late.is_empty(), "calls past their deadline: {late:?}");
    // The two others answered every call.
    let failed_others: Vec<&Call> = calls
        .iter()
        .filter(|c| c.target != 2 && !matches!(c.outcome, Outcome::Answered(_)))
        .collect();
    assert!(
        failed_others.is_empty(),
        "calls to running agents failed: {failed_others:?}"
    );
    // While it was down, calls to it failed with a typed error saying it is unreachable.
    let while_down: Vec<&Call> = calls
        .iter()
        .filter(|c| c.target == 2 && c.started >= killed_at && c.finished() <= restarted_at)
        .collect();
    assert!(!while_down.is_empty(), "no call while it was down");
    for call in &while_down {
        assert!(
            matches!(
                call.outcome,
                Outcome::Failed(StatusCode::Unavailable | StatusCode::DeadlineExceeded)
            ),
            "a call to a dead agent: {call:?}"
        );
    }
    // No answer from the old generation after the kill.
    let ghosts: Vec<&Call> = calls
        .iter()
        .filter(|c| c.started >= killed_at && c.outcome == Outcome::Answered(old_generation))
        .collect();
    assert!(ghosts.is_empty(), "answered by a killed agent: {ghosts:?}");
    let slowest = calls.iter().map(|c| c.took).max().unwrap_or_default();
    eprintln!(
        "{} calls ({} while p2 was down, every one failed typed); the slowest took {slowest:?}; \
         the test took {:?}",
        calls.len(),
        while_down.len(),
        began.elapsed()
    );
    assert!(began.elapsed() < LOAD_TEST_BUDGET, "{:?}", began.elapsed());
}

/// [`kill_and_restart_under_rpc_load`] on tokio agents (RPC over TCP, on the gossip port: the
/// restarted agent serves at the same RPC address), with a tokio node calling.
#[test]
fn sigkill_and_restart_under_rpc_load_tokio() {
    kill_and_restart_under_rpc_load(
        |_| Vec::new(),
        |seed| async move {
            let any = loopback();
            cohort_tokio::NodeBuilder::new(
                "load",
                cohort_tokio::ConnectionConfig::new(any, any, [seed]),
            )
            .cluster_id("processes")
            .gossip_interval(Duration::from_millis(100))
            .connect()
            .await
            .expect("the calling node starts")
        },
    );
}

/// [`kill_and_restart_under_rpc_load`] on smol agents (RPC over QUIC with mutual TLS, on a
/// port of its own: the restarted agent serves at a new RPC address, which the callers take),
/// with a smol node calling.
#[test]
fn sigkill_and_restart_under_rpc_load_smol() {
    let dir = TempDir::new("rpc-load-smol");
    certs(&dir, "p0,p1,p2,load");
    let tls = cohort_smol::TlsConfig::from_pem_files(
        dir.0.join("ca.pem"),
        dir.0.join("load.pem"),
        dir.0.join("load.key"),
    )
    .expect("the calling node's TLS files");
    kill_and_restart_under_rpc_load(
        |name| smol_tls(&dir, name),
        |seed| async move {
            let any = loopback();
            cohort_smol::NodeBuilder::new(
                "load",
                cohort_smol::ConnectionConfig::new(any, any, [seed]),
            )
            .cluster_id("processes")
            .gossip_interval(Duration::from_millis(100))
            .tls(tls)
            .connect()
            .await
            .expect("the calling node starts")
        },
    );
}

/// Cohort mode on real sockets: four tokio agents and a smol agent with `--mode cohort` form a
/// cluster; one killed with SIGKILL is failed by the others within seconds, restarted with a
/// new generation and seen to rejoin; a key published with `--meta` reaches everyone; a
/// chitchat-mode agent sent to the cluster is refused by it, and says so, as it says so of
/// them; a graceful stop is seen as a departure, never a failure.
#[test]
fn cohort_mode_processes_fail_rejoin_leave_and_refuse_a_chitchat_mode_agent() {
    let cohort = ["--mode", "cohort", "--probe-interval-ms", "100"];
    let mut cluster = Cluster(Vec::new());
    let mut first_args = cohort.to_vec();
    first_args.extend(["--meta", "role=seed"]);
    let first = Proc::start_with("c0", loopback(), &[], &first_args);
    let seed = first.listen;
    cluster.0.push(first);
    for i in 1..4 {
        cluster.0.push(Proc::start_with(
            &format!("c{i}"),
            loopback(),
            &[seed],
            &cohort,
        ));
    }
    let mut smol_args = cohort.to_vec();
    smol_args.extend(["--driver", "smol"]);
    cluster
        .0
        .push(Proc::start_with("c4", loopback(), &[seed], &smol_args));
    for p in &mut cluster.0 {
        p.wait_members(5);
    }
    let seed_id = cluster.0[0].id.clone();
    for p in &mut cluster.0[1..] {
        p.wait_line(|l| l == format!("key {seed_id} role=seed"));
    }

    // SIGKILL c3: failed everywhere, well within the 3 s target.
    let victim_id = cluster.0[3].id.clone();
    let victim_addr = cluster.0[3].listen;
    cluster.0[3].child.kill().expect("SIGKILL");
    let _ = cluster.0[3].child.wait();
    let killed_at = Instant::now();
    for i in [0, 1, 2, 4] {
        cluster.0[i].wait_line(|l| l == format!("failed {victim_id}"));
    }
    let detect = killed_at.elapsed();
    let restarted = Proc::start_with("c3", victim_addr, &[seed], &cohort);
    let new_id = restarted.id.clone();
    assert_ne!(new_id, victim_id, "a new generation");
    cluster.0[3] = restarted;
    for i in [0, 1, 2, 4] {
        cluster.0[i].wait_line(|l| l == format!("joined {new_id}"));
    }

    // A chitchat-mode agent seeded with the cluster: both sides refuse and report it.
    let mut stranger = Proc::start_with("chitchat", loopback(), &[seed], &[]);
    let stranger_addr = stranger.listen;
    cluster.0[0].wait_line(|l| {
        l.starts_with(&format!(
            "protocol-mismatch {stranger_addr} theirs=chitchat"
        ))
    });
    stranger.wait_line(|l| l.starts_with(&format!("protocol-mismatch {seed} theirs=cohort")));
    stranger.drain();
    assert!(
        !stranger.history.iter().any(|l| l.starts_with("joined ")),
        "the chitchat-mode agent took no cohort-mode node for a member: {:?}",
        stranger.history
    );
    drop(stranger);

    // c2 stops gracefully: a departure, not a failure.
    let leaver_id = cluster.0[2].id.clone();
    drop(cluster.0[2].stdin.take());
    cluster.0[2].wait_line(|l| l == "stopped");
    let status = cluster.0[2].child.wait().expect("c2 exits");
    assert!(status.success(), "a graceful stop exits 0: {status}");
    for i in [0, 1, 3, 4] {
        cluster.0[i].wait_line(|l| l == format!("left {leaver_id}"));
        cluster.0[i].drain();
        assert!(
            !cluster.0[i]
                .history
                .iter()
                .any(|l| l == &format!("failed {leaver_id}")),
            "a graceful departure is not a failure"
        );
        assert!(
            !cluster.0[i]
                .history
                .iter()
                .any(|l| l.starts_with("joined ") && l.contains("chitchat/")),
            "no cohort-mode agent took the chitchat-mode one for a member"
        );
    }
    eprintln!("cohort mode: a SIGKILL was failed by every survivor after {detect:?}");
}
