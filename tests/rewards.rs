//! Verifiable rewards on a table of tricky cases.

use pgpo::rl::rewards::{equivalent, format_ok, last_boxed, reward, RewardConfig};

#[test]
fn the_last_boxed_answer_is_extracted_with_nested_braces() {
    let cases: &[(&str, Option<&str>)] = &[
        ("\\boxed{42}", Some("42")),
        ("first \\boxed{1} then \\boxed{2}", Some("2")),
        ("\\boxed{\\frac{1}{2}}", Some("\\frac{1}{2}")),
        ("\\boxed{{x}^{2}}", Some("{x}^{2}")),
        ("\\boxed {7}", Some("7")),
        ("no answer here", None),
        ("\\boxed{unclosed", None),
        ("\\boxed{3} and a broken \\boxed{4", Some("3")),
    ];
    for (text, want) in cases {
        assert_eq!(last_boxed(text), *want, "{text}");
    }
}

#[test]
fn equivalence_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("42", "42", true),
        ("42.0", "42", true),
        ("+42", "42", true),
        ("1,000", "1000", true),
        ("1,00", "100", false),
        ("0.5", "\\frac{1}{2}", true),
        ("\\dfrac{3}{4}", "3/4", true),
        ("\\frac12", "0.5", true),
        ("-\\frac{1}{2}", "-0.5", true),
        ("2/4", "1/2", true),
        ("0.333", "1/3", false),
        ("50\\%", "0.5", true),
        ("50%", "50", true),
        ("50%", "50%", true),
        ("25%", "0.5", false),
        ("(C)", "C", true),
        ("C", "(C)", true),
        ("\\text{B}", "B", true),
        ("b", "B", true),
        ("B", "C", false),
        ("$7$", "7", true),
        ("x^{2}+1", "x^2 + 1", true),
        ("x+1", "x-1", false),
        ("3", "3.5", false),
        ("", "0", false),
        ("1/0", "1", false),
        ("90^\\circ", "90", true),
    ];
    for (a, t, want) in cases {
        assert_eq!(equivalent(a, t), *want, "{a:?} vs {t:?}");
    }
}

#[test]
fn format_wants_a_think_block_then_a_boxed_answer() {
    assert!(format_ok("<think>work</think> so \\boxed{5}"));
    assert!(!format_ok("\\boxed{5}"));
    assert!(!format_ok("<think>work \\boxed{5}"));
    assert!(!format_ok("<think>\\boxed{5}</think> done"));
    assert!(!format_ok("</think><think>x \\boxed{1}"));
}

#[test]
fn reward_is_point_nine_accuracy_plus_point_one_format() {
    let c = RewardConfig::default();
    assert_eq!(reward("<think>a</think>\\boxed{\\frac{1}{2}}", "0.5", &c).total, 1.0);
    assert_eq!(reward("\\boxed{0.5}", "1/2", &c).total, 0.9);
    assert_eq!(reward("<think>a</think>\\boxed{3}", "4", &c).total, 0.1);
    assert_eq!(reward("nothing", "4", &c).total, 0.0);
    let custom = RewardConfig { accuracy_weight: 0.5, format_weight: 0.5 };
    assert_eq!(reward("<think>a</think>\\boxed{4}", "4", &custom).total, 1.0);
}
