//! `webhook-notification silence add|list|expire --config FILE`: the silences of a config's
//! outbox, changed in its store directly (no engine is started, nothing is delivered). A
//! Redis outbox reaches the running fleet within a second; a disk outbox the gateway's worker
//! processes on that directory (the silences file is shared, changed under a lock); a memory
//! outbox lives inside the gateway process, out of the CLI's reach.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::output::Output;
use crate::config::OutboxConfig;
use crate::engine::Silences;
use crate::error::{Error, Result};
use crate::store::silences;

#[derive(Subcommand)]
pub(super) enum SilenceCommand {
    /// Add a silence: events matching every --matcher are sent to no webhook until it ends.
    Add {
        #[arg(long)]
        config: PathBuf,
        /// `key=value`, `key!=value`, `key=~regex`, `key!~regex` over event, tool, user,
        /// tenant, server, severity, code (repeat for more; all must match).
        #[arg(long = "matcher", short = 'm', required = true)]
        matchers: Vec<String>,
        /// How long from its start, e.g. `2h` (or give --ends-at).
        #[arg(long)]
        duration: Option<String>,
        /// RFC 3339; default now.
        #[arg(long)]
        starts_at: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        ends_at: Option<String>,
        #[arg(long)]
        created_by: Option<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// List the silences not yet ended (active and pending).
    List {
        #[arg(long)]
        config: PathBuf,
    },
    /// End a silence now.
    Expire {
        #[arg(long)]
        config: PathBuf,
        id: String,
    },
}

/// Runs one `silence` subcommand.
pub(super) fn run(command: SilenceCommand, out: &Output) -> Result<i32> {
    match command {
        SilenceCommand::Add {
            config,
            matchers,
            duration,
            starts_at,
            ends_at,
            created_by,
            comment,
        } => {
            let spec = json!({"matchers": matchers, "duration": duration, "starts_at": starts_at,
                "ends_at": ends_at, "created_by": created_by, "comment": comment});
            let mut spec = crate::render::object(spec);
            spec.retain(|_, v| !v.is_null());
            let spec = Value::Object(spec);
            let id = open(&config)?.add(&spec)?;
            match out.is_json() {
                true => out.document(&json!({"id": id})),
                false => out.line(&id),
            }
        }
        SilenceCommand::List { config } => {
            let listed = open(&config)?.list()?;
            if out.is_json() {
                out.document(&Value::Array(listed));
                return Ok(0);
            }
            if listed.is_empty() {
                out.line("no silences");
            }
            for s in &listed {
                let text = |k: &str| s[k].as_str().unwrap_or("").to_owned();
                let matchers: Vec<&str> = s["matchers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                out.line(&format!(
                    "{}  {}  {} → {}  {}  {}{}",
                    text("id"),
                    text("state"),
                    text("starts_at"),
                    text("ends_at"),
                    matchers.join(", "),
                    text("created_by"),
                    s["comment"]
                        .as_str()
                        .map(|c| format!(" — {c}"))
                        .unwrap_or_default(),
                ));
            }
        }
        SilenceCommand::Expire { config, id } => {
            open(&config)?.expire(&id)?;
            out.line(&format!("expired {id}"));
        }
    }
    Ok(0)
}

/// The silences of `config`'s outbox.
fn open(config: &PathBuf) -> Result<Silences> {
    let config = super::load(config)?;
    if matches!(config.outbox, OutboxConfig::Memory) {
        return Err(Error::config(
            "outbox",
            "a memory outbox keeps silences inside the gateway process: the CLI needs a redis (or disk) outbox; or add the silence through the host's API (silence())",
        ));
    }
    let store = silences::open(&config.outbox).map_err(|e| Error::config("outbox", e))?;
    Ok(Silences::new(store))
}
