//! A real PostgreSQL server for the tests that need one: started once per test binary (its
//! own `initdb` in a temporary directory, on 127.0.0.1 and a free port, password
//! authentication), stopped when the binary exits. PostgreSQL refuses to run as root, so as
//! root it runs as the `postgres` user. Each test takes a database of its own.
//!
//! Without PostgreSQL's server binaries the tests that need it say so and pass: `.ci/run`
//! installs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The password of the test server's `roster` user (given to roster by `PGPASSWORD` only).
pub const PASSWORD: &str = "pg-test-Secret-7f3a9c";

/// A running test server.
pub struct PgServer {
    pub port: u16,
    /// The root certificate of the server's TLS certificate (for 127.0.0.1), when `openssl`
    /// could make one; the database `tls_only` then refuses connections without TLS.
    pub root_cert: Option<PathBuf>,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The test server, started on first use; `None` (with a message) when this machine has no
/// PostgreSQL server binaries.
pub fn server() -> Option<&'static PgServer> {
    let server = SERVER.get_or_init(|| match find_bin() {
        Some(bin) => Some(PgServer::start(bin)),
        None => {
            eprintln!(
                "SKIPPED: no PostgreSQL server binaries (initdb, pg_ctl) on this machine; \
                 install the `postgresql` package to run the PostgreSQL ledger tests"
            );
            None
        }
    });
    server.as_ref()
}

/// `initdb` and `pg_ctl`: the newest of Debian's versions, else the ones on the PATH.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(bin) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

extern "C" fn stop_at_exit() {
    if let Some(Some(server)) = SERVER.get() {
        let _ = server
            .tool("pg_ctl")
            .args(["-D"])
            .arg(&server.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        if let Some(dir) = server.data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl PgServer {
    fn tool(&self, name: &str) -> Command {
        tool(&self.bin, name, self.as_postgres)
    }

    fn start(bin: PathBuf) -> PgServer {
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("roster-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let data = dir.join("data");
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if as_postgres {
            // initdb writes to /dev/null as the server's user; some machines keep it root-only.
            let _ = Command::new("chmod").args(["666", "/dev/null"]).status();
            let status = Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown the server's directory to postgres");
        }
        let out = tool(&bin, "initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "roster",
                "-E",
                "UTF8",
                "--no-sync",
                "--auth=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let root_cert = make_certificates(&dir);
        let mut tls = String::new();
        if root_cert.is_some() {
            tls = format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                dir.display()
            );
            let hba = data.join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(
                &hba,
                format!("hostnossl tls_only all 127.0.0.1/32 reject\n{rules}"),
            )
            .unwrap();
            if as_postgres {
                let _ = Command::new("chown")
                    .arg("-R")
                    .arg("postgres")
                    .arg(&dir)
                    .status();
            }
        }
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_at_exit) };
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let out = tool(&bin, "pg_ctl", as_postgres)
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .arg("-o")
                .arg(format!(
                    "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
                     -c synchronous_commit=off -c full_page_writes=off -c max_connections=200{tls}",
                    dir.display()
                ))
                .args(["-w", "-t", "60", "start"])
                .output()
                .unwrap();
            if out.status.success() {
                let server = PgServer {
                    port,
                    root_cert,
                    bin,
                    data,
                    as_postgres,
                };
                if server.root_cert.is_some() {
                    server
                        .client("postgres")
                        .batch_execute("CREATE DATABASE tls_only")
                        .unwrap();
                }
                return server;
            }
            last = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        }
        panic!("the PostgreSQL test server did not start: {last}");
    }

    /// The URL of database `db` (no password: that is in [`PASSWORD`]).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://roster@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A new, empty database for one test: its URL.
    pub fn database(&self, name: &str) -> String {
        let n = DATABASES.fetch_add(1, Ordering::Relaxed);
        let db = format!("{name}_{}_{n}", std::process::id());
        let mut client = self.client("postgres");
        client
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .unwrap();
        self.url(&db)
    }

    /// A client of database `db`, for tests to look inside.
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("roster")
            .password(PASSWORD)
            .dbname(db)
            .connect(postgres::NoTls)
            .unwrap()
    }
}

/// A test CA and a certificate for 127.0.0.1 it signed (`server.crt`, `server.key` in
/// `dir`): the CA's path, or `None` without `openssl`.
fn make_certificates(dir: &Path) -> Option<PathBuf> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .ok()?;
    let made = openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2"],
            &["-subj", "/CN=roster test CA"],
        ]
        .concat(),
    ) && openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    ) && openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    if !made {
        eprintln!("SKIPPED (TLS part): no openssl to make the test server's certificate");
        return None;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .ok()?;
    Some(dir.join("ca.crt"))
}

/// The database a test URL names.
pub fn database_of(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or("");
    path.split('?').next().unwrap_or("").to_string()
}

fn tool(bin: &Path, name: &str, as_postgres: bool) -> Command {
    let program = bin.join(name);
    match as_postgres {
        true => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        }
        false => Command::new(program),
    }
}
