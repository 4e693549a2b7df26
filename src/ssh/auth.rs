//! Rate limits on logins: a token bucket per source address. Every refused attempt (a key that
//! is not authorized, a wrong password) takes a token; an address without tokens is refused
//! before anything is checked, until the bucket refills. Successful logins and the `none` probe
//! every client starts with take nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Refused attempts an address may make in a burst.
pub const BURST: f64 = 20.0;
/// Tokens an address gets back per second (one every 2 s: 30 attempts a minute).
pub const REFILL_PER_SECOND: f64 = 0.5;
/// Addresses remembered before full buckets are forgotten.
const MAX_TRACKED: usize = 4096;

/// The buckets, per address.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * REFILL_PER_SECOND).min(BURST);
        self.updated = now;
    }
}

impl Limiter {
    /// Whether `ip` may try to log in now.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get_mut(&canonical(ip)) {
            Some(bucket) => {
                bucket.refill(now);
                bucket.tokens >= 1.0
            }
            None => true,
        }
    }

    /// Records a refused attempt from `ip`.
    pub fn refused(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, bucket| {
                bucket.refill(now);
                bucket.tokens < BURST
            });
        }
        let bucket = buckets.entry(canonical(ip)).or_insert(Bucket {
            tokens: BURST,
            updated: now,
        });
        bucket.refill(now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_refusals_locks_the_address_out_alone() {
        let limiter = Limiter::default();
        let attacker: IpAddr = "10.1.2.3".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        let other: IpAddr = "10.1.2.4".parse().unwrap();
        for _ in 0..BURST as usize {
            assert!(limiter.allows(attacker));
            limiter.refused(attacker);
        }
        assert!(!limiter.allows(attacker));
        assert!(!limiter.allows(mapped));
        assert!(limiter.allows(other));
        // A token comes back after 1 / REFILL_PER_SECOND seconds.
        let mut buckets = limiter.buckets.lock().unwrap();
        let bucket = buckets.get_mut(&attacker).unwrap();
        bucket.updated -= std::time::Duration::from_secs_f64(1.0 / REFILL_PER_SECOND);
        drop(buckets);
        assert!(limiter.allows(attacker));
    }
}
