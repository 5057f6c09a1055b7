//! `routes.toml` validation: the shipped file is valid, and bad edits are reported with line
//! numbers, all at once.

use tollgate::config::Config;

const SHIPPED: &str = include_str!("../routes.toml");

#[test]
fn shipped_routes_toml_is_valid_and_covers_all_four_providers() {
    let cfg = Config::parse(SHIPPED, "routes.toml").expect("shipped config is valid");
    let kinds: std::collections::BTreeSet<_> =
        cfg.providers.values().map(|p| p.kind.as_str()).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["anthropic", "cortex", "mistral", "openai"]
    );
    let turbo = &cfg.models["gpt-4-turbo"];
    assert_eq!(turbo.context_window, 128_000, "not tiktoken's wrong 8192");
    assert_eq!(
        turbo.price.input.raw(),
        10_000_000_000,
        "$10 per 1M in nano-dollars"
    );
    // Cortex credits x $2.00 per credit: 1.95 credits -> $3.90 per 1M tokens.
    assert_eq!(
        cfg.models["cortex-mistral-large2"].price.output.raw(),
        3_900_000_000
    );
}

#[test]
fn auto_resolves_to_default_model_and_its_fallbacks() {
    let cfg = Config::parse(SHIPPED, "routes.toml").unwrap();
    let chain: Vec<_> = cfg
        .chain("auto")
        .unwrap()
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(chain[0], cfg.default_model);
    assert!(chain.len() > 1);
    let via_alias: Vec<_> = cfg
        .chain("gpt-4")
        .unwrap()
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(via_alias[0], "gpt-4-turbo");
    assert!(cfg.chain("no-such-model").is_none());
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let bad = r#"
[routing]
default_model = "missing"

[providers.openai]
kind = "openai"
base_url = "http://api.openai.com"
api_key_env = "OPENAI_API_KEY"
colour = "blue"

[providers.mistral]
kind = "mistral"
base_url = "https://api.mistral.ai"

[models.a]
provider = "opnai"
context_window = 1000
max_output_tokens = 10
price = { input = 1, output = 2 }

[models.b]
provider = "mistral"
context_window = 1000
max_output_tokens = 5000
price = { input = 1 }
fallback = ["nowhere"]
"#;
    let errs = Config::parse(bad, "routes.toml").unwrap_err();
    let text = errs.to_string();
    assert!(!text.contains("unknown provider `mistral`"), "{text}");
    let expect = [
        (
            "routes.toml:3: routing.default_model",
            "unknown model or alias `missing`",
        ),
        (
            "routes.toml:9: providers.openai.colour",
            "unknown field `colour`",
        ),
        (
            "routes.toml:11: providers.mistral",
            "needs api_key_env or api_key_file",
        ),
        (
            "routes.toml:16: models.a.provider",
            "unknown provider `opnai`",
        ),
        (
            "routes.toml:24: models.b.max_output_tokens",
            "at most context_window",
        ),
        ("routes.toml:25: models.b.price", "needs input and output"),
        (
            "routes.toml:26: models.b.fallback",
            "unknown model or alias `nowhere`",
        ),
    ];
    for (loc, msg) in expect {
        assert!(
            text.lines().any(|l| l.starts_with(loc) && l.contains(msg)),
            "missing `{loc}: …{msg}` in:\n{text}"
        );
    }
}

#[test]
fn plain_http_is_rejected_for_remote_hosts_but_allowed_for_loopback() {
    let cfg = |url: &str| {
        format!(
            "[routing]\ndefault_model = \"m\"\n[providers.p]\nkind = \"openai\"\nbase_url = \"{url}\"\napi_key_env = \"K\"\n[models.m]\nprovider = \"p\"\ncontext_window = 10\nmax_output_tokens = 5\nprice = {{ input = 1, output = 1 }}\n"
        )
    };
    let e = Config::parse(&cfg("http://api.openai.com"), "t").unwrap_err();
    assert!(e
        .to_string()
        .contains("plain http is only allowed to loopback"));
    let ok = Config::parse(&cfg("http://127.0.0.1:9999/prefix/"), "t").unwrap();
    let base = &ok.providers["p"].base;
    assert_eq!(
        (base.tls, base.port, base.path_prefix.as_str()),
        (false, 9999, "/prefix")
    );
}

#[test]
fn invalid_toml_reports_the_line() {
    let e = Config::parse("[routing]\ndefault_model = \n", "routes.toml").unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, Some(2), "{e}");
}
