//! `listen`: a local receiver for trying webhooks out (instead of exposing a tunnel): prints
//! every request — headers, pretty JSON body — and whether its HMAC or Standard Webhooks
//! signature verifies, and answers with `--status`. Ctrl-C stops it.

use std::convert::Infallible;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::output::Output;
use crate::error::{Error, Result};
use crate::signing::{decode_standard_secret, hmac_signature, standard_signature, HmacAlgorithm};

/// `listen`'s options.
#[derive(Args)]
pub struct ListenArgs {
    /// Port on 127.0.0.1 (0: any free one, printed at start).
    #[arg(long, default_value_t = 8099)]
    port: u16,
    /// Verify `hmac` signatures made with this secret.
    #[arg(long)]
    hmac_secret: Option<String>,
    /// The header carrying the HMAC signature.
    #[arg(long, default_value = "X-Signature", requires = "hmac_secret")]
    hmac_header: String,
    /// Verify Standard Webhooks signatures made with this `whsec_…` secret.
    #[arg(long)]
    standard_webhooks_secret: Option<String>,
    /// The status every request is answered with.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Stop after this many requests (default: run until Ctrl-C).
    #[arg(long)]
    exit_after: Option<u64>,
}

/// A request as received.
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Runs the receiver until Ctrl-C (or `--exit-after` requests).
pub fn run(args: ListenArgs, out: &Output) -> Result<i32> {
    let status = StatusCode::from_u16(args.status)
        .map_err(|_| Error::InvalidArgument(format!("--status {} is not an HTTP status", args.status)))?;
    let standard_key = match &args.standard_webhooks_secret {
        Some(secret) => Some(decode_standard_secret(secret).ok_or_else(|| {
            Error::InvalidArgument(
                "--standard-webhooks-secret must be `whsec_` followed by a base64 key".into(),
            )
        })?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start: {e}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
            .await
            .map_err(|e| Error::InvalidArgument(format!("cannot listen on 127.0.0.1:{}: {e}", args.port)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        out.line(&format!(
            "listening on http://{addr}/ (answering {})",
            status.as_u16()
        ));
        let (sender, mut requests) = mpsc::unbounded_channel::<Received>();
        let mut seen = 0u64;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(0),
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(serve(stream, sender.clone(), status));
                    }
                }
                Some(request) = requests.recv() => {
                    let verdicts = verify(&args, standard_key.as_ref().map(|k| k.0.as_slice()), &request);
                    out.request(&request.method, &request.path, &request.headers, &request.body, &verdicts);
                    seen += 1;
                    if args.exit_after.is_some_and(|n| seen >= n) {
                        return Ok(0);
                    }
                }
            }
        }
    })
}

/// Body bytes `listen` reads of one request at most; a larger one is answered 413.
const MAX_BODY: usize = 1 << 20;

/// Serves one connection: every request is passed on and answered with `status` (413 for a
/// body over [`MAX_BODY`]).
async fn serve(stream: tokio::net::TcpStream, sender: mpsc::UnboundedSender<Received>, status: StatusCode) {
    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
        let sender = sender.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().to_string();
            let headers = request
                .headers()
                .iter()
                .map(|(name, value)| {
                    let value = match name.as_str() {
                        "authorization" => "***".to_owned(),
                        _ => String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    };
                    (name.as_str().to_owned(), value)
                })
                .collect();
            // Bounded: a receiver for people need not hold a hostile sender's gigabytes.
            let body = http_body_util::Limited::new(request.into_body(), MAX_BODY)
                .collect()
                .await
                .map(|b| b.to_bytes());
            let Ok(body) = body else {
                let mut response = Response::new(Full::new(Bytes::from_static(b"body too large")));
                *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                return Ok::<_, Infallible>(response);
            };
            let _ = sender.send(Received {
                method,
                path,
                headers,
                body,
            });
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// For each configured signature scheme: whether `request` carries its signature, and
/// whether that verifies (`None`: no signature of that scheme).
fn verify(args: &ListenArgs, standard_key: Option<&[u8]>, request: &Received) -> Vec<(String, Option<bool>)> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut verdicts = Vec::new();
    if let Some(secret) = &args.hmac_secret {
        let verified = header(&args.hmac_header).map(|sent| {
            let algorithm = sent
                .split_once('=')
                .and_then(|(name, _)| HmacAlgorithm::from_name(name));
            algorithm.is_some_and(|a| hmac_signature(a, secret.as_bytes(), &request.body) == sent)
        });
        verdicts.push((format!("hmac, {}", args.hmac_header), verified));
    }
    if let Some(key) = standard_key {
        let signed = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        );
        let verified = match signed {
            (Some(id), Some(timestamp), Some(signatures)) => Some(timestamp.parse::<u64>().is_ok_and(|ts| {
                let expected = standard_signature(key, id, ts, &request.body);
                signatures.split(' ').any(|s| s == expected)
            })),
            (_, _, None) => None,
            _ => Some(false),
        };
        verdicts.push(("standard webhooks".to_owned(), verified));
    }
    verdicts
}
