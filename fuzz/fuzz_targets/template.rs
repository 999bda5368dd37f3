//! Any text as a payload template: it compiles or is refused; what compiles renders, with
//! hostile values, text that is JSON whenever the template proved at compile time that it
//! renders JSON (its text is JSON around its `{{ }}`), and the proof agrees with a rendering
//! with every value missing; a template that says it renders one line does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use webhook_notification::Template;

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    let Ok(template) = Template::compile(&source) else { return };
    let vars = json!({"user": "a\"b\\c\n}{{", "violation": {"reason": "\u{1}\u{2}", "details": [1, {"x": null}]},
                      "metadata": {}, "event": "violation", "payload": 1.5e300});
    let rendered = template.render(|name| vars.get(name));
    let sample = template.render(|_| None);
    let is_json = |text: &str| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    assert_eq!(template.renders_json(), is_json(&sample), "{source:?} rendered {sample:?} without values");
    if template.renders_json() {
        assert!(is_json(&rendered), "{source:?} rendered {rendered:?}");
    }
    if template.renders_one_line() {
        assert!(!rendered.contains(['\n', '\r']), "{source:?} rendered {rendered:?} on several lines");
    }
});
