//! Digests: a webhook's events grouped by their `group_by` values into messages. A group's
//! first message goes out `group_wait` after its first event (with a `threshold`, once it
//! saw `count` events within the sliding `window`); then at most one per `group_interval`,
//! only if events came meanwhile. A group never has more than one message undelivered: the
//! message's ticket clears the group's flag when it ends, however it ends, and until then
//! new events only add to the next message's counts. Memory is O(groups): counts, the
//! threshold's timestamps and `samples` events per group, whatever the receiver does.
//!
//! Runs on the delivery runtime only (the intake task, the digest timer, and `flush` and
//! `close`), behind the webhook's lock; it returns messages for the caller to render and
//! queue, and knows nothing of bodies or queues.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::config::DigestSettings;
use crate::events::{capped_at, too_long, Event};
use crate::matching::{group_key, group_of};
use crate::store::fleet::{Share, Taken};

/// A digest message for the caller to render and queue.
pub(crate) struct Message {
    pub event: Event,
    /// The group's latest event's variables, plus `digest`.
    pub vars: Map<String, Value>,
    /// Set while the message is undelivered; its ticket clears it when it ends.
    pub undelivered: Arc<AtomicBool>,
    /// Events it counts (`digest.count`).
    pub count: u64,
}

/// What happened to events that could not be counted in a message.
#[derive(Default, Debug, PartialEq, Eq)]
pub(crate) struct Aged {
    /// Events that left a threshold's window before their group fired.
    pub below_threshold: u64,
}

/// The digest state of one webhook.
pub(crate) struct Digest {
    settings: DigestSettings,
    webhook_id: String,
    groups: HashMap<String, Group>,
    /// Whether the fleet digests these groups (see [`Digest::set_shared`]).
    shared: bool,
    /// No group needs a look before this: the timer's ticks over idle groups then cost nothing
    /// (200,000 idle groups were 16% of a core, scanned every tick).
    next_look: Instant,
    /// Full passes over the groups, for the tests.
    #[cfg(test)]
    passes: usize,
}

struct Group {
    /// The group_by values and the latest event's variables as compact JSON: a group lives
    /// for minutes to days and a message needs them rarely, so they are kept small (a parsed
    /// map costs several times its text) and parsed when a message is made.
    values: Box<str>,
    key: String,
    overflow: bool,
    latest: Box<str>,
    latest_event: Event,
    last_event: Instant,
    /// Uncounted events (the next message's count) and the total since the group opened.
    pending: u64,
    total: u64,
    first_seen: Option<SystemTime>,
    last_seen: SystemTime,
    /// The first events of the next message, with when they came (threshold aging).
    samples: Vec<(Instant, Value)>,
    /// Before firing, with a threshold: the events within the window.
    window: VecDeque<(Instant, SystemTime)>,
    /// Shared, with a threshold: the uncounted events by time bucket (start in ms, count).
    buckets: Vec<(u64, u64)>,
    firing: bool,
    /// When the next message may go.
    next_at: Instant,
    undelivered: Arc<AtomicBool>,
}

impl Digest {
    /// The digest state of the webhook `webhook_id`.
    pub fn new(settings: DigestSettings, webhook_id: &str) -> Self {
        Digest {
            settings,
            webhook_id: webhook_id.to_owned(),
            groups: HashMap::new(),
            shared: false,
            next_look: Instant::now(),
            #[cfg(test)]
            passes: 0,
        }
    }

    /// Shared: the fleet digests these groups — events are only counted here, handed to
    /// Redis by [`Digest::shares`], and messages come from the fleet's record through
    /// [`Digest::message_of`]. Not shared (no Redis outbox, or cut off from it): this
    /// process sends its own messages.
    pub fn set_shared(&mut self, shared: bool) {
        if shared != self.shared {
            // Who sends changes: every group needs a look at the next tick.
            self.next_look = Instant::now();
        }
        self.shared = shared;
    }

