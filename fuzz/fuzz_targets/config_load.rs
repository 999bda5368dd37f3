//! Any text as a plugin config: an error or a config, never a panic, and never an error that
//! quotes a value (a secret) it was given — checked on a marker planted in the seeds
//! (`FUZZ/SECRET`: with its `/` it can never pass for a field or variable name, which errors
//! may show). File paths are quoted on purpose ("cannot read file `…`"), so those are exempt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webhook_notification::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Config::load(&text) {
        let message = e.to_string();
        let quoted = message.contains("FUZZ/SECRET") && !message.contains("cannot read");
        assert!(!quoted, "an error quoted a value: {message}");
    }
});
