//! A real HTTP/1.1 webhook receiver on 127.0.0.1 for tests and the demo: it records every
//! request and answers as its `plan` says (status, headers, delay).

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// The request target as sent: absolute (`http://host/path`) when it came through a proxy.
    pub uri: String,
    /// Header names are lowercase; repeated headers are joined with ", ".
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// How to answer one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// How a receiver answers request n (0-based, in arrival order), which it is shown.
type Plan = dyn Fn(usize, &Received) -> Reply + Send + Sync;

struct Log {
    requests: Mutex<Vec<Received>>,
    arrived: Condvar,
}

/// A running receiver; dropping it stops it (open connections are cut).
pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Log>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    /// Answers every request with 200.
    pub fn ok() -> Self {
        Self::start(|_| Reply::status(200))
    }

    /// Answers request n (0-based, in arrival order) with `plan(n)`.
    pub fn start(plan: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on(0, plan)
    }

    /// Answers each request as `plan` says of it.
    pub fn start_with(plan: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(0, Arc::new(move |_, request: &Received| plan(request)))
    }

    /// Like `start`, on a given port (0: any free one).
    pub fn start_on(port: u16, plan: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::serve(port, Arc::new(move |n, _: &Received| plan(n)))
    }

    fn serve(port: u16, plan: Arc<Plan>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let log = Arc::new(Log {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let accept_log = Arc::clone(&log);
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, plan) = (Arc::clone(&accept_log), Arc::clone(&plan));
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, Arc::clone(&log), Arc::clone(&plan)));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            log,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut requests = self.log.requests.lock().unwrap();
        while requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "expected {n} requests, got {}", requests.len());
            requests = self.log.arrived.wait_timeout(requests, left).unwrap().0;
        }
        requests.clone()
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.log.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A receiver that answers `broken` until the returned switch is set, then 200.
pub fn healable(broken: u16) -> (Receiver, Arc<std::sync::atomic::AtomicBool>) {
    let healed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let is_healed = Arc::clone(&healed);
    let rx = Receiver::start(move |_| {
        let healed = is_healed.load(std::sync::atomic::Ordering::SeqCst);
        Reply::status(if healed { 200 } else { broken })
    });
    (rx, healed)
}

/// A port on 127.0.0.1 where nothing listens (connections are refused).
pub fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    log: Arc<Log>,
    plan: Arc<Plan>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let uri = req.uri().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value)
            })
            .or_insert(value);
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let received = Received {
        path,
        uri,
        headers,
        body,
        at: Instant::now(),
    };
    let n = {
        let mut requests = log.requests.lock().unwrap();
        requests.push(received.clone());
        log.arrived.notify_all();
        requests.len() - 1
    };
    let reply = plan(n, &received);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    Ok(response
        .body(Full::new(Bytes::from_static(b"ok")))
        .expect("response"))
}

/// A receiver that accepts connections and never answers (a black hole): every request to
/// it times out. Counts the connections it accepted.
pub struct BlackHole {
    pub addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl BlackHole {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("black hole runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        runtime.spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
        BlackHole {
            addr,
            accepted,
            _runtime: runtime,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
