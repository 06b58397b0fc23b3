//! Route lookup (`RoutingTable::resolve`) on a table of 1,000 routes, built from config text the
//! way the loader builds it (`config::parse` with an injected environment, then
//! `RoutingTable::new`): exact names, glob hits, `provider/model` direct names and misses.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tier1::testing::config::{Format, parse};
use tier1::testing::resilience::Registry;
use tier1::testing::routing::{Resolved, RoutingTable};

/// Routes in the table.
const ROUTES: usize = 1_000;
/// Of which glob routes (the rest are exact names with two listed models each).
const GLOBS: usize = 100;

/// Config text: three providers (keys from the injected environment), 900 exact routes and 100
/// glob routes of varied specificity.
fn config_text() -> String {
    let mut t = String::from(
        "[providers.openai]\nkind = \"openai\"\n[[providers.openai.keys]]\nname = \"k\"\nsecret = \"env:OPENAI_API_KEY\"\n\n\
         [providers.anthropic]\nkind = \"anthropic\"\n[[providers.anthropic.keys]]\nname = \"k\"\nsecret = \"env:ANTHROPIC_API_KEY\"\n\n\
         [providers.gemini]\nkind = \"gemini\"\n[[providers.gemini.keys]]\nname = \"k\"\nsecret = \"env:GEMINI_API_KEY\"\n\n",
    );
    for i in 0..ROUTES - GLOBS {
        let _ = write!(
            t,
            "[[routes]]\nname = \"route-{i}\"\nmodels = [\"model-{i}\", \"alias-{i}-latest\"]\n\
             targets = [{{ provider = \"openai\", model = \"gpt-4o-{i}\" }}, {{ provider = \"anthropic\", model = \"claude-{i}\" }}]\n\n"
        );
    }
    for i in 0..GLOBS {
        let pattern = match i % 4 {
            0 => format!("family-{i}-*"),
            1 => format!("*-finetune-{i}"),
            2 => format!("org{i}/*/v?"),
            _ => format!("claude-{i}-*-preview*"),
        };
        let _ = write!(
            t,
            "[[routes]]\nname = \"glob-{i}\"\nmodels = [\"{pattern}\"]\n\
             targets = [{{ provider = \"gemini\", model = \"gemini-2.5-flash\" }}]\n\n"
        );
    }
    t
}

/// The validated config of [`config_text`], with its keys from an injected environment.
fn config() -> tier1::testing::config::Config {
    let env: HashMap<String, String> = [
        ("OPENAI_API_KEY", "sk-bench"),
        ("ANTHROPIC_API_KEY", "sk-ant-bench"),
        ("GEMINI_API_KEY", "gm-bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = parse(&config_text(), Format::Toml, &env).expect("bench config is valid");
    assert_eq!(config.routes.len(), ROUTES);
    config
}

fn table() -> RoutingTable {
    RoutingTable::new(&config(), &Registry::default())
}

fn lookups(c: &mut Criterion) {
    let table = table();
    let cases: [(&str, &str); 6] = [
        ("exact_route_name", "route-450"),
        ("exact_listed_model", "alias-899-latest"),
        ("glob_most_specific", "claude-99-opus-preview-2"),
        ("glob_least_specific", "family-0-large"),
        ("direct_provider_model", "anthropic/claude-sonnet-4-5"),
        ("miss", "no-such-model-anywhere"),
    ];
    // Each case resolves as it is named (a wrong table would measure the wrong path).
    for (name, model) in cases {
        let got = table.resolve(model);
        match name {
            "direct_provider_model" => assert!(matches!(got, Some(Resolved::Direct { .. })), "{name}"),
            "miss" => assert!(got.is_none(), "{name}"),
            _ => assert!(matches!(got, Some(Resolved::Route(_))), "{name}"),
        }
    }
    let mut group = c.benchmark_group("route_lookup");
    for (name, model) in cases {
        group.bench_function(name, |b| {
            b.iter(|| table.resolve(black_box(model)).is_some());
        });
    }
    group.finish();
}

fn build(c: &mut Criterion) {
    let config = config();
    let mut group = c.benchmark_group("route_table");
    group.sample_size(10);
    group.bench_function("build_1000_routes", |b| {
        b.iter(|| RoutingTable::new(black_box(&config), &Registry::default()));
    });
    group.finish();
}

criterion_group!(benches, lookups, build);
criterion_main!(benches);
