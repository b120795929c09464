//! The examples, run as tests: their logic is included from `examples/` as modules, and the
//! shutdown server runs in a child process (this test binary re-run with an environment
//! variable), so signals sent to it cannot hit other tests.

#[path = "../examples/forgotten_sender.rs"]
mod forgotten_sender;
#[path = "../examples/generator.rs"]
mod generator;
#[cfg(unix)]
#[path = "../examples/shutdown.rs"]
mod shutdown;

use ctxcore::{live, Context, Error};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The leak checks read process-wide counters: under `cargo test` (one process, many threads)
/// the tests of this file take turns. (nextest runs one test per process.)
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Time for a worker that is not leaked to be gone.
const SETTLE: Duration = Duration::from_millis(600);

// ---- generator -----------------------------------------------------------------------------

#[test]
fn generator_stops_on_its_consumers_cancel() {
    let _serial = serial();
    let baseline = live::snapshot();
    let (taken, ended) = current_thread_runtime().block_on(generator::take_then_cancel(5));
    assert_eq!(taken, vec![1, 2, 3, 4, 5]);
    // It stopped because of the cancel, blocked on a full channel whose receiver still lived.
    assert_eq!(ended, Err(Error::Canceled));
    live::wait_for_baseline(&baseline, SETTLE).unwrap_or_else(|r| panic!("{r}"));
}

#[test]
fn ticker_counts_until_cancelled() {
    let _serial = serial();
    let (ctx, cancel) = Context::background().with_cancel();
    let ticks = generator::ticker(ctx, Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(300));
    let cancelled_at = Instant::now();
    cancel.cancel();
    let count = ticks.join().unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(1));
    assert!(
        (1..=15).contains(&count),
        "{count} ticks in 300 ms of 20 ms periods"
    );
}

// ---- forgotten sender ------------------------------------------------------------------------

fn assert_timed_out(result: Result<String, forgotten_sender::ProcessError>) {
    assert_eq!(
        result,
        Err(forgotten_sender::ProcessError::Canceled(
            Error::DeadlineExceeded
        ))
    );
}

#[test]
fn the_forgotten_sender_leaks_until_its_channel_goes() {
    let _serial = serial();
    let baseline = live::snapshot();
    let searcher = forgotten_sender::LeakySearcher::default();
    assert_timed_out(searcher.process("gopher"));
    // After the search time, the worker is stuck on its send, holding its context.
    std::thread::sleep(forgotten_sender::SEARCH_TIME * 2);
    assert_eq!(searcher.blocked_workers(), 1);
    let leak = forgotten_sender::leak_check(&baseline, Duration::from_millis(200));
    assert!(
        leak.is_err(),
        "the leak check must see the forgotten worker's context"
    );
    drop(searcher);
    forgotten_sender::leak_check(&baseline, SETTLE).unwrap();
}

#[test]
fn go_buffered_fix_leaves_nothing_once_the_search_ends() {
    let _serial = serial();
    let baseline = live::snapshot();
    assert_timed_out(forgotten_sender::process_buffered("gopher"));
    forgotten_sender::leak_check(&baseline, SETTLE).unwrap();
}

#[test]
fn group_fix_on_threads_leaves_nothing_when_it_returns() {
    let _serial = serial();
    let baseline = live::snapshot();
    // A worker blind to its context would finish its search and the group would return
    // `Ok`: the deadline error shows the worker stopped at the deadline.
    assert_timed_out(forgotten_sender::process_group("gopher"));
    forgotten_sender::leak_check(&baseline, Duration::from_millis(200)).unwrap();
}

#[test]
fn futures_fixes_leave_nothing_when_they_return() {
    let _serial = serial();
    let runtime = current_thread_runtime();
    let baseline = live::snapshot();
    assert_timed_out(runtime.block_on(forgotten_sender::process_async("gopher")));
    forgotten_sender::leak_check(&baseline, Duration::from_millis(200)).unwrap();
    assert_timed_out(runtime.block_on(forgotten_sender::process_async_group("gopher")));
    forgotten_sender::leak_check(&baseline, Duration::from_millis(200)).unwrap();
}

// ---- shutdown (unix: it uses signals) -------------------------------------------------------

#[cfg(unix)]
mod shutdown_program {
    use super::shutdown;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    const CHILD_ENV: &str = "CTXCORE_SHUTDOWN_CHILD";
    const STARTUP: Duration = Duration::from_secs(20);

    /// Child-process entry: runs the example's program and exits with its code.
    #[test]
    #[ignore = "entry point of the child process started by the shutdown tests"]
    fn shutdown_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let grace = std::env::var("CTXCORE_SHUTDOWN_GRACE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(shutdown::SHUTDOWN_TIMEOUT, Duration::from_millis);
        std::process::exit(shutdown::run(0, grace));
    }

    /// The running example, killed if a test fails before it exits.
    struct Program {
        child: Child,
        lines: mpsc::Receiver<String>,
        seen: Vec<String>,
        addr: SocketAddr,
    }

