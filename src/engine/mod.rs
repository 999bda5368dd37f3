//! The delivery engine behind one config: admission (on the host's thread, microseconds),
//! then on the background runtime an intake task that renders each event once and queues
//! one ticket per subscribed webhook (`intake`), and one dispatcher per webhook (`dispatch`).
//! Each webhook has its own queue bound, breaker and rate, so one dead receiver never costs
//! another a notification. Durability is the store's job (`crate::store`), scheduling the
//! queue's, accounting the ledger's.

mod attempt;
mod breaker;
mod digest;
mod digests;
mod dispatch;
mod fleet;
mod inbox;
mod intake;
mod ledger;
mod packing;
mod padded;
mod queue;
mod registry;
mod runtime;
mod shared;
mod silences;
mod smtp;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use log::{error, warn};
use reqwest::Client;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::{exposition, Outcome, WebhookMetrics};
use crate::render::Job;
use crate::stats::{Circuit, Stats};
use crate::store::journal::{Journal, Released};
use crate::store::{DeadLetter, Opened, Resumed};
pub(crate) use digest::Digest;
use dispatch::Dispatch;
use fleet::{FleetDigests, EXCHANGE_INTERVAL};
use intake::Intake;
use ledger::{Ticket, WebhookLabels};
use queue::Queue;
use registry::{Registry, Shareable};
pub use runtime::WORKER_THREADS_ENV;
use shared::{Lifecycle, Shared};
pub(crate) use silences::Silences;
pub(crate) use smtp::{message as mail_message, recipients as mail_recipients};

/// One engine per config (Python instances share one; C and Go handles own one each).
pub(crate) struct Engine {
    shared: Arc<Shared>,
    intake: Arc<Intake>,
    dispatch: Arc<Dispatch>,
    /// Instances attached to a shared engine (see `registry`).
    attached: AtomicUsize,
}

/// The process-wide engines that instances of one config share.
static SHARED: LazyLock<Registry<Engine>> = LazyLock::new(Registry::default);