    /// Whether the fleet digests these groups now.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// Takes what was counted since the last call, for the fleet's record.
    pub fn shares(&mut self) -> Vec<Share> {
        let groups = self.groups.values_mut();
        groups
            .filter(|group| group.pending > 0)
            .map(|group| Share {
                key: group.key.clone(),
                values: group.values.to_string(),
                overflow: group.overflow,
                latest: group.latest.to_string(),
                event: group.latest_event.name(),
                count: std::mem::take(&mut group.pending),
                first_ms: epoch_ms(group.first_seen.take().unwrap_or(group.last_seen)),
                last_ms: epoch_ms(group.last_seen),
                samples: std::mem::take(&mut group.samples)
                    .into_iter()
                    .map(|(_, sample)| sample.to_string())
                    .collect(),
                buckets: std::mem::take(&mut group.buckets),
            })
            .collect()
    }

    /// Counts again what [`Digest::shares`] took, when the fleet's record could not take it.
    pub fn restore(&mut self, shares: Vec<Share>, now: Instant) {
        self.next_look = self.next_look.min(now);
        for share in shares {
            let Some(group) = self.groups.get_mut(&share.key) else {
                continue;
            };
            group.pending += share.count;
            let first = UNIX_EPOCH + Duration::from_millis(share.first_ms);
            group.first_seen = Some(group.first_seen.map_or(first, |seen| seen.min(first)));
            let samples = share.samples.iter().map(|sample| (now, parse(sample)));
            group.samples.splice(0..0, samples);
            group.samples.truncate(self.settings.samples);
            group.buckets.splice(0..0, share.buckets);
        }
    }

    /// The message of a group's fleet counts this process took with the group's lease.
    pub fn message_of(&mut self, taken: Taken, now: Instant) -> Option<Message> {
        let event = Event::from_name(&taken.event).ok()?;
        let undelivered = self
            .groups
            .get(&taken.key)
            .map_or_else(Arc::default, |group| Arc::clone(&group.undelivered));
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let summary = Summary {
            count: taken.count,
            total: taken.total,
            first_seen: at(taken.first_ms),
            last_seen: at(taken.last_ms),
            values: &taken.values,
            key: &taken.key,
            status: if taken.resolved { "resolved" } else { "firing" },
            samples: taken.samples.iter().map(|sample| parse(sample)).collect(),
            overflow: taken.overflow,
        };
        if let Some(group) = self.groups.get_mut(&taken.key) {
            group.next_at = now + self.settings.group_interval;
        }
        Some(summary.message(&self.settings, event, &taken.latest, undelivered))
    }

    /// The message a group of `count` events like `vars` would send (the CLI's `--count`).
    pub fn preview(
        settings: &DigestSettings,
        webhook_id: &str,
        event: Event,
        vars: &Map<String, Value>,
        sample: Value,
        count: u64,
    ) -> Message {
        let values = group_of(&settings.group_by, vars);
        let now = Instant::now();
        let key = group_key(webhook_id, &values);
        let mut group = Group::new(&values, key, false, event, now);
        group.latest = latest(vars);
        group.pending = count;
        group.first_seen = Some(group.last_seen);
        group.samples = vec![(now, sample); settings.samples.min(count as usize)];
        group.message(settings, now, "firing")
    }

