//! The circuit breaker of one webhook: after `failures` failed attempts in a row it opens,
//! and no request is sent until its cooldown has passed; then one probe is let through. A
//! success (of the probe, or of any attempt still in flight) closes it; a failed probe
//! opens it again for twice the cooldown, at most 10× the configured one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;
use crate::stats::Circuit;

/// How far a cooldown may grow, as a multiple of the configured one.
const MAX_COOLDOWN_FACTOR: u32 = 10;

/// What a state change means to the rest of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    /// The circuit just opened: raise `webhook_failing`.
    Opened,
    /// It just closed after being open: raise `webhook_recovered`.
    Recovered,
}

/// May a request go now?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Yes; `probe` when it is the one request of a half-open circuit.
    Go { probe: bool },
    /// Not before this instant (open).
    Until(Instant),
    /// Not until the probe in flight has answered.
    AwaitProbe,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant, cooldown: Duration },
    HalfOpen { cooldown: Duration },
}

/// One webhook's breaker; `settings: None` (`circuit_breaker: false`) never opens.
#[derive(Debug)]
pub struct Breaker {
    settings: Option<BreakerSettings>,
    state: Mutex<(Phase, u32)>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: Option<BreakerSettings>) -> Self {
        Breaker {
            settings,
            state: Mutex::new((Phase::Closed, 0)),
        }
    }

    /// Asks to send a request at `now`; a probe, once granted, is the only request until it
    /// reports back.
    pub fn permit(&self, now: Instant) -> Permit {
        let mut state = self.lock();
        match state.0 {
            Phase::Closed => Permit::Go { probe: false },
            Phase::Open { until, .. } if now < until => Permit::Until(until),
            Phase::Open { cooldown, .. } => {
                state.0 = Phase::HalfOpen { cooldown };
                Permit::Go { probe: true }
            }
            Phase::HalfOpen { .. } => Permit::AwaitProbe,
        }
    }

    /// Whether the circuit lets nothing through now, without taking its probe: `Some(until)`
    /// while open, `Some(None)` while the probe is out; None when a request may go.
    pub fn blocked(&self, now: Instant) -> Option<Option<Instant>> {
        match self.lock().0 {
            Phase::Open { until, .. } if now < until => Some(Some(until)),
            Phase::HalfOpen { .. } => Some(None),
            _ => None,
        }
    }

    /// An attempt succeeded.
    pub fn success(&self) -> Transition {
        let mut state = self.lock();
        state.1 = 0;
        match std::mem::replace(&mut state.0, Phase::Closed) {
            Phase::Closed => Transition::None,
            _ => Transition::Recovered,
        }
    }

    /// An attempt failed at `now`; `probe` when it was the half-open probe.
    pub fn failure(&self, now: Instant, probe: bool) -> Transition {
        let Some(settings) = self.settings else {
            return Transition::None;
        };
        let mut state = self.lock();
        state.1 = state.1.saturating_add(1);
        match state.0 {
            Phase::Closed if state.1 >= settings.failures => {
                state.0 = open(now, settings.cooldown);
                Transition::Opened
            }
            Phase::HalfOpen { cooldown } if probe => {
                let longest = settings.cooldown * MAX_COOLDOWN_FACTOR;
                state.0 = open(now, (cooldown * 2).min(longest));
                Transition::None
            }
            _ => Transition::None,
        }
    }

    /// The state now, for stats.
    pub fn circuit(&self) -> Circuit {
        match self.lock().0 {
            Phase::Closed => Circuit::Closed,
            Phase::Open { .. } => Circuit::Open,
            Phase::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    /// Failed attempts since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.lock().1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Phase, u32)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open(now: Instant, cooldown: Duration) -> Phase {
    Phase::Open {
        until: now + cooldown,
        cooldown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(Some(BreakerSettings {
            failures: 3,
            cooldown: Duration::from_secs(10),
        }))
    }

    #[test]
    fn opens_after_failures_in_a_row_and_a_success_resets_the_count() {
        let (b, now) = (breaker(), Instant::now());
        assert_eq!(b.failure(now, false), Transition::None);
        assert_eq!(b.failure(now, false), Transition::None);
        assert_eq!(b.success(), Transition::None);
        for _ in 0..2 {
            assert_eq!(b.failure(now, false), Transition::None);
        }
        assert_eq!(b.failure(now, false), Transition::Opened);
        assert_eq!(b.circuit(), Circuit::Open);
        assert_eq!(b.permit(now), Permit::Until(now + Duration::from_secs(10)));
        assert_eq!(
            b.failure(now, false),
            Transition::None,
            "late failures do not reopen"
        );
    }

    #[test]
    fn one_probe_after_the_cooldown_which_doubles_up_to_ten_times() {
        let (b, start) = (breaker(), Instant::now());
        (0..3).for_each(|_| {
            b.failure(start, false);
        });
        let mut now = start + Duration::from_secs(10);
        let mut cooldowns = Vec::new();
        for _ in 0..6 {
            assert_eq!(b.permit(now), Permit::Go { probe: true });
            assert_eq!(b.permit(now), Permit::AwaitProbe);
            assert_eq!(b.circuit(), Circuit::HalfOpen);
            b.failure(now, true);
            let Permit::Until(until) = b.permit(now) else {
                panic!("open")
            };
            cooldowns.push((until - now).as_secs());
            now = until;
        }
        assert_eq!(cooldowns, [20, 40, 80, 100, 100, 100]);
        assert_eq!(b.permit(now), Permit::Go { probe: true });
        assert_eq!(b.success(), Transition::Recovered);
        assert_eq!((b.circuit(), b.consecutive_failures()), (Circuit::Closed, 0));
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let (b, now) = (Breaker::new(None), Instant::now());
        (0..100).for_each(|_| assert_eq!(b.failure(now, false), Transition::None));
        assert_eq!(b.permit(now), Permit::Go { probe: false });
    }
}