impl Engine {
    /// Opens the config's outbox (resuming what a durable one holds) and starts the engine's
    /// tasks on the process runtime. Fails, naming `outbox.path`, when the store cannot be
    /// opened (e.g. another engine holds it).
    pub fn start(config: Config, plugin_name: &str) -> Result<Arc<Engine>> {
        let webhooks = config.webhooks.len();
        let ids: Vec<String> = config.webhooks.iter().map(|w| w.id.clone()).collect();
        let Opened { store, found, fleet } = crate::store::open(&config)?;
        let fleet = fleet.map(|exchange| FleetDigests::new(exchange, &config.webhooks));
        let urls = config
            .webhooks
            .iter()
            .map(|w| w.url_fingerprint.clone())
            .collect();
        let journal = store.map(|store| Journal::new(store, ids, urls));
        let queue = Queue::new(webhooks, config.dead_letter_capacity, journal);
        queue.keep_stored_dead_letters(found.dead);
        let clients = clients(&config);
        let mailers = config
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| {
                smtp::mailer(w, config.network.require_https)
                    .map_err(|e| Error::config(format!("webhooks[{i}].tls.ca_file"), e))
            })
            .collect::<Result<Vec<_>>>()?;
        let fleet_digests = fleet.is_some();
        let store = crate::store::silences::open(&config.outbox).map_err(|e| Error::config("outbox", e))?;
        let silences = Silences::new(store);
        silences.refresh();
        let shared = Arc::new(Shared::new(config, plugin_name, queue, silences));
        let intake = Arc::new(Intake::new(Arc::clone(&shared), fleet));
        let dispatch = Dispatch::new(Arc::clone(&shared), Arc::clone(&intake), clients, mailers);
        let engine = Arc::new(Engine {
            shared,
            intake,
            dispatch: Arc::new(dispatch),
            attached: AtomicUsize::new(0),
        });
        resume(&engine.shared, found.resumed);
        let handle = runtime::handle();
        handle.spawn(intake::run(Arc::clone(&engine.intake)));
        for index in 0..webhooks {
            handle.spawn(dispatch::run(Arc::clone(&engine.dispatch), index));
        }
        if engine.intake.digests() {
            handle.spawn(run_digests(
                Arc::clone(&engine.shared),
                Arc::clone(&engine.intake),
            ));
        }
        if fleet_digests {
            let intake = Arc::clone(&engine.intake);
            std::thread::Builder::new()
                .name("webhook-digests".into())
                .spawn(move || run_fleet_exchange(intake))
                .map_err(|e| {
                    Error::config("outbox", format!("cannot start the digest exchange thread: {e}"))
                })?;
        }
        if engine.shared.queue.durable() {
            handle.spawn(commit_loop(Arc::clone(&engine.shared)));
        }
        if engine.shared.silences.shared() {
            handle.spawn(refresh_silences(Arc::clone(&engine.shared)));
        }
        Ok(engine)
    }

    /// The engine of `config` under `plugin_name` that every attached instance shares,
    /// started if no live one exists; the caller is attached until [`Engine::detach`].
    pub fn attach(config: Config, plugin_name: &str) -> Result<Arc<Engine>> {
        SHARED.attach(config, plugin_name)
    }

    /// Detaches one instance; the last one out leaves the engine to close when idle.
    pub fn detach(self: &Arc<Engine>) {
        if self.attached.fetch_sub(1, SeqCst) == 1 && !self.is_forked() {
            runtime::handle().spawn(SHARED.close_when_idle(Arc::clone(self)));
        }
    }

    /// The config the engine runs.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Admits `job` for every subscribed webhook with room, without blocking; false if none
    /// took it. Once `close` has begun, fails with `Closed`.
    pub fn admit(&self, job: Job) -> Result<bool> {
        self.intake.admit(job, None)
    }

    /// Dead letters of the webhook with id `webhook`, or of all.
    pub fn dead_letters(&self, webhook: Option<&str>) -> Result<Vec<DeadLetter>> {
        self.check_webhook(webhook)?;
        Ok(self.shared.queue.dead_letters(webhook))
    }

    /// Queues the dead letters of `webhook` (or all) again, as new attempts with their
    /// delivery ids; a letter whose webhook queue is full stays a dead letter. Returns how
    /// many were queued.
    pub fn replay_dead_letters(&self, webhook: Option<&str>) -> Result<usize> {
        self.check_webhook(webhook)?;
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let shared = &self.shared;
        let mut replayed = 0;
        for letter in shared.queue.take_dead_letters(webhook) {
            let Some(index) = letter.webhook else {
                shared.queue.dead_letter(letter);
                continue;
            };
            let capacity = shared.webhook(index).queue_capacity;
            if !shared.ledger.reserve(index, capacity) {
                shared.queue.dead_letter(letter);
                continue;
            }
            let ledger = Arc::clone(&shared.ledger);
            let mut ticket = Ticket::new(ledger, index, letter.event, letter.delivery_id, letter.body);
            ticket.set_framed(letter.batch);
            shared.requeue(ticket, None);
            replayed += 1;
        }
        Ok(replayed)
    }

    fn check_webhook(&self, webhook: Option<&str>) -> Result<()> {
        match webhook {
            Some(id) if self.config().webhook_index(id).is_none() => {
                Err(Error::InvalidArgument(format!("no webhook has the id `{id}`")))
            }
            _ => Ok(()),
        }
    }

    /// Adds a silence (see [`crate::silence::Silence::new`]); returns its id.
    pub fn silence(&self, spec: &serde_json::Value) -> Result<String> {
        self.shared.silences.add(spec)
    }

    /// The silences not yet ended, as JSON objects.
    pub fn silences(&self) -> Result<Vec<serde_json::Value>> {
        self.shared.silences.list()
    }

    /// Ends the silence `id` now.
    pub fn expire_silence(&self, id: &str) -> Result<()> {
        self.shared.silences.expire(id)
    }

    /// Counts a hook call whose host data could not become an event.
    pub fn host_error(&self) -> u64 {
        self.intake.host_error()
    }

    /// Blocks until every event admitted so far is routed (so filters and digest groups
    /// have counted it), the digest messages due now are queued, and nothing is pending —
    /// or `timeout` passes (a huge one means no deadline). Digest windows not yet due are
    /// not waited for.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let (shared, intake) = (&self.shared, &self.intake);
        if !intake.wait_routed(deadline) {
            return false;
        }
        // Batches leave at once from here on, with what was admitted before the flush.
        let _hurry = intake.hurry();
        intake.send_digests_now(false, None);
        shared.ledger.wait_idle(deadline)
    }

    /// Stops accepting events, delivers what is pending, and at the deadline abandons the
    /// rest (counted as dropped). Returns within `timeout` (plus scheduling noise). With a
    /// durable outbox it only waits for what was admitted to be committed and for attempts
    /// in flight: what is still queued stays stored for the next start.
    pub fn close(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        let (shared, intake) = (&self.shared, &self.intake);
        if shared.is(Lifecycle::Stopped) {
            return Ok(()); // closed already: at exit, say, and then by its last user
        }
        intake.close();
        // Digest groups send what they still count (no resolve), then close as any delivery.
        intake.wait_routed(deadline);
        intake.send_digests_now(true, deadline);
        intake.count_unfired();
        if shared.queue.durable() {
            return self.close_durable(deadline);
        }
        // Keep a little of the time for the abandoned deliveries to be counted.
        let grace = (timeout / 10).min(Duration::from_millis(100));
        if shared.ledger.wait_idle(deadline.map(|d| d - grace)) {
            shared.set(Lifecycle::Stopped);
            return Ok(());
        }
        let pending = shared.ledger.pending();
        shared.set(Lifecycle::Abandoning);
        // Queued deliveries end (as dropped) here and now; attempts in flight end in their
        // tasks, which the lifecycle change wakes.
        self.drain_queues();
        shared.ledger.wait_idle(deadline);
        shared.set(Lifecycle::Stopped);
        Err(Error::Timeout { pending })
    }

    fn close_durable(&self, deadline: Option<Instant>) -> Result<()> {
        let (shared, intake) = (&self.shared, &self.intake);
        let routed = intake.wait_routed(deadline);
        shared.set(Lifecycle::Suspended);
        let answered = self.dispatch.wait_answered(deadline);
        shared.queue.journal_queued_again();
        // What the last commit could not keep is lost (counted dropped); a failed commit that
        // held only acknowledgements loses nothing (those deliveries may come again, from a
        // replica that takes them over).
        let mut lost = 0;
        if let Err(Released { message, lost: news }) = shared.queue.release(deadline) {
            error!("{message}: {} admitted deliveries are lost", news.len());
            lost = news.len() as u64;
            for (webhook, event) in news {
                let counters = shared.counters(webhook);
                counters.dropped(1);
                counters.metrics.ended(event, Outcome::Dropped, None);
            }
        }
        let pending = shared.ledger.pending();
        shared.set(Lifecycle::Stopped);
        self.drain_queues();
        match (routed && answered, lost) {
            (true, 0) => Ok(()),
            (true, lost) => Err(Error::Timeout { pending: lost }),
            (false, _) => Err(Error::Timeout { pending }),
        }
    }

    fn drain_queues(&self) {
        for index in 0..self.config().webhooks.len() {
            drop(self.shared.queue.drain(index));
        }
    }

    /// Whether `close` has begun.
    pub fn is_closed(&self) -> bool {
        self.intake.is_closed()
    }

    /// Whether this engine was created before a `fork()` (in the parent process).
    pub fn is_forked(&self) -> bool {
        self.intake.is_forked()
    }

    fn circuit(&self, index: usize) -> Circuit {
        self.dispatch.breakers[index].circuit()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let (shared, intake) = (&self.shared, &self.intake);
        let webhooks = shared.config.webhooks.iter().enumerate();
        let webhooks = webhooks
            .map(|(i, w)| {
                shared.counters(i).snapshot(WebhookLabels {
                    id: &w.id,
                    url: &w.redacted_url,
                    circuit: self.circuit(i),
                    dead_letters: shared.queue.dead_letter_count(i),
                })
            })
            .collect();
        // Read before the journal (routing journals a ticket, then counts it routed), so that a
        // delivery moving on meanwhile is counted twice, never missed.
        let unrouted = intake.unrouted() as u64;
        let mut outbox = shared.queue.status();
        if shared.queue.durable() {
            // Events admitted but not yet routed are in no journal yet: a crash now loses them.
            outbox.uncommitted += unrouted;
        }
        let mut stats = Stats::new(shared.ledger.pending(), intake.host_errors(), webhooks, outbox);
        stats.dead_letters = shared.queue.dead_letters_held();
        stats.dead_letters_evicted = shared.queue.dead_letters_evicted();
        stats.internal_errors = intake.internal_errors();
        stats
    }

    /// The engine's metrics in the Prometheus text format 0.0.4.
    pub fn metrics(&self) -> String {
        let (shared, intake) = (&self.shared, &self.intake);
        let webhooks: Vec<WebhookMetrics<'_>> = shared
            .config
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let counters = shared.counters(i);
                WebhookMetrics {
                    id: &w.id,
                    metrics: &counters.metrics,
                    retries: counters.retries(),
                    queued: counters.queued(),
                    circuit_open: self.circuit(i) != Circuit::Closed,
                    dead_letters: shared.queue.dead_letter_count(i),
                    filtered: counters.filtered_count(),
                    groups: counters.groups(),
                }
            })
            .collect();
        exposition(&shared.plugin_name, &intake.events_raised(), &webhooks)
    }

    /// Arms a panic at `stage` (1 routing, 2 an attempt, 3 a fleet exchange), once, for this
    /// engine's tests.
    #[cfg(test)]
    pub fn inject_panic(&self, stage: u8) {
        self.intake.inject_panic.store(stage, SeqCst);
    }
}

