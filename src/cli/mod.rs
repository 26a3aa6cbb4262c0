//! Command-line interface: `serve`, `check`, `demo`, and the admin client
//! commands an SRE types during a migration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use http::Method;
use serde_json::json;

use switchyard::admin::client::{format_status, AdminClient};
use switchyard::config::{self, Config};
use switchyard::gateway::{Gateway, Options};

mod check;
mod diffs;
mod replay;
mod watch;

const DEFAULT_CONFIG: &str = "config/switchyard.yaml";
const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Move live traffic from an old system to a new one: split, mirror, diff, roll forward or back."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Config file.
    #[arg(short = 'c', long = "config", env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub(crate) struct AdminArgs {
    /// Admin API URL (default: admin.listen of the config, else http://127.0.0.1:9901).
    #[arg(long, global = true)]
    pub admin: Option<String>,
    /// Bearer token for mutations.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Config file to take the admin URL and token from.
    #[arg(short = 'c', long = "config", env = "SWITCHYARD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Why you are doing this (recorded in the rollout history).
    #[arg(long, global = true)]
    pub reason: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Ignore a saved rollout state file and start from the config's percent.
        #[arg(long)]
        reset_state: bool,
    },
    /// Validate config files; exit 1 with every error and its YAML path and line.
    Check {
        /// Config files (default: config/switchyard.yaml).
        files: Vec<PathBuf>,
        #[arg(short = 'c', long = "config", env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Built-in old/new/twin origins, the gateway and a traffic generator, on loopback.
    Demo(switchyard::demo::DemoArgs),
    /// Rollout status from a running gateway.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the raw JSON.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// A live view, redrawn in place every second (until Ctrl-C).
        #[arg(long)]
        watch: bool,
    },
    /// Change the rollout.
    Rollout {
        #[command(subcommand)]
        action: RolloutAction,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Emergency: send 0% to new, at once, persisted.
    Rollback {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The diff report from a running gateway, or saved JSON reports merged.
    Report {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Only what happened since: a time (2026-11-30T10:00:00Z, 2026-11-30) or a duration ago (15m, 2h).
        #[arg(long)]
        since: Option<String>,
        /// Start the report's counts afresh (after a redeploy of new).
        #[arg(long, conflicts_with_all = ["since", "merge"])]
        reset: bool,
        /// Merge saved JSON reports (`report --format json > a.json`) instead of asking a gateway.
        #[arg(long, num_args = 1..)]
        merge: Vec<PathBuf>,
        /// The whole fleet's report: every instance registered in the fleet store, merged.
        #[arg(long, conflicts_with_all = ["since", "merge", "reset"])]
        fleet: bool,
    },
    /// Intended differences and stored samples.
    Diff {
        #[command(subcommand)]
        action: diffs::DiffAction,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Send a stored sample again (does it still differ?), or diff a capture or HAR file offline.
    Replay {
        #[command(flatten)]
        args: replay::ReplayArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-read the running gateway's config file (like SIGHUP).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand, Clone)]
enum RolloutAction {
    /// Set the share of live traffic served by new (0–100, decimals allowed).
    Set {
        percent: String,
        /// Pass the plan's gates (webhooks on pre_step / confirm_promotion); recorded in why.
        #[arg(long)]
        force: bool,
    },
    /// Go to the next step of the plan.
    Step {
        /// Pass the plan's gates; recorded in why.
        #[arg(long)]
        force: bool,
    },
    /// Hold the plan where it is.
    Pause,
    /// Continue a paused plan.
    Resume,
    /// Send everything to new.
    Promote {
        /// Pass the confirm_promotion gate; recorded in why.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Html,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, reset_state } => serve(config.config, reset_state),
        Command::Check { files, config } => check::check(files, config),
        Command::Demo(args) => demo(args),
        Command::Status {
            admin,
            json: _,
            watch: true,
        } => client(&admin, watch::run),
        Command::Status { admin, json, .. } => client(&admin, |c| async move {
            let body = c.call(Method::GET, "/status", None).await?;
            if json {
                Ok(String::from_utf8_lossy(&body).into_owned())
            } else {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                Ok(format_status(&v))
            }
        }),
        Command::Rollout { action, admin } => {
            let reason = admin.reason.clone();
            let who = who();
            let note = json!({ "who": who, "reason": reason });
            let (method, path, body) = match action {
                RolloutAction::Set { percent, force } => {
                    let Ok(p) = percent.trim().trim_end_matches('%').parse::<f64>() else {
                        eprintln!("error: {percent:?} is not a percent; give a number from 0 to 100, e.g. 25 or 0.5");
                        return ExitCode::from(2);
                    };
                    (
                        Method::PUT,
                        "/rollout",
                        json!({ "percent": p, "who": who, "reason": reason, "force": force }),
                    )
                }
                RolloutAction::Step { force } => (
                    Method::POST,
                    "/step",
                    json!({ "who": who, "reason": reason, "force": force }),
                ),
                RolloutAction::Pause => (Method::POST, "/pause", note),
                RolloutAction::Resume => (Method::POST, "/resume", note),
                RolloutAction::Promote { force } => (
                    Method::POST,
                    "/promote",
                    json!({ "who": who, "reason": reason, "force": force }),
                ),
            };
            client(&admin, |c| async move {
                let out = c.call(method, path, Some(body)).await?;
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
                Ok(format_status(&v))
            })
        }
        Command::Rollback { admin } => {
            let body =
                json!({ "who": who(), "reason": admin.reason.clone().unwrap_or_else(|| "switchyard rollback".into()) });
            client(&admin, |c| async move {
                let out = c.call(Method::POST, "/rollback", Some(body)).await?;
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
                Ok(format!(
                    "ROLLED BACK: new now serves 0% of live traffic.\n{}",
                    format_status(&v)
                ))
            })
        }
        Command::Report {
            admin,
            format,
            since,
            reset,
            merge,
            fleet,
        } => {
            if !merge.is_empty() {
                return diffs::merge(&merge, format);
            }
            if reset {
                return client(&admin, |c| async move {
                    c.call(Method::POST, "/report/reset", None).await?;
                    Ok("report started afresh: counts, samples and timelines from now on only\n".into())
                });
            }
            client(&admin, |c| async move {
                let path = match format {
                    Format::Text => "/report.txt",
                    Format::Json => "/report.json",
                    Format::Html => "/report",
                };
                let path = match since {
                    Some(s) => format!(
                        "{path}?since={}",
                        percent_encoding::utf8_percent_encode(&s, percent_encoding::NON_ALPHANUMERIC)
                    ),
                    None if fleet => format!("{path}?scope=fleet"),
                    None => path.to_string(),
                };
                let out = c.call(Method::GET, &path, None).await?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            })
        }
        Command::Diff { action, admin } => diffs::diff(action, &admin),
        Command::Replay { args, admin } => replay::replay(args, &admin),
        Command::Reload { admin } => client(&admin, |c| async move {
            c.call(Method::POST, "/reload", None).await?;
            Ok("config reloaded\n".into())
        }),
    }
}

pub(crate) fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "someone".into());
    format!("{user} (cli)")
}

fn config_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

pub(crate) fn client<F, Fut>(args: &AdminArgs, f: F) -> ExitCode
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<String, switchyard::admin::client::ClientError>>,
{
    // The config is only a source of defaults here; a broken one is not fatal.
    let path = config_path(args.config.clone());
    let cfg = Config::load(&path).ok();
    let admin = args.admin.clone().unwrap_or_else(|| {
        cfg.as_ref()
            .map(|c| {
                format!(
                    "http://{}",
                    c.admin.listen.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")
                )
            })
            .unwrap_or_else(|| DEFAULT_ADMIN.to_string())
    });
    let token = args
        .token
        .clone()
        .or_else(|| cfg.as_ref().and_then(|c| c.admin_token()));
    let c = match AdminClient::new(&admin, token) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(f(c)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Option<PathBuf>, reset_state: bool) -> ExitCode {
    let path = config_path(config);
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // Held to the end: dropping it flushes the log queues.
    let _log = switchyard::logging::init(&cfg.logging);
    let gateway = match Gateway::start(
        cfg,
        Options {
            reset_state,
            config_path: Some(path),
        },
    ) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(wait_for_signals(&gateway));
    let delay = gateway.controller.snapshot().config.server.shutdown_delay.get();
    if !delay.is_zero() {
        // The load balancer sees /readyz fail and stops sending; until it
        // has, connections are still accepted and served.
        gateway.unready();
        tracing::info!(delay = ?delay, "not ready; still accepting for server.shutdown_delay before closing the listeners (a second signal stops at once)");
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                tokio::time::sleep(delay).await;
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = term.recv() => tracing::info!("second signal: closing the listeners now"),
                _ = int.recv() => tracing::info!("second signal: closing the listeners now"),
            }
        });
    }
    gateway.shutdown();
    tracing::info!("draining");
    gateway.join();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Waits for SIGTERM/SIGINT; SIGHUP reloads the config.
async fn wait_for_signals(gateway: &Gateway) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                if gateway.reload().is_ok() {
                    tracing::info!("config reloaded");
                }
            }
        }
    }
}

fn demo(args: switchyard::demo::DemoArgs) -> ExitCode {
    let _log = switchyard::logging::init(&config::LoggingConfig {
        level: "warn".into(),
        ..Default::default()
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(switchyard::demo::run(args, &mut |line| println!("{line}"))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A report in the asked format.
pub(crate) fn render(r: &switchyard::report::model::Report, format: Format) -> String {
    match format {
        Format::Text => switchyard::report::text::render(r),
        Format::Json => serde_json::to_string_pretty(r).unwrap_or_default() + "\n",
        Format::Html => switchyard::report::html::render(r),
    }
}
