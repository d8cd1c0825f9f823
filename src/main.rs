//! The `ringfence` command line: run, demo, check-config, eval.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ringfence::audit::Decided;
use ringfence::config::Config;
use ringfence::descriptors;
use ringfence::logfile::LogFile;
use ringfence::offline;
use ringfence::policy::Mode;
use ringfence::preflight;
use ringfence::server::Server;
use ringfence::target::Target;

/// jemalloc, with background threads that return freed pages to the system (dirty pages decay
/// over 10 s by default; `_RJEM_MALLOC_CONF` tunes it at run time). glibc's malloc kept every page
/// of a burst of 10,000 long polls after the clients left (docs/performance.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Where every subcommand looks for the configuration unless told otherwise.
const DEFAULT_CONFIG: &str = "/etc/ringfence/ringfence.toml";

#[derive(Parser)]
#[command(
    name = "ringfence",
    version,
    about = "Policy-enforcing reverse proxy for Skype for Business UCWA call forwarding"
)]
struct Cli {
    /// Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=ringfence=debug).
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Write logs to this file instead of stderr; SIGUSR1 reopens it (logrotate).
    #[arg(long, env = "RINGFENCE_LOG_FILE", global = true)]
    log_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve: forward everything to the pool, judging the call-forwarding targets.
    Run {
        #[arg(long, env = "RINGFENCE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Start two simulated pool members and the proxy on the embedded demo configuration.
    Demo {
        /// The proxy's listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The admin (metrics) listen address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
    },
    /// Validate a configuration as `run` would use it (TLS files, audit sink included): every
    /// problem with its key path (exit 2), or a summary (exit 0).
    CheckConfig {
        #[arg(long, env = "RINGFENCE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Judge targets, or a whole request (--request), with a configuration: exit 0 all allowed
    /// (the request forwarded), 3 any denied (refused), 2 bad configuration or request file.
    Eval {
        #[arg(long, env = "RINGFENCE_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Resolve the organisation from this Host.
        #[arg(long, conflicts_with_all = ["org", "request"])]
        host: Option<String>,
        /// Use this organisation by name.
        #[arg(long, conflicts_with = "request")]
        org: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Judge this raw HTTP/1.x request as the gateway would (`-`: standard input).
        ///
        /// The file holds the request line (origin-form or absolute-form target), the headers,
        /// a blank line and the body. Line ends may be CRLF or LF only (files written by hand).
        /// The body is the rest of the file less one final line end; with Content-Length it
        /// must be exactly that long (one line end may follow), with `Transfer-Encoding:
        /// chunked` it is de-chunked. The Host (or the absolute-form authority) chooses the
        /// organisation. Prints each decision in the audit trail's words, then what the client
        /// would get.
        #[arg(long, value_name = "FILE", conflicts_with = "targets")]
        request: Option<PathBuf>,
        /// With --request: the TLS server name (SNI) the request came by.
        #[arg(
            long,
            value_name = "NAME",
            requires = "request",
            conflicts_with = "targets"
        )]
        sni: Option<String>,
        #[arg(required_unless_present = "request")]
        targets: Vec<String>,
    },
}

/// Prints a line of a command's output. A reader that stopped reading (`check-config | head`)
/// ends the output there, quietly, and the command's exit status still says what it found;
/// `println!` would panic.
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_fmt(format_args!("{line}\n"))
        .and_then(|()| out.flush())
    {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write the output: {e}");
        }
    }
}

/// [`say`] with `println!`'s arguments.
macro_rules! say {
    ($($line:tt)*) => {
        say(format_args!($($line)*))
    };
}

/// `run`'s exit status when the drain had to cut requests at the end of `shutdown_grace`.
const EXIT_DRAIN_CUT: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = match &cli.log_file {
        Some(path) => match LogFile::open(path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("error: cannot open the log file {}: {e}", path.display());
                return ExitCode::from(1);
            }
        },
        None => None,
    };
    init_logging(cli.log_format, log.clone());
    match cli.command {
        Command::Run { config } => run(config, log),
        Command::Demo { listen, admin } => demo(listen, admin),
        Command::CheckConfig { config } => check_config(config),
        Command::Eval {
            config,
            json,
            request: Some(file),
            sni,
            ..
        } => eval_request(config, &file, sni.as_deref(), json),
        Command::Eval {
            config,
            host,
            org,
            json,
            targets,
            ..
        } => eval(config, host, org, json, &targets),
    }
}

fn init_logging(format: LogFormat, file: Option<LogFile>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(file) => {
            let builder = builder.with_ansi(false).with_writer(file);
            match format {
                LogFormat::Text => builder.init(),
                LogFormat::Json => builder.json().init(),
            }
        }
        None => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let builder = builder.with_ansi(ansi).with_writer(std::io::stderr);
            match format {
                LogFormat::Text => builder.init(),
                LogFormat::Json => builder.json().init(),
            }
        }
    }
}

