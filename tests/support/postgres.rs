//! A throwaway PostgreSQL server for tests and benchmarks, started from the installed binaries.
//!
//! One server per test process, started on first use: `initdb` into a temporary folder, then
//! `pg_ctl start` on a free loopback port with the socket in that folder. When running as
//! root, both run as the `postgres` OS user (the server refuses root). Each caller gets its
//! own fresh database on that server. The server is stopped and its folder removed when the
//! process exits.
//!
//! Missing binaries: with `STORECAST_REQUIRE_SERVICES=1` (as CI sets) that is a test failure;
//! otherwise the caller is told to skip and says so loudly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running server.
pub struct PgServer {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    run_as_postgres: bool,
    /// The server options `pg_ctl start` was given, to start it again the same way.
    options: String,
}

/// How the server trades durability for speed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync off: fine for tests, where a crash of the machine loses nothing of value.
    Fast,
    /// PostgreSQL's defaults, for benchmarks that must be honest.
    Durable,
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
/// The folder and binaries to clean up at exit; set once the server runs.
static CLEANUP: Mutex<Option<(PathBuf, PathBuf, bool)>> = Mutex::new(None);
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(1);

/// True when CI (or the user) demands that every service a test needs is there.
pub fn services_required() -> bool {
    std::env::var("STORECAST_REQUIRE_SERVICES").is_ok_and(|value| value == "1")
}

/// The URL of a new, empty database on this process's server, or `None` (after saying so
/// on stderr) when PostgreSQL is not installed and services are not required.
pub fn fresh_database(test: &str) -> Option<String> {
    fresh_database_with(test, Durability::Fast)
}

/// As [`fresh_database`], choosing how durable the server is when this call starts it.
pub fn fresh_database_with(test: &str, durability: Durability) -> Option<String> {
    let server = match SERVER.get_or_init(|| PgServer::start(durability)) {
        Ok(server) => server,
        Err(reason) if services_required() => {
            panic!("PostgreSQL is required (STORECAST_REQUIRE_SERVICES=1) but {reason}")
        }
        Err(reason) => {
            super::skipped(test, &format!("PostgreSQL unavailable: {reason}"));
            return None;
        }
    };
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    );
    server
        .psql(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|error| panic!("cannot create test database {name}: {error}"));
    Some(server.url(&name))
}

/// This process's server, once a test started it.
pub fn server() -> Option<&'static PgServer> {
    SERVER.get().and_then(|started| started.as_ref().ok())
}

