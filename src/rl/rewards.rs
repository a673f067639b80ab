//! Verifiable rewards: the final answer is the last `\boxed{...}`; accuracy compares it with
//! the ground truth as exact numbers (integers, decimals, fractions, `\frac`, percentages)
//! or as multiple-choice letters, else as normalised text; the format check wants a
//! `<think>...</think>` block followed by a boxed answer. R = 0.9 accuracy + 0.1 format.

/// Weights of the two reward terms.
#[derive(Clone, Copy, Debug)]
pub struct RewardConfig {
    pub accuracy_weight: f32,
    pub format_weight: f32,
}

impl Default for RewardConfig {
    fn default() -> Self {
        RewardConfig { accuracy_weight: 0.9, format_weight: 0.1 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reward {
    pub accuracy: f32,
    pub format: f32,
    pub total: f32,
}

/// The content of the balanced `{...}` that opens at byte `open` (a '{'), and the index after it.
fn braced(s: &str, open: usize) -> Option<(&str, usize)> {
    let mut depth = 0usize;
    for (i, ch) in s[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[open + 1..open + i], open + i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// The content of the last `\boxed{...}` (braces may nest), if any is complete.
pub fn last_boxed(text: &str) -> Option<&str> {
    let mut found = None;
    let mut from = 0;
    while let Some(pos) = text[from..].find("\\boxed") {
        let start = from + pos + "\\boxed".len();
        let rest = &text[start..];
        let open = start + (rest.len() - rest.trim_start().len());
        if text[open..].starts_with('{')
            && let Some((inner, _)) = braced(text, open)
        {
            found = Some(inner);
        }
        from = start;
    }
    found
}

/// `<think>...</think>` with a boxed answer after the closing tag.
pub fn format_ok(text: &str) -> bool {
    let (Some(open), Some(close)) = (text.find("<think>"), text.rfind("</think>")) else { return false };
    open < close && last_boxed(&text[close..]).is_some()
}

/// Removes LaTeX decoration that does not change the value.
fn normalise(s: &str) -> String {
    let mut t = s.trim().to_string();
    for (from, to) in [
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\left", ""),
        ("\\right", ""),
        ("\\!", ""),
        ("\\,", ""),
        ("\\;", ""),
        ("\\%", "%"),
        ("^\\circ", ""),
        ("^{\\circ}", ""),
        ("$", ""),
    ] {
        t = t.replace(from, to);
    }
    // \text{..} and \mathrm{..} keep their content.
    for cmd in ["\\text", "\\mathrm", "\\textbf", "\\mathbf"] {
        while let Some(pos) = t.find(&format!("{cmd}{{")) {
            match braced(&t, pos + cmd.len()) {
                Some((inner, end)) => t = format!("{}{}{}", &t[..pos], inner, &t[end..]),
                None => break,
            }
        }
    }
    t.chars().filter(|c| !c.is_whitespace()).collect::<String>().trim_end_matches('.').to_string()
}

/// An exact rational p/q, q > 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rational(i128, i128);

/// On magnitudes, so that i128::MIN (whose magnitude has no i128) cannot overflow.
fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Rational {
    fn new(p: i128, q: i128) -> Option<Rational> {
        if q == 0 {
            return None;
        }
        let g = i128::try_from(gcd(p.unsigned_abs(), q.unsigned_abs()).max(1)).ok()?.checked_mul(q.signum())?;
        Some(Rational(p.checked_div(g)?, q.checked_div(g)?))
    }

    fn div(self, o: Rational) -> Option<Rational> {
        Rational::new(self.0.checked_mul(o.1)?, self.1.checked_mul(o.0)?)
    }
}

/// Integers and decimals, with optional sign and thousands separators ("1,234.5").
fn decimal(s: &str) -> Option<Rational> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let body = if body.contains(',') {
        let parts: Vec<&str> = body.split('.').next()?.split(',').collect();
        let grouped = parts.len() > 1 && parts[1..].iter().all(|p| p.len() == 3) && !parts[0].is_empty() && parts[0].len() <= 3;
        if !grouped {
            return None;
        }
        body.replace(',', "")
    } else {
        body.to_string()
    };
    let (int, frac) = body.split_once('.').unwrap_or((&body, ""));
    if (int.is_empty() && frac.is_empty()) || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) || frac.len() > 30 {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let r = Rational::new(digits, 10i128.checked_pow(frac.len() as u32)?)?;
    Some(if neg { Rational(-r.0, r.1) } else { r })
}

/// A number: decimal, a/b, \frac{a}{b} (or \frac12), with an optional leading minus.
fn number(s: &str) -> Option<Rational> {
    if let Some(rest) = s.strip_prefix('-')
        && (rest.starts_with("\\frac") || rest.contains('/'))
    {
        let r = number(rest)?;
        return Some(Rational(-r.0, r.1));
    }
    if let Some(rest) = s.strip_prefix("\\frac") {
        let (a, rest) = if rest.starts_with('{') {
            let (a, end) = braced(rest, 0)?;
            (a.to_string(), &rest[end..])
        } else {
            (rest.get(..1)?.to_string(), rest.get(1..)?)
        };
        let b = if rest.starts_with('{') {
            let (b, end) = braced(rest, 0)?;
            if end != rest.len() {
                return None;
            }
            b.to_string()
        } else if rest.len() == 1 {
            rest.to_string()
        } else {
            return None;
        };
        return number(&a)?.div(number(&b)?);
    }
    if let Some((a, b)) = s.split_once('/') {
        return decimal(a)?.div(decimal(b)?);
    }
    decimal(s)
}

/// A multiple-choice letter: "B", "(B)", "B)", "B.", "B:", "option B".
fn choice(s: &str) -> Option<char> {
    let t = s.trim_start_matches("option").trim_start_matches("Option");
    let t = t.trim_matches(|c| matches!(c, '(' | ')' | '.' | ':' | '[' | ']'));
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c.to_ascii_uppercase()),
        _ => None,
    }
}

/// Whether an extracted answer matches the ground truth.
pub fn equivalent(answer: &str, truth: &str) -> bool {
    let (a, t) = (normalise(answer), normalise(truth));
    if a.is_empty() || t.is_empty() {
        return false;
    }
    let pct = |s: &str| s.strip_suffix('%').map(str::to_string);
    let (a_pct, t_pct) = (pct(&a), pct(&t));
    let a_num = number(a_pct.as_deref().unwrap_or(&a));
    let t_num = number(t_pct.as_deref().unwrap_or(&t));
    if let (Some(x), Some(y)) = (a_num, t_num) {
        if x == y {
            return true;
        }
        // "50%" matches 0.5 as well as 50.
        let hundredth = |r: Rational| r.div(Rational(100, 1));
        return match (a_pct.is_some(), t_pct.is_some()) {
            (true, false) => hundredth(x) == Some(y),
            (false, true) => hundredth(y) == Some(x),
            _ => false,
        };
    }
    if let (Some(x), Some(y)) = (choice(&a), choice(&t)) {
        return x == y;
    }
    // Text answers: compare without grouping braces ("x^{2}" = "x^2").
    let strip = |s: &str| s.chars().filter(|c| !matches!(c, '{' | '}')).collect::<String>();
    strip(&a) == strip(&t)
}

/// The reward of one response against its ground-truth answer.
pub fn reward(response: &str, truth: &str, c: &RewardConfig) -> Reward {
    let accuracy = if last_boxed(response).is_some_and(|a| equivalent(a, truth)) { 1.0 } else { 0.0 };
    let format = if format_ok(response) { 1.0 } else { 0.0 };
    Reward { accuracy, format, total: c.accuracy_weight * accuracy + c.format_weight * format }
}