    /// Groups open now.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Counts an event (`vars`, read only: the group keeps them as compact text; `sample` its
    /// default body, made only if kept); returns the
    /// group's message when one is due now.
    pub fn add(
        &mut self,
        event: Event,
        vars: &Map<String, Value>,
        sample: impl FnOnce(&Map<String, Value>) -> Value,
        now: Instant,
    ) -> (Option<Message>, Aged) {
        let wall = SystemTime::now();
        // A new event may make its group due: the next tick looks.
        self.next_look = self.next_look.min(now);
        let settings = &self.settings;
        let mut values = bounded(group_of(&settings.group_by, vars));
        let mut key = group_key(&self.webhook_id, &values);
        let overflow = !self.groups.contains_key(&key) && self.groups.len() >= settings.max_groups;
        if overflow {
            values = Map::new();
            key = group_key(&self.webhook_id, &values);
        }
        let next_at = now + settings.group_wait;
        let group = self
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group::new(&values, key, overflow, event, next_at));
        if group.samples.len() < settings.samples {
            group.samples.push((now, sample(vars)));
        }
        group.latest = latest(vars);
        group.latest_event = event;
        group.last_event = now;
        group.last_seen = wall;
        if self.shared {
            group.pending += 1;
            group.first_seen.get_or_insert(wall);
            if let Some(threshold) = settings.threshold {
                // Twenty buckets per window: the fleet's window slides in steps of 5%.
                let size = (threshold.window.as_millis() as u64 / 20).max(1);
                let bucket = epoch_ms(wall) / size * size;
                match group.buckets.last_mut() {
                    Some((start, count)) if *start == bucket => *count += 1,
                    _ => group.buckets.push((bucket, 1)),
                }
            }
            return (None, Aged::default());
        }
        let mut aged = Aged::default();
        match settings.threshold {
            Some(threshold) if !group.firing => {
                group.window.push_back((now, wall));
                aged.below_threshold = group.age(now, threshold.window);
                if group.window.len() < threshold.count {
                    return (None, aged);
                }
                group.firing = true;
                group.pending = group.window.len() as u64;
                group.first_seen = group.window.front().map(|(_, at)| *at);
                group.window = VecDeque::new();
                group.next_at = now + settings.group_wait;
            }
            _ => {
                group.firing = true;
                group.pending += 1;
                group.first_seen.get_or_insert(wall);
            }
        }
        let due = group.next_at <= now && !group.undelivered.load(SeqCst);
        let message = due.then(|| group.message(settings, now, "firing"));
        (message, aged)
    }

    /// The messages due at `now`: firing groups with uncounted events whose interval has
    /// passed and whose last message ended (all of them when `closing`), and — unless
    /// closing — the resolve messages of groups quiet for `resolve_after` (when `resolves`).
    /// Quiet groups close.
    /// At the engine's final close: the events of threshold groups that never fired (they
    /// would otherwise end in no counter), forgotten; counted as `below_threshold` by the caller.
    pub fn unfired(&mut self) -> u64 {
        if self.settings.threshold.is_none() || self.shared {
            return 0;
        }
        let mut events = 0;
        for group in self.groups.values_mut().filter(|g| !g.firing) {
            events += group.window.len() as u64;
            group.window.clear();
        }
        events
    }

    pub fn due(&mut self, now: Instant, closing: bool, resolves: bool) -> (Vec<Message>, Aged) {
        if !closing && now < self.next_look {
            return (Vec::new(), Aged::default());
        }
        #[cfg(test)]
        {
            self.passes += 1;
        }
        let settings = &self.settings;
        // The earliest time a kept group may need a look again (see `Group::wake`).
        let mut next_look = now + settings.resolve_after;
        if self.shared {
            // The fleet sends; quiet groups with nothing left to hand over close here.
            let quiet =
                |group: &Group| now.saturating_duration_since(group.last_event) >= settings.resolve_after;
            self.groups.retain(|_, group| {
                let keep = group.pending > 0 || !quiet(group);
                if keep {
                    next_look = next_look.min(group.last_event + settings.resolve_after).max(now);
                }
                keep
            });
            self.next_look = next_look;
            return (Vec::new(), Aged::default());
        }
        let mut messages = Vec::new();
        let mut aged = Aged::default();
        let mut wake = |group: &Group| next_look = next_look.min(group.wake(settings, now));
        self.groups.retain(|_, group| {
            if let (Some(threshold), false) = (settings.threshold, group.firing) {
                aged.below_threshold += group.age(now, threshold.window);
            }
            let idle = !group.undelivered.load(SeqCst);
            if group.pending > 0 && (closing || (idle && group.next_at <= now)) {
                messages.push(group.message(settings, now, "firing"));
                wake(group);
                return true;
            }
            let quiet = now.saturating_duration_since(group.last_event) >= settings.resolve_after;
            if !quiet || !idle || group.pending > 0 || closing {
                wake(group);
                return true;
            }
            aged.below_threshold += group.window.len() as u64;
            if group.firing && resolves {
                messages.push(group.message(settings, now, "resolved"));
            }
            false
        });
        self.next_look = next_look;
        (messages, aged)
    }
}

