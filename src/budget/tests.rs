use jiff::Timestamp;

use super::*;

fn budget(src: &str) -> Budget {
    parse_budget("team", src, "budgets/team.toml").expect("valid budget")
}

fn problems(src: &str) -> Vec<Problem> {
    parse_budget("team", src, "budgets/team.toml")
        .expect_err("invalid budget")
        .0
}

#[test]
fn defaults_are_utc_block_and_the_four_thresholds() {
    let b = budget("daily_limit = \"25.50\"\n");
    assert_eq!(b.limit_nanos(), 25_500_000_000);
    assert_eq!(b.timezone_name, "UTC");
    assert_eq!(b.policy, Policy::Block);
    assert_eq!(b.thresholds, vec![50, 75, 90, 100]);
    assert!(b.keys.is_empty() && b.webhooks.is_empty() && !b.global);
}

#[test]
fn day_boundary_follows_the_budget_time_zone() {
    let b = budget("daily_limit = 1\ntimezone = \"America/Los_Angeles\"\n");
    // 2026-11-22 07:30 UTC is still the 21st in Los Angeles (UTC-8).
    let t: Timestamp = "2026-11-22T07:30:00Z".parse().unwrap();
    assert_eq!(b.day_at(t), "2026-11-21");
    let t: Timestamp = "2026-11-22T08:00:00Z".parse().unwrap();
    assert_eq!(b.day_at(t), "2026-11-22");
    let utc = budget("daily_limit = 1\n");
    assert_eq!(
        utc.day_at("2026-11-22T07:30:00Z".parse().unwrap()),
        "2026-11-22"
    );
}

#[test]
fn crossed_names_each_threshold_line_once() {
    let b = budget("daily_limit = \"10\"\n");
    let d = |x: &str| crate::money::Decimal9::parse(x).unwrap().raw();
    assert_eq!(b.crossed(0, d("4.99")), Vec::<u32>::new());
    assert_eq!(b.crossed(d("4.99"), d("5")), vec![50]);
    assert_eq!(b.crossed(d("5"), d("9.5")), vec![75, 90]);
    assert_eq!(b.crossed(d("9.5"), d("12")), vec![100]);
    assert_eq!(b.crossed(d("12"), d("13")), Vec::<u32>::new());
}

#[test]
fn percent_is_whole_and_safe_for_a_zero_limit() {
    let b = budget("daily_limit = \"3\"\n");
    assert_eq!(b.percent(1_000_000_000), 33);
    assert_eq!(b.percent(3_000_000_000), 100);
    let zero = budget("daily_limit = 0\n");
    assert_eq!(zero.percent(0), 0);
    assert_eq!(zero.percent(1), 10_000);
}

#[test]
fn every_problem_is_reported_with_its_line() {
    let src = "daily_limit = \"5\"\n\
               timezone = \"Mars/Olympus\"\n\
               thresholds = [75, 50, 120]\n\
               [alerts]\n\
               webhooks = [\"ftp://x\"]\n\
               [[keys]]\n\
               id = \"a b\"\n\
               sha256 = \"nothex\"\n";
    let ps = problems(src);
    let find = |path: &str| {
        ps.iter()
            .find(|p| p.path.starts_with(path))
            .unwrap_or_else(|| panic!("no problem at {path}: {ps:?}"))
    };
    assert_eq!(find("timezone").line, Some(2));
    assert_eq!(find("thresholds").line, Some(3));
    assert!(find("alerts.webhooks").message.contains("ftp://x"));
    assert!(ps.iter().filter(|p| p.path == "keys.0").count() >= 2);
    assert!(ps.iter().all(|p| p.origin == "budgets/team.toml"));
}

#[test]
fn unknown_settings_and_bad_policy_are_rejected() {
    assert!(problems("daily_limit = 1\ndaily_limt = 2\n")[0]
        .message
        .contains("daily_limt"));
    assert!(!problems("daily_limit = 1\npolicy = \"pray\"\n").is_empty());
    assert!(!problems("timezone = \"UTC\"\n").is_empty());
}

