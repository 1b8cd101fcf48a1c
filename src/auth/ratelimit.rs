//! Failed-login limiting per source address and per username, with bounded memory.
//!
//! Failures are counted in three leaky buckets: the source, the username, and the pair
//! (source, username). Every failure adds one to each, and levels drain continuously at
//! `max_failures` per `window_ms`. When a failure brings a level to `max_failures`, that
//! bucket is blocked for `block_ms`. After the block the bucket has only partly drained, so
//! a source that keeps failing is blocked again after a few attempts, while one that stops
//! is forgotten once its bucket is empty.
//!
//! [`FailureLimiter::gate`] decides, before the credentials are checked, whether an attempt
//! of `username` from `ip` is refused. It is refused when
//!
//! 1. the pair is blocked: this source guessed this username's password too often;
//! 2. the source is blocked and the pair has failures of its own: a failing source may not
//!    go on guessing the usernames it already failed with;
//! 3. the username is blocked and the source has failures: a guess spread over many
//!    addresses gets one try per clean address at most.
//!
//! Everything else is checked normally. So a correct login from an address blocked by
//! someone else's failures (a CPE behind the same NAT as an attacker) gets through, while
//! an attacker's next guess does not. The exception is two parties behind one address
//! using the same username (shared default credentials): their failures are one pair's.
//! Attempts without a username (the first, unauthenticated request that gets the Digest
//! challenge) are never refused.
//!
//! Sources are keyed by IPv4 address, or by the /64 prefix for IPv6 (a
//! single host usually controls a whole /64). IPv4-mapped IPv6 addresses
//! count as the IPv4 address.
//!
//! Memory is capped at `capacity` sources (about 80 bytes each). When full,
//! the source whose last failure is oldest is forgotten first. An attacker
//! with more addresses than `capacity` can thus push a blocked source out;
//! size `capacity` well above the number of sources expected to fail at once.
//!
//! The type is pure: the caller passes the time and wraps it in a mutex.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

/// Settings for [`FailureLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimiterConfig {
    /// Failures within one window that trigger a block (at least 1).
    pub max_failures: u32,
    /// Time for a full bucket to drain, in milliseconds.
    pub window_ms: u64,
    /// How long a source stays blocked, in milliseconds.
    pub block_ms: u64,
    /// Maximum number of sources remembered (at least 1).
    pub capacity: usize,
}

impl Default for FailureLimiterConfig {
    /// Ten failures per ten minutes, then a five-minute block; up to 100,000
    /// sources (about 8 MiB).
    fn default() -> Self {
        Self {
            max_failures: 10,
            window_ms: 10 * 60 * 1000,
            block_ms: 5 * 60 * 1000,
            capacity: 100_000,
        }
    }
}

/// What a bucket counts failures of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Source(SourceKey),
    /// A username, by keyed hash (bounded size whatever its length).
    User(u64),
    Pair(SourceKey, u64),
}

/// Whether an attempt may have its credentials checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Refused without checking; retry after this many seconds.
    Refused(u64),
}

/// A source: an IPv4 address or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SourceKey {
    V4(u32),
    V6Prefix(u64),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => {
                    let bits = u128::from(v6);
                    // The upper 64 bits are the network prefix.
                    Self::V6Prefix((bits >> 64) as u64)
                }
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Bucket level at `last_ms`.
    level: f64,
    last_ms: u64,
    blocked_until: u64,
}

/// Counts failed logins per source and tells when a source is blocked.
#[derive(Debug, Clone)]
pub struct FailureLimiter {
    config: FailureLimiterConfig,
    entries: HashMap<Key, Entry>,
    by_last: BTreeSet<(u64, Key)>,
    hasher: std::hash::RandomState,
}