impl Group {
    /// A group with no event counted yet, whose first message may go at `next_at`.
    fn new(values: &Map<String, Value>, key: String, overflow: bool, event: Event, next_at: Instant) -> Self {
        Group {
            values: compact(values),
            key,
            overflow,
            latest: Box::from("{}"),
            latest_event: event,
            last_event: next_at,
            pending: 0,
            total: 0,
            first_seen: None,
            last_seen: SystemTime::now(),
            samples: Vec::new(),
            window: VecDeque::new(),
            buckets: Vec::new(),
            firing: false,
            next_at,
            undelivered: Arc::default(),
        }
    }
    /// When this group may next need the timer: its next message (pending events, once its last
    /// message ended: until then, every tick), the oldest event leaving a threshold's window,
    /// or its quiet time running out (then every tick until its last message ended).
    fn wake(&self, settings: &DigestSettings, now: Instant) -> Instant {
        let idle = !self.undelivered.load(SeqCst);
        let mut at = self.last_event + settings.resolve_after;
        if self.pending > 0 {
            at = at.min(if idle { self.next_at } else { now });
        }
        if let (Some(threshold), false, Some((first, _))) =
            (settings.threshold, self.firing, self.window.front())
        {
            at = at.min(*first + threshold.window);
        }
        if !idle && at <= now {
            return now;
        }
        at.max(now)
    }

    /// Drops the window's events older than `window`; returns how many.
    fn age(&mut self, now: Instant, window: Duration) -> u64 {
        let fresh = |at: &Instant| now.saturating_duration_since(*at) <= window;
        let before = self.window.len();
        while self.window.front().is_some_and(|(at, _)| !fresh(at)) {
            self.window.pop_front();
        }
        self.samples.retain(|(at, _)| fresh(at));
        (before - self.window.len()) as u64
    }

    /// The next message: counts what is uncounted and starts the next interval.
    fn message(&mut self, settings: &DigestSettings, now: Instant, status: &str) -> Message {
        let count = std::mem::take(&mut self.pending);
        self.total += count;
        let summary = Summary {
            count,
            total: self.total,
            first_seen: self.first_seen.take().unwrap_or(self.last_seen),
            last_seen: self.last_seen,
            values: &self.values,
            key: &self.key,
            status,
            samples: std::mem::take(&mut self.samples)
                .into_iter()
                .map(|(_, sample)| sample)
                .collect(),
            overflow: self.overflow,
        };
        self.next_at = now + settings.group_interval;
        summary.message(
            settings,
            self.latest_event,
            &self.latest,
            Arc::clone(&self.undelivered),
        )
    }
}

/// What a message says of its group (`digest` among its variables).
struct Summary<'a> {
    count: u64,
    total: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
    /// The group's values as compact JSON.
    values: &'a str,
    key: &'a str,
    status: &'a str,
    samples: Vec<Value>,
    overflow: bool,
}

impl Summary<'_> {
    /// The message: the latest event's variables (`latest`, compact JSON) plus `digest`;
    /// undelivered from now until its ticket ends.
    fn message(
        self,
        settings: &DigestSettings,
        event: Event,
        latest: &str,
        undelivered: Arc<AtomicBool>,
    ) -> Message {
        let rfc3339 = |at: SystemTime| humantime::format_rfc3339_millis(at).to_string();
        let digest = json!({
            "count": self.count,
            "total": self.total,
            "first_seen": rfc3339(self.first_seen),
            "last_seen": rfc3339(self.last_seen),
            "group": parse(self.values),
            "key": self.key,
            "status": self.status,
            "samples": self.samples,
            "overflow": self.overflow,
            "window": window_text(settings.group_interval),
        });
        let mut vars = match parse(latest) {
            Value::Object(vars) => vars,
            _ => Map::new(),
        };
        vars.insert("digest".into(), digest);
        undelivered.store(true, SeqCst);
        Message {
            event,
            vars,
            undelivered,
            count: self.count,
        }
    }
}

/// Milliseconds since the Unix epoch.
fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A map as compact JSON text.
fn compact(map: &Map<String, Value>) -> Box<str> {
    serde_json::to_string(map).unwrap_or_default().into_boxed_str()
}

