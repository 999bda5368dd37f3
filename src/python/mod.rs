//! The PyO3 module `cpex_webhook_notification._native` (cargo feature `python`): a thin
//! native class over a shared [`Notifier`] for the Python plugin class in
//! `python/cpex_webhook_notification`. Arguments arrive as plain Python data (converted here)
//! or as JSON text; blocking calls
//! (`flush`, the exit drain) release the GIL; hook calls never wait on the network at all. Log records
//! go to Python's `logging` under the logger `cpex_webhook_notification`.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use log::{Level, Log, Metadata, Record};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use serde_json::Value;

use crate::config::Config;
use crate::engine::drain_shared;
use crate::error::Error;
use crate::events::{parse_document, Event, Hook};
use crate::logging::level_from_env;
use crate::notifier::{Notifier, Submission};

mod data;
use data::{hook_context, hook_payload};

create_exception!(
    _native,
    WebhookError,
    PyException,
    "Base class of this library's errors."
);
create_exception!(
    _native,
    ConfigError,
    PyValueError,
    "The plugin config is invalid; the message names the field."
);
create_exception!(
    _native,
    ParseError,
    WebhookError,
    "A payload, context, violation or metadata is not valid JSON of the right shape."
);
create_exception!(
    _native,
    ClosedError,
    WebhookError,
    "The notifier was shut down and accepts no events."
);

fn to_py(error: Error) -> PyErr {
    let text = error.to_string();
    match error {
        Error::Config { .. } => ConfigError::new_err(text),
        Error::Parse(_) => ParseError::new_err(text),
        Error::Closed | Error::Forked => ClosedError::new_err(text),
        Error::InvalidArgument(_) | Error::Timeout { .. } => WebhookError::new_err(text),
    }
}

fn parse(text: Option<&str>, name: &str) -> PyResult<Value> {
    parse_document(text, name).map_err(to_py)
}

/// Seconds from Python as a timeout: NaN or negative is a `ValueError`; infinite or too
/// large for a `Duration` means no deadline.
fn timeout(seconds: f64) -> PyResult<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "timeout must be a number of seconds >= 0, not {seconds}"
        )));
    }
    Ok(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

/// Payloads larger than this are parsed and admitted without the GIL.
const DETACH_ABOVE: usize = 64 * 1024;

/// The native notifier behind one `WebhookNotificationPlugin` instance: attached to the
/// process-wide engine of its config, so instances the gateway replaces share queues,
/// breakers and counters, and closing one only detaches it.
#[pyclass(module = "cpex_webhook_notification._native", frozen, weakref)]
struct NativeNotifier {
    notifier: Notifier,
}

/// What a hook call returns to the shell: `(event name or None, queued)`.
type HookResult<'py> = (Option<Bound<'py, PyString>>, bool);

