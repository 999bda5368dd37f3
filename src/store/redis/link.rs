//! The connection to Redis: one node, or a cluster through the `redis` crate's cluster client
//! (which follows MOVED and ASK, and sends `SCRIPT LOAD` to every primary). Every command and
//! pipeline the store sends touches the keys of one webhook, which share a hash tag, so each
//! goes to one slot's node whole — a `MULTI` pipeline included.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConfig, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, ConnectionLike, RedisResult, Value};

use crate::config::RedisOutbox;

/// What connects: a single node's client, or a cluster's (from its seeds).
pub(super) enum Client {
    Node(redis::Client),
    Cluster(ClusterClient),
}

impl Client {
    /// The client of `outbox` (nothing is contacted yet). The error is for `outbox.url`.
    pub(super) fn new(outbox: &RedisOutbox) -> Result<Client, String> {
        let certificates = outbox.tls.as_ref().map(|tls| redis::TlsCertificates {
            client_tls: tls.client.as_ref().map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            root_cert: tls.ca.clone(),
        });
        let urls = outbox.urls.iter().map(|url| url.0.as_str());
        let client = match (outbox.cluster, certificates) {
            (false, None) => redis::Client::open(outbox.urls[0].0.as_str()).map(Client::Node),
            (false, Some(certificates)) => {
                redis::Client::build_with_tls(outbox.urls[0].0.as_str(), certificates).map(Client::Node)
            }
            (true, certificates) => {
                // Few, quick retries: a redirect is followed at once, and a failed call is tried
                // again by the committer's own backoff (a close deadline must hold).
                let mut builder = ClusterClient::builder(urls)
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                if let Some(certificates) = certificates {
                    builder = builder.certs(certificates);
                }
                builder.build().map(Client::Cluster)
            }
        };
        client.map_err(|_| "is not a valid Redis URL (redis://, rediss:// or redis+unix://)".to_owned())
    }

    /// Connects, waiting at most `timeout` (per node of a cluster).
    pub(super) fn connect(&self, timeout: Duration) -> RedisResult<Link> {
        Ok(match self {
            Client::Node(client) => Link::Node(client.get_connection_with_timeout(timeout)?),
            Client::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                Link::Cluster(Box::new(client.get_connection_with_config(config)?))
            }
        })
    }

    /// Whether this is a cluster's client.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Client::Cluster(_))
    }
}

/// An open connection to a node or a cluster.
pub(super) enum Link {
    Node(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Link {
    /// Bounds how long each read and write may wait.
    pub(super) fn set_timeouts(&mut self, timeout: Duration) -> RedisResult<()> {
        match self {
            Link::Node(connection) => {
                connection.set_read_timeout(Some(timeout))?;
                connection.set_write_timeout(Some(timeout))
            }
            Link::Cluster(connection) => {
                connection.set_read_timeout(Some(timeout))?;
                connection.set_write_timeout(Some(timeout))
            }
        }
    }

    /// Runs `command` on the primary serving `key`'s slot (on a single node: the node), so
    /// that a cluster-wide command such as `SCRIPT LOAD` reaches a node while another is down.
    pub(super) fn on_node_of(&mut self, key: &str, command: &Cmd) -> RedisResult<Value> {
        match self {
            Link::Node(connection) => command.query(connection),
            Link::Cluster(connection) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                connection.route_command(command, routing)
            }
        }
    }

    fn inner(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Link::Node(connection) => connection,
            Link::Cluster(connection) => connection.as_mut(),
        }
    }

    fn inner_ref(&self) -> &dyn ConnectionLike {
        match self {
            Link::Node(connection) => connection,
            Link::Cluster(connection) => connection.as_ref(),
        }
    }
}

impl ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.inner().req_packed_command(cmd)
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        self.inner().req_packed_commands(cmd, offset, count)
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        self.inner().req_command(cmd)
    }

    fn get_db(&self) -> i64 {
        self.inner_ref().get_db()
    }

    /// True for a cluster too: the cluster client sends a pipeline whole to the node of its
    /// first key, which is right here because every pipeline stays within one hash tag.
    fn supports_pipelining(&self) -> bool {
        true
    }

    fn check_connection(&mut self) -> bool {
        self.inner().check_connection()
    }

    fn is_open(&self) -> bool {
        self.inner_ref().is_open()
    }
}