/// Bytes of one string a group keeps (a group_by value, a string of its latest event): an
/// open group costs at most a few KB whatever the events' strings (DESIGN: 4 KB).
const GROUP_STRING: usize = 256;
/// Bytes of the latest event's variables a group keeps at most; past that only the fields a
/// message shows stay (`payload` and the rest of `metadata` go).
const GROUP_LATEST: usize = 3 * 1024;

/// `values` with each string cut at [`GROUP_STRING`] bytes (in the key and the message).
fn bounded(values: Map<String, Value>) -> Map<String, Value> {
    match capped_at(Value::Object(values), GROUP_STRING) {
        Value::Object(values) => values,
        _ => unreachable!("an object stays an object"),
    }
}

/// The latest event's variables as a group keeps them: strings cut at [`GROUP_STRING`] bytes,
/// and at most [`GROUP_LATEST`] bytes in all.
fn latest(vars: &Map<String, Value>) -> Box<str> {
    if !vars.values().any(|v| too_long(v, GROUP_STRING)) {
        let text = compact(vars);
        if text.len() <= GROUP_LATEST {
            return text;
        }
    }
    let mut kept: Map<String, Value> = vars
        .iter()
        .map(|(k, v)| (k.clone(), capped_at(v.clone(), GROUP_STRING)))
        .collect();
    let text = compact(&kept);
    if text.len() <= GROUP_LATEST {
        return text;
    }
    kept.remove("payload");
    if let Some(Value::Object(metadata)) = kept.get_mut("metadata") {
        metadata.retain(|k, _| matches!(k.as_str(), "tool_name" | "prompt_id" | "resource_uri" | "error"));
    }
    compact(&kept)
}

