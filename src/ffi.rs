//! The C API of `include/webhook_notification.h` (generated from this file by `build.rs`).
//!
//! Conventions: every fallible function returns an `int32_t` status (`WEBHOOK_OK` or one of
//! the codes below) and reports failures through a `char **error` out-parameter, which may be
//! NULL and is otherwise set to an owned message on failure and to NULL on success. There is
//! no thread-local "last error": Go moves goroutines between OS threads. Every string the
//! library hands out is freed with `webhook_string_free`. No panic crosses the boundary: one
//! is caught and reported as `WEBHOOK_PANIC`. A `WebhookPlugin` may be used from many
//! threads at once; after `webhook_plugin_close` calls that raise events return
//! `WEBHOOK_CLOSED`, and the handle stays valid until `webhook_plugin_free`.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::error::Error;
use crate::events::{parse_document, plugin_result, Context, Event, Hook};
use crate::logging;
use crate::notifier::{Notifier, Submission};

/// Version of this C API; bumped on any breaking change (a function removed, renamed or
/// re-typed, or a changed meaning). New status codes added at the end are not breaking.
pub const WEBHOOK_ABI_VERSION: u32 = 1;

/// Success.
pub const WEBHOOK_OK: i32 = 0;
/// NULL where a value is required, bad UTF-8, or an unknown hook or event name.
pub const WEBHOOK_INVALID_ARGUMENT: i32 = 1;
/// The config cannot be loaded; the message names the field.
pub const WEBHOOK_CONFIG_ERROR: i32 = 2;
/// A payload, context, violation or metadata argument is not valid JSON of the right shape.
pub const WEBHOOK_PARSE_ERROR: i32 = 3;
/// A flush or close deadline passed with deliveries still pending.
pub const WEBHOOK_TIMEOUT: i32 = 4;
/// The plugin was closed and accepts no events.
pub const WEBHOOK_CLOSED: i32 = 5;
/// A bug inside the library was caught before it could cross into the caller.
pub const WEBHOOK_PANIC: i32 = 6;

/// An opaque plugin instance: a config, its webhooks and their delivery queue.
pub struct WebhookPlugin {
    notifier: Notifier,
}

/// The version of this C API (`WEBHOOK_ABI_VERSION` of the library actually loaded).
/// Hosts compare it with the header's `WEBHOOK_ABI_VERSION` at start-up.
#[no_mangle]
pub extern "C" fn webhook_abi_version() -> u32 {
    WEBHOOK_ABI_VERSION
}

/// The library version, e.g. "0.1.0". Static: do not free.
#[no_mangle]
pub extern "C" fn webhook_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Creates a plugin from `config` (YAML or JSON of the plugin's `config:` mapping).
/// `plugin_name` (nullable) fills `{{plugin_name}}`; NULL means "WebhookNotification".
/// On success `*out` is a new handle the caller frees with `webhook_plugin_free`; on failure
/// it is NULL. Config mistakes return `WEBHOOK_CONFIG_ERROR` with the field's path.
///
/// # Safety
/// `config` and `plugin_name` are NULL or NUL-terminated strings; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_new(
    config: *const c_char,
    plugin_name: *const c_char,
    out: *mut *mut WebhookPlugin,
    error: *mut *mut c_char,
) -> i32 {
    // SAFETY: the caller's contract (above) is what `new_handle` requires.
    unsafe { new_handle(config, plugin_name, out, error, Notifier::new) }
}

/// Like `webhook_plugin_new`, but the handle attaches to the process-wide engine of this
/// config and plugin name (started if none runs), as Python plugin instances do: every handle
/// attached with the same config shares its queues, counters and breakers. Freeing (or
/// closing) an attached handle detaches it at once and never blocks; the engine closes once
/// idle with no handle attached, or drains for at most `shutdown_timeout` at process exit.
/// For hosts that make a handle per thread or per interpreter (Envoy's Lua states).
///
/// # Safety
/// As for `webhook_plugin_new`.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_attach(
    config: *const c_char,
    plugin_name: *const c_char,
    out: *mut *mut WebhookPlugin,
    error: *mut *mut c_char,
) -> i32 {
    static DRAIN_AT_EXIT: std::sync::Once = std::sync::Once::new();
    DRAIN_AT_EXIT.call_once(|| {
        // SAFETY: `drain_at_exit` is a plain `extern "C" fn()` that never unwinds.
        if unsafe { libc::atexit(drain_at_exit) } != 0 {
            log::warn!(
                "cannot register the exit-time drain: attached engines may lose what is pending at exit"
            );
        }
    });
    // SAFETY: the caller's contract (above) is what `new_handle` requires.
    unsafe { new_handle(config, plugin_name, out, error, Notifier::shared) }
}

