//! Config loading end to end: defaults, bounds, and errors that name the field.

use reqwest::header::AUTHORIZATION;
use serde_json::json;

use super::retry::RetryPolicy;
use super::webhook::derived_id;
use super::*;

/// Each config text fails to load naming `field`, with a message containing `message`; lists
/// every case that does not.
fn assert_errors(cases: &[(&str, &str, &str)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, field, message)| {
            let (f, m) = err(text);
            (f != *field || !m.contains(message)).then(|| format!("{text}\n  got `{f}`: {m}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn err(text: &str) -> (String, String) {
    match Config::load(text).unwrap_err() {
        Error::Config { field, message } => (field, message),
        other => panic!("not a config error: {other}"),
    }
}

#[test]
fn defaults_match_the_original() {
    let c = Config::load("webhooks:\n  - url: https://h.example/x\n").unwrap();
    let w = &c.webhooks[0];
    assert_eq!(w.events, vec![Event::Violation]);
    let exponential = RetryPolicy::Exponential {
        attempts: 3,
        base: Duration::from_millis(1000),
    };
    assert_eq!((&w.retry, w.timeout), (&exponential, Duration::from_secs(10)));
    assert_eq!(
        (w.enabled, w.max_concurrency, w.queue_capacity),
        (true, 32, 10_000)
    );
    assert_eq!((w.max_rate, w.id.len()), (None, 12));
    let breaker = BreakerSettings {
        failures: 5,
        cooldown: Duration::from_secs(60),
    };
    assert_eq!(w.breaker, Some(breaker));
    assert_eq!(
        (c.max_payload_size, c.include_payload_data, c.dead_letter_capacity),
        (1000, false, 10_000)
    );
    assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
    assert_eq!(w.redacted_url, "https://h.example/…");
}

#[test]
fn empty_config_has_no_webhooks() {
    assert!(Config::load("").unwrap().webhooks.is_empty());
    assert!(Config::load("{}").unwrap().webhooks.is_empty());
}

#[test]
fn each_bad_input_names_its_field() {
    let cases = [
        ("webhooks: [{url: 'https://a/', bogus: 1}]", "webhooks[0].bogus", "unknown field `bogus`"),
        ("webhooks: [{url: 'https://a/', retry_attempts: 11}]", "webhooks[0].retry_attempts", "out of range"),
        ("webhooks: [{url: 'https://a/', retry_delay: 99}]", "webhooks[0].retry_delay", "out of range"),
        ("webhooks: [{url: 'https://a/', timeout: 0}]", "webhooks[0].timeout", "out of range"),
        ("webhooks: [{url: 'https://a/', events: [nope]}]", "webhooks[0].events[0]", "unknown value, expected one of `violation`"),
        ("webhooks: [{url: 'https://a/', authentication: {type: oauth}}]", "webhooks[0].authentication.type", "unknown value"),
        ("webhooks: [{url: 'https://a/', authentication: {type: bearer}}]", "webhooks[0].authentication.token", "required"),
        ("webhooks: [{url: 'https://a/', authentication: {type: api_key}}]", "webhooks[0].authentication.api_key", "required"),
        ("webhooks: [{url: 'https://a/', authentication: {type: hmac}}]", "webhooks[0].authentication.hmac_secret", "required"),
        ("webhooks: [{url: 'https://a/', authentication: {type: hmac, hmac_secret: s, hmac_algorithm: md5}}]", "webhooks[0].authentication.hmac_algorithm", "unknown algorithm"),
        ("webhooks: [{url: 'https://a/', authentication: {type: standard_webhooks, secrets: [whsec_QUJD, 'whsec_!!']}}]", "webhooks[0].authentication.secrets[1]", "whsec_"),
        ("webhooks: [{url: 'ftp://a/'}]", "webhooks[0].url", "http"),
        ("webhooks: [{url: 'https://a/', retry_attempts: 2, retry_schedule: [1s]}]", "webhooks[0].retry_schedule", "not both"),
        ("webhooks: [{url: 'https://a/', retry_schedule: [1s, 2s, 3s, 4s, 5s, 6s, 7s, 8s, 9s, 10s, 11s, 12s, 13s, 14s, 15s, 16s, 17s, 18s, 19s, 20s, 21s]}]", "webhooks[0].retry_schedule", "at most 20"),
        ("webhooks: [{url: 'https://a/', retry_schedule: [1s, soon]}]", "webhooks[0].retry_schedule[1]", "not a duration"),
        ("webhooks: [{url: 'https://a/', retry_schedule: [25h]}]", "webhooks[0].retry_schedule[0]", "24h"),
        ("webhooks: [{url: 'https://a/', id: x}, {url: 'https://b/', id: x}]", "webhooks[1].id", "already"),
        ("webhooks: [{url: 'https://a/'}, {url: 'https://a/'}]", "webhooks[1].id", "explicit ids"),
        ("webhooks: [{url: 'https://a/', id: 'a b'}]", "webhooks[0].id", "A-Z"),
        ("webhooks: [{url: 'https://a/', max_rate: 0}]", "webhooks[0].max_rate", "more than 0"),
        ("webhooks: [{url: 'https://a/', queue_capacity: 0}]", "webhooks[0].queue_capacity", "out of range"),
        ("webhooks: [{url: 'https://a/', circuit_breaker: {failures: 0}}]", "webhooks[0].circuit_breaker.failures", "out of range"),
        ("outbox: {type: floppy}", "outbox.type", "expected one of `memory`, `disk`, `redis`"),
        ("outbox: {type: disk, url: 'redis://x'}", "outbox.url", "only for `type: redis`"),
        ("outbox: {type: redis, url: 'http://x'}", "outbox.url", "must start with"),
        ("outbox: {type: redis}", "outbox.url", "required for `type: redis` (or set REDIS_URL)"),
        ("outbox: {type: redis, url: 'redis://x', key: ''}", "outbox.key", "non-empty"),
        ("outbox: {type: redis, url: 'redis://x', claim_after: 0}", "outbox.claim_after", ""),
        ("outbox: {type: redis, url: 'redis://x', key: 'a{b}'}", "outbox.key", "braces"),
        ("outbox: {type: redis, url: ['redis://a', 'redis://b']}", "outbox.url", "needs `cluster: true`"),
        ("outbox: {type: redis, cluster: true, url: ['redis://a', 'http://b']}", "outbox.url", "must start with"),
        ("outbox: {type: redis, cluster: true, url: 'unix:///tmp/r.sock'}", "outbox.url", "of a cluster"),
        ("outbox: {type: redis, cluster: true, url: []}", "outbox.url", "required"),
        ("outbox: {type: disk, path: /tmp/x, cluster: true}", "outbox.cluster", "only for `type: redis`"),
        ("outbox: {type: disk}", "outbox.path", "required"),
        ("outbox: {type: memory, path: /tmp/x}", "outbox.path", "only for"),
        ("outbox: {dead_letter_capacity: -1}", "outbox.dead_letter_capacity", "invalid value"),
        ("webhooks: [{url: 'not a url'}]", "webhooks[0].url", "not a valid URL"),
        ("webhooks: [{url: 'https://a/', headers: {X-A: \"v\\r\\nX-B: 1\"}}]", "webhooks[0].headers.X-A", "CR/LF"),
        ("payload_templates: {violation: '{\"a\": {{user}'}", "payload_templates.violation", "line 1"),
        ("payload_templates: {violation: '{\"a\": \"{{user}}\"} x'}", "payload_templates.violation", "valid JSON"),
        ("payload_templates: {nope: '{}'}", "payload_templates.nope", "unknown event `nope`"),
        ("queue_capacity: 0", "queue_capacity", "out of range"),
        ("webhooks: [{url: 'https://a/${env.WEBHOOK_TEST_SURELY_UNSET}'}]", "webhooks[0].url", "WEBHOOK_TEST_SURELY_UNSET"),
        ("payload_template_files: {violation: /nonexistent/t.json}", "payload_template_files.violation", "cannot read"),
        ("payload_template_files: {violation: /dev/zero}", "payload_template_files.violation", "not a regular file"),
        ("webhooks: [{url: 'https://a/', authentication: {type: bearer, token: '${file:/dev/zero}'}}]", "webhooks[0].authentication.token", "not a regular file"),
    ];
    assert_errors(&cases);
}

/// No error quotes a value from the config, whatever was typed where: numbers, booleans,
/// strings for structs, lists for strings, secrets in the wrong field, `${env}` values.
#[test]
fn no_error_quotes_a_config_value() {
    std::env::set_var("WEBHOOK_CFG_SECRET_ENV", "ENVSECRET77");
    let cases = [
        "webhooks: [{url: 'https://a/', authentication: {type: api_key, api_key: [SECRETLIST1]}}]",
        "webhooks: [{url: 'https://a/', authentication: 'Bearer SECRET_TOKEN_123'}]",
        "webhooks: [{url: 'https://a/', authentication: {type: standard_webhooks, secrets: whsec_SECRETWHSEC}}]",
        "webhooks: 'https://hooks.example/SECRETPATH?token=SECRETQ'",
        "webhooks: ['https://hooks.example/SECRETPATH?token=SECRETQ']",
        "webhooks: [{url: 987654321012}]",
        "webhooks: [{url: 'https://a/', retry_attempts: 987654321012}]",
        "webhooks: [{url: 'https://a/', retry_attempts: SECRETWORD}]",
        "webhooks: [{url: 'https://a/', enabled: SECRETBOOL}]",
        "webhooks: [{url: 'https://a/', headers: SECRETHEADERS}]",
        "webhooks: [{url: 'https://a/', headers: {X-K: [SECRETH]}}]",
        "webhooks: [{url: 'https://a/', events: SECRETEVENTS}]",
        "webhooks: [{url: 'https://a/', authentication: {type: SECRETTYPE}}]",
        "webhooks: [{url: 'https://a/', authentication: {type: hmac, hmac_secret: s, hmac_algorithm: SECRETALG}}]",
        "webhooks: [{url: 'https://a/', timeout: '${env.WEBHOOK_CFG_SECRET_ENV}'}]",
        "webhooks: [{url: 'https://a/', max_rate: -987654321012}]",
        "webhooks: [{url: 'https://a/', circuit_breaker: SECRETCB}]",
        "queue_capacity: 987654321012",
        "shutdown_timeout: 987654321012",
        "{\"webhooks\": [{\"url\": \"https://a/SECRETJSON\"}], SECRETTRAIL",
    ];
    let secrets = ["SECRET", "987654321012", "ENVSECRET77", "hooks.example"];
    for text in cases {
        let e = Config::load(text).unwrap_err().to_string();
        assert!(!secrets.iter().any(|s| e.contains(s)), "{text}\n  leaks: {e}");
    }
    let (field, message) = err("webhooks: [{url: 'https://a/', authentication: 'Bearer SECRET_TOKEN_123'}]");
    assert_eq!(field, "webhooks[0].authentication");
    assert!(
        message.contains("found string") && message.contains("expected struct"),
        "{message}"
    );
}

/// Found by fuzzing: a URL typed where a key goes was echoed as an unknown field and in
/// the field path. Keys that do not look like names are not shown.
#[test]
fn keys_that_might_be_secrets_are_not_shown() {
    let text = r#"{"webhooks": [{"us://h.example/FUZZ/SECRET", "authentication": {"type": "bearer", "tokenr", "token": 12345}}],ue q"ue_capacity": 5}"#;
    let e = Config::load(text).unwrap_err().to_string();
    assert!(!e.contains("SECRET"), "{e}");
    let (field, message) = err("webhooks: [{url: 'https://a/', 'https://hooks.example/T0/SECRET': 1}]");
    assert!(
        !field.contains("SECRET") && !message.contains("SECRET"),
        "{field}: {message}"
    );
    assert_eq!(field, "webhooks[0].?");
    // Also found by fuzzing: an `${env.` reference, a duplicate key (also inside a key
    // path of YAML's own error) and a template path whose text was a secret.
    for text in [
        "{\"webh/FUZZ/SECRETks\": [{authentication: 1, authentication: 2}], 1: 2}",
        "{\"x/FUZZ/SECRET\", \"x/FUZZ/SECRET\", \"a\": 1}",
        "webhooks: [{url: '${env.X: FUZZ/SECRET}'}]",
        "{webhooks: [{authentication: 1, 'authentication': 2, \"x/FUZZ/SECRET\": 3, \"x/FUZZ/SECRET\": 4}]}",
        "payload_templates: {violation: '{\"a\": {{violation.x/FUZZ/SECRET}}}'}",
    ] {
        let e = Config::load(text).unwrap_err().to_string();
        assert!(!e.contains("SECRET"), "{text}: {e}");
    }
    let (field, message) = err("webhooks: [{url: 'https://a/', bogus_field: 1}]");
    assert_eq!(
        (field.as_str(), message.contains("unknown field `bogus_field`")),
        ("webhooks[0].bogus_field", true)
    );
}

#[test]
fn numeric_credentials_are_taken_as_text() {
    let c = Config::load(
        "webhooks: [{url: 'https://a/', authentication: {type: api_key, api_key: 987654321012}}]",
    )
    .unwrap();
    assert_eq!(c.webhooks[0].headers["x-api-key"], "987654321012");
}

#[test]
fn yaml_flow_mappings_load_and_json_errors_stay_readable() {
    let c = Config::load("{webhooks: [{url: 'https://a/'}]}").unwrap();
    assert_eq!(c.webhooks.len(), 1);
    let c = Config::load(r#"{"webhooks": [{"url": "https://a/"}], "queue_capacity": 5}"#).unwrap();
    assert_eq!(c.webhooks[0].queue_capacity, 5);
    let (_, m) = err(r#"{"webhooks": [{"url": "https://a/"}]"#);
    assert!(m.contains("neither valid JSON") && m.contains("line 1"), "{m}");
}

#[test]
fn urls_need_a_host_and_no_userinfo_or_fragment() {
    for (url, why) in [
        ("http:///SECRET_PATH?token=SECRETQ", "has no host"),
        ("https://?SECRETQ", "host"),
        ("https://user:SECRETPW@h.example/x", "user:password"),
        ("https://h.example/x#SECRETFRAG", "fragment"),
    ] {
        let (field, m) = err(&format!("webhooks: [{{url: '{url}'}}]"));
        assert_eq!(field, "webhooks[0].url");
        assert!(m.contains(why) && !m.contains("SECRET"), "{url}: {m}");
    }
}

#[test]
fn v2_fields_load() {
    let c = Config::load("webhooks: [{url: 'https://a/', id: slack-ops, queue_capacity: 7, retry_schedule: [500ms, 5s, 5m, 2h, 250], max_rate: 0.5, circuit_breaker: {failures: 2, cooldown: 1.5}}, {url: 'https://b/', circuit_breaker: false}]").unwrap();
    let w = &c.webhooks[0];
    assert_eq!(
        (w.id.as_str(), w.queue_capacity, w.max_rate),
        ("slack-ops", 7, Some(0.5))
    );
    let ms = |n| Duration::from_millis(n);
    let schedule = RetryPolicy::Schedule(vec![ms(500), ms(5000), ms(300_000), ms(7_200_000), ms(250)]);
    assert_eq!(w.retry, schedule);
    assert_eq!(
        w.breaker,
        Some(BreakerSettings {
            failures: 2,
            cooldown: ms(1500)
        })
    );
    assert_eq!(c.webhooks[1].breaker, None);
    assert_eq!(c.webhooks[1].id, derived_id("https://b/"));
    let again = Config::load("webhooks: [{url: 'https://b/', circuit_breaker: false}]").unwrap();
    assert_ne!(again.identity, c.identity);
    assert_eq!(
        Config::load("webhooks: [{url: 'https://b/', circuit_breaker: false}]")
            .unwrap()
            .identity,
        again.identity
    );
}

#[test]
fn credentials_never_appear_in_errors_or_debug() {
    let (_, m) = err("webhooks: [{url: 'https://a/', authentication: {type: bearer, token: \"sec\\nret\"}}]");
    assert!(!m.contains("sec"), "{m}");
    let c = Config::load("webhooks: [{url: 'https://a/T0/B1?k=topsecret', authentication: {type: hmac, hmac_secret: topsecret}}, {url: 'https://b/', authentication: {type: bearer, token: topsecret}}]").unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("topsecret"), "{debug}");
}

/// The original plugin's two documented configs load unchanged (URLs aside), and each
/// seed template renders JSON even with hostile values.
#[test]
fn the_seed_configs_load_and_their_templates_render_json() {
    let basic = "webhooks:\n  - url: \"https://hooks.slack.com/services/YOUR/SLACK/WEBHOOK\"\n    events: [\"violation\", \"rate_limit_exceeded\"]\n    authentication:\n      type: \"none\"\n    retry_attempts: 3\n    retry_delay: 1000\n    timeout: 10\n    enabled: true\n";
    let c = Config::load(basic).unwrap();
    assert_eq!(
        c.webhooks[0].events,
        vec![Event::Violation, Event::RateLimitExceeded]
    );
    for (var, value) in [
        ("DEMO_RECEIVER", "https://h"),
        ("SLACK_WEBHOOK_TOKEN", "t"),
        ("WEBHOOK_HMAC_SECRET", "s"),
        ("MONITORING_API_KEY", "k"),
    ] {
        std::env::set_var(var, value);
    }
    let advanced = Config::load(include_str!("../../examples/advanced.yaml")).unwrap();
    assert_eq!(advanced.webhooks.len(), 3);
    let vars = json!({"user": "a\"b\\c\n}", "violation": {"reason": "r\"", "description": "{{x}}", "details": {"q": "\""}}});
    for event in [Event::Violation, Event::RateLimitExceeded] {
        let body = advanced.template(event).render(|name| vars.get(name));
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert!(parsed.to_string().contains("a\\\"b"), "{parsed}");
    }
}

#[test]
fn env_variables_expand_everywhere() {
    std::env::set_var("WEBHOOK_CFG_TEST_TOKEN", "t0k");
    let c = Config::load("webhooks: [{url: 'https://a/${env.WEBHOOK_CFG_TEST_TOKEN}/x', authentication: {type: bearer, token: '${env.WEBHOOK_CFG_TEST_TOKEN}'}}]").unwrap();
    assert_eq!(c.webhooks[0].url.path(), "/t0k/x");
    assert_eq!(c.webhooks[0].headers[AUTHORIZATION], "Bearer t0k");
}

#[test]
fn hostile_inputs_fail_at_load_naming_the_field_never_panicking_or_hanging() {
    // More headers than any receiver needs (the HTTP stack panics past 32,768).
    let headers: Vec<String> = (0..101).map(|i| format!("X-H{i}: v")).collect();
    let text = format!(
        "webhooks: [{{url: 'https://a/', headers: {{{}}}}}]",
        headers.join(", ")
    );
    assert_eq!(err(&text).0, "webhooks[0].headers");
    // Nesting that would take the parsers quadratic time.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (field, message) = err(&format!("webhooks: {deep}"));
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("", "nests deeper than 128 levels")
    );
    assert!(
        Config::load(&format!("default_template: '{}'", "[".repeat(300)))
            .is_err_and(|e| !e.to_string().contains("nests deeper")),
        "brackets inside a quoted string are text, not nesting"
    );
    // A FIFO would block the load forever at open().
    let dir = std::env::temp_dir().join(format!("wn-fifo-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("secret");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let text = format!(
        "webhooks: [{{url: 'https://a/', authentication: {{type: bearer, token: '${{file:{}}}'}}}}]",
        fifo.display()
    );
    let (field, message) = err(&text);
    assert_eq!(field, "webhooks[0].authentication.token");
    assert!(message.contains("not a regular file"), "{message}");
    let text = format!("payload_template_files: {{violation: '{}'}}", fifo.display());
    assert!(err(&text).1.contains("not a regular file"));
    // A CA file whose PEM envelope holds no valid certificate.
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = format!(
        "webhooks: [{{url: 'https://a/', tls: {{ca_file: '{}'}}}}]",
        ca.display()
    );
    assert_eq!(err(&text).0, "webhooks[0].tls.ca_file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn credential_headers_are_marked_sensitive_by_name() {
    let text = "webhooks: [{url: 'https://a/', authentication: {type: api_key, api_key: k, api_key_header: X-Tenant-Pass},
      headers: {Authorization: a, Cookie: c, X-Api-Key: x, X-Auth-User: u, X-My-Token: t, X-Tenant-Pass: p, X-Trace: plain}}]";
    let c = Config::load(text).unwrap();
    let headers = &c.webhooks[0].headers;
    for name in [
        "authorization",
        "cookie",
        "x-api-key",
        "x-auth-user",
        "x-my-token",
        "x-tenant-pass",
    ] {
        assert!(headers[name].is_sensitive(), "{name}");
    }
    assert!(!headers["x-trace"].is_sensitive());
}

#[test]
fn a_proxy_named_by_a_denied_address_is_a_config_error() {
    let text = "network: {deny_private: true}\nwebhooks: [{url: 'https://a.example/', proxy: 'http://127.0.0.1:3128'}]";
    let (field, message) = err(text);
    assert_eq!(
        (field.as_str(), message.as_str()),
        ("webhooks[0].proxy", crate::network::DENIED)
    );
    let allowed = "webhooks: [{url: 'https://a.example/', proxy: 'http://127.0.0.1:3128'}]";
    assert!(
        Config::load(allowed).is_ok(),
        "without deny_private loopback is allowed"
    );
}

#[test]
fn an_x509_v1_client_certificate_is_named_as_such_not_as_a_key_mismatch() {
    let dir = std::env::temp_dir().join(format!("wn-v1-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&["genrsa", "-out", "key.pem", "2048"]);
    openssl(&[
        "req",
        "-new",
        "-key",
        "key.pem",
        "-subj",
        "/CN=client",
        "-out",
        "c.csr",
    ]);
    // `x509 -req` without extensions issues a version 1 certificate.
    openssl(&[
        "x509", "-req", "-in", "c.csr", "-signkey", "key.pem", "-days", "2", "-out", "cert.pem",
    ]);
    let text = format!(
        "webhooks: [{{url: 'https://a/', tls: {{client_cert_file: '{}', client_key_file: '{}'}}}}]",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    let (field, message) = err(&text);
    assert_eq!(field, "webhooks[0].tls.client_cert_file");
    assert!(message.contains("X.509 v1"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn alerting_fields_load_with_their_defaults_and_bounds() {
    let c = Config::load(
        "severity: {rate_limit_exceeded: critical}
webhooks:
  - url: https://hooks.slack.example/x
    format: slack
    match: {tool: ['search*', fetch], tenant: acme}
    exclude: {user: '*@test.example.com'}
    min_severity: warning
    digest: {group_by: [event, tool, metadata.region], group_interval: 30s, threshold: {count: 10, window: 1m}}
  - url: https://events.pd.example/v2/enqueue
    format: pagerduty
    routing_key: R0UT1NGKEY
    digest: {}",
    )
    .unwrap();
    assert_eq!(
        c.severities.of(Event::RateLimitExceeded),
        crate::severity::Severity::Critical
    );
    let slack = &c.webhooks[0];
    assert_eq!(
        slack.max_rate,
        Some(1.0),
        "Slack takes about one message a second"
    );
    assert!(slack.alerting.routes());
    let digest = slack.alerting.digest.as_ref().unwrap();
    assert_eq!(digest.group_by.len(), 3);
    assert_eq!(
        (digest.group_wait, digest.group_interval),
        (Duration::ZERO, Duration::from_secs(30))
    );
    assert_eq!(
        digest.threshold,
        Some(Threshold {
            count: 10,
            window: Duration::from_secs(60)
        })
    );
    let pd = c.webhooks[1].alerting.digest.as_ref().unwrap();
    assert_eq!(
        (pd.resolve_after, pd.max_groups, pd.samples),
        (Duration::from_secs(300), 10_000, 3)
    );
    assert_eq!(c.webhooks[1].max_rate, None);
    assert!(!format!("{:?}", c.webhooks[1]).contains("R0UT1NG"));
    // DESIGN's upper bound, written in days, loads.
    let week = Config::load("webhooks: [{url: 'https://a/', digest: {resolve_after: 7d}}]").unwrap();
    let digest = week.webhooks[0].alerting.digest.as_ref().unwrap();
    assert_eq!(digest.resolve_after, Duration::from_secs(7 * 86_400));
    let plain = Config::load("webhooks: [{url: 'https://a/', format: teams}]").unwrap();
    assert!(
        !plain.webhooks[0].alerting.routes(),
        "a format alone needs no alerting stage"
    );
}

#[test]
fn bad_alerting_fields_name_the_field() {
    let cases = [
        (
            "webhooks: [{url: 'https://a/', format: pagerduty}]",
            "webhooks[0].routing_key",
            "is required",
        ),
        (
            "webhooks: [{url: 'https://a/', routing_key: k}]",
            "webhooks[0].routing_key",
            "only for format: pagerduty",
        ),
        (
            "webhooks: [{url: 'https://a/', format: telegram}]",
            "webhooks[0].format",
            "unknown value",
        ),
        (
            "webhooks: [{url: 'https://a/', match: {toll: x}}]",
            "webhooks[0].match.toll",
            "not a field",
        ),
        (
            "webhooks: [{url: 'https://a/', exclude: {user: []}}]",
            "webhooks[0].exclude.user",
            "lists no glob",
        ),
        (
            "webhooks: [{url: 'https://a/', min_severity: fatal}]",
            "webhooks[0].min_severity",
            "unknown value",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {group_by: [region]}}]",
            "webhooks[0].digest.group_by[0]",
            "dotted path",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {group_wait: 2h}}]",
            "webhooks[0].digest.group_wait",
            "out of range",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {group_interval: 50ms}}]",
            "webhooks[0].digest.group_interval",
            "out of range",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {resolve_after: 8d}}]",
            "webhooks[0].digest.resolve_after",
            "out of range",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {resolve_after: 8w}}]",
            "webhooks[0].digest.resolve_after",
            "not a duration",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {resolve_after: 700000000}}]",
            "webhooks[0].digest.resolve_after",
            "out of range",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {threshold: {count: 0, window: 1s}}}]",
            "webhooks[0].digest.threshold.count",
            "out of range",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {threshold: {count: 2}}}]",
            "webhooks[0].digest.threshold",
            "missing field `window`",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {max_groups: 0}}]",
            "webhooks[0].digest.max_groups",
            "out of range",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {samples: 21}}]",
            "webhooks[0].digest.samples",
            "out of range",
        ),
        (
            "webhooks: [{url: 'https://a/', digest: {groups: 1}}]",
            "webhooks[0].digest.groups",
            "unknown field `groups`",
        ),
        (
            "severity: {tool_eror: info}",
            "severity.tool_eror",
            "unknown event",
        ),
        (
            "severity: {tool_error: loud}",
            "severity.tool_error",
            "unknown value",
        ),
    ];
    assert_errors(&cases);
}

