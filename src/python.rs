//! The PyO3 module `cpex_webhook_notification._native` (cargo feature `python`): a thin
//! native class over [`Notifier`] for the Python plugin class in
//! `python/cpex_webhook_notification`. Arguments arrive as JSON text; blocking calls
//! (`flush`, `close`) release the GIL; hook calls never wait on the network at all. Log records
//! go to Python's `logging` under the logger `cpex_webhook_notification`.

use std::time::Duration;

use log::{Level, Log, Metadata, Record};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use serde_json::Value;

use crate::error::Error;
use crate::events::{parse_document, Event, Hook};
use crate::logging::level_from_env;
use crate::notifier::Notifier;

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
        Error::Closed => ClosedError::new_err(text),
        Error::InvalidArgument(_) | Error::Timeout { .. } => WebhookError::new_err(text),
    }
}

fn parse(text: Option<&str>, name: &str) -> PyResult<Value> {
    parse_document(text, name).map_err(to_py)
}

/// The native notifier behind one `WebhookNotificationPlugin`.
#[pyclass(module = "cpex_webhook_notification._native", frozen)]
struct NativeNotifier {
    notifier: Notifier,
}

#[pymethods]
impl NativeNotifier {
    /// Loads `config` (JSON or YAML text of the plugin's `config:` mapping).
    #[new]
    #[pyo3(signature = (config, plugin_name=None))]
    fn new(config: &str, plugin_name: Option<&str>) -> PyResult<Self> {
        let notifier = Notifier::from_config_text(config, plugin_name).map_err(to_py)?;
        Ok(NativeNotifier { notifier })
    }

    /// Handles one hook call; returns `(event name or None, queued)`.
    #[pyo3(signature = (hook, payload, context=None))]
    fn invoke(
        &self,
        hook: &str,
        payload: &str,
        context: Option<&str>,
    ) -> PyResult<(Option<&'static str>, bool)> {
        let hook = Hook::from_name(hook).map_err(to_py)?;
        let payload = parse(Some(payload), "payload")?;
        let context = parse(context, "context")?;
        let submission = self.notifier.invoke(hook, payload, &context).map_err(to_py)?;
        Ok((submission.event.map(Event::name), submission.queued))
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

    /// Waits (without the GIL) until nothing is pending or `timeout` seconds pass.
    fn flush(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout.max(0.0));
        py.detach(|| self.notifier.flush(timeout))
    }

    /// Closes (without the GIL) within `timeout` seconds; false if deliveries were abandoned.
    fn close(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout.max(0.0));
        py.detach(|| self.notifier.close(timeout).is_ok())
    }

    /// The delivery stats as JSON text.
    fn stats_json(&self) -> String {
        self.notifier.stats().to_json()
    }

    /// The config's `shutdown_timeout` in seconds.
    #[getter]
    fn shutdown_timeout(&self) -> f64 {
        self.notifier.shutdown_timeout().as_secs_f64()
    }

    /// Whether `{{payload}}` is used, so the Python side can skip serialising big payloads.
    #[getter]
    fn include_payload_data(&self) -> bool {
        self.notifier.includes_payload_data()
    }
}

impl Drop for NativeNotifier {
    /// A plugin collected without `shutdown()` still gets its `shutdown_timeout`: wait for
    /// pending deliveries without the GIL, which their log records need.
    fn drop(&mut self) {
        if !self.notifier.is_closed() {
            let (notifier, timeout) = (&self.notifier, self.notifier.shutdown_timeout());
            Python::attach(|py| py.detach(|| notifier.close(timeout).is_ok()));
        }
    }
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
    let py = m.py();
    m.add("WebhookError", py.get_type::<WebhookError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ParseError", py.get_type::<ParseError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}
