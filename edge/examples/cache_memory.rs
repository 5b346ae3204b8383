//! Memory cost of the lookup cache: fills it with 100,000 LookupTrack answers
//! shaped like real ones (2-field namespace, track name, relay URL and
//! address) and prints the process's resident memory before and after.
//!
//!   cargo run --release --example cache_memory [-- ENTRIES]

use moq_worker_edge::cache::{Cache, Key, ScopeLimits};
use moq_worker_edge::proto;

/// Resident set size in bytes, from /proc (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let entries: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("ENTRIES is a number"))
        .unwrap_or(100_000);
    let limits = ScopeLimits {
        max_scopes: 1,
        idle: std::time::Duration::from_secs(3600),
    };
    let mut cache: Cache<proto::NamespaceOrigin, ()> = Cache::new(entries, 4096, limits);
    let scope = Some("customer-42".to_string());
    let channel = cache
        .touch(&scope, std::time::Instant::now())
        .opened
        .expect("first read opens the scope");
    assert!(cache.hello(&scope, channel, 1));
    let before = rss();
    for i in 0..entries {
        let ns = vec![b"live".to_vec(), format!("room-{i:06}").into_bytes()];
        let origin = proto::NamespaceOrigin {
            namespace: Some(proto::Namespace { fields: ns.clone() }),
            relay: Some(proto::RelayInfo {
                url: format!("https://relay-{}.eu.example.com:4443/", i % 50),
                addr: Some(format!("10.0.{}.{}:4443", i % 50, i % 200)),
            }),
        };
        let key = Key::Route {
            ns,
            track: Some("video".into()),
        };
        let ticket = cache.ticket();
        assert!(cache.insert(&scope, key, ticket, origin));
        cache.settle(ticket);
    }
    let after = rss();
    assert_eq!(cache.stats().entries, entries);
    let delta = after.saturating_sub(before);
    println!(
        "{entries} entries: RSS {:.1} MiB -> {:.1} MiB, +{:.1} MiB ({} bytes per entry)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        delta as f64 / 1048576.0,
        delta / entries.max(1) as u64
    );
}
