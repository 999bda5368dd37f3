//! The C API called as a C host would: statuses, messages, out-parameters and panics.

use super::*;

fn take(s: *mut c_char) -> String {
    assert!(!s.is_null());
    let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    unsafe { webhook_string_free(s) };
    text
}

#[test]
fn a_panic_becomes_a_status_and_a_message() {
    let mut error = ptr::null_mut();
    let code = boundary(&mut error, || panic!("boom"));
    assert_eq!(code, WEBHOOK_PANIC);
    assert!(take(error).contains("boom"));
}

#[test]
fn null_arguments_and_bad_input_get_status_codes() {
    let mut error = ptr::null_mut();
    let mut plugin = ptr::null_mut();
    unsafe {
        assert_eq!(
            webhook_plugin_new(ptr::null(), ptr::null(), &mut plugin, &mut error),
            WEBHOOK_INVALID_ARGUMENT
        );
        assert!(take(error).contains("`config` is NULL"));
        let bad = c"webhooks: [{url: 'https://a/', retry_attempts: 99}]";
        assert_eq!(
            webhook_plugin_new(bad.as_ptr(), ptr::null(), &mut plugin, &mut error),
            WEBHOOK_CONFIG_ERROR
        );
        assert!(take(error).contains("webhooks[0].retry_attempts"));
        assert!(plugin.is_null());
        // A webhook taking tool_error: tool_post_invoke calls are read (a hook no webhook
        // takes is answered before its documents are parsed).
        let config = c"webhooks: [{url: 'http://127.0.0.1:9/', events: [tool_error]}]";
        assert_eq!(
            webhook_plugin_new(config.as_ptr(), ptr::null(), &mut plugin, &mut error),
            WEBHOOK_OK
        );
        assert!(error.is_null());
        let hook = c"tool_post_invoke".as_ptr();
        let code = webhook_plugin_invoke(
            plugin,
            hook,
            c"{bad".as_ptr(),
            ptr::null(),
            ptr::null_mut(),
            &mut error,
        );
        assert_eq!(code, WEBHOOK_PARSE_ERROR);
        assert!(take(error).starts_with("parse error: payload_json"));
        let code = webhook_plugin_invoke(
            plugin,
            c"nope".as_ptr(),
            c"{}".as_ptr(),
            ptr::null(),
            ptr::null_mut(),
            &mut error,
        );
        assert_eq!(
            (code, take(error)),
            (
                WEBHOOK_INVALID_ARGUMENT,
                "invalid argument: unknown hook `nope`".into()
            )
        );
        let invalid_utf8 = [0xffu8, 0];
        let code = webhook_plugin_notify(
            plugin,
            invalid_utf8.as_ptr().cast(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            &mut error,
        );
        assert_eq!(code, WEBHOOK_INVALID_ARGUMENT);
        assert!(take(error).contains("UTF-8"));
        let mut result = ptr::null_mut();
        assert_eq!(
            webhook_plugin_invoke(
                plugin,
                hook,
                c"{}".as_ptr(),
                ptr::null(),
                &mut result,
                ptr::null_mut()
            ),
            WEBHOOK_OK
        );
        let result: Value = serde_json::from_str(&take(result)).unwrap();
        assert_eq!(result["metadata"]["webhook_event"], "tool_success");
        assert_eq!(webhook_plugin_close(plugin, 0, &mut error), WEBHOOK_OK);
        assert_eq!(
            webhook_plugin_invoke(
                plugin,
                hook,
                c"{}".as_ptr(),
                ptr::null(),
                ptr::null_mut(),
                ptr::null_mut()
            ),
            WEBHOOK_CLOSED
        );
        webhook_plugin_free(plugin);
        webhook_plugin_free(ptr::null_mut());
        assert_eq!(
            webhook_plugin_flush(ptr::null_mut(), 0, &mut error),
            WEBHOOK_INVALID_ARGUMENT
        );
        assert!(take(error).contains("NULL"));
    }
}

fn stats_of(plugin: *mut WebhookPlugin) -> Value {
    let mut stats = ptr::null_mut();
    assert_eq!(
        unsafe { webhook_plugin_stats(plugin, &mut stats, ptr::null_mut()) },
        WEBHOOK_OK
    );
    serde_json::from_str(&take(stats)).unwrap()
}

#[test]
fn attached_handles_share_one_engine_and_freeing_one_only_detaches() {
    // A refused port and a long retry delay: the delivery waits to retry, pending.
    let config = c"webhooks: [{url: 'http://127.0.0.1:9/x', events: [tool_error], retry_delay: 60000}]";
    let name = c"attach-test";
    let (mut first, mut second) = (ptr::null_mut(), ptr::null_mut());
    unsafe {
        assert_eq!(
            webhook_plugin_attach(config.as_ptr(), name.as_ptr(), &mut first, ptr::null_mut()),
            WEBHOOK_OK
        );
        assert_eq!(
            webhook_plugin_attach(config.as_ptr(), name.as_ptr(), &mut second, ptr::null_mut()),
            WEBHOOK_OK
        );
        // A tool_error with no context, violation or metadata.
        let notify = |p| {
            webhook_plugin_notify(
                p,
                c"tool_error".as_ptr(),
                ptr::null(),
                ptr::null(),
                ptr::null(),
                ptr::null_mut(),
            )
        };
        let code = notify(first);
        assert_eq!(code, WEBHOOK_OK);
        assert_eq!(
            stats_of(second)["pending"],
            1,
            "the second handle sees the first's event"
        );
        webhook_plugin_free(first);
        // Detached, not closed: the engine keeps the delivery and takes new events.
        assert_eq!(stats_of(second)["pending"], 1);
        let code = notify(second);
        assert_eq!(code, WEBHOOK_OK);
        assert_eq!(stats_of(second)["pending"], 2);
        // Closing an attached handle detaches it: later events are refused on it alone.
        assert_eq!(webhook_plugin_close(second, 0, ptr::null_mut()), WEBHOOK_OK);
        let code = notify(second);
        assert_eq!(code, WEBHOOK_CLOSED);
        webhook_plugin_free(second);
    }
}

/// Deterministic pseudo-random byte strings (xorshift), NUL-terminated, biased towards
/// JSON/YAML punctuation so the parsers see near-misses too.
fn arbitrary_inputs(count: usize) -> Vec<CString> {
    let alphabet = b"{}[]:,\"\\ \n\t-0123456789abcnulltrue\xff\xc3\x80{{}}$";
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            CString::new(bytes).expect("the alphabet has no NUL")
        })
        .collect()
}