/// At process exit (`atexit`), drains every attached engine for at most its
/// `shutdown_timeout`, as the Python module does at interpreter exit.
extern "C" fn drain_at_exit() {
    let _ = std::panic::catch_unwind(crate::engine::drain_shared);
}

/// Makes a handle around the notifier `start` makes of the loaded config.
///
/// # Safety
/// `config` and `plugin_name` are NULL or NUL-terminated strings; `out` and `error` are NULL
/// or writable.
unsafe fn new_handle(
    config: *const c_char,
    plugin_name: *const c_char,
    out: *mut *mut WebhookPlugin,
    error: *mut *mut c_char,
    start: fn(Config, Option<&str>) -> Result<Notifier, Error>,
) -> i32 {
    boundary(error, || {
        // SAFETY: `out` is NULL or writable; the strings are NULL or NUL-terminated and
        // outlive this call (the caller's contract).
        let (out, config, name) = unsafe {
            let out = out_param(out, "out")?;
            *out = ptr::null_mut();
            (
                out,
                required_str(config, "config")?,
                optional_str(plugin_name, "plugin_name")?,
            )
        };
        logging::init_stderr();
        let notifier = start(Config::load(config)?, name)?;
        *out = Box::into_raw(Box::new(WebhookPlugin { notifier }));
        Ok(())
    })
}

/// Handles one hook call: `hook` is a cpex hook name (`tool_post_invoke`, …),
/// `payload_json` that hook's cpex payload, `context_json` (nullable) a cpex PluginContext
/// or bare global context, optionally with a top-level `violation`. Returns at once: the
/// event is queued, never sent on this thread. If `result_json` is not NULL it receives the
/// cpex PluginResult JSON, whose metadata names the event raised (`webhook_event`) and
/// whether it was queued (`webhook_queued`); free it with `webhook_string_free`.
///
/// # Safety
/// `p` is a live handle from `webhook_plugin_new`; strings are NULL or NUL-terminated;
/// `result_json` and `error` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_invoke(
    p: *mut WebhookPlugin,
    hook: *const c_char,
    payload_json: *const c_char,
    context_json: *const c_char,
    result_json: *mut *mut c_char,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: `result_json` is NULL or writable (the caller's contract).
        unsafe {
            if !result_json.is_null() {
                *result_json = ptr::null_mut();
            }
        }
        // SAFETY: the caller's contract.
        let submission = unsafe { invoke_call(p, hook, payload_json, context_json) }?;
        if !result_json.is_null() {
            let result = c_string(plugin_result(submission.event, submission.queued));
            // SAFETY: checked non-NULL above; writable by the caller's contract.
            unsafe { *result_json = result };
        }
        Ok(())
    })
}

/// `webhook_plugin_invoke` without the result document, for hosts that only want the event:
/// `*event_out` is the index of the event raised (see `webhook_event_name`), or -1 when the
/// call raised none — a quiet pre-hook, or a hook no webhook takes.
///
/// # Safety
/// As for `webhook_plugin_invoke`; `event_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_invoke_event(
    p: *mut WebhookPlugin,
    hook: *const c_char,
    payload_json: *const c_char,
    context_json: *const c_char,
    event_out: *mut i32,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: the caller's contract.
        let submission = unsafe { invoke_call(p, hook, payload_json, context_json) }?;
        if !event_out.is_null() {
            // SAFETY: checked non-NULL; writable by the caller's contract.
            unsafe { *event_out = submission.event.map_or(-1, |e| e as i32) };
        }
        Ok(())
    })
}

/// One hook call: a hook no webhook takes is answered before its documents are read.
///
/// # Safety
/// As for `webhook_plugin_invoke`.
unsafe fn invoke_call(
    p: *mut WebhookPlugin,
    hook: *const c_char,
    payload_json: *const c_char,
    context_json: *const c_char,
) -> Result<Submission, Error> {
    // SAFETY: `p` a live handle, `hook` NULL or NUL-terminated (the caller's contract).
    let (plugin, hook) = unsafe { (plugin(p)?, Hook::from_name(required_str(hook, "hook")?)?) };
    if payload_json.is_null() {
        return Err(Error::InvalidArgument("`payload_json` is NULL".into()));
    }
    if !plugin.notifier.wants_hook(hook) {
        return plugin.notifier.invoke(hook, Value::Null, &Value::Null);
    }
    // SAFETY: NULL or NUL-terminated for the duration of the call (the caller's contract).
    let (payload, context) = unsafe {
        (
            required_str(payload_json, "payload_json")?,
            optional_json(context_json, "context_json")?,
        )
    };
    plugin
        .notifier
        .invoke_text(hook, payload, Context::from_json(&context)?)
}

