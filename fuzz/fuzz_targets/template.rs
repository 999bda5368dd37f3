//! Any text as a payload template: it compiles or is refused; what compiles renders, with
//! hostile values, either an error or text that — when the template's own text is JSON
//! around its `{{ }}` — is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use webhook_notification::Template;

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    let Ok(template) = Template::compile(&source) else { return };
    let vars = json!({"user": "a\"b\\c\n}{{", "violation": {"reason": "\u{1}\u{2}", "details": [1, {"x": null}]},
                      "metadata": {}, "event": "violation", "payload": 1.5e300});
    let Ok(rendered) = template.render(|name| vars.get(name)) else { return };
    let sample = template.render(|_| None);
    // A template that renders JSON with every value missing renders JSON with any values.
    if sample.is_ok_and(|s| serde_json::from_str::<serde_json::Value>(&s).is_ok()) {
        assert!(serde_json::from_str::<serde_json::Value>(&rendered).is_ok(), "{source:?} rendered {rendered:?}");
    }
});