impl Shareable for Engine {
    fn start(config: Config, plugin_name: &str) -> Result<Arc<Self>> {
        Engine::start(config, plugin_name)
    }

    fn identity(&self) -> (String, [u8; 32]) {
        (self.shared.plugin_name.clone(), self.config().identity)
    }

    fn usable(&self) -> bool {
        !self.is_closed() && !self.is_forked()
    }

    fn is_forked(&self) -> bool {
        Engine::is_forked(self)
    }

    fn attached(&self) -> &AtomicUsize {
        &self.attached
    }

    fn pending(&self) -> u64 {
        self.shared.ledger.pending()
    }

    fn idle(&self) -> &tokio::sync::Notify {
        &self.shared.ledger.idle_async
    }

    fn shutdown_timeout(&self) -> Duration {
        self.config().shutdown_timeout
    }

    fn close(&self, timeout: Duration) -> bool {
        Engine::close(self, timeout).is_ok()
    }

    fn send_digests(&self) -> usize {
        // No deadline: the engine may yet be attached again (a deadline is for good).
        self.intake.send_digests_now(true, None)
    }
}

/// Closes every shared engine of this process (at process exit), all within the longest
/// `shutdown_timeout` among them, each within its own; false if some deliveries were
/// abandoned.
pub fn drain_shared() -> bool {
    SHARED.drain()
}

