//! Real `redis-server` processes for the Redis outbox tests (Debian's package; tests/run.sh
//! installs it): persistence off, bound to 127.0.0.1, killed when dropped.

#![allow(dead_code)] // each test binary uses a different part of it

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::receiver::dead_port;

/// A redis-server this test started.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> Self {
        Self::start_on(dead_port())
    }

    /// Starts one on `port` (again, after [`RedisServer::stop`]) and waits until it answers.
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// Starts one on `port` with `extra` arguments and waits until it answers.
    fn start_with(port: u16, extra: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; tests/run.sh installs it)");
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(port) {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    /// Starts a TLS-only one (no plain port) with `pki`'s server certificate, requiring a
    /// client certificate signed by its CA; waits until it accepts connections.
    pub fn start_tls(pki: &super::pki::Pki) -> Self {
        let port = dead_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--tls-cert-file",
                &pki.file("server.pem"),
                "--tls-key-file",
                &pki.file("server.key"),
            ])
            .args([
                "--tls-ca-cert-file",
                &pki.file("ca.pem"),
                "--tls-auth-clients",
                "yes",
            ])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's is built with TLS)");
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    /// Sends it `signal` (SIGSTOP freezes it: connections are accepted, nothing answered).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills it (SIGKILL) and waits for it to end.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three primaries this test started (`redis-cli --cluster create`), each
/// node a [`RedisServer`] killed when dropped, their `nodes.conf` files in a temporary directory.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: super::TempDir,
}

impl RedisCluster {
    /// Starts three nodes on free ports, joins them and waits until the cluster is ok.
    pub fn start() -> Self {
        let dir = super::TempDir::new("wn-redis-cluster");
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                // A node also listens on its port + 10,000 (the cluster bus).
                let port = std::iter::repeat_with(dead_port).find(|p| *p <= 55_535).unwrap();
                let conf = format!("nodes-{port}.conf");
                let extra = ["--cluster-enabled", "yes", "--cluster-config-file", &conf];
                let dir = dir.0.to_str().unwrap();
                RedisServer::start_with(port, &[&extra[..], &["--dir", dir]].concat())
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs (Debian package redis-tools)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, _dir: dir };
        super::wait_until("the cluster is ok on every node", Duration::from_secs(30), || {
            cluster
                .nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        });
        cluster
    }

    /// The seed URLs, as YAML flow list items.
    pub fn seeds(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(|n| format!("'{}'", n.url())).collect();
        urls.join(", ")
    }

    /// The port of the node that serves `key`'s slot.
    pub fn node_of(&self, key: &str) -> u16 {
        let slot: u16 = self.nodes[0]
            .cli(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        // `<id> <ip>:<port>@<bus> <flags> … <start>-<end> …`, a line per node.
        let nodes = self.nodes[0].cli(&["cluster", "nodes"]);
        nodes
            .lines()
            .find(|line| {
                line.split_whitespace().skip(8).any(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    (start.parse().unwrap()..=end.parse().unwrap()).contains(&slot)
                })
            })
            .and_then(|line| {
                line.split_whitespace()
                    .nth(1)?
                    .split(['@', ':'])
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap()
    }
}

impl RedisServer {
    /// The output of `redis-cli -p <port> <args>`.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Whether a Redis answers PING on `port`.
pub fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// The pid of the server [`shared_url`] started, killed at exit by [`reap`].
static SHARED_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn reap() {
    let pid = SHARED_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) on a pid this process started; nothing else is touched at exit.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The URL of a Redis shared by every test of this binary: the one tests/run.sh started
/// (`WEBHOOK_TEST_REDIS_URL`), or one started on first use and killed when the test binary
/// exits (a static is never dropped: without the exit hook it would outlive the run).
pub fn shared_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| match std::env::var("WEBHOOK_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let server = RedisServer::start();
            SHARED_PID.store(server.child.id() as i32, std::sync::atomic::Ordering::SeqCst);
            // SAFETY: registers a plain function; it only reads an atomic and calls kill(2).
            unsafe { libc::atexit(reap) };
            let url = server.url();
            std::mem::forget(server); // killed at exit by `reap`
            url
        }
    })
    .clone()
}

/// The Redis a test uses: the one tests/run.sh started (`WEBHOOK_TEST_REDIS_URL`), or one of
/// its own (returned so it lives as long as the test). Tests sharing a server use their own
/// `key`.
pub fn server() -> (String, Option<RedisServer>) {
    match std::env::var("WEBHOOK_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let own = RedisServer::start();
            (own.url(), Some(own))
        }
    }
}
