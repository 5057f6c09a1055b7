use super::*;
use crate::budget::{parse_budget, KeyHash};
use crate::clock::SystemClock;

fn team(extra: &str) -> Budget {
    let src = format!(
        "daily_limit = 1\n{extra}\n[[keys]]\nid = \"a\"\nsha256 = \"{}\"\nrequests_per_minute = 2\n\
         [[keys]]\nid = \"b\"\nsha256 = \"{}\"\n",
        KeyHash::of("tg-a").to_hex(),
        KeyHash::of("tg-b").to_hex()
    );
    parse_budget("team", &src, "team.toml").expect("valid budget")
}

fn limiter() -> RateLimiter {
    RateLimiter::embedded(Arc::new(SystemClock))
}

fn header<'a>(h: &'a Headers, name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
}

#[tokio::test]
async fn no_limits_no_headers() {
    let b = parse_budget("free", "daily_limit = 1\n", "free.toml").unwrap();
    assert!(limiter().acquire(&b, None, 10).await.unwrap().is_none());
}

#[tokio::test]
async fn the_key_limit_refuses_and_names_the_key_while_another_key_passes() {
    let b = team("[limits]\nrequests_per_minute = 5\n");
    let l = limiter();
    let g = l.acquire(&b, Some("a"), 1).await.unwrap().unwrap();
    // The key (2 per minute) is tighter than the budget (5).
    assert_eq!(header(&g.headers, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&g.headers, "x-ratelimit-remaining-requests"), "1");
    assert_eq!(header(&g.headers, "x-ratelimit-reset-requests"), "30s");
    assert!(g.ticket.is_none(), "no token limit, nothing to correct");
    l.acquire(&b, Some("a"), 1).await.unwrap();
    let Err(Refusal::Limited { detail, headers }) = l.acquire(&b, Some("a"), 1).await else {
        panic!("third request of key a passes");
    };
    assert_eq!(detail.key_id.as_deref(), Some("a"));
    assert_eq!(
        (detail.kind, detail.limit, detail.remaining),
        (Kind::Requests, 2, 0)
    );
    let wait = detail.retry_in.unwrap();
    assert!(
        wait > Duration::from_secs(29) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(header(&headers, "x-ratelimit-remaining-requests"), "0");
    assert!(detail.to_string().contains("key `a` of budget `team`"));
    // Key b has no own limit: the budget's 5 minus a's 2 are left.
    for _ in 0..3 {
        l.acquire(&b, Some("b"), 1).await.unwrap();
    }
    let Err(Refusal::Limited { detail, .. }) = l.acquire(&b, Some("b"), 1).await else {
        panic!("the budget's sixth request passes");
    };
    assert_eq!((detail.key_id, detail.limit), (None, 5));
}

#[tokio::test]
async fn token_estimates_are_refused_when_too_big_and_corrected_after() {
    let b = team("[limits]\ntokens_per_minute = 1000\n");
    let l = limiter();
    let Err(Refusal::Limited { detail, .. }) = l.acquire(&b, None, 1001).await else {
        panic!("more than the limit passes");
    };
    assert_eq!(detail.retry_in, None);
    assert!(detail
        .to_string()
        .starts_with("Request too large for tokens per minute"));
    let g = l.acquire(&b, None, 600).await.unwrap().unwrap();
    assert_eq!(header(&g.headers, "x-ratelimit-remaining-tokens"), "400");
    assert!(l.acquire(&b, None, 500).await.is_err());
    // It used 100 of its 600: 500 come back.
    l.settle(g.ticket.unwrap(), 100).await;
    let g = l.acquire(&b, None, 500).await.unwrap().unwrap();
    let left: u64 = header(&g.headers, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap();
    assert!((399..=401).contains(&left), "{left}");
}

#[tokio::test]
async fn a_changed_limit_starts_a_fresh_cell_and_an_unchanged_one_keeps_its_count() {
    let l = limiter();
    let one = team("[limits]\nrequests_per_minute = 1\n");
    l.acquire(&one, None, 1).await.unwrap();
    // A reload that keeps the limit: still spent.
    let reloaded = team("[limits]\nrequests_per_minute = 1\n");
    assert!(l.acquire(&reloaded, None, 1).await.is_err());
    let raised = team("[limits]\nrequests_per_minute = 3\n");
    assert!(l.acquire(&raised, None, 1).await.is_ok());
}

#[tokio::test]
async fn a_refusal_names_the_limit_that_frees_up_last() {
    // Key a: 2 requests per minute (30 s each); the budget: 1000 tokens per minute.
    let b = team("[limits]\ntokens_per_minute = 1000\n");
    let l = limiter();
    l.acquire(&b, Some("a"), 900).await.unwrap();
    l.acquire(&b, Some("a"), 50).await.unwrap();
    // Both the key's requests and the budget's tokens refuse; the tokens (900 of them
    // back in 54 s) take longer than the key's next request (30 s).
    let Err(Refusal::Limited { detail, .. }) = l.acquire(&b, Some("a"), 900).await else {
        panic!("passes");
    };
    assert_eq!(
        (detail.kind, detail.key_id.as_deref()),
        (Kind::Tokens, None)
    );
    assert!(detail.retry_in.unwrap() > Duration::from_secs(50));
}