/// Sets `*wanted` to whether some enabled webhook takes an event that a call of `hook` can
/// raise. When none does, invoking that hook returns at once without reading its documents:
/// a host may skip building them. The answer never changes for a handle (ask once per hook).
///
/// # Safety
/// `p` is a live handle; `hook` NUL-terminated; `wanted` and `error` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_wants_hook(
    p: *const WebhookPlugin,
    hook: *const c_char,
    wanted: *mut bool,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: the caller's contract; the handle is only read.
        let (plugin, hook) = unsafe { (plugin(p)?, required_str(hook, "hook")?) };
        let answer = plugin.notifier.wants_hook(Hook::from_name(hook)?);
        if !wanted.is_null() {
            // SAFETY: checked non-NULL; writable by the caller's contract.
            unsafe { *wanted = answer };
        }
        Ok(())
    })
}

/// The name of event `index` (`0..webhook_event_count()`, the order of DESIGN's event
/// list), a static string; NULL for any other index.
#[no_mangle]
pub extern "C" fn webhook_event_name(index: i32) -> *const c_char {
    static NAMES: LazyLock<Vec<CString>> = LazyLock::new(|| {
        Event::ALL
            .iter()
            .map(|e| CString::new(e.name()).expect("event names hold no NUL"))
            .collect()
    });
    usize::try_from(index)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map_or(ptr::null(), |name| name.as_ptr())
}

/// How many events there are (see `webhook_event_name`).
#[no_mangle]
pub extern "C" fn webhook_event_count() -> i32 {
    Event::ALL.len() as i32
}

/// Raises `event` (e.g. `rate_limit_exceeded`) directly. `violation_json` (nullable) replaces
/// any violation in the context; `metadata_json` (nullable) must be an object. Returns at
/// once, like `webhook_plugin_invoke`.
///
/// # Safety
/// As for `webhook_plugin_invoke`.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_notify(
    p: *mut WebhookPlugin,
    event: *const c_char,
    context_json: *const c_char,
    violation_json: *const c_char,
    metadata_json: *const c_char,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: `p` is a live handle and the strings NULL or NUL-terminated (the caller's
        // contract).
        let (plugin, event, context, violation, metadata) = unsafe {
            (
                plugin(p)?,
                required_str(event, "event")?,
                optional_json(context_json, "context_json")?,
                optional_json(violation_json, "violation_json")?,
                optional_json(metadata_json, "metadata_json")?,
            )
        };
        let event = Event::from_name(event)?;
        plugin
            .notifier
            .notify(event, &context, Some(violation), Some(metadata))?;
        Ok(())
    })
}

/// Blocks until nothing is queued or in flight, or `timeout_ms` passes (`WEBHOOK_TIMEOUT`).
///
/// # Safety
/// `p` is a live handle; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_flush(
    p: *mut WebhookPlugin,
    timeout_ms: u32,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: `p` is a live handle (the caller's contract).
        let notifier = &unsafe { plugin(p) }?.notifier;
        if notifier.flush(Duration::from_millis(timeout_ms.into())) {
            Ok(())
        } else {
            Err(Error::Timeout {
                pending: notifier.stats().pending,
            })
        }
    })
}

/// Sets `*stats_json` to the delivery stats as JSON (free with `webhook_string_free`):
/// totals `delivered, failed, retries, dropped, pending` and a `webhooks` array.
///
/// # Safety
/// `p` is a live handle; `stats_json` is writable; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_stats(
    p: *const WebhookPlugin,
    stats_json: *mut *mut c_char,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: `stats_json` is writable and `p` a live handle (the caller's contract).
        unsafe {
            set_string(stats_json, "stats_json", || {
                Ok(plugin(p)?.notifier.stats().to_json())
            })
        }
    })
}