#[test]
fn any_bytes_through_any_argument_get_a_status_and_a_message() {
    let mut plugin = ptr::null_mut();
    unsafe {
        webhook_plugin_new(
            c"webhooks: []".as_ptr(),
            ptr::null(),
            &mut plugin,
            ptr::null_mut(),
        )
    };
    let expect = |code: i32, error: *mut c_char| {
        assert!((WEBHOOK_OK..=WEBHOOK_CLOSED).contains(&code), "status {code}");
        assert_eq!(code == WEBHOOK_OK, error.is_null());
        if !error.is_null() {
            take(error);
        }
    };
    for input in arbitrary_inputs(3000) {
        let s = input.as_ptr();
        let (mut error, mut other) = (ptr::null_mut(), ptr::null_mut());
        unsafe {
            expect(webhook_plugin_new(s, s, &mut other, &mut error), error);
            webhook_plugin_free(other);
            expect(
                webhook_plugin_invoke(
                    plugin,
                    s,
                    c"{}".as_ptr(),
                    ptr::null(),
                    ptr::null_mut(),
                    &mut error,
                ),
                error,
            );
            let hook = c"tool_post_invoke".as_ptr();
            expect(
                webhook_plugin_invoke(plugin, hook, s, c"{}".as_ptr(), ptr::null_mut(), &mut error),
                error,
            );
            expect(
                webhook_plugin_invoke(plugin, hook, c"{}".as_ptr(), s, ptr::null_mut(), &mut error),
                error,
            );
            expect(webhook_plugin_notify(plugin, s, s, s, s, &mut error), error);
            expect(
                webhook_plugin_notify(plugin, c"violation".as_ptr(), s, s, s, &mut error),
                error,
            );
        }
    }
    unsafe { webhook_plugin_free(plugin) };
}

#[test]
fn version_matches_the_crate() {
    let v = unsafe { CStr::from_ptr(webhook_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    assert_eq!(webhook_abi_version(), WEBHOOK_ABI_VERSION);
}
