//! Host data from Python without JSON text: the few fields of a hook's payload and context
//! that classification needs, read by attribute (cpex objects) or by key (dicts of their JSON
//! shape), their values converted directly when they are plain data (dict, list, tuple, str,
//! int, float, bool, None). Anything else — a model where plain data was expected, NaN, bytes,
//! a huge int, deep nesting — makes these return None, and the Python side takes its one other
//! path: the whole documents as JSON (degraded where strict JSON cannot hold them).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use serde_json::{Map, Number, Value};

use crate::events::{Context, Hook};
use crate::trace::Trace;

/// How deep plain data is followed (the JSON parser's limit); deeper goes the JSON way.
const MAX_DEPTH: usize = 64;

/// Plain Python data as JSON, or None for anything else.
pub fn plain(object: &Bound<'_, PyAny>, depth: usize) -> Option<Value> {
    if object.is_none() {
        return Some(Value::Null);
    }
    if let Ok(text) = object.cast::<PyString>() {
        return Some(Value::String(text.to_str().ok()?.to_owned()));
    }
    if let Ok(flag) = object.cast::<PyBool>() {
        return Some(Value::Bool(flag.is_true()));
    }
    if object.is_instance_of::<PyInt>() {
        return match object.extract::<i64>() {
            Ok(n) => Some(n.into()),
            Err(_) => object.extract::<u64>().ok().map(Value::from),
        };
    }
    if let Ok(number) = object.cast::<PyFloat>() {
        return Number::from_f64(number.value()).map(Value::Number);
    }
    if depth >= MAX_DEPTH {
        return None;
    }
    if let Ok(dict) = object.cast::<PyDict>() {
        let mut map = Map::new();
        for (key, value) in dict.iter() {
            let key = key.cast::<PyString>().ok()?.to_str().ok()?.to_owned();
            map.insert(key, plain(&value, depth + 1)?);
        }
        return Some(Value::Object(map));
    }
    let items = |items: &mut dyn Iterator<Item = Bound<'_, PyAny>>| {
        items
            .map(|item| plain(&item, depth + 1))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array)
    };
    if let Ok(list) = object.cast::<PyList>() {
        return items(&mut list.iter());
    }
    if let Ok(tuple) = object.cast::<PyTuple>() {
        return items(&mut tuple.iter());
    }
    None
}

/// Whether `object` is an instance of `module.name`, a class that need not be installed
/// (pydantic and cpex are not, for a plain Python host).
fn instance_of(
    object: &Bound<'_, PyAny>,
    class: &'static PyOnceLock<Option<Py<PyType>>>,
    module: &str,
    name: &str,
) -> PyResult<bool> {
    let py = object.py();
    let class = class.get_or_init(py, || {
        let class = py.import(module).ok()?.getattr(name).ok()?;
        Some(class.cast_into::<PyType>().ok()?.unbind())
    });
    match class {
        Some(class) => object.is_instance(class.bind(py)),
        None => Ok(false),
    }
}

/// Whether `object` is a pydantic model.
fn is_model(object: &Bound<'_, PyAny>) -> PyResult<bool> {
    static BASE_MODEL: PyOnceLock<Option<Py<PyType>>> = PyOnceLock::new();
    instance_of(object, &BASE_MODEL, "pydantic", "BaseModel")
}

/// What classification needs of a hook's payload: its subject, and for `tool_post_invoke`
/// the result's error fields. `Ok(None)`: not plain data.
pub fn hook_payload(hook: Hook, payload: &Bound<'_, PyAny>) -> PyResult<Option<Value>> {
    let py = payload.py();
    let field = match hook {
        Hook::ToolPreInvoke | Hook::ToolPostInvoke => intern!(py, "name"),
        Hook::PromptPreFetch | Hook::PromptPostFetch => intern!(py, "prompt_id"),
        Hook::ResourcePreFetch | Hook::ResourcePostFetch => intern!(py, "uri"),
    };
    let Some(subject) = member(payload, field)?.and_then(|v| plain(&v, 0)) else {
        return Ok(None);
    };
    let mut doc = Map::new();
    doc.insert(hook.subject_field().to_owned(), subject);
    if hook == Hook::ToolPostInvoke {
        let result = member(payload, intern!(py, "result"))?;
        let Some(fields) = error_fields(result.as_ref())? else {
            return Ok(None);
        };
        doc.insert("result".to_owned(), fields);
    }
    Ok(Some(Value::Object(doc)))
}

/// `object[name]` of a dict, else `object.name`; None when it has no such member.
fn member<'py>(
    object: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match object.cast::<PyDict>() {
        Ok(dict) => dict.get_item(name),
        Err(_) => Ok(object.getattr(name).ok()),
    }
}

