//! Network and TLS controls against real servers on 127.0.0.1 only: a TLS receiver that
//! requires a client certificate (CA and certificates generated here), a recording proxy,
//! the SSRF guard, and `${file:}` secrets. Nothing is ever sent off the loopback: denied
//! destinations are refused before any connection.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use webhook_notification::DENIED;
use webhook_notification::{Error, Event, Notifier};

use common::pki::Pki;
use common::receiver::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(20);

/// An HTTPS receiver on 127.0.0.1 that requires a client certificate signed by the CA;
/// counts the requests that made it through the handshake.
struct TlsReceiver {
    port: u16,
    served: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl TlsReceiver {
    fn start(pki: &Pki) -> TlsReceiver {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server.1.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![CertificateDer::from(pki.server.0.der().to_vec())], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&served);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, count) = (acceptor.clone(), Arc::clone(&count));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut tls = BufReader::new(tls);
                    // One HTTP/1.1 request at a time: headers, a Content-Length body, a 200.
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if tls.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if tls.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        count.fetch_add(1, SeqCst);
                        let _ = tls
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                });
            }
        });
        TlsReceiver {
            port,
            served,
            _runtime: runtime,
        }
    }
}

fn notifier(config: &str) -> Notifier {
    Notifier::from_config_text(config, None).expect("config loads")
}

fn fire(n: &Notifier) {
    n.notify(Event::Violation, &json!({}), Some(json!({"reason": "r"})), None)
        .unwrap();
    assert!(n.flush(WAIT));
}

#[test]
fn mtls_with_a_private_ca_delivers_and_each_missing_part_fails_cleanly() {
    let pki = Pki::new("mtls");
    let rx = TlsReceiver::start(&pki);
    let url = format!("https://127.0.0.1:{}/hook", rx.port);
    let full = format!(
        "webhooks: [{{url: '{url}', tls: {{ca_file: '{}', client_cert_file: '{}', client_key_file: '{}'}}}}]",
        pki.file("ca.pem"),
        pki.file("client.pem"),
        pki.file("client.key")
    );
    let n = notifier(&full);
    fire(&n);
    assert_eq!((n.stats().delivered, rx.served.load(SeqCst)), (1, 1));
    for (what, config) in [
        (
            "no private CA",
            format!(
                "webhooks: [{{url: '{url}', tls: {{client_cert_file: '{}', client_key_file: '{}'}}}}]",
                pki.file("client.pem"),
                pki.file("client.key")
            ),
        ),
        (
            "no client certificate",
            format!(
                "webhooks: [{{url: '{url}', tls: {{ca_file: '{}'}}}}]",
                pki.file("ca.pem")
            ),
        ),
    ] {
        let n = notifier(&config);
        fire(&n);
        let s = n.stats();
        let w = &s.webhooks[0];
        assert_eq!(
            (w.delivered, w.failed, w.retries),
            (0, 1, 0),
            "{what}: a TLS failure is not retried: {w:?}"
        );
        let error = w.last_error.as_deref().unwrap_or_default().to_ascii_lowercase();
        assert!(error.contains("certificate"), "{what}: {w:?}");
    }
    assert_eq!(
        rx.served.load(SeqCst),
        1,
        "no request got through without the CA and the client certificate"
    );
}

#[test]
fn tls_files_are_checked_at_load_naming_the_field() {
    let pki = Pki::new("files");
    std::fs::write(pki.dir.join("junk.pem"), "not a certificate").unwrap();
    let cases = [
        (
            format!("tls: {{ca_file: '{}'}}", pki.file("missing.pem")),
            "webhooks[0].tls.ca_file",
        ),
        (
            format!("tls: {{ca_file: '{}'}}", pki.file("junk.pem")),
            "webhooks[0].tls.ca_file",
        ),
        (
            format!("tls: {{client_cert_file: '{}'}}", pki.file("client.pem")),
            "webhooks[0].tls.client_key_file",
        ),
        (
            format!(
                "tls: {{client_cert_file: '{}', client_key_file: '{}'}}",
                pki.file("client.pem"),
                pki.file("ca.pem")
            ),
            "webhooks[0].tls.client_cert_file",
        ),
        ("proxy: 'ftp://proxy.example/'".to_owned(), "webhooks[0].proxy"),
    ];
    for (extra, want) in cases {
        match Notifier::from_config_text(
            &format!("webhooks: [{{url: 'https://h.example/', {extra}}}]"),
            None,
        ) {
            Err(Error::Config { field, .. }) => assert_eq!(field, want, "{extra}"),
            other => panic!("{extra}: {:?}", other.err()),
        }
    }
}

