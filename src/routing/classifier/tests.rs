use serde_json::{json, Value};

use super::*;
use crate::api::ChatRequest;

fn tiers() -> Vec<String> {
    ["simple", "standard", "complex"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn classifier() -> Classifier {
    Classifier::new(&ClassifierConfig::default(), &tiers()).unwrap()
}

fn with(toml_text: &str) -> Classifier {
    let cfg: ClassifierConfig = toml::from_str(toml_text).unwrap();
    assert!(
        cfg.validate(&tiers()).is_empty(),
        "{:?}",
        cfg.validate(&tiers())
    );
    Classifier::new(&cfg, &tiers()).unwrap()
}

fn request(body: Value) -> ChatRequest {
    serde_json::from_value(body).unwrap()
}

fn ask(text: &str) -> ChatRequest {
    request(json!({"model": "auto", "messages": [{"role": "user", "content": text}]}))
}

fn signals(text: &str) -> Signals {
    classifier().signals(&ask(text), 20)
}

#[test]
fn a_greeting_or_everyday_question_is_simple() {
    let c = classifier();
    for text in [
        "Hi there!",
        "What is the capital of Australia?",
        "Rewrite this sentence to sound more polite: send me the file now.",
        "Summarize this paragraph in one sentence: The meeting moved to Tuesday.",
    ] {
        let v = c.classify(&ask(text));
        assert_eq!(v.tier, 0, "{text}: {v:?}");
        assert!(v.score < 0.5, "{text}: {v:?}");
    }
}

#[test]
fn a_coding_task_is_premium_and_with_reasoning_reaches_the_top_tier() {
    let c = classifier();
    let v = c.classify(&ask(
        "Write a Python function that merges two sorted arrays in O(n) time.",
    ));
    assert_eq!(v.tier, 1, "{v:?}");
    assert!(v.reason.contains("code"), "{}", v.reason);
    let v = c.classify(&ask(
        "Write a Python function that merges two sorted arrays and explain step by step why it is correct.",
    ));
    assert_eq!(v.tier, 2, "{v:?}");
    assert!(v.reason.contains("reasoning"), "{}", v.reason);
}

#[test]
fn pasted_code_counts_as_code_without_any_cue_word() {
    let pasted = "x = load(path)\nfor (i = 0; i < n; i++) {\n  total += x[i];\n}\n";
    assert_eq!(signals(pasted).code, 1.0);
    assert_eq!(signals("```\nplain\n```").code, 1.0);
    assert_eq!(signals("A walk in the park on a sunny day.").code, 0.0);
}

#[test]
fn a_word_problem_with_numbers_is_premium() {
    let v = classifier().classify(&ask(
        "Anna buys 3 boxes of 12 eggs and uses 7 eggs each day. How many days do the eggs last?",
    ));
    assert!(v.tier >= 1, "{v:?}");
    assert!(v.reason.contains("math"), "{}", v.reason);
}

#[test]
fn equations_count_as_math_but_dates_and_ranges_do_not() {
    assert_eq!(signals("x^3 - 4x^2 + 6x - 24").math, 1.0);
    assert_eq!(signals("if 2x = 8 then").math, 1.0);
    assert_eq!(signals("The years 2020-2021 were busy.").math, 0.0);
    assert_eq!(signals("Call me at 555-1234 tomorrow.").math, 0.0);
}

#[test]
fn cue_words_match_at_word_starts_and_prefix_cues_match_word_forms() {
    // "decode" holds "code" but is not the word "code".
    assert_eq!(signals("Please decode the message.").code, 0.0);
    assert!(signals("Review my code.").code > 0.0);
    // `summari*` matches both spellings.
    assert!(signals("Summarise it.").simple > 0.0);
    assert!(signals("Summarize it.").simple > 0.0);
    // A word cue does not match a longer word.
    assert_eq!(signals("Emailing is fun.").simple, 0.0);
}

#[test]
fn repeating_a_cue_word_counts_once() {
    assert_eq!(signals("code").code, signals("code code code code").code);
}

#[test]
fn required_tools_and_json_schema_raise_the_score() {
    let c = classifier();
    let base = c.classify(&ask("Look up the weather in Paris."));
    let tools = c.classify(&request(json!({
        "model": "auto",
        "messages": [{"role": "user", "content": "Look up the weather in Paris."}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {}}}
    })));
    assert!(tools.score > base.score + 0.2, "{base:?} {tools:?}");
}

#[test]
fn a_small_max_tokens_lowers_the_score_and_a_large_one_raises_it() {
    let c = classifier();
    let text = "Explain why the sky is blue.";
    let score = |max: Option<u32>| {
        let mut body = json!({"model": "auto", "messages": [{"role": "user", "content": text}]});
        if let Some(m) = max {
            body["max_tokens"] = json!(m);
        }
        c.classify(&request(body)).score
    };
    assert!(score(Some(16)) < score(None));
    assert!(score(Some(8000)) > score(None));
}

#[test]
fn depth_system_prompt_and_language_are_read_from_the_request() {
    let c = classifier();
    let turns: Vec<Value> = (0..6)
        .flat_map(|i| {
            [
                json!({"role": "user", "content": format!("question {i}")}),
                json!({"role": "assistant", "content": "answer"}),
            ]
        })
        .collect();
    let deep = c.signals(&request(json!({"model": "auto", "messages": turns})), 100);
    assert_eq!(deep.depth, 1.0);

    let long_system = "You are a careful assistant. ".repeat(400);
    let s = c.signals(
        &request(json!({"model": "auto", "messages": [
            {"role": "system", "content": long_system},
            {"role": "user", "content": "hello"}
        ]})),
        3000,
    );
    assert_eq!(s.system, 1.0);
    assert!(s.length > 0.5);

    assert_eq!(signals("Сколько стоит билет до Москвы?").non_english, 1.0);
    assert_eq!(signals("How much is a ticket?").non_english, 0.0);
}

#[test]
fn thresholds_cut_scores_into_the_configured_tiers() {
    let c = with("thresholds = [0.3, 0.6]");
    assert_eq!(c.tier_of(0.29), 0);
    assert_eq!(c.tier_of(0.3), 1);
    assert_eq!(c.tier_of(0.59), 1);
    assert_eq!(c.tier_of(0.6), 2);
    assert_eq!(c.tier_of(1.0), 2);
    assert_eq!(default_thresholds(3), vec![0.45, 0.85]);
    assert_eq!(default_thresholds(1), Vec::<f64>::new());
}

#[test]
fn weights_and_keywords_from_config_change_the_verdict() {
    let text = "Draft the quarterly terraform plan.";
    assert_eq!(classifier().classify(&ask(text)).tier, 0);
    let tuned = with("[keywords]\ncode = [\"terraform\"]\n[weights]\nsimple = 0.0\n");
    let v = tuned.classify(&ask(text));
    assert!(v.tier >= 1, "{v:?}");
    assert!(v.reason.contains("code"), "{}", v.reason);
}

#[test]
fn the_reason_names_the_score_and_the_signals_that_moved_it() {
    let v = classifier().classify(&ask("Rewrite this email as a short poem."));
    assert!(
        v.reason.starts_with(&format!("score={:.2}", v.score)),
        "{}",
        v.reason
    );
    assert!(v.reason.contains(";-simple"), "{}", v.reason);
}

#[test]
fn validation_reports_every_bad_setting() {
    let cfg: ClassifierConfig = toml::from_str(
        "thresholds = [0.8, 0.2, 1.5]\n[weights]\ncode = inf\n[keywords]\nmath = [\"\"]\n",
    )
    .unwrap();
    let problems = cfg.validate(&tiers());
    let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "thresholds",
            "thresholds",
            "thresholds",
            "weights.code",
            "keywords.math"
        ],
        "{problems:?}"
    );
    assert!(toml::from_str::<ClassifierConfig>("[weights]\ncomplexity = 1.0").is_err());
}

#[test]
fn prompt_tokens_are_counted_with_the_requested_encoding() {
    let c = classifier();
    let req = ask("hello world");
    assert_eq!(c.classify(&req).prompt_tokens, 9);
    assert_eq!(c.classify_with(&req, Encoding::O200k).prompt_tokens, 9);
}