/// JSON text this module wrote, parsed back.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// `60 s`, `5 min`, `2 h`, `0.5 s`: how summaries name a group's interval.
fn window_text(interval: Duration) -> String {
    let seconds = interval.as_secs_f64();
    match seconds {
        s if s < 120.0 => format!("{} s", (s * 10.0).round() / 10.0),
        s if s < 7200.0 => format!("{} min", (s / 60.0 * 10.0).round() / 10.0),
        s => format!("{} h", (s / 3600.0 * 10.0).round() / 10.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Threshold;
    use crate::matching::Field;

    const MS: Duration = Duration::from_millis(1);

    fn settings(threshold: Option<Threshold>) -> DigestSettings {
        DigestSettings {
            group_by: vec![Field::named("user").unwrap()],
            group_wait: Duration::ZERO,
            group_interval: 1000 * MS,
            threshold,
            resolve_after: 5000 * MS,
            max_groups: 2,
            samples: 2,
        }
    }

    fn vars(user: &str) -> Map<String, Value> {
        let mut vars = Map::new();
        vars.insert("user".into(), user.into());
        vars
    }

    #[test]
    fn idle_groups_cost_the_timer_nothing_until_one_needs_a_look() {
        let mut d = Digest::new(settings(None), "w");
        d.settings.max_groups = 1000;
        let start = Instant::now();
        for i in 0..1000 {
            let message = add(&mut d, &format!("user-{i}"), start);
            // Delivered at once: the group is idle, with nothing pending.
            message.unwrap().undelivered.store(false, SeqCst);
        }
        d.due(start, false, true);
        let passes = d.passes;
        // Ticks before the groups' quiet time (resolve_after, 5 s) look at nothing.
        for tick in 1..100 {
            let (messages, _) = d.due(start + tick * 40 * MS, false, true);
            assert!(messages.is_empty());
        }
        assert_eq!(d.passes, passes, "no pass over idle groups");
        // A new event makes the next tick look; then quiet again.
        add(&mut d, "user-1", start + 4100 * MS)
            .unwrap()
            .undelivered
            .store(false, SeqCst);
        d.due(start + 4150 * MS, false, true);
        assert_eq!(d.passes, passes + 1);
        // At the quiet time every group (but the one that spoke again) resolves.
        let (resolved, _) = d.due(start + 5001 * MS, false, true);
        assert_eq!(resolved.len(), 999);
        assert_eq!(d.groups(), 1);
    }

    fn add(d: &mut Digest, user: &str, at: Instant) -> Option<Message> {
        d.add(Event::Violation, &vars(user), |v| Value::Object(v.clone()), at)
            .0
    }

    fn count(m: &Message) -> u64 {
        m.vars["digest"]["count"].as_u64().unwrap()
    }

    #[test]
    fn a_storm_is_one_message_then_one_per_interval_each_counted_once() {
        let t0 = Instant::now();
        let mut d = Digest::new(settings(None), "w");
        let first = add(&mut d, "a", t0).expect("group_wait 0: the first event goes at once");
        assert_eq!(count(&first), 1);
        let mut counted = 1;
        for i in 1..=100u32 {
            assert!(
                add(&mut d, "a", t0 + i * 5 * MS).is_none(),
                "the first message is undelivered"
            );
        }
        let (due, _) = d.due(t0 + 2000 * MS, false, false);
        assert!(due.is_empty(), "nothing more while a message is undelivered");
        first.undelivered.store(false, SeqCst);
        let (due, _) = d.due(t0 + 2000 * MS, false, false);
        counted += due.iter().map(count).sum::<u64>();
        assert_eq!((due.len(), counted), (1, 101));
        assert_eq!(due[0].vars["digest"]["total"], 101);
        assert_eq!(due[0].vars["digest"]["samples"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn groups_beyond_max_groups_share_the_overflow_group() {
        let t0 = Instant::now();
        let mut d = Digest::new(settings(None), "w");
        let keys: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .filter_map(|u| add(&mut d, u, t0))
            .map(|m| {
                let overflow = m.vars["digest"]["overflow"].as_bool().unwrap();
                format!("{}{}", m.vars["digest"]["key"].as_str().unwrap(), overflow)
            })
            .collect();
        assert_eq!(
            keys.len(),
            3,
            "a, b, and the overflow group's first (c); d waits behind it"
        );
        assert!(keys[2].ends_with("true") && !keys[0].ends_with("true"));
        assert_eq!(d.groups(), 3);
    }

    #[test]
    fn threshold_below_at_and_above() {
        let t0 = Instant::now();
        let threshold = Threshold {
            count: 3,
            window: 1000 * MS,
        };
        let mut d = Digest::new(settings(Some(threshold)), "w");
        // Below: two events, then they age out.
        assert!(add(&mut d, "a", t0).is_none() && add(&mut d, "a", t0 + 100 * MS).is_none());
        let (due, aged) = d.due(t0 + 1500 * MS, false, true);
        assert!(due.is_empty());
        assert_eq!(aged.below_threshold, 2);
        // At: three within the window fire, counting all three.
        let t1 = t0 + 2000 * MS;
        assert!(add(&mut d, "a", t1).is_none() && add(&mut d, "a", t1 + 10 * MS).is_none());
        let fired = add(&mut d, "a", t1 + 20 * MS).expect("the third event crosses the threshold");
        assert_eq!(count(&fired), 3);
        fired.undelivered.store(false, SeqCst);
        // Above: while firing, events count without a threshold test.
        assert!(add(&mut d, "a", t1 + 30 * MS).is_none());
        let (due, _) = d.due(t1 + 1100 * MS, false, true);
        assert_eq!(due.iter().map(count).collect::<Vec<_>>(), [1]);
        due[0].undelivered.store(false, SeqCst);
        // Quiet for resolve_after: a resolve message, and the group is gone.
        let (due, _) = d.due(t1 + 6000 * MS, false, true);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].vars["digest"]["status"], "resolved");
        assert_eq!(due[0].vars["digest"]["key"], fired.vars["digest"]["key"]);
        assert_eq!(d.groups(), 0);
    }

    #[test]
    fn closing_sends_what_is_uncounted_even_behind_an_undelivered_message() {
        let t0 = Instant::now();
        let mut d = Digest::new(settings(None), "w");
        let _first = add(&mut d, "a", t0).unwrap();
        add(&mut d, "a", t0 + MS);
        let (due, _) = d.due(t0 + 2 * MS, true, true);
        assert_eq!(due.iter().map(count).collect::<Vec<_>>(), [1]);
        assert_eq!(window_text(Duration::from_secs(60)), "60 s");
        assert_eq!(window_text(Duration::from_secs(300)), "5 min");
        assert_eq!(window_text(Duration::from_millis(500)), "0.5 s");
    }
}