impl FailureLimiter {
    /// Creates an empty limiter.
    pub fn new(config: FailureLimiterConfig) -> Self {
        let config = FailureLimiterConfig {
            max_failures: config.max_failures.max(1),
            window_ms: config.window_ms.max(1),
            capacity: config.capacity.max(1),
            ..config
        };
        Self {
            config,
            entries: HashMap::new(),
            by_last: BTreeSet::new(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &FailureLimiterConfig {
        &self.config
    }

    /// Number of sources currently remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn drain_per_ms(&self) -> f64 {
        f64::from(self.config.max_failures) / self.config.window_ms as f64
    }

    fn level_at(&self, entry: &Entry, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(entry.last_ms) as f64;
        (entry.level - elapsed * self.drain_per_ms()).max(0.0)
    }

    fn is_idle(&self, entry: &Entry, now_ms: u64) -> bool {
        entry.blocked_until <= now_ms && self.level_at(entry, now_ms) <= 0.0
    }

    /// Forgets sources, oldest first, that are neither blocked nor holding
    /// any failures.
    fn prune_idle(&mut self, now_ms: u64) {
        while let Some(&(last, key)) = self.by_last.first() {
            let idle = self
                .entries
                .get(&key)
                .is_none_or(|e| self.is_idle(e, now_ms));
            if !idle {
                break;
            }
            self.by_last.remove(&(last, key));
            self.entries.remove(&key);
        }
    }

    fn user_key(&self, username: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(username)
    }

    fn keys(&self, ip: IpAddr, username: &str) -> [Key; 3] {
        let (s, u) = (SourceKey::of(ip), self.user_key(username));
        [Key::Source(s), Key::User(u), Key::Pair(s, u)]
    }

    fn blocked_for(&self, key: &Key, now_ms: u64) -> Option<u64> {
        retry_after_secs(self.entries.get(key)?.blocked_until, now_ms)
    }

    fn failing(&self, key: &Key, now_ms: u64) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| !self.is_idle(e, now_ms))
    }

    /// Whether an attempt of `username` from `ip` may be checked at all (see the module
    /// documentation for the rules). `None`: no username was given.
    pub fn gate(&self, ip: IpAddr, username: Option<&str>, now_ms: u64) -> Gate {
        let Some(username) = username else {
            return Gate::Open;
        };
        let [source, user, pair] = self.keys(ip, username);
        let refused = self
            .blocked_for(&pair, now_ms)
            .or_else(|| {
                self.blocked_for(&source, now_ms)
                    .filter(|_| self.failing(&pair, now_ms))
            })
            .or_else(|| {
                self.blocked_for(&user, now_ms)
                    .filter(|_| self.failing(&source, now_ms))
            });
        match refused {
            Some(secs) => Gate::Refused(secs),
            None => Gate::Open,
        }
    }

    /// Records a failed login of `username` from `ip` at `now_ms`. Returns the
    /// seconds until the source may try again if this failure blocked it.
    pub fn record_failure(&mut self, ip: IpAddr, username: &str, now_ms: u64) -> Option<u64> {
        let [source, user, pair] = self.keys(ip, username);
        let blocked = self.record_one(source, now_ms);
        self.record_one(user, now_ms);
        self.record_one(pair, now_ms);
        blocked
    }

    fn record_one(&mut self, key: Key, now_ms: u64) -> Option<u64> {
        self.prune_idle(now_ms);
        let previous = self.entries.get(&key).copied();
        let mut entry = match previous {
            Some(e) => {
                self.by_last.remove(&(e.last_ms, key));
                Entry {
                    level: self.level_at(&e, now_ms),
                    last_ms: e.last_ms.max(now_ms),
                    blocked_until: e.blocked_until,
                }
            }
            None => {
                while self.entries.len() >= self.config.capacity {
                    let Some((_, oldest)) = self.by_last.pop_first() else {
                        break;
                    };
                    self.entries.remove(&oldest);
                }
                Entry {
                    level: 0.0,
                    last_ms: now_ms,
                    blocked_until: 0,
                }
            }
        };
        entry.level += 1.0;
        // A partly drained failure still counts as one: three failures in
        // quick succession block at `max_failures = 3`.
        if entry.level.ceil() >= f64::from(self.config.max_failures) {
            entry.blocked_until = entry
                .blocked_until
                .max(now_ms.saturating_add(self.config.block_ms));
        }
        self.entries.insert(key, entry);
        self.by_last.insert((entry.last_ms, key));
        retry_after_secs(entry.blocked_until, now_ms)
    }

