//! One `moto_server` per test binary, on a free loopback port, started on
//! first use and stopped when the test process exits; or a private one for
//! a test that changes the whole emulator (IAM enforcement).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Moto {
    pub endpoint: String,
    // Holding the child keeps its stdin pipe open; see `start`.
    _child: Mutex<Child>,
    // Kept open: moto printed its port there and may not see it closed.
    _stdout: Mutex<BufReader<ChildStdout>>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The shared emulator, started on first call.
pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| start(&[]))
}

impl Moto {
    /// An emulator of its own, with extra environment (e.g. `MOTO_IAM_AUDIT`),
    /// stopped when the value is dropped or the test process exits.
    pub fn private(env: &[(&str, &str)]) -> Moto {
        start(env)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(mut child) = self._child.lock() {
            let _ = child.stdin.as_mut().map(|s| s.write_all(b"\n"));
            let _ = child.wait();
        }
    }
}

fn start(env: &[(&str, &str)]) -> Moto {
    // Test binaries end without running destructors of statics, so the
    // emulator is tied to our stdin pipe instead: when this process exits
    // the pipe closes, `read` returns and the wrapper kills moto.
    // moto, serving one request at a time: see tests/moto_serial.py. It
    // binds a free port itself and prints it: a port picked here and handed
    // over could be taken by another process meanwhile (seen once: the
    // shared emulator's endpoint answered "connection refused").
    let serial = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/moto_serial.py");
    let script = format!("python3 '{serial}' 0 2>/dev/null & m=$!; read _ignored; kill $m");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start moto_server: run the README's test command, which installs it");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let port: u16 = match stdout.read_line(&mut line) {
        Ok(n) if n > 0 => line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto_server printed {line:?}, not its port")),
        _ => panic!("moto_server exited before listening (is it installed?)"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = child.stdin.as_mut().map(|s| s.write_all(b"\n"));
            panic!("moto_server did not listen on port {port} within 60 s (is it installed?)");
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("moto_server wrapper exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        endpoint: format!("http://127.0.0.1:{port}"),
        _child: Mutex::new(child),
        _stdout: Mutex::new(stdout),
    }
}