/// One pooled HTTP client per webhook: the engine's shared one, or the webhook's own (TLS
/// material, proxy).
fn clients(config: &Config) -> Vec<Client> {
    let max_idle = config
        .webhooks
        .iter()
        .map(|w| w.max_concurrency)
        .max()
        .unwrap_or(1);
    let shared = attempt::client(max_idle, &config.network, None);
    config
        .webhooks
        .iter()
        .map(|w| match attempt::needs_own_client(w) {
            true => attempt::client(w.max_concurrency, &config.network, Some(w)),
            false => shared.clone(),
        })
        .collect()
}

/// Queues deliveries a durable outbox held (resumed at start, or taken over from a shared
/// one), with their ids, attempt counts and due times; those of orphaned webhooks (no loaded
/// config had them for `outbox.orphan_after`, which only a Redis store hands over)
/// become dead letters.
fn resume(shared: &Shared, resumed: Vec<Resumed>) {
    let (mut resumed_count, mut orphans) = (0, 0);
    for r in resumed {
        let Some(index) = shared.config.webhook_index(&r.webhook_id) else {
            orphans += 1;
            let letter = DeadLetter {
                webhook: None,
                webhook_id: r.webhook_id,
                event: r.event,
                delivery_id: r.delivery_id,
                attempts: r.attempts,
                last_status: None,
                last_error: "no loaded config has its webhook after outbox.orphan_after".into(),
                time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                body: r.body,
                batch: r.batch,
            };
            shared.queue.dead_letter(letter);
            continue;
        };
        shared.ledger.reserve_anyway(index);
        let ledger = Arc::clone(&shared.ledger);
        let mut ticket = Ticket::new(ledger, index, r.event, r.delivery_id, r.body);
        // Already stored: kept for the next start if this process lets go of it.
        ticket.mark_durable();
        ticket.attempts = r.attempts;
        ticket.trace = r.trace.map(Arc::new);
        ticket.set_framed(r.batch);
        shared.requeue(ticket, Some(r.due));
        resumed_count += 1;
    }
    if resumed_count > 0 {
        log::info!("resumed {resumed_count} pending deliveries from the outbox");
    }
    if orphans > 0 {
        warn!(
            "{orphans} pending deliveries of webhooks no loaded config had for outbox.orphan_after: moved to dead letters"
        );
    }
}

