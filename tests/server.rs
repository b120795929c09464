//! examples/server.rs as two real processes on 127.0.0.1 (this test binary re-run as the
//! example's program), driven by a real client over TCP: the downstream sees the upstream's
//! remaining deadline; a client that disconnects mid-request stops the sub-tasks and the
//! downstream call within 50 ms; SIGTERM drains the requests in flight and the process exits
//! cleanly with nothing of ctxcore left alive.
#![cfg(unix)]

#[path = "../examples/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "CTXCORE_SERVER_CHILD";
const DOWNSTREAM_ENV: &str = "CTXCORE_SERVER_DOWNSTREAM";
const STARTUP: Duration = Duration::from_secs(20);
/// The bound on stopping everything a vanished client started.
const STOP_WITHIN: Duration = Duration::from_millis(50);

/// Child-process entry: runs the example's program and exits with its code.
#[test]
#[ignore = "entry point of the child processes started by the other tests"]
fn server_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let downstream = std::env::var(DOWNSTREAM_ENV)
        .ok()
        .map(|p| p.parse().expect("a port"));
    std::process::exit(server::run(0, downstream));
}

/// A running instance of the example, killed if a test fails before it exits. Every line it
/// prints is kept with the instant it was read.
struct Program {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
    addr: SocketAddr,
}

impl Program {
    fn start(downstream: Option<&Program>) -> Program {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["server_child", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(d) = downstream {
            command.env(DOWNSTREAM_ENV, d.addr.port().to_string());
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let mut program = Program {
            child,
            lines,
            seen: Vec::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let (_, line) = program.line_starting("listening on http://", STARTUP);
        program.addr = line["listening on http://".len()..].parse().unwrap();
        assert!(program.addr.ip().is_loopback());
        program
    }

    /// The first line (seen before or arriving within `within`) starting with `prefix`.
    fn line_starting(&mut self, prefix: &str, within: Duration) -> (Instant, String) {
        if let Some(found) = self.seen.iter().find(|(_, l)| l.starts_with(prefix)) {
            return found.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(seen) => {
                    self.seen.push(seen.clone());
                    if seen.1.starts_with(prefix) {
                        return seen;
                    }
                }
                Err(_) => panic!("no line starting {prefix:?}; saw {:?}", self.lines()),
            }
        }
    }

    fn lines(&self) -> Vec<&str> {
        self.seen.iter().map(|(_, l)| l.as_str()).collect()
    }

    /// Sends `GET path` with `headers` and returns the open stream (the response unread).
    fn send(&self, path: &str, headers: &str) -> TcpStream {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{headers}\r\n",
            self.addr
        )
        .unwrap();
        stream
    }

    fn get(&self, path: &str, headers: &str) -> String {
        let mut stream = self.send(path, headers);
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(seen) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(seen);
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {within:?}; saw {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn sigterm(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sends SIGTERM to our own child process, which handles it.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number after `key=` in `line`.
fn number_after(line: &str, key: &str) -> u64 {
    let at = line
        .find(key)
        .unwrap_or_else(|| panic!("{key} in {line:?}"))
        + key.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number after {key} in {line:?}"))
}

#[test]
fn downstream_sees_the_upstream_deadline() {
    let mut down = Program::start(None);
    let mut up = Program::start(Some(&down));
    let response = up.get("/work?ms=20", "grpc-timeout: 2S\r\n");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("downstream answered 200 OK"),
        "{response}"
    );

    let (_, started) = up.line_starting("request 1 started", STARTUP);
    let own = number_after(&started, "deadline_left_ms=");
    assert!((1_800..=2_000).contains(&own), "{started}");
    let (_, call) = up.line_starting("request 1 downstream call", STARTUP);
    let sent = number_after(&call, "deadline_left_ms=");
    let (_, seen) = down.line_starting("request 1 started", STARTUP);
    let got = number_after(&seen, "deadline_left_ms=");
    // The downstream's deadline is the upstream's, less the time the call took to arrive
    // (grpc-timeout carries whole milliseconds, rounded down).
    assert!(got <= sent, "downstream {got} ms > upstream {sent} ms");
    assert!(sent - got < 500, "downstream {got} ms, upstream {sent} ms");

    // A request without grpc-timeout gets the server's default; the downstream sees it too.
    let response = up.get("/work?ms=1", "");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, seen) = down.line_starting("request 2 started", STARTUP);
    let got = number_after(&seen, "deadline_left_ms=");
    let default = server::DEFAULT_TIMEOUT.as_millis() as u64;
    assert!(got <= default && got > default - 2_000, "{seen}");

    // Bad input is refused without a panic.
    let bad = up.get("/work?ms=x", "");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let bad = up.get("/work?ms=99999999999999999999", "grpc-timeout: 1x\r\n");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
}

#[test]
fn client_gone_stops_sub_tasks_and_the_downstream_call_within_50ms() {
    let mut down = Program::start(None);
    let mut up = Program::start(Some(&down));
    let stream = up.send("/work?ms=20000", "grpc-timeout: 60S\r\n");
    // The request is running in both processes.
    up.line_starting("request 1 downstream call", STARTUP);
    down.line_starting("request 1 started", STARTUP);
    let gone = Instant::now();
    drop(stream);

    let mut stops = Vec::new();
    for line in [
        "request 1 sub 0 stopped: client went away",
        "request 1 sub 1 stopped: client went away",
        "request 1 downstream stopped",
    ] {
        stops.push((
            format!("upstream {line}"),
            up.line_starting(line, STARTUP).0,
        ));
    }
    for line in [
        "request 1 sub 0 stopped: client went away",
        "request 1 sub 1 stopped: client went away",
    ] {
        stops.push((
            format!("downstream {line}"),
            down.line_starting(line, STARTUP).0,
        ));
    }
    for (what, at) in &stops {
        let took = at.saturating_duration_since(gone);
        println!("{what}: {took:?} after the client left");
        assert!(took < STOP_WITHIN, "{what} took {took:?}");
    }
    // Nothing finished its work.
    assert!(!up.lines().iter().any(|l| l.contains("finished")));
    assert!(!down.lines().iter().any(|l| l.contains("finished")));
}

#[test]
fn sigterm_drains_requests_in_flight_and_exits_cleanly() {
    let mut up = Program::start(None);
    let stream = up.send("/work?ms=20000", "");
    up.line_starting("request 1 started", STARTUP);
    let sent = Instant::now();
    up.sigterm();
    // The request in flight is answered (its context was done by the signal), not cut.
    let reader = std::thread::spawn(move || {
        let mut stream = stream;
        let mut response = String::new();
        stream.read_to_string(&mut response).map(|_| response)
    });
    let status = up.wait_exit(Duration::from_secs(5));
    let took = sent.elapsed();
    let response = reader.join().unwrap().expect("the response");
    assert!(status.success(), "{status:?}; saw {:?}", up.lines());
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.contains("sub 0 stopped: received signal SIGTERM"),
        "{response}"
    );
    let lines = up.lines();
    assert!(
        lines.contains(&"draining: received signal SIGTERM"),
        "{lines:?}"
    );
    assert!(lines.contains(&"request 1 answered"), "{lines:?}");
    assert!(
        lines.contains(&"exited cleanly; live contexts=0 timers=0 waiters=0 callbacks=0"),
        "{lines:?}"
    );
}