/// Adds a silence to the outbox's store — JSON `{"matchers": ["tool=search", "tenant!=t1"],
/// "starts_at"?: RFC 3339, "ends_at": RFC 3339 | "duration": "2h", "created_by"?,
/// "comment"?}` — and sets `*id_out` to its id (free with `webhook_string_free`). Events
/// matching an active silence are sent to no webhook. `WEBHOOK_PARSE_ERROR` for JSON that does
/// not parse, `WEBHOOK_INVALID_ARGUMENT` for a mistake or a limit (1,000 silences, 64
/// matchers, a 1 KiB comment), `WEBHOOK_CONFIG_ERROR` naming `outbox` when its store cannot be
/// reached. Talks to the store (Redis: a round trip): not for a hook's hot path.
///
/// # Safety
/// `p` is a live handle; `silence_json` NUL-terminated; `id_out` writable; `error` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_silence_add(
    p: *mut WebhookPlugin,
    silence_json: *const c_char,
    id_out: *mut *mut c_char,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: the caller's contract.
        unsafe {
            set_string(id_out, "id_out", || {
                let spec = parse_document(Some(required_str(silence_json, "silence_json")?), "silence_json")?;
                plugin(p)?.notifier.silence(&spec)
            })
        }
    })
}

/// Sets `*json_out` to the silences not yet ended, a JSON array of `{id, matchers, starts_at,
/// ends_at, created_by, comment, state}` with `state` `active` or `pending` (free with
/// `webhook_string_free`).
///
/// # Safety
/// `p` is a live handle; `json_out` writable; `error` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_silences(
    p: *const WebhookPlugin,
    json_out: *mut *mut c_char,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: the caller's contract.
        unsafe {
            set_string(json_out, "json_out", || {
                Ok(Value::Array(plugin(p)?.notifier.silences()?).to_string())
            })
        }
    })
}

/// Ends the silence `id` now (`WEBHOOK_INVALID_ARGUMENT` when no silence has that id).
///
/// # Safety
/// `p` is a live handle; `id` NUL-terminated; `error` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_silence_expire(
    p: *mut WebhookPlugin,
    id: *const c_char,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: the caller's contract.
        let (plugin, id) = unsafe { (plugin(p)?, required_str(id, "id")?) };
        plugin.notifier.expire_silence(id)
    })
}

/// Sets `*text` to the plugin's metrics in the Prometheus text exposition format 0.0.4
/// (free with `webhook_string_free`): events, deliveries by webhook id, event and outcome,
/// retries, queue depth, circuit state, dead letters and the delivery-time histogram.
///
/// # Safety
/// `p` is a live handle; `text` is writable; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_metrics(
    p: *const WebhookPlugin,
    text: *mut *mut c_char,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: `text` is writable and `p` a live handle (the caller's contract).
        unsafe { set_string(text, "text", || Ok(plugin(p)?.notifier.metrics())) }
    })
}

/// Stops accepting events (later invoke/notify return `WEBHOOK_CLOSED`) and delivers what is
/// pending for at most `timeout_ms`; what is left is abandoned, counted as dropped, and
/// `WEBHOOK_TIMEOUT` returned. The handle stays valid until `webhook_plugin_free`.
///
/// # Safety
/// `p` is a live handle; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_close(
    p: *mut WebhookPlugin,
    timeout_ms: u32,
    error: *mut *mut c_char,
) -> i32 {
    boundary(error, || {
        // SAFETY: `p` is a live handle (the caller's contract).
        let notifier = &unsafe { plugin(p) }?.notifier;
        notifier.close(Duration::from_millis(timeout_ms.into()))
    })
}

/// Like `webhook_plugin_close` with the config's `shutdown_timeout`: stops accepting events,
/// delivers what is pending for at most that long, and returns `WEBHOOK_TIMEOUT` if some
/// deliveries were abandoned (counted as dropped). Hosts that want to know whether closing
/// lost anything call this before `webhook_plugin_free`.
///
/// # Safety
/// `p` is a live handle; `error` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_shutdown(p: *mut WebhookPlugin, error: *mut *mut c_char) -> i32 {
    boundary(error, || {
        // SAFETY: `p` is a live handle (the caller's contract).
        let notifier = &unsafe { plugin(p) }?.notifier;
        notifier.close(notifier.shutdown_timeout())
    })
}

/// Closes the plugin (waiting at most its `shutdown_timeout`) and releases it; an attached
/// handle (`webhook_plugin_attach`) only detaches, at once. NULL is a no-op. The handle must
/// not be used afterwards, nor freed twice.
///
/// # Safety
/// `p` is NULL or a live handle from `webhook_plugin_new` or `webhook_plugin_attach` that no
/// other thread is using.
#[no_mangle]
pub unsafe extern "C" fn webhook_plugin_free(p: *mut WebhookPlugin) {
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in `new_handle` and is freed once (the
        // caller's contract).
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p) })));
    }
}

