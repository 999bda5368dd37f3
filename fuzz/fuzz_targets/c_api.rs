//! Arbitrary bytes through the C entry points of a plugin whose one webhook is disabled (so
//! nothing is ever sent anywhere): every call returns a status and, on failure, a message;
//! nothing panics across the boundary.
#![no_main]

use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use webhook_notification::ffi::*;

struct Plugin(*mut WebhookPlugin);
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

fn plugin() -> *mut WebhookPlugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let config = CString::new("webhooks: [{url: 'http://127.0.0.1:9/', enabled: false, events: [violation, tool_success, tool_error]}]").unwrap();
            let mut out = ptr::null_mut();
            let rc = unsafe { webhook_plugin_new(config.as_ptr(), ptr::null(), &mut out, ptr::null_mut()) };
            assert_eq!(rc, WEBHOOK_OK);
            Plugin(out)
        })
        .0
}

fn c(bytes: &[u8]) -> CString {
    CString::new(bytes.iter().copied().filter(|b| *b != 0).collect::<Vec<u8>>()).unwrap()
}

fn checked(rc: i32, error: *mut c_char) {
    assert!(rc != WEBHOOK_PANIC, "a panic reached the boundary");
    assert_eq!(rc == WEBHOOK_OK, error.is_null(), "status {rc} and message disagree");
    unsafe { webhook_string_free(error) };
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(4, |b| *b == 0xff).collect();
    let part = |i: usize| c(parts.get(i).copied().unwrap_or_default());
    let (hook, payload, context, extra) = (part(0), part(1), part(2), part(3));
    let p = plugin();
    let mut error = ptr::null_mut();
    let mut result = ptr::null_mut();
    let rc = unsafe { webhook_plugin_invoke(p, hook.as_ptr(), payload.as_ptr(), context.as_ptr(), &mut result, &mut error) };
    checked(rc, error);
    unsafe { webhook_string_free(result) };
    let mut error = ptr::null_mut();
    let rc = unsafe { webhook_plugin_notify(p, hook.as_ptr(), context.as_ptr(), payload.as_ptr(), extra.as_ptr(), &mut error) };
    checked(rc, error);
});