/// A tool result's `isError`, `is_error` and `error` (those not None), and its `content`
/// when it failed (what `events::tool_error` reads); null for a result that is neither a
/// dict nor a model.
fn error_fields<'py>(result: Option<&Bound<'py, PyAny>>) -> PyResult<Option<Value>> {
    let Some(result) = result else {
        return Ok(Some(Value::Null));
    };
    let py = result.py();
    let dict = result.cast::<PyDict>().ok();
    if dict.is_none() && !is_model(result)? {
        return Ok(Some(Value::Null));
    }
    let get = |key: &Bound<'py, PyString>| -> PyResult<Option<Bound<'py, PyAny>>> {
        let value = match dict {
            Some(dict) => dict.get_item(key)?,
            None => result.getattr(key).ok(),
        };
        Ok(value.filter(|v| !v.is_none()))
    };
    let mut fields = Map::new();
    let mut failed = false;
    for key in [
        intern!(py, "isError"),
        intern!(py, "is_error"),
        intern!(py, "error"),
    ] {
        if let Some(value) = get(key)? {
            let key = key.to_str()?;
            failed |= key != "error" && value.is_truthy()?;
            let Some(value) = plain(&value, 0) else {
                return Ok(None);
            };
            fields.insert(key.to_owned(), value);
        }
    }
    if failed {
        let content = match get(intern!(py, "content"))? {
            Some(content) => plain(&content, 0),
            None => Some(Value::Null),
        };
        let Some(content) = content else { return Ok(None) };
        fields.insert("content".to_owned(), content);
    }
    Ok(Some(Value::Object(fields)))
}

/// The request identity and any violation (from the plugin context's state, else the global
/// context's; see `Context::from_json`), from a `PluginContext`, a `GlobalContext` or a dict
/// of either's JSON shape. `Ok(None)`: not plain data (a `PluginViolation` model among
/// them: the shell dumps it).
pub fn hook_context(context: &Bound<'_, PyAny>) -> PyResult<Option<Context>> {
    let py = context.py();
    if context.is_none() {
        return Ok(Some(Context::default()));
    }
    if context.is_instance_of::<PyDict>() {
        // A dict of the wrong shape goes the JSON way too, which reports it.
        return Ok(plain(context, 0).and_then(|doc| Context::from_json(&doc).ok()));
    }
    let mut violation = None;
    let mut global = context.clone();
    if is_plugin_context(context)? {
        violation = state_violation(context)?;
        global = context.getattr(intern!(py, "global_context"))?;
    }
    if violation.is_none() {
        violation = state_violation(&global)?;
    }
    let field = |name| -> PyResult<Option<Value>> { Ok(member(&global, name)?.and_then(|v| plain(&v, 0))) };
    let (Some(request_id), Some(user), Some(tenant_id), Some(server_id)) = (
        field(intern!(py, "request_id"))?,
        field(intern!(py, "user"))?,
        field(intern!(py, "tenant_id"))?,
        field(intern!(py, "server_id"))?,
    ) else {
        return Ok(None);
    };
    let violation = match violation.map(|v| plain(&v, 0)) {
        Some(None) => return Ok(None),
        Some(Some(value)) => Some(value),
        None => None,
    };
    Ok(Some(Context {
        trace: cpex_trace(py)?,
        ..Context::new(request_id, user, tenant_id, server_id, violation)
    }))
}

/// The request's trace as cpex knows it (its `current_trace_id` context variable, which the
/// gateway's observability sets), when cpex is installed and a valid id is set.
fn cpex_trace(py: Python<'_>) -> PyResult<Option<Trace>> {
    static CURRENT_TRACE_ID: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    let variable = CURRENT_TRACE_ID.get_or_init(py, || {
        let module = py.import("cpex.framework.observability").ok()?;
        Some(module.getattr("current_trace_id").ok()?.unbind())
    });
    let Some(variable) = variable else { return Ok(None) };
    let id = variable.bind(py).call_method0(intern!(py, "get"))?;
    let id = id
        .cast::<PyString>()
        .ok()
        .and_then(|s| s.to_str().ok().map(str::to_owned));
    Ok(id.and_then(|id| Trace::from_host(None, Some(&id), None)))
}

/// Whether `context` is a cpex `PluginContext`.
fn is_plugin_context(context: &Bound<'_, PyAny>) -> PyResult<bool> {
    static PLUGIN_CONTEXT: PyOnceLock<Option<Py<PyType>>> = PyOnceLock::new();
    instance_of(context, &PLUGIN_CONTEXT, "cpex.framework", "PluginContext")
}

/// `context.state.get("violation")`, unless None.
fn state_violation<'py>(context: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = context.py();
    let Some(state) = member(context, intern!(py, "state"))?.filter(|s| !s.is_none()) else {
        return Ok(None);
    };
    let key = intern!(py, "violation");
    let violation = match state.cast::<PyDict>() {
        Ok(state) => state.get_item(key)?,
        Err(_) => Some(state.call_method1(intern!(py, "get"), (key,))?),
    };
    Ok(violation.filter(|v| !v.is_none()))
}
