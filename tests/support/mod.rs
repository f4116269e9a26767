//! Shared helpers: the `sandbox_test!` harness, a sandbox on 127.0.0.1:0 in its own runtime, a scratch directory, and the
//! real binary run in it with its output shown when an assertion fails.
#![allow(dead_code)]

pub mod hostile;
pub mod postgres;
pub mod workbooks;

/// Declares a test that runs against a fresh sandbox (started with `config`, on 127.0.0.1
/// with an ephemeral port) from a fresh scratch directory:
///
/// ```ignore
/// sandbox_test!(name, SandboxConfig::default(), |server, work| { ... });
/// ```
#[macro_export]
macro_rules! sandbox_test {
    ($(#[$meta:meta])* $name:ident, $config:expr, |$server:ident, $work:ident| $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            let $server = $crate::support::TestSandbox::start($config);
            let $work = $crate::support::WorkDir::new();
            $body
        }
    };
}

/// Waits (bounded: 30 s, then the test fails saying for `what`) until `ready` holds: tests
/// wait for the event they need, never for a fixed time.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

use roster_sandbox::{Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The environment variables that name a proxy.
const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// libpq's environment variables, which roster reads for a PostgreSQL ledger.
const PG_VARS: [&str; 9] = [
    "PGPASSWORD",
    "PGPASSFILE",
    "PGUSER",
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGCONNECT_TIMEOUT",
];

/// A sandbox server kept alive with the runtime that serves it.
pub struct TestSandbox {
    pub sandbox: Sandbox,
    _runtime: tokio::runtime::Runtime,
}

impl TestSandbox {
    pub fn start(config: SandboxConfig) -> TestSandbox {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sandbox = runtime.block_on(Sandbox::start(config, 0)).unwrap();
        TestSandbox {
            sandbox,
            _runtime: runtime,
        }
    }

    pub fn url(&self) -> String {
        self.sandbox.base_url()
    }
}

/// A throwaway working directory.
pub struct WorkDir {
    pub dir: tempfile::TempDir,
}

impl WorkDir {
    pub fn new() -> WorkDir {
        WorkDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Copies a file from `samples/` into the directory.
    pub fn sample(&self, name: &str) -> PathBuf {
        let from = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples")
            .join(name);
        let to = self.path(name);
        std::fs::copy(from, &to).unwrap();
        to
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let to = self.path(name);
        std::fs::write(&to, text).unwrap();
        to
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// Runs the real binary here.
    pub fn roster(&self, args: &[&str]) -> Run {
        self.roster_with_env(args, &[])
    }

    /// The real binary, set up to run here with extra environment variables (and no inherited
    /// `ROSTER_*` credentials or log filter).
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        // ROSTER_TEST_BIN runs the tests against another build (e.g. an older commit's, to
        // see a regression test fail there).
        let bin = std::env::var("ROSTER_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_roster").to_string());
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("CI", "true")
            .env_remove("RUST_LOG")
            // Help is wrapped to the terminal's width; snapshots want clap's default.
            .env_remove("COLUMNS")
            .env_remove("LINES");
        for name in roster::auth::ENV_VARS {
            cmd.env_remove(name);
        }
        // A proxy of the machine's must not stand between the binary and the test's servers,
        // nor a PostgreSQL default of the machine's between it and the test's server.
        for name in PROXY_VARS.iter().chain(&PG_VARS) {
            cmd.env_remove(name);
        }
        cmd.envs(env.iter().copied());
        cmd
    }

    /// Runs the real binary here with extra environment variables.
    pub fn roster_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = self.command(args, env).output().unwrap();
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            output,
        }
    }

    /// Runs the real binary here with `input` on its standard input.
    pub fn roster_with_stdin(&self, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args, env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            output,
        }
    }

    /// `roster import FILE --target sandbox --base-url URL` followed by `extra`.
    pub fn import_args<'a>(url: &'a str, file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["import", file, "--target", "sandbox", "--base-url", url];
        args.extend_from_slice(extra);
        args
    }

    /// Imports `file` into the sandbox at `url`.
    pub fn import_to(&self, url: &str, file: &str, extra: &[&str]) -> Run {
        self.roster(&Self::import_args(url, file, extra))
    }

    /// Starts an import into the sandbox at `url` in the background, output captured.
    pub fn spawn_import(
        &self,
        url: &str,
        file: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Child {
        self.command(&Self::import_args(url, file, extra), env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// One finished run of the binary.
pub struct Run {
    pub args: Vec<String>,
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// What to print when an assertion about this run fails.
    pub fn context(&self) -> String {
        format!(
            "\n$ roster {}\n--- exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }

    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code(), code, "unexpected exit code{}", self.context());
        self
    }

    /// The `--json` summary.
    pub fn json(&self) -> serde_json::Value {
        let stdout = self.stdout();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "stdout must hold exactly one JSON line{}",
            self.context()
        );
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON {e}{}", self.context()))
    }
}

/// A CSV of `n` valid people.
pub fn people_csv(n: usize) -> String {
    let mut text = String::from("First Name,Last Name,Email,Phone\n");
    for i in 0..n {
        text.push_str(&format!(
            "First{i},Last{i},person{i}@example.com,+1415555{:04}\n",
            i % 10_000
        ));
    }
    text
}