impl PgServer {
    fn start(durability: Durability) -> Result<Self, String> {
        let bin = find_binaries()?;
        let run_as_postgres = is_root();
        let root = tempfile::Builder::new()
            .prefix("storecast-pg-")
            .tempdir()
            .map_err(|error| format!("cannot create a temporary folder: {error}"))?
            .keep();
        if run_as_postgres {
            give_to_postgres_user(&root)?;
        }
        let server = PgServer {
            bin,
            root,
            port: 0,
            run_as_postgres,
            options: String::new(),
        };
        let data = server.root.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;

        // A port can be taken between asking for it and binding it; try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = super::ports::free_port();
            let mut settings = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                path_str(&server.root)
            );
            if durability == Durability::Fast {
                settings
                    .push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            }
            let log = server.root.join("server.log");
            match server.run(
                "pg_ctl",
                &[
                    "-D",
                    path_str(&data),
                    "-l",
                    path_str(&log),
                    "-o",
                    &settings,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ) {
                Ok(()) => {
                    let server = PgServer {
                        port,
                        options: settings,
                        ..server
                    };
                    register_cleanup(&server);
                    return Ok(server);
                }
                Err(error) => {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = format!("{error}; server log: {log_text}");
                }
            }
        }
        Err(format!("the server did not start: {last_error}"))
    }

    /// Stops the server (fast shutdown: every session is cut), for tests of a database outage.
    pub fn stop(&self) {
        let data = self.root.join("data");
        self.run(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "fast", "-w", "stop"],
        )
        .unwrap_or_else(|error| panic!("cannot stop PostgreSQL: {error}"));
    }

    /// Starts the server again, on the same port with the same settings.
    pub fn restart(&self) {
        let data = self.root.join("data");
        let log = self.root.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &self.options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .unwrap_or_else(|error| panic!("cannot start PostgreSQL again: {error}"));
    }

    /// Freezes the server (SIGSTOP to the postmaster and every backend) for `duration`,
    /// then lets it run again: a database that stops answering without closing a
    /// connection, as a stalled disk or a paused VM does.
    pub fn pause(&self, duration: std::time::Duration) {
        let pid_file = self.root.join("data").join("postmaster.pid");
        let postmaster: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .next()
                    .and_then(|line| line.trim().parse().ok())
            })
            .unwrap_or_else(|| panic!("no postmaster pid in {}", pid_file.display()));
        let mut frozen = vec![postmaster];
        frozen.extend(children_of(postmaster));
        for pid in &frozen {
            // SAFETY: signalling the test's own PostgreSQL processes.
            unsafe { libc::kill(*pid, libc::SIGSTOP) };
        }
        std::thread::sleep(duration);
        for pid in &frozen {
            // SAFETY: as above.
            unsafe { libc::kill(*pid, libc::SIGCONT) };
        }
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn psql(&self, sql: &str) -> Result<(), String> {
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                sql,
            ],
        )
    }

    /// Runs one of the server's programs, as the `postgres` user when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        run_program(&self.bin, self.run_as_postgres, program, args)
    }
}

fn run_program(
    bin: &Path,
    run_as_postgres: bool,
    program: &str,
    args: &[&str],
) -> Result<(), String> {
    let executable = bin.join(program);
    let mut command = if run_as_postgres {
        // runuser lives in /usr/sbin, which a non-login root shell may not have on PATH.
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .unwrap_or("runuser");
        let mut command = Command::new(runuser);
        command.args(["-u", "postgres", "--"]).arg(&executable);
        command
    } else {
        Command::new(&executable)
    };
    let output = command
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", executable.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `STORECAST_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `initdb` on PATH.
fn find_binaries() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("STORECAST_PG_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.join("initdb").is_file() {
            Ok(bin)
        } else {
            Err(format!("STORECAST_PG_BIN={} has no initdb", bin.display()))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .ok_or_else(|| {
            "no initdb found (install the `postgresql` package, or set STORECAST_PG_BIN)"
                .to_string()
        })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn give_to_postgres_user(root: &Path) -> Result<(), String> {
    let name = c"postgres";
    // SAFETY: `name` is a valid C string; the returned record is read at once, before any
    // other call that could overwrite it.
    let (uid, gid) = unsafe {
        let record = libc::getpwnam(name.as_ptr());
        if record.is_null() {
            return Err(
                "running as root, but there is no `postgres` OS user to run the server".to_string(),
            );
        }
        ((*record).pw_uid, (*record).pw_gid)
    };
    std::os::unix::fs::chown(root, Some(uid), Some(gid)).map_err(|error| {
        format!(
            "cannot hand {} to the postgres user: {error}",
            root.display()
        )
    })
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

fn register_cleanup(server: &PgServer) {
    if let Ok(mut cleanup) = CLEANUP.lock() {
        *cleanup = Some((
            server.bin.clone(),
            server.root.clone(),
            server.run_as_postgres,
        ));
    }
    extern "C" fn stop_at_exit() {
        let Ok(mut cleanup) = CLEANUP.lock() else {
            return;
        };
        if let Some((bin, root, run_as_postgres)) = cleanup.take() {
            let data = root.join("data");
            let _ = run_program(
                &bin,
                run_as_postgres,
                "pg_ctl",
                &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
            );
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    // SAFETY: registering a plain `extern "C"` function with no arguments.
    unsafe {
        libc::atexit(stop_at_exit);
    }
}

/// Processes whose parent is `parent`, from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // The command may hold spaces: the fields after its closing parenthesis.
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}