/// Frees a string the library handed out. NULL is a no-op.
///
/// # Safety
/// `s` is NULL or a string from this library, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn webhook_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from `CString::into_raw` in `c_string` and is freed once (the
        // caller's contract).
        drop(unsafe { CString::from_raw(s) });
    }
}

/// Sets the string out-parameter `out` (named `name` in errors) to what `make` returns, or
/// to NULL when it fails.
///
/// # Safety
/// `out` is NULL or writable.
unsafe fn set_string(
    out: *mut *mut c_char,
    name: &str,
    make: impl FnOnce() -> Result<String, Error>,
) -> Result<(), Error> {
    // SAFETY: NULL or writable (this function's contract).
    let out = unsafe { out_param(out, name) }?;
    *out = ptr::null_mut();
    *out = c_string(make()?);
    Ok(())
}

/// The status code of an error.
fn status(error: &Error) -> i32 {
    match error {
        Error::InvalidArgument(_) => WEBHOOK_INVALID_ARGUMENT,
        Error::Config { .. } => WEBHOOK_CONFIG_ERROR,
        Error::Parse(_) => WEBHOOK_PARSE_ERROR,
        Error::Timeout { .. } => WEBHOOK_TIMEOUT,
        Error::Closed | Error::Forked => WEBHOOK_CLOSED,
    }
}

/// Runs `body`, turning its error or panic into a status code and an owned message.
fn boundary(error: *mut *mut c_char, body: impl FnOnce() -> Result<(), Error>) -> i32 {
    let (code, message) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => (WEBHOOK_OK, None),
        Ok(Err(e)) => (status(&e), Some(e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (WEBHOOK_PANIC, Some(format!("internal error (panic): {what}")))
        }
    };
    if !error.is_null() {
        // SAFETY: the caller passes NULL or a writable `char **`.
        unsafe { *error = message.map_or(ptr::null_mut(), c_string) };
    }
    code
}

/// An owned C string; an interior NUL (impossible in JSON, possible in an echoed name) is
/// replaced rather than truncating the message.
fn c_string(s: String) -> *mut c_char {
    let s = if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s
    };
    CString::new(s).expect("NUL bytes were replaced").into_raw()
}

/// The handle behind `p`; NULL is an invalid argument.
///
/// # Safety
/// `p` is NULL or a live handle, valid for `'a`.
unsafe fn plugin<'a>(p: *const WebhookPlugin) -> Result<&'a WebhookPlugin, Error> {
    // SAFETY: NULL or a live handle (this function's contract).
    unsafe { p.as_ref() }.ok_or_else(|| Error::InvalidArgument("the plugin handle is NULL".into()))
}

/// An out-parameter; NULL is an invalid argument naming it.
///
/// # Safety
/// `out` is NULL or valid for writes for `'a`, and nothing else refers to it meanwhile.
unsafe fn out_param<'a, T>(out: *mut T, name: &str) -> Result<&'a mut T, Error> {
    // SAFETY: NULL or writable and unaliased (this function's contract).
    unsafe { out.as_mut() }.ok_or_else(|| Error::InvalidArgument(format!("`{name}` is NULL")))
}

/// A required string argument.
///
/// # Safety
/// As for [`optional_str`].
unsafe fn required_str<'a>(s: *const c_char, name: &str) -> Result<&'a str, Error> {
    // SAFETY: this function's contract is `optional_str`'s.
    unsafe { optional_str(s, name) }?.ok_or_else(|| Error::InvalidArgument(format!("`{name}` is NULL")))
}

/// A nullable string argument, which must be UTF-8.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string that stays valid and unchanged for `'a`.
unsafe fn optional_str<'a>(s: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, valid for `'a` (this function's contract).
    let text = unsafe { CStr::from_ptr(s) };
    text.to_str()
        .map(Some)
        .map_err(|_| Error::InvalidArgument(format!("`{name}` is not valid UTF-8")))
}

/// A nullable JSON argument; NULL is `null`.
///
/// # Safety
/// As for [`optional_str`].
unsafe fn optional_json(s: *const c_char, name: &str) -> Result<Value, Error> {
    // SAFETY: this function's contract is `optional_str`'s.
    parse_document(unsafe { optional_str(s, name) }?, name)
}

#[cfg(test)]
mod tests;