/// Reads the outbox's silences again every [`silences::REFRESH`] (off the runtime's worker
/// thread) until the engine stops: what another process adds or expires applies here within
/// a second.
async fn refresh_silences(shared: Arc<Shared>) {
    let mut lifecycle = shared.subscribe();
    loop {
        tokio::select! {
            _ = lifecycle.wait_for(|h| *h == Lifecycle::Stopped) => return,
            _ = tokio::time::sleep(silences::REFRESH) => {}
        }
        let shared = Arc::clone(&shared);
        let _ = tokio::task::spawn_blocking(move || shared.silences.refresh()).await;
    }
}

/// Free queue slots per webhook: how many deliveries a shared outbox may hand over.
fn room(shared: &Shared) -> Vec<usize> {
    let counters = &shared.ledger.counters;
    shared
        .config
        .webhooks
        .iter()
        .zip(counters)
        .map(|(w, c)| w.queue_capacity.saturating_sub(c.queued() as usize))
        .collect()
}

/// Commits a durable outbox's journal every few milliseconds (group commit), off the
/// runtime's worker thread; failures are logged with pacing and retried.
async fn commit_loop(shared: Arc<Shared>) {
    const INTERVAL: Duration = Duration::from_millis(5);
    let mut lifecycle = shared.subscribe();
    let mut failures = 0u64;
    loop {
        tokio::select! {
            _ = lifecycle.wait_for(|h| *h == Lifecycle::Stopped) => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        if !shared.queue.outbox_work() {
            continue; // idle: no hand-off to the blocking pool
        }
        let shared = Arc::clone(&shared);
        let done = tokio::task::spawn_blocking(move || {
            let committed = shared.queue.commit();
            let claimed = shared.queue.claim(&room(&shared));
            resume(&shared, claimed);
            committed
        });
        match done.await {
            Ok(Ok(())) => failures = 0,
            Ok(Err(e)) => {
                failures += 1;
                if failures.is_power_of_two() {
                    warn!("{e} ({failures} in a row; retrying)");
                }
            }
            Err(_) => error!("the outbox commit panicked; retrying"),
        }
    }
}

/// Exchanges digest counts with the fleet every `EXCHANGE_INTERVAL` until close begins (close
/// makes the last exchange itself). Runs on a thread of its own: the calls block.
/// A panic in an exchange (a bug) is caught, logged and counted in `internal_errors`; the
/// thread goes on with the next exchange.
pub(crate) fn run_fleet_exchange(intake: Arc<Intake>) {
    while !intake.is_closed() {
        std::thread::sleep(EXCHANGE_INTERVAL);
        if intake.is_closed() {
            break;
        }
        let exchanged =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| intake.exchange_with_fleet(false)));
        if exchanged.is_err() {
            let n = intake.internal_error();
            error!("a bug interrupted a digest exchange with the fleet ({n} internal errors so far); exchanges go on");
        }
    }
}

/// Sends digest messages as they come due (every 100 ms at most late) until the engine stops.
pub(crate) async fn run_digests(shared: Arc<Shared>, intake: Arc<Intake>) {
    const TICK: Duration = Duration::from_millis(50);
    let mut lifecycle = shared.subscribe();
    loop {
        tokio::select! {
            _ = lifecycle.wait_for(|h| *h == Lifecycle::Stopped) => return,
            _ = tokio::time::sleep(TICK) => {
                intake.tick_digests(false);
            }
        }
    }
}
