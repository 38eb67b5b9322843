//! ID tokens: a cache hit (the steady state) and a cold RS256 mint (a new user or app, a
//! token past half its life, a key switch).

mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use mcp_warden::keys::SigningKey;
use mcp_warden::token::{self, Source, TokenCache, TokenSettings};

fn tokens(c: &mut Criterion) {
    let users = common::spread_users(1, 1, 1);
    let policy = common::load(&common::policy_yaml(common::UPSTREAM_URI, 1, &users));
    let (user, app) = (policy.user(&users[0].name).expect("user"), policy.app(common::APP).expect("app"));
    let (key, _) = SigningKey::generate().expect("RSA key generation");
    let settings = TokenSettings { issuer: "https://warden.example.com".into(), lifetime: Duration::from_secs(300) };
    let cache = TokenCache::default();
    let now = SystemTime::now();
    let (_, first) = cache.get_or_mint(&settings, &key, user, app, now).expect("mint");
    assert_eq!(first, Source::Minted);

    let mut group = c.benchmark_group("token");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            let (t, src) = cache.get_or_mint(&settings, &key, black_box(user), app, now).expect("cached token");
            debug_assert_eq!(src, Source::Cache);
            t
        })
    });
    group.bench_function("mint_rs256_cold", |b| {
        b.iter(|| token::mint(&settings, &key, black_box(user), app, now).expect("signed token"))
    });
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