#[test]
fn a_proxy_sees_the_request_and_proxy_none_goes_direct() {
    let target = Receiver::ok();
    let proxy = Receiver::start(|_| Reply::status(200));
    let via = notifier(&format!(
        "webhooks: [{{url: '{}', proxy: '{}'}}]",
        target.url("/hook"),
        proxy.url("")
    ));
    fire(&via);
    let seen = proxy.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].uri,
        target.url("/hook"),
        "an absolute-form request to the proxy"
    );
    assert!(target.received().is_empty());
    let direct = notifier(&format!(
        "webhooks: [{{url: '{}', proxy: none}}]",
        target.url("/hook")
    ));
    fire(&direct);
    assert_eq!((target.received().len(), proxy.received().len()), (1, 1));
}

/// Each destination is judged before any connection: a denied one fails at once, without a
/// retry, with the policy's message; the local receiver sees only what was allowed.
#[test]
fn the_ssrf_guard_denies_metadata_private_names_and_mapped_literals_and_allow_reopens() {
    let rx = Receiver::ok();
    let port = rx.addr.port();
    let cases = [
        (
            "network: {}",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            false,
        ),
        (
            "network: {deny_private: true}",
            format!("http://localhost:{port}/name"),
            false,
        ),
        (
            "network: {deny_private: true}",
            format!("http://[::ffff:127.0.0.1]:{port}/mapped"),
            false,
        ),
        (
            "network: {deny: [127.0.0.0/8]}",
            format!("http://127.0.0.1:{port}/denied"),
            false,
        ),
        (
            "network: {deny_private: true, allow: [127.0.0.1/32]}",
            format!("http://127.0.0.1:{port}/allowed"),
            true,
        ),
        (
            "network: {deny_private: true, allow: [127.0.0.1]}",
            format!("http://localhost:{port}/allowed-name"),
            true,
        ),
    ];
    for (network, url, allowed) in cases {
        let n = notifier(&format!(
            "{network}\nwebhooks: [{{url: '{url}', circuit_breaker: false}}]"
        ));
        fire(&n);
        let w = n.stats().webhooks[0].clone();
        match allowed {
            true => assert_eq!(w.delivered, 1, "{network} {url}: {w:?}"),
            false => {
                assert_eq!((w.failed, w.retries), (1, 0), "{network} {url}: {w:?}");
                assert_eq!(w.last_error.as_deref(), Some(DENIED), "{network} {url}");
            }
        }
    }
    let paths: Vec<String> = rx.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/allowed", "/allowed-name"]);
}

#[test]
fn file_secrets_and_require_https() {
    let dir = common::TempDir::new("webhook-secrets");
    std::fs::write(dir.join("token"), "s3cr3t-from-file\n").unwrap();
    let rx = Receiver::ok();
    let n = notifier(&format!(
        "webhooks: [{{url: '{}', authentication: {{type: bearer, token: '${{file:{}}}'}}}}]",
        rx.url("/"),
        dir.join("token").display()
    ));
    fire(&n);
    assert_eq!(
        rx.received()[0].header("authorization"),
        Some("Bearer s3cr3t-from-file")
    );
    let missing = dir.join("absent");
    match Notifier::from_config_text(&format!("webhooks: [{{url: 'https://h.example/', authentication: {{type: bearer, token: '${{file:{}}}'}}}}]", missing.display()), None) {
        Err(Error::Config { field, message }) => {
            assert_eq!(field, "webhooks[0].authentication.token");
            assert!(message.contains(&missing.display().to_string()), "{message}");
        }
        other => panic!("{:?}", other.err()),
    }
    match Notifier::from_config_text(
        "network: {require_https: true}\nwebhooks: [{url: 'http://h.example/'}]",
        None,
    ) {
        Err(Error::Config { field, message }) => assert!(
            field == "webhooks[0].url" && message.contains("https"),
            "{message}"
        ),
        other => panic!("{:?}", other.err()),
    }
}