/// The hook call's outcome for Python; event names are made once (a hook call allocates no
/// string for them).
fn outcome(py: Python<'_>, submission: Submission) -> HookResult<'_> {
    static NAMES: PyOnceLock<Vec<Py<PyString>>> = PyOnceLock::new();
    let names = NAMES.get_or_init(py, || {
        Event::ALL
            .iter()
            .map(|e| PyString::intern(py, e.name()).unbind())
            .collect()
    });
    let name = submission.event.map(|e| names[e as usize].bind(py).clone());
    (name, submission.queued)
}

#[pymethods]
impl NativeNotifier {
    /// Loads `config` (JSON or YAML text of the plugin's `config:` mapping) and attaches to
    /// its engine.
    #[new]
    #[pyo3(signature = (config, plugin_name=None))]
    fn new(config: &str, plugin_name: Option<&str>) -> PyResult<Self> {
        let config = Config::load(config).map_err(to_py)?;
        let notifier = Notifier::shared(config, plugin_name).map_err(to_py)?;
        Ok(NativeNotifier { notifier })
    }

    /// Handles one hook call; returns `(event name or None, queued)`. Large payloads are
    /// parsed without the GIL.
    #[pyo3(signature = (hook, payload, context=None))]
    fn invoke<'py>(
        &self,
        py: Python<'py>,
        hook: &str,
        payload: &str,
        context: Option<&str>,
    ) -> PyResult<HookResult<'py>> {
        let hook = Hook::from_name(hook).map_err(to_py)?;
        let run = || -> Result<_, Error> {
            let payload = parse_document(Some(payload), "payload")?;
            let context = parse_document(context, "context")?;
            self.notifier.invoke(hook, payload, &context)
        };
        let submission = match payload.len() > DETACH_ABOVE {
            true => py.detach(run),
            false => run(),
        }
        .map_err(to_py)?;
        Ok(outcome(py, submission))
    }

    /// Handles a hook call straight from its payload and context (cpex objects, or dicts of
    /// their JSON shape), reading only what classification needs (see `data`). Returns None,
    /// having done nothing, when something there is not plain data, or when the templates
    /// will use the whole payload (`include_payload_data`, unless `whole_payload` is False:
    /// the caller knows it is over `max_payload_size`): the caller then sends the whole
    /// documents through `invoke` as JSON.
    #[pyo3(signature = (hook, payload, context, whole_payload=true))]
    fn hook<'py>(
        &self,
        hook: &str,
        payload: &Bound<'py, PyAny>,
        context: &Bound<'py, PyAny>,
        whole_payload: bool,
    ) -> PyResult<Option<HookResult<'py>>> {
        let hook = Hook::from_name(hook).map_err(to_py)?;
        if whole_payload && self.notifier.includes_payload_data() {
            return Ok(None);
        }
        let (Some(doc), Some(context)) = (hook_payload(hook, payload)?, hook_context(context)?) else {
            return Ok(None);
        };
        let submission = self.notifier.invoke_in(hook, doc, context).map_err(to_py)?;
        Ok(Some(outcome(payload.py(), submission)))
    }

    /// Raises `event` directly; returns whether it was queued.
    #[pyo3(signature = (event, context=None, violation=None, metadata=None))]
    fn notify(
        &self,
        event: &str,
        context: Option<&str>,
        violation: Option<&str>,
        metadata: Option<&str>,
    ) -> PyResult<bool> {
        let event = Event::from_name(event).map_err(to_py)?;
        let (context, violation) = (parse(context, "context")?, parse(violation, "violation")?);
        let metadata = parse(metadata, "metadata")?;
        self.notifier
            .notify(event, &context, Some(violation), Some(metadata))
            .map_err(to_py)
    }

    /// Waits (without the GIL) until nothing is pending or `timeout` seconds pass
    /// (`inf`: no deadline).
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = self::timeout(timeout)?;
        Ok(py.detach(|| self.notifier.flush(timeout)))
    }

    /// Detaches this instance from its engine, at once; the engine keeps delivering what
    /// is pending and closes when idle (or at interpreter exit).
    fn detach(&self) {
        let _ = self.notifier.close(Duration::ZERO);
    }

    /// The engine's metrics in the Prometheus text exposition format 0.0.4.
    fn metrics_text(&self) -> String {
        self.notifier.metrics()
    }

    /// Counts a hook call whose data could not be sent at all; returns the count so far.
    fn count_host_error(&self) -> u64 {
        self.notifier.count_host_error()
    }

    /// The delivery stats (of the shared engine) as JSON text.
    fn stats_json(&self) -> String {
        self.notifier.stats().to_json()
    }

    /// Dead letters of the webhook `webhook_id` (or all) as JSON text.
    #[pyo3(signature = (webhook_id=None))]
    fn dead_letters_json(&self, webhook_id: Option<&str>) -> PyResult<String> {
        let letters = self.notifier.dead_letters(webhook_id).map_err(to_py)?;
        let views: Vec<_> = letters.iter().map(|l| l.view()).collect();
        Ok(serde_json::to_string(&views).expect("dead letters serialise"))
    }

    /// Queues the dead letters of `webhook_id` (or all) again; returns how many.
    #[pyo3(signature = (webhook_id=None))]
    fn replay_dead_letters(&self, webhook_id: Option<&str>) -> PyResult<usize> {
        self.notifier.replay_dead_letters(webhook_id).map_err(to_py)
    }

    /// Adds a silence (JSON text, see `Notifier::silence`) to the outbox's store, without the
    /// GIL (a Redis store is a round trip); returns its id.
    fn silence(&self, py: Python<'_>, spec: &str) -> PyResult<String> {
        let spec = parse(Some(spec), "silence")?;
        py.detach(|| self.notifier.silence(&spec)).map_err(to_py)
    }

    /// The silences not yet ended, as JSON text.
    fn silences_json(&self, py: Python<'_>) -> PyResult<String> {
        let silences = py.detach(|| self.notifier.silences()).map_err(to_py)?;
        Ok(Value::Array(silences).to_string())
    }

    /// Ends the silence `id` now.
    fn expire_silence(&self, py: Python<'_>, id: &str) -> PyResult<()> {
        py.detach(|| self.notifier.expire_silence(id)).map_err(to_py)
    }

    /// Whether this instance was created before `fork()` in a parent process (it refuses
    /// events; build a new one).
    #[getter]
    fn forked(&self) -> bool {
        self.notifier.is_forked()
    }

    /// Identifies the engine this instance is attached to (instances of one config share it),
    /// so that metrics of two live engines are told apart.
    #[getter]
    fn engine_id(&self) -> usize {
        self.notifier.engine_id()
    }

    /// Whether `{{payload}}` is used, so the Python side can skip serialising payloads.
    #[getter]
    fn include_payload_data(&self) -> bool {
        self.notifier.includes_payload_data()
    }

    /// `max_payload_size`: a larger payload renders as null, so need not be serialised.
    #[getter]
    fn max_payload_size(&self) -> usize {
        self.notifier.max_payload_size()
    }
}