#[test]
fn keys_authenticate_to_their_budget_only() {
    let h = KeyHash::of("tg-alpha").to_hex();
    let a = parse_budget(
        "alpha",
        &format!("daily_limit = 1\n[[keys]]\nid = \"svc\"\nsha256 = \"{h}\"\n"),
        "a.toml",
    )
    .unwrap();
    let b = parse_budget("beta", "daily_limit = 1\n", "b.toml").unwrap();
    let set = BudgetSet::new(vec![(a, "a.toml".into()), (b, "b.toml".into())]).unwrap();
    let caller = set.authenticate("tg-alpha").expect("known key");
    assert_eq!(caller.budget.name, "alpha");
    assert_eq!(caller.key_id.as_deref(), Some("svc"));
    assert!(set.authenticate("tg-alphA").is_none());
    assert!(set.authenticate("").is_none());
}

#[test]
fn a_key_in_two_budgets_and_two_global_budgets_are_rejected() {
    let h = KeyHash::of("tg-x").to_hex();
    let key = format!("[[keys]]\nid = \"k\"\nsha256 = \"{h}\"\n");
    let a = parse_budget("a", &format!("daily_limit = 1\nglobal = true\n{key}"), "a").unwrap();
    let b = parse_budget("b", &format!("daily_limit = 1\nglobal = true\n{key}"), "b").unwrap();
    let errs = BudgetSet::new(vec![(a, "a".into()), (b, "b".into())]).unwrap_err();
    assert_eq!(errs.0.len(), 2, "{errs}");
}

#[test]
fn a_directory_loads_sorted_and_a_missing_one_is_empty() {
    let dir = std::env::temp_dir().join(format!("tollgate-budgets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("zeta.toml"), "daily_limit = 2\n").unwrap();
    std::fs::write(dir.join("alpha.toml"), "daily_limit = 1\nglobal = true\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
    let (set, files) = BudgetSet::load_dir(&dir).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.global().unwrap().name, "alpha");
    assert!(files[0].0.ends_with("alpha.toml"));
    std::fs::write(dir.join("broken.toml"), "daily_limit = \n").unwrap();
    let errs = BudgetSet::load_dir(&dir).unwrap_err();
    assert!(errs.0[0].origin.ends_with("broken.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(BudgetSet::load_dir(&dir).unwrap().0.is_empty());
}

#[test]
fn rate_limits_are_read_for_the_budget_and_each_key() {
    let h = KeyHash::of("tg-a").to_hex();
    let b = budget(&format!(
        "daily_limit = 1\n[limits]\nrequests_per_minute = 600\ntokens_per_minute = 200000\n\
         [[keys]]\nid = \"a\"\nsha256 = \"{h}\"\nrequests_per_minute = 60\n"
    ));
    assert_eq!(b.limits.requests_per_minute, Some(600));
    assert_eq!(b.limits.tokens_per_minute, Some(200_000));
    let a = b.key_limits(Some("a"));
    assert_eq!(
        (a.requests_per_minute, a.tokens_per_minute),
        (Some(60), None)
    );
    assert!(b.key_limits(None).is_empty() && b.key_limits(Some("zz")).is_empty());
    assert!(budget("daily_limit = 1\n").limits.is_empty());
}

#[test]
fn bad_rate_limits_are_reported_with_their_line() {
    let h = KeyHash::of("tg-a").to_hex();
    let ps = problems(&format!(
        "daily_limit = 1\n[limits]\nrequests_per_minute = 0\ntokens_per_minute = -5\n\
         [[keys]]\nid = \"a\"\nsha256 = \"{h}\"\ntokens_per_minute = 0\n"
    ));
    let rpm = ps
        .iter()
        .find(|p| p.path == "limits.requests_per_minute")
        .expect("rpm reported");
    assert_eq!(rpm.line, Some(3));
    assert!(rpm.message.contains("from 1"), "{}", rpm.message);
    let tpm = ps.iter().find(|p| p.path == "limits.tokens_per_minute");
    assert_eq!(tpm.expect("tpm reported").line, Some(4));
    assert!(
        ps.iter().any(|p| p.path == "keys.0.tokens_per_minute"),
        "{ps:?}"
    );
    let unknown = problems("daily_limit = 1\n[limits]\nrequests_per_second = 5\n");
    assert!(unknown[0].message.contains("requests_per_second"));
    assert_eq!(unknown[0].line, Some(3));
    let fractional = problems("daily_limit = 1\n[limits]\nrequests_per_minute = 1.5\n");
    assert_eq!(fractional[0].line, Some(3));
}
