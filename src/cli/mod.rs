//! The `webhook-notification` command line: `check`, `render`, `send`, `listen`,
//! `dead-letters` and `silence`, implemented once here for the Rust binary and the wheel's console script.
//! Output is human-readable, or JSON with `--json`; colour only on a terminal.

mod check;
mod listen;
mod output;
mod silence;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::config::{Config, OutboxConfig};
use crate::error::{Error, Result};
use crate::events::{parse_document, Event};
use crate::notifier::{Notifier, DEFAULT_PLUGIN_NAME};
use crate::preview::preview;
use output::Output;

const EXAMPLES: &str = "\
Examples:
  webhook-notification check plugins/config.yaml
  webhook-notification render webhooks.yaml --event rate_limit_exceeded \\
      --context '{\"user\": \"alice@example.com\"}' --violation '{\"code\": \"RATE_LIMIT\", \"reason\": \"Rate limit exceeded\"}'
  webhook-notification send webhooks.yaml --event tool_error --metadata '{\"tool_name\": \"search\", \"error\": \"boom\"}'
  webhook-notification listen --port 8099 --hmac-secret \"$WEBHOOK_HMAC_SECRET\"
  webhook-notification dead-letters webhooks.yaml --webhook slack-ops --replay
  webhook-notification silence add --config webhooks.yaml -m tool=search -m tenant!=t1 --duration 2h --comment migration
  webhook-notification silence list --config webhooks.yaml";

#[derive(Parser)]
#[command(name = "webhook-notification", version, about = "Check, preview, send and receive gateway webhook notifications", after_help = EXAMPLES)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a plugin config (YAML/JSON), or a whole cpex gateway config (`plugins:` list),
    /// and print each problem with its field path. Exit 1 on any error.
    Check {
        config: PathBuf,
        /// (for the wheel's script) CONFIG was already rendered by Jinja2; these are the
        /// renderer's findings as JSON.
        #[arg(long, hide = true)]
        jinja_findings: Option<String>,
    },
    /// Print, per subscribed webhook, the headers (secrets masked) and body an event would send.
    Render(EventArgs),
    /// Deliver an event for real and print each webhook's status, latency, attempts and error.
    /// Exit 1 if any delivery failed.
    Send {
        #[command(flatten)]
        event: EventArgs,
        /// Seconds to wait for the deliveries (retries included).
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Run a local receiver that prints every request and whether its signature verifies.
    Listen(listen::ListenArgs),
    /// List (or replay) the dead letters of a config's durable outbox.
    DeadLetters {
        config: PathBuf,
        /// Only this webhook id.
        #[arg(long)]
        webhook: Option<String>,
        /// Send them again (same delivery ids) and wait for the outcome.
        #[arg(long)]
        replay: bool,
    },
    /// Add, list or expire silences in a config's outbox (redis: the running fleet).
    #[command(subcommand)]
    Silence(silence::SilenceCommand),
}

#[derive(Args)]
struct EventArgs {
    /// A plugin config file (YAML or JSON).
    config: PathBuf,
    /// The event, e.g. `violation`, `tool_error`.
    #[arg(long)]
    event: String,
    /// A cpex context or bare global context as JSON.
    #[arg(long)]
    context: Option<String>,
    /// A violation as JSON.
    #[arg(long)]
    violation: Option<String>,
    /// Metadata as a JSON object.
    #[arg(long)]
    metadata: Option<String>,
    /// `{{plugin_name}}`.
    #[arg(long, default_value = DEFAULT_PLUGIN_NAME)]
    plugin_name: String,
    /// How many such events: a digest webhook shows (or sends) the one message of a group
    /// of N; `send` raises the event N times for the others.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,
}

/// Runs the CLI with `args` (the program name first); returns the exit status.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let out = Output::new(cli.json);
    let result = match cli.command {
        Command::Check {
            config,
            jinja_findings: None,
        } => check::run(&config, &out),
        Command::Check {
            config,
            jinja_findings: Some(findings),
        } => serde_json::from_str(&findings)
            .map_err(|e| Error::Parse(format!("--jinja-findings: {e}")))
            .and_then(|findings| check::run_rendered(&config, findings, &out)),
        Command::Render(args) => render(&args, &out),
        Command::Send { event, timeout } => send(&event, timeout, &out),
        Command::Listen(args) => listen::run(args, &out),
        Command::DeadLetters {
            config,
            webhook,
            replay,
        } => dead_letters(&config, webhook.as_deref(), replay, &out),
        Command::Silence(command) => silence::run(command, &out),
    };
    match result {
        Ok(status) => status,
        Err(e) => {
            out.error(&e.to_string());
            1
        }
    }
}