    /// Whether the source `ip` is blocked at `now_ms`, and if so for how many
    /// more seconds (rounded up, at least 1): the value for `Retry-After`.
    pub fn is_blocked(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        self.blocked_for(&Key::Source(SourceKey::of(ip)), now_ms)
    }

    /// Forgets the failures of `username` (alone and from `ip`) after a successful login.
    /// The source's own count stays: others behind the same address may be failing.
    pub fn record_success(&mut self, ip: IpAddr, username: &str) {
        let [_, user, pair] = self.keys(ip, username);
        for key in [user, pair] {
            if let Some(e) = self.entries.remove(&key) {
                self.by_last.remove(&(e.last_ms, key));
            }
        }
    }
}

fn retry_after_secs(blocked_until: u64, now_ms: u64) -> Option<u64> {
    (blocked_until > now_ms).then(|| (blocked_until - now_ms).div_ceil(1000).max(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const T0: u64 = 1_700_000_000_000;

    fn limiter(capacity: usize) -> FailureLimiter {
        FailureLimiter::new(FailureLimiterConfig {
            max_failures: 3,
            window_ms: 60_000,
            block_ms: 30_000,
            capacity,
        })
    }

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn blocks_after_max_failures_and_unblocks_later() {
        let mut l = limiter(10);
        let ip = v4(1);
        assert_eq!(l.record_failure(ip, "u", T0), None);
        assert_eq!(l.record_failure(ip, "u", T0 + 1), None);
        assert_eq!(l.is_blocked(ip, T0 + 2), None);
        assert_eq!(l.record_failure(ip, "u", T0 + 2), Some(30));
        assert_eq!(l.is_blocked(ip, T0 + 2), Some(30));
        assert_eq!(l.is_blocked(ip, T0 + 29_500), Some(1));
        assert_eq!(l.is_blocked(ip, T0 + 30_002), None);
        // Other sources are unaffected.
        assert_eq!(l.is_blocked(v4(2), T0 + 2), None);
    }

    #[test]
    fn failures_decay_over_the_window() {
        let mut l = limiter(10);
        let ip = v4(1);
        // One failure every 20 s drains exactly as fast as it fills
        // (3 per 60 s), so the level never reaches 3.
        for i in 0..20 {
            assert_eq!(
                l.record_failure(ip, "u", T0 + i * 20_000),
                None,
                "attempt {i}"
            );
        }
        // Three quick ones do block.
        assert_eq!(l.record_failure(ip, "u", T0 + 400_001), None);
        assert_eq!(l.record_failure(ip, "u", T0 + 400_002), None);
        assert!(l.record_failure(ip, "u", T0 + 400_003).is_some());
    }

    #[test]
    fn repeat_offender_is_blocked_again_quickly() {
        let mut l = limiter(10);
        let ip = v4(1);
        for i in 0..3 {
            l.record_failure(ip, "u", T0 + i);
        }
        let after_block = T0 + 30_010;
        assert_eq!(l.is_blocked(ip, after_block), None);
        // Only half drained (1.5 of 3 left): the next failure blocks again.
        assert!(l.record_failure(ip, "u", after_block).is_some());
        // A source that stayed away for a whole window starts afresh.
        let much_later = after_block + 30_000 + 60_000;
        assert_eq!(l.record_failure(ip, "u", much_later), None);
    }

    #[test]
    fn success_clears_the_username_but_not_the_source() {
        let mut l = limiter(10);
        let ip = v4(1);
        l.record_failure(ip, "u", T0);
        l.record_failure(ip, "u", T0);
        l.record_success(ip, "u");
        // Only the source's count is left.
        assert_eq!(l.len(), 1);
        assert!(l.record_failure(ip, "u", T0).is_some());
        assert!(matches!(l.gate(ip, Some("u"), T0), Gate::Refused(_)));
        assert_eq!(l.gate(ip, Some("w"), T0), Gate::Open);
    }

    #[test]
    fn a_correct_login_gets_through_a_source_blocked_by_someone_else() {
        let mut l = limiter(100);
        let nat = v4(1);
        // An attacker behind the NAT guesses a device's password until the address blocks.
        for _ in 0..3 {
            l.record_failure(nat, "victim", T0);
        }
        assert!(l.is_blocked(nat, T0).is_some());
        // The attacker may not go on with that username, from there...
        assert!(matches!(l.gate(nat, Some("victim"), T0), Gate::Refused(30)));
        // ...nor guess other usernames once the address is blocked and they fail there.
        l.record_failure(nat, "other", T0);
        assert!(matches!(l.gate(nat, Some("other"), T0), Gate::Refused(_)));
        // A CPE behind the same NAT with its own username is checked normally.
        assert_eq!(l.gate(nat, Some("cpe-42"), T0), Gate::Open);
        // The Digest challenge itself is never refused.
        assert_eq!(l.gate(nat, None, T0), Gate::Open);
        // A username attacked from many addresses: blocked for addresses that failed,
        // open for a clean one (its owner elsewhere).
        let mut l = limiter(100);
        for i in 0..3 {
            l.record_failure(v4(10 + i), "dev", T0);
        }
        assert!(matches!(l.gate(v4(10), Some("dev"), T0), Gate::Refused(_)));
        assert_eq!(l.gate(v4(99), Some("dev"), T0), Gate::Open);
        // After the block everything opens again.
        assert_eq!(l.gate(v4(10), Some("dev"), T0 + 120_000), Gate::Open);
    }

    #[test]
    fn memory_is_bounded_and_oldest_is_evicted() {
        let mut l = limiter(3);
        let blocked = v4(200);
        for i in 0..3 {
            l.record_failure(blocked, "u", T0 + i);
        }
        assert!(l.is_blocked(blocked, T0 + 10).is_some());
        for i in 0..50u8 {
            l.record_failure(v4(i), "u", T0 + 100 + u64::from(i));
            assert!(l.len() <= 3);
        }
        // The blocked source had the oldest activity and was pushed out.
        assert_eq!(l.is_blocked(blocked, T0 + 200), None);
    }

    #[test]
    fn idle_sources_are_pruned() {
        let mut l = limiter(100);
        for i in 0..10u8 {
            l.record_failure(v4(i), "u", T0);
        }
        // Ten sources, ten pairs, one username.
        assert_eq!(l.len(), 21);
        // A full window later every bucket is empty.
        l.record_failure(v4(99), "u", T0 + 60_001);
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn ipv6_is_grouped_by_prefix_and_mapped_v4_by_address() {
        let mut l = limiter(10);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        l.record_failure(a, "u", T0);
        l.record_failure(b, "u", T0);
        assert!(l.record_failure(a, "u", T0).is_some());
        assert!(l.is_blocked(b, T0).is_some());
        assert_eq!(l.is_blocked(other, T0), None);

        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        for _ in 0..3 {
            l.record_failure(mapped, "u", T0);
        }
        assert!(l.is_blocked(v4(7), T0).is_some());
        assert_eq!(l.is_blocked(IpAddr::V6(Ipv6Addr::LOCALHOST), T0), None);
    }

    #[test]
    fn clock_going_backwards_does_not_panic_or_unblock() {
        let mut l = limiter(10);
        let ip = v4(1);
        for _ in 0..3 {
            l.record_failure(ip, "u", T0);
        }
        assert!(l.record_failure(ip, "u", T0 - 5_000).is_some());
        assert!(l.is_blocked(ip, T0 - 5_000).is_some());
    }
}
