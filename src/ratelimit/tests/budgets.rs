//! Budgets: pricing, the fixed window and its reset, reserve / settle / refund.

use super::*;

const DAY: u64 = 86_400_000;

fn budgets(text: &str) -> Limits {
    let c = parse(text, Format::Toml, &HashMap::<String, String>::new()).unwrap();
    Limits::new(&c.limits).with_budgets(&c.budgets)
}

/// 5 cents a day per user.
const DAILY: &str =
    "[[budgets]]\nname = \"daily\"\nscope = \"header:x-relay-token-id\"\nusd = 0.05\nper = \"1d\"\n";

fn spending<'a>(headers: &'a HeaderMap, micro_usd: f64) -> Facts<'a> {
    Facts { route: "r", model: "m", api_key: None, headers, tokens: 100, micro_usd }
}

#[test]
fn a_request_is_priced_at_its_most_expensive_candidate() {
    // 4000 bytes: 1000 input tokens; max_tokens 500 output tokens.
    assert_eq!(Spend::priced(1000, 500, (2.0, 10.0)), 7_000.0);
    let s = Spend::estimate(4000, Some(500), [(2.0, 10.0), (1.0, 20.0), (0.0, 0.0)]);
    assert_eq!(
        s,
        Spend { tokens: 1500, micro_usd: 11_000.0 },
        "1000 × 1 + 500 × 20 beats 1000 × 2 + 500 × 10"
    );
    assert_eq!(Spend::estimate(4000, None, [(2.0, 10.0)]).micro_usd, 2_000.0, "no max_tokens: the prompt");
    assert_eq!(Spend::estimate(4000, Some(500), []).micro_usd, 0.0, "no candidate, no price");
}