/// Set by [`drain_at_exit`]: from then on log records go to stderr, never through a GIL
/// round trip into an interpreter that is finalising.
static FINALIZING: AtomicBool = AtomicBool::new(false);

/// Drains every shared engine within the longest `shutdown_timeout`, without the GIL
/// (registered with `atexit`); False if some deliveries were abandoned.
#[pyfunction]
fn drain_at_exit(py: Python<'_>) -> bool {
    let drained = py.detach(drain_shared);
    FINALIZING.store(true, SeqCst);
    drained
}

/// The event a violation (JSON text of a cpex `PluginViolation` or a dict of its shape) raises:
/// its code first, then its reason (DESIGN "Classification by code"). The cpex observer asks
/// this before it raises the event, so Python never re-implements the rule.
#[pyfunction]
fn violation_event(violation: &str) -> PyResult<&'static str> {
    Ok(crate::events::classify_violation(&parse(Some(violation), "violation")?).name())
}

/// Runs the `webhook-notification` CLI (the Rust implementation the binary runs too) with
/// `argv` (program name first), without the GIL; returns the exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| crate::cli::run(argv))
}

/// Forwards `log` records to Python's `logging.getLogger("cpex_webhook_notification")`.
struct PythonLogger;

impl Log for PythonLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if FINALIZING.load(SeqCst) {
            eprintln!("[cpex_webhook_notification {}] {}", record.level(), record.args());
            return;
        }
        let level = match record.level() {
            Level::Error => 40,
            Level::Warn => 30,
            Level::Info => 20,
            Level::Debug => 10,
            Level::Trace => 5,
        };
        let message = record.args().to_string();
        // try_attach: nothing is logged (rather than a hang) while the interpreter shuts down.
        Python::try_attach(|py| {
            let logged = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", ("cpex_webhook_notification",)))
                .and_then(|logger| logger.call_method1("log", (level, message)));
            if let Err(e) = logged {
                e.print(py);
            }
        });
    }

    fn flush(&self) {}
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    if log::set_logger(&PythonLogger).is_ok() {
        log::set_max_level(level_from_env());
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<NativeNotifier>()?;
    m.add_function(wrap_pyfunction!(drain_at_exit, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(violation_event, m)?)?;
    let py = m.py();
    m.add("WebhookError", py.get_type::<WebhookError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ParseError", py.get_type::<ParseError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}
