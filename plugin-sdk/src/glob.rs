//! A small glob matcher, so that name rules need no regex engine inside the plugin.

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (`/` included)
/// and `?` for any one character; everything else matches itself, case-sensitively.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was and the text position it is currently taken to end at: on a
    // mismatch the star swallows one more character (linear backtracking, no recursion).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn stars_and_question_marks() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything/at/all"));
        assert!(glob_match("resnet-*.pt", "resnet-prod-v2.pt"));
        assert!(glob_match("resnet-?.pt", "resnet-7.pt"));
        assert!(!glob_match("resnet-?.pt", "resnet-17.pt"));
        assert!(glob_match("*/prod/*.pt", "/registry/prod/a.pt"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(!glob_match("Resnet*", "resnet18"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
        assert!(glob_match("**x", "x"));
        assert!(glob_match("modèle-?.pt", "modèle-é.pt"));
    }
}