#[tokio::test(start_paused = true)]
async fn a_budget_reserves_the_estimate_and_refuses_until_its_window_resets() {
    let l = budgets(DAILY);
    let lim = standalone();
    let alice = user("alice");
    let mut held: Vec<Ticket> =
        (0..4).map(|_| lim.admit(&l, &spending(&alice, 11_000.0), false).unwrap()).collect();
    // 44 000 of 50 000 reserved: a fifth 11 000 does not fit.
    tokio::time::advance(Duration::from_secs(3600)).await;
    let r = lim.admit(&l, &spending(&alice, 11_000.0), false).unwrap_err();
    assert!(r.is_budget() && !r.unavailable);
    assert_eq!(&*r.limit, "daily");
    assert_eq!(r.resets_at_ms, Some(EPOCH + DAY), "midnight UTC, the same on every replica");
    assert_eq!(r.retry_after, Duration::from_millis(DAY - 3_600_000));
    assert!(r.to_string().contains("budget 'daily' exceeded"), "{r}");
    // Another user has a budget of their own.
    assert!(lim.admit(&l, &spending(&user("bob"), 11_000.0), false).is_ok());
    // The answer cost 1 000: 10 000 come back, and one more request fits.
    held[0].settle(Some(Spend { tokens: 80, micro_usd: 1_000.0 }));
    let fifth = lim.admit(&l, &spending(&alice, 11_000.0), false).unwrap();
    assert!(lim.admit(&l, &spending(&alice, 11_000.0), false).is_err());
    // An error refunds the whole estimate.
    held[1].settle(Some(Spend::ZERO));
    assert!(lim.admit(&l, &spending(&alice, 11_000.0), false).is_ok());
    drop(fifth);
    // A fixed window: nothing of today's spend is left tomorrow (a sliding window would still
    // count most of it).
    tokio::time::advance(Duration::from_millis(DAY - 3_600_001)).await;
    assert!(lim.admit(&l, &spending(&alice, 11_000.0), false).is_err(), "1 ms before midnight");
    tokio::time::advance(Duration::from_millis(1)).await;
    for _ in 0..4 {
        assert!(lim.admit(&l, &spending(&alice, 11_000.0), false).is_ok());
    }
    assert!(lim.admit(&l, &spending(&alice, 11_000.0), false).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_token_budget_settles_with_the_usage_and_counts_its_spend() {
    let metrics = Arc::new(crate::metrics::Metrics::new().unwrap());
    let l =
        budgets("[[budgets]]\nname = \"both\"\nusd = 1\ntokens = 1000\nper = \"30d\"\nmodels = [\"m\"]\n");
    let lim = Arc::new(
        Limiter::new(Arc::new(Fleet::standalone())).with_clock(clock()).with_metrics(metrics.clone()),
    );
    let h = HeaderMap::new();
    let big = Facts { route: "r", model: "m", api_key: None, headers: &h, tokens: 900, micro_usd: 10.0 };
    let mut t = lim.admit(&l, &big, false).unwrap();
    let r = lim.admit(&l, &big, false).unwrap_err();
    assert!(r.is_budget());
    // 30-day windows are aligned on the epoch too: 2026-01-01 is in the window ending 2026-01-29.
    assert_eq!(r.resets_at_ms, Some(682 * 30 * DAY));
    // Another model is not in the budget.
    let other = Facts { model: "x", ..big };
    assert!(lim.admit(&l, &other, false).is_ok());
    t.settle(Some(Spend { tokens: 300, micro_usd: 250_000.0 }));
    let label = crate::metrics::labels::Budget { budget: "both" };
    assert_eq!(metrics.budget_spent_tokens_total.get(label).get(), 300);
    assert_eq!(metrics.budget_spent_usd_total.get(label).get(), 0.25);
    // 300 tokens and 0.25 USD spent: 700 tokens fit, 701 do not.
    let fits = Facts { tokens: 700, ..big };
    let mut t = lim.admit(&l, &fits, false).unwrap();
    assert!(lim.admit(&l, &Facts { tokens: 1, ..big }, false).is_err());
    // The USD dimension refuses on its own: 0.75 USD left.
    t.settle(Some(Spend::ZERO));
    let dear = Facts { tokens: 1, micro_usd: 750_001.0, ..big };
    assert!(lim.admit(&l, &dear, false).unwrap_err().is_budget());
}

#[tokio::test(start_paused = true)]
async fn a_provider_key_budget_closes_the_key_until_settled_lower() {
    let l = budgets(
        "[providers.p]\nkind = \"mock\"\n[[providers.p.keys]]\nname = \"k\"\nsecret = \"s-123\"\n\
         [[budgets]]\nname = \"key\"\nscope = \"provider_key\"\nusd = 0.01\n",
    );
    let lim = standalone();
    let attempt = Spend { tokens: 10, micro_usd: 6_000.0 };
    assert!(lim.key_open(&l, "p", "k", "m", attempt));
    let mut t = lim.charge_key(&l, "p", "k", "m", attempt);
    assert!(!lim.key_open(&l, "p", "k", "m", attempt), "12 000 would be over 10 000");
    t.settle(Some(Spend { tokens: 10, micro_usd: 1_000.0 }));
    assert!(lim.key_open(&l, "p", "k", "m", attempt));
}

#[test]
fn budgets_are_validated() {
    let bad =
        |text: &str| parse(text, Format::Toml, &HashMap::<String, String>::new()).unwrap_err().to_string();
    let e = bad("[[budgets]]\nname = \"b\"\nusd = 1\nper = \"59m\"\n");
    assert!(e.contains("budgets[0].per") && e.contains("at least 1h"), "{e}");
    let e = bad("[[budgets]]\nname = \"b\"\nper = \"1d\"\n");
    assert!(e.contains("needs usd or tokens"), "{e}");
    let e = bad("[[budgets]]\nname = \"b\"\nusd = -1\n");
    assert!(e.contains("budgets[0].usd"), "{e}");
    let e = bad("[[limits]]\nname = \"b\"\nrpm = 1\n[[budgets]]\nname = \"b\"\nusd = 1\n");
    assert!(e.contains("duplicate limit or budget name"), "{e}");
    let e = bad("[[budgets]]\nname = \"b\"\nusd = 1\nscope = \"nope\"\nmode = \"fast\"\n");
    assert!(e.contains("budgets[0].scope") && e.contains("budgets[0].mode"), "{e}");
    let c = parse(DAILY, Format::Toml, &HashMap::<String, String>::new()).unwrap();
    let b = &c.budgets[0];
    assert_eq!(
        (b.micro_usd, b.per, b.budget, b.strict),
        (Some(50_000), Duration::from_secs(86_400), true, false)
    );
    assert!(c.limits.is_empty());
}
