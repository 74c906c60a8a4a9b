//! IAM's `*` and `?` wildcards.

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also none) and `?`
/// exactly one. `ignore_case` folds ASCII case (IAM actions are case-insensitive).
pub fn matches(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let eq = |a: char, b: char| {
        if ignore_case {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Greedy matching with backtracking to the last `*`: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && eq(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("*", "", false));
        assert!(matches("*", "anything", false));
        assert!(matches("a*c", "abbbc", false));
        assert!(matches("a*c", "ac", false));
        assert!(!matches("a*c", "abcd", false));
        assert!(matches("a?c", "abc", false));
        assert!(!matches("a?c", "ac", false));
        assert!(matches("*a*b*", "xxaxxbxx", false));
        assert!(!matches("*a*b*", "xxbxxaxx", false));
        assert!(matches("runtime/ag?nt-*", "runtime/agent-123", false));
    }

    #[test]
    fn case_folding_is_opt_in() {
        assert!(matches(
            "bedrock-agentcore:invoke*",
            "bedrock-agentcore:InvokeAgentRuntime",
            true
        ));
        assert!(!matches(
            "bedrock-agentcore:invoke*",
            "bedrock-agentcore:InvokeAgentRuntime",
            false
        ));
    }
}