    impl Program {
        fn start() -> Program {
            Program::start_with_grace(shutdown::SHUTDOWN_TIMEOUT)
        }

        fn start_with_grace(grace: Duration) -> Program {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "shutdown_program::shutdown_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                ])
                .env(CHILD_ENV, "1")
                .env("CTXCORE_SHUTDOWN_GRACE_MS", grace.as_millis().to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
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
            let line = program.line_starting("listening on http://", STARTUP);
            program.addr = line["listening on http://".len()..].parse().unwrap();
            assert!(program.addr.ip().is_loopback());
            program
        }

        fn line_starting(&mut self, prefix: &str, within: Duration) -> String {
            let deadline = Instant::now() + within;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(line) => {
                        self.seen.push(line.clone());
                        if line.starts_with(prefix) {
                            return line;
                        }
                    }
                    Err(_) => panic!("no line starting {prefix:?}; saw {:?}", self.seen),
                }
            }
        }

        /// A real HTTP/1.1 request over loopback; returns the whole response.
        fn get(&self, path: &str) -> String {
            let mut stream =
                TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            )
            .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        }

        fn wait_exit(&mut self, within: Duration) -> ExitStatus {
            let deadline = Instant::now() + within;
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    // Collect what is left of its output.
                    while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                        self.seen.push(line);
                    }
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "no exit within {within:?}; saw {:?}",
                    self.seen
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn saw(&self, line: &str) -> bool {
            self.seen.iter().any(|seen| seen == line)
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

    fn assert_hello(program: &Program) {
        let response = program.get("/hello");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.ends_with("Hello from ctxcore\n"), "{response}");
        let missing = program.get("/nope");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    }

    #[test]
    fn sigterm_stops_every_member_cleanly_within_a_second() {
        let mut program = Program::start();
        assert_hello(&program);
        let sent = Instant::now();
        let pid = program.child.id() as libc::pid_t;
        // SAFETY: sends SIGTERM to our own child process, which handles it.
        let sent_ok = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent_ok, 0);
        let status = program.wait_exit(Duration::from_secs(5));
        let took = sent.elapsed();
        assert!(
            status.success(),
            "{status:?} (signal {:?}); saw {:?}",
            status.signal(),
            program.seen
        );
        assert!(took < Duration::from_secs(1), "exit took {took:?}");
        assert!(
            program.saw("exit: received signal SIGTERM"),
            "{:?}",
            program.seen
        );
        assert!(program.saw("errgroup exit"), "{:?}", program.seen);
        assert!(program.saw("shutting down server..."), "{:?}", program.seen);
        assert!(
            program.saw("group context: context canceled"),
            "{:?}",
            program.seen
        );
        assert!(program.saw("leak check: ok"), "{:?}", program.seen);
    }

    #[test]
    fn get_shutdown_stops_every_member_cleanly_within_a_second() {
        let mut program = Program::start();
        assert_hello(&program);
        let sent = Instant::now();
        let response = program.get("/shutdown");
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        let status = program.wait_exit(Duration::from_secs(5));
        let took = sent.elapsed();
        assert!(status.success(), "{status:?}; saw {:?}", program.seen);
        assert!(took < Duration::from_secs(1), "exit took {took:?}");
        assert!(program.saw("server closed"), "{:?}", program.seen);
        assert!(
            program.saw("exit: shutdown requested"),
            "{:?}",
            program.seen
        );
        assert!(program.saw("leak check: ok"), "{:?}", program.seen);
    }

    #[test]
    fn graceful_shutdown_is_bounded_by_its_timeout() {
        let grace = Duration::from_millis(300);
        let mut program = Program::start_with_grace(grace);
        // A client that never finishes its request keeps its connection busy.
        let mut stuck = TcpStream::connect_timeout(&program.addr, Duration::from_secs(5)).unwrap();
        stuck
            .write_all(b"GET /hello HTTP/1.1\r\nHost: stuck\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        let pid = program.child.id() as libc::pid_t;
        // SAFETY: sends SIGTERM to our own child process, which handles it.
        let sent_ok = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent_ok, 0);
        let status = program.wait_exit(Duration::from_secs(10));
        let took = sent.elapsed();
        assert!(
            took >= grace,
            "did not wait for the stuck connection: {took:?}"
        );
        assert!(took < grace + Duration::from_secs(1), "exit took {took:?}");
        // The signal came first, so it is the group's failure; the timeout is reported too.
        assert!(status.success(), "{status:?}; saw {:?}", program.seen);
        assert!(
            program.saw("exit: received signal SIGTERM"),
            "{:?}",
            program.seen
        );
        assert!(
            program
                .seen
                .iter()
                .any(|line| line.starts_with("graceful shutdown timed out after 300ms")),
            "{:?}",
            program.seen
        );
        assert!(program.saw("leak check: ok"), "{:?}", program.seen);
        drop(stuck);
    }
}