/// Reads and loads a plugin config file.
fn load(path: &PathBuf) -> Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::InvalidArgument(format!("cannot read {}: {e}", path.display())))?;
    Config::load(&text)
}

/// The event and its documents from the command line.
fn event_of(args: &EventArgs) -> Result<(Event, Value, Option<Value>, Option<Value>)> {
    let event = Event::from_name(&args.event)?;
    let context = parse_document(args.context.as_deref(), "--context")?;
    let violation = parse_document(args.violation.as_deref(), "--violation")?;
    let metadata = parse_document(args.metadata.as_deref(), "--metadata")?;
    Ok((event, context, Some(violation), Some(metadata)))
}

fn render(args: &EventArgs, out: &Output) -> Result<i32> {
    let config = load(&args.config)?;
    let (event, context, violation, metadata) = event_of(args)?;
    let previews = preview(
        &config,
        &args.plugin_name,
        event,
        &context,
        violation,
        metadata,
        args.count,
    )?;
    if previews.is_empty() {
        out.warn(&format!("no enabled webhook subscribes to {}", event.name()));
    }
    out.previews(&previews);
    Ok(0)
}

fn send(args: &EventArgs, timeout: f64, out: &Output) -> Result<i32> {
    let mut config = load(&args.config)?;
    // A one-off delivery must not touch (or wait for the lock of) a gateway's durable outbox.
    config.outbox = OutboxConfig::Memory;
    // Each digest group sends its one message of all `count` events when the notifier closes.
    for webhook in &mut config.webhooks {
        if let Some(digest) = webhook.alerting.digest.as_mut() {
            digest.group_wait = Duration::from_secs(3600);
            digest.threshold = None;
        }
    }
    let (event, context, violation, metadata) = event_of(args)?;
    let notifier = Notifier::new(config, Some(&args.plugin_name))?;
    for _ in 0..args.count {
        if !notifier.notify(event, &context, violation.clone(), metadata.clone())? {
            out.warn(&format!("no enabled webhook subscribes to {}", event.name()));
            return Ok(1);
        }
    }
    let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
    let finished = notifier.flush(timeout) && notifier.close(timeout).is_ok();
    let stats = notifier.stats();
    let results: Vec<Value> = stats
        .webhooks
        .iter()
        .filter(|w| w.delivered + w.failed + w.queued > 0)
        .map(|w| {
            json!({"webhook": w.id, "url": w.url, "ok": w.delivered > 0, "status": w.last_status,
                   "latency_ms": w.latency_p50_ms, "attempts": w.delivered + w.failed + w.retries,
                   "error": if w.delivered > 0 { None } else { w.last_error.clone() }})
        })
        .collect();
    out.sent(&results, finished);
    let all_ok = finished && results.iter().all(|r| r["ok"] == true);
    Ok(if all_ok { 0 } else { 1 })
}

fn dead_letters(path: &PathBuf, webhook: Option<&str>, replay: bool, out: &Output) -> Result<i32> {
    let config = load(path)?;
    if config.outbox == OutboxConfig::Memory {
        out.warn("this config's outbox is in memory: its dead letters live in the gateway process (plugin.dead_letters(), or Notifier::dead_letters)");
        return Ok(1);
    }
    let shared = matches!(config.outbox, OutboxConfig::Redis(_));
    let notifier = Notifier::new(config, None)?;
    if shared {
        // The fleet's dead letters are read at the first connection. Meanwhile this command
        // is one more consumer: what it takes over it delivers, or hands back as it exits.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !notifier.stats().outbox.connected {
            if std::time::Instant::now() > deadline {
                let why = notifier.stats().outbox.last_error.unwrap_or_default();
                return Err(Error::InvalidArgument(format!(
                    "cannot reach the outbox's Redis: {why}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let letters = notifier.dead_letters(webhook)?;
    let views: Vec<_> = letters.iter().map(|l| l.view()).collect();
    out.dead_letters(&views);
    if !replay {
        return Ok(0);
    }
    let queued = notifier.replay_dead_letters(webhook)?;
    let finished = notifier.flush(Duration::from_secs(60));
    let stats = notifier.stats();
    out.line(&format!(
        "replayed {queued}: {} delivered, {} failed again{}",
        stats.delivered,
        stats.failed,
        if finished {
            ""
        } else {
            " (some still pending: kept in the outbox)"
        }
    ));
    Ok(if finished && stats.failed == 0 { 0 } else { 1 })
}
