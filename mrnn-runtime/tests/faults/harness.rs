//! Runs the `mrnn` binary with a time limit and judges how it ended.
#![allow(dead_code, unreachable_pub, reason = "each class of faults uses a different subset")]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fault case may run before it counts as a hang.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How a run of `mrnn` ended.
#[derive(Debug)]
pub struct Run {
    /// The arguments, for messages.
    pub args: Vec<String>,
    /// The exit code; `None` when a signal ended the process (an abort, a stack overflow).
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// What it printed on stdout.
    pub stdout: Vec<u8>,
    /// What it printed on stderr.
    pub stderr: String,
    /// Whether it was killed for running past its time limit.
    pub timed_out: bool,
}

/// A run of `mrnn` to set up: arguments, environment, working directory, time limit.
#[derive(Debug)]
pub struct Case {
    command: Command,
    args: Vec<String>,
    timeout: Duration,
}

/// `mrnn ARGS`, with the default time limit.
pub fn mrnn<S: AsRef<str>>(args: &[S]) -> Case {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mrnn"));
    command.args(&args).env_remove("MRNN_MEMORY_LIMIT").env("RAYON_NUM_THREADS", "2");
    Case { command, args, timeout: DEFAULT_TIMEOUT }
}

impl Case {
    /// Sets an environment variable of the run.
    pub fn env(mut self, key: &str, value: &str) -> Case {
        self.command.env(key, value);
        self
    }

    /// Runs in `dir`.
    pub fn current_dir(mut self, dir: &Path) -> Case {
        self.command.current_dir(dir);
        self
    }

    /// A time limit other than [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Case {
        self.timeout = timeout;
        self
    }

    /// Starts the process with piped stdout and stderr (for cases that need the child itself,
    /// such as closing its stdout early).
    pub fn spawn(mut self) -> (Child, Vec<String>, Duration) {
        let child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the mrnn binary starts");
        (child, self.args, self.timeout)
    }

    /// Runs to completion (or to the time limit, then kills it).
    pub fn run(self) -> Run {
        let (child, args, timeout) = self.spawn();
        finish(child, args, timeout)
    }
}

/// Waits for `child` (killing it past `timeout`) and collects what it printed.
pub fn finish(mut child: Child, args: Vec<String>, timeout: Duration) -> Run {
    // Drain both pipes on threads, so that a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting on mrnn") {
            break status;
        }
        if started.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("waiting on the killed mrnn");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal = None;
    Run {
        args,
        code: status.code(),
        signal,
        stdout: out.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
        timed_out,
    }
}

impl Run {
    /// `mrnn a b c`, for messages.
    pub fn command_line(&self) -> String {
        format!("mrnn {}", self.args.join(" "))
    }

    /// What it printed on stdout, as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn describe(&self) -> String {
        let tail: String = {
            let chars: Vec<char> = self.stderr.chars().collect();
            chars[chars.len().saturating_sub(3000)..].iter().collect()
        };
        format!(
            "`{}`: exit {:?}, signal {:?}, timed out {}\nstderr (tail):\n{tail}",
            self.command_line(),
            self.code,
            self.signal,
            self.timed_out
        )
    }

    /// Ended by itself, with an exit code of its own: not killed, no signal, no panic.
    pub fn assert_no_crash(&self) -> &Run {
        assert!(!self.timed_out, "hang: {}", self.describe());
        assert!(self.signal.is_none(), "killed by a signal (abort?): {}", self.describe());
        assert_ne!(self.code, Some(101), "panic: {}", self.describe());
        assert!(!self.stderr.contains("panicked at"), "panic message: {}", self.describe());
        assert!(
            matches!(self.code, Some(0..=2)),
            "unexpected exit code (0 ok, 1 invalid input, 2 usage): {}",
            self.describe()
        );
        self
    }

    /// A clear error: exit 1 or 2, and stderr names the fault (contains each of `needles`,
    /// ignoring ASCII case).
    pub fn assert_error(&self, needles: &[&str]) -> &Run {
        self.assert_no_crash();
        assert!(matches!(self.code, Some(1 | 2)), "expected an error: {}", self.describe());
        let lower = self.stderr.to_ascii_lowercase();
        for needle in needles {
            assert!(
                lower.contains(&needle.to_ascii_lowercase()),
                "stderr lacks `{needle}`: {}",
                self.describe()
            );
        }
        self
    }

    /// Success (exit 0).
    pub fn assert_ok(&self) -> &Run {
        self.assert_no_crash();
        assert_eq!(self.code, Some(0), "expected success: {}", self.describe());
        self
    }
}