#[test]
fn redis_tls_fields_are_checked_at_load() {
    let cases = [
        (
            "outbox: {type: redis, url: 'redis://h/', tls: {ca_file: Cargo.toml}}",
            "outbox.tls",
            "needs a rediss:// url",
        ),
        (
            "outbox: {type: disk, path: /tmp/x, tls: {ca_file: Cargo.toml}}",
            "outbox.tls",
            "only for `type: redis`",
        ),
        (
            "outbox: {type: redis, url: 'rediss://h/', tls: {ca_file: /no/such.pem}}",
            "outbox.tls.ca_file",
            "cannot read",
        ),
        (
            "outbox: {type: redis, url: 'rediss://h/', tls: {ca_file: Cargo.toml}}",
            "outbox.tls.ca_file",
            "is not PEM",
        ),
        (
            "outbox: {type: redis, url: 'rediss://h/', tls: {client_cert_file: Cargo.toml}}",
            "outbox.tls.client_key_file",
            "is required",
        ),
    ];
    assert_errors(&cases);
}

#[test]
fn a_redis_cluster_takes_a_list_of_seeds_and_a_single_node_one_url() {
    let seeds =
        "outbox: {type: redis, cluster: true, url: ['redis://10.0.0.1:6379', 'redis://10.0.0.2:6379']}";
    let OutboxConfig::Redis(outbox) = Config::load(seeds).unwrap().outbox else {
        panic!("a redis outbox")
    };
    assert!(outbox.cluster);
    assert_eq!(outbox.urls.len(), 2);
    let OutboxConfig::Redis(outbox) = Config::load("outbox: {type: redis, url: 'redis://h/'}")
        .unwrap()
        .outbox
    else {
        panic!("a redis outbox")
    };
    assert!(!outbox.cluster);
    assert_eq!(outbox.urls, vec![super::outbox::RedisUrl("redis://h/".into())]);
}