/// One worker per core by default. `RINGFENCE_WORKER_THREADS=N` sets the number of workers;
/// with 1, the single-threaded scheduler runs everything on one thread, which measured ~20% more
/// requests/s than a one-worker multi-threaded runtime (docs/performance.md).
fn runtime() -> tokio::runtime::Runtime {
    let workers = std::env::var("RINGFENCE_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// Prints an error and its causes, one per line.
fn report(e: &dyn std::error::Error) {
    eprintln!("error: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        eprintln!("  caused by: {c}");
        cause = c.source();
    }
}

fn run(path: PathBuf, log: Option<LogFile>) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return ExitCode::from(1);
        }
    };
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let limit = descriptors::raise_and_log();
    if let Some(w) = descriptors::shortfall(config.server().max_connections, limit) {
        tracing::warn!("{w}");
    }
    runtime().block_on(async {
        let signals = match ringfence::signal::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                report(&e);
                return ExitCode::from(1);
            }
        };
        let server = match Server::start(config, Some(path)).await {
            Ok(s) => s,
            Err(e) => {
                report(&e);
                return ExitCode::from(1);
            }
        };
        signals
            .until_shutdown(std::sync::Arc::clone(server.shared()), log)
            .await;
        tracing::info!("draining");
        let drain = server.shutdown().await;
        if drain.clean() {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        } else {
            tracing::warn!(
                cut_requests = drain.requests,
                cut_connections = drain.connections,
                exit_status = EXIT_DRAIN_CUT,
                "stopped: shutdown_grace ran out, and the requests still in flight were cut"
            );
            ExitCode::from(EXIT_DRAIN_CUT)
        }
    })
}

fn demo(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    descriptors::raise_and_log();
    runtime().block_on(async {
        let demo = match ringfence::demo::start(Some(listen), Some(admin)).await {
            Ok(d) => d,
            Err(e) => {
                report(&e);
                return ExitCode::from(1);
            }
        };
        say!("{}", demo.banner());
        let _ = tokio::signal::ctrl_c().await;
        demo.server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Loads the file and prepares what `run` would from it ([`preflight::prepare`]), so that
/// "valid" means `run` can start with it (binding aside).
fn check_config(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = preflight::prepare(&config) {
        eprintln!("{}: {e}", path.display());
        return ExitCode::from(2);
    }
    say!("{}: valid\n{}", path.display(), config.summary());
    for w in config.warnings() {
        say!("warning: {w}");
    }
    // `run` raises the soft limit to the hard one first: that is the limit it will serve under.
    let limit = descriptors::limit_in_force_after_raise();
    if let Some(w) = descriptors::shortfall(config.server().max_connections, limit) {
        say!("warning: {w}");
    }
    ExitCode::SUCCESS
}

/// `eval --request`: judges a request file ([`offline`]); exit 0 forwarded, 3 refused, 2 bad
/// configuration or request file.
fn eval_request(path: PathBuf, file: &Path, sni: Option<&str>, json: bool) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let (parts, body) = match offline::read(file) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let judgement = offline::judge(parts, body, &config, sni);
    let mut out = std::io::stdout().lock();
    let written = if json {
        judgement.write_json(&mut out)
    } else {
        judgement.write_text(&mut out)
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        eprintln!("error: cannot write the judgement: {e}");
        return ExitCode::from(1);
    }
    if judgement.refused() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn eval(
    path: PathBuf,
    host: Option<String>,
    org: Option<String>,
    json: bool,
    targets: &[String],
) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let policy = config.policy();
    let organisation = match (&org, &host) {
        (Some(name), _) => match policy.organisation_named(name) {
            Some(o) => Some(o),
            None => {
                eprintln!("no organisation is named `{name}`");
                return ExitCode::from(2);
            }
        },
        (None, Some(h)) => policy.organisation_for(h),
        (None, None) => policy.organisation_for(""),
    };
    let org_name = organisation.map_or("none", |o| o.name());
    let mode = policy.mode_for(organisation);
    let mut any_denied = false;
    for raw in targets {
        let (normal, refusal, rule) = match Target::parse(raw, policy.max_target_length()) {
            Ok(target) => {
                let d = policy.decide(organisation, &target);
                let refusal = (!d.allowed()).then(|| d.reason());
                (
                    Some(target.to_string()),
                    refusal,
                    d.rule.map(|r| r.to_string()),
                )
            }
            Err(ringfence::target::TargetError::TooLong { .. }) => (None, Some("too_long"), None),
            Err(ringfence::target::TargetError::Malformed(_)) => (None, Some("malformed"), None),
        };
        // The trail's words: in shadow mode a target rule's refusal is recorded and forwarded.
        let (decision, reason) = match (refusal, mode) {
            (None, _) => (Decided::Allow, "allowed"),
            (Some(reason), Mode::Shadow) => (Decided::ShadowDeny, reason),
            (Some(reason), Mode::Enforce) => (Decided::Deny, reason),
        };
        any_denied |= decision == Decided::Deny;
        let decision = decision.metric_label().unwrap_or("not_sent");
        if json {
            say!(
                "{}",
                serde_json::json!({
                    "target": raw, "normalised": normal, "organisation": org_name,
                    "mode": mode.label(), "decision": decision, "reason": reason, "rule": rule,
                })
            );
        } else {
            say!(
                "{raw}\t{decision}\t{reason}\t{}\t(organisation {org_name}, {})",
                rule.as_deref().unwrap_or("-"),
                mode.label()
            );
        }
    }
    if any_denied {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
