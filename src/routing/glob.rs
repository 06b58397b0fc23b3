//! `*` and `?` globs over model names, matched without allocation.

pub(crate) use crate::config::is_glob;

/// A compiled glob pattern.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    pattern: Box<[char]>,
    literals: usize,
    /// The literal text before the first wildcard: every match starts with it.
    prefix: Box<str>,
    /// The literal text after the last wildcard: every match ends with it.
    suffix: Box<str>,
}

impl Glob {
    /// Compiles a pattern.
    pub(crate) fn new(pattern: &str) -> Self {
        let pattern: Box<[char]> = pattern.chars().collect();
        let literals = pattern.iter().filter(|c| !matches!(c, '*' | '?')).count();
        let wild = |c: &&char| matches!(c, '*' | '?');
        let prefix = pattern.iter().take_while(|c| !wild(c)).collect();
        let mut suffix: Vec<char> = pattern.iter().rev().take_while(|c| !wild(c)).copied().collect();
        suffix.reverse();
        Self { pattern, literals, prefix, suffix: suffix.into_iter().collect() }
    }

    /// How specific the pattern is: its number of literal characters.
    pub(crate) fn specificity(&self) -> usize {
        self.literals
    }

    /// Whether `name` matches. Iterative with one backtrack point: linear in practice, never
    /// exponential, whatever the pattern. Walks `name` in place (byte offsets at char
    /// boundaries): no allocation, since every miss of a route lookup tries every glob.
    pub(crate) fn matches(&self, name: &str) -> bool {
        // Most names are refused here: a lookup tries every glob, and most globs are `family-*`
        // or `*-suffix`, whose literal end decides at once.
        if !name.starts_with(&*self.prefix) || !name.ends_with(&*self.suffix) {
            return false;
        }
        let p = &self.pattern;
        let next_char = |at: usize| name.get(at..).and_then(|rest| rest.chars().next());
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = next_char(ti) {
            if pi < p.len() && (p[pi] == '?' || p[pi] == c) {
                pi += 1;
                ti += c.len_utf8();
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                // Let the star take one more char of `name` (`st` is at a char, as `ti` was).
                let st = st + next_char(st).map_or(1, char::len_utf8);
                pi = sp + 1;
                ti = st;
                star = Some((sp, st));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_stars_and_question_marks() {
        let g = Glob::new("claude-*");
        assert!(g.matches("claude-sonnet-4-5"));
        assert!(g.matches("claude-"));
        assert!(!g.matches("gpt-4o"));
        assert!(Glob::new("gpt-4?").matches("gpt-4o"));
        assert!(!Glob::new("gpt-4?").matches("gpt-4o-mini"));
        assert!(Glob::new("*mini*").matches("gpt-4o-mini-2024"));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
        assert!(Glob::new("*").matches(""));
    }

    #[test]
    fn question_mark_takes_one_char_not_one_byte() {
        assert!(Glob::new("caf?-*").matches("café-latte"));
        assert!(Glob::new("*é").matches("résumé"));
        assert!(Glob::new("r?sum?").matches("résumé"));
        assert!(!Glob::new("r??sum?").matches("résumé"));
        assert!(Glob::new("漢*字").matches("漢-x-字"));
        assert!(!Glob::new("漢*字").matches("漢-x-字!"));
        assert!(Glob::new("*-?").matches("a-é"));
    }

    #[test]
    fn literal_ends_are_checked_first_without_changing_the_answer() {
        let g = Glob::new("ab?*cd*ef");
        assert_eq!((&*g.prefix, &*g.suffix), ("ab", "ef"));
        assert!(g.matches("abXcdef") && g.matches("abXYcdZef"));
        assert!(!g.matches("abcdef") && !g.matches("xbXcdef") && !g.matches("abXcdeg"));
        // Prefix and suffix may overlap in the name only when the pattern allows it.
        let g = Glob::new("aba*aba");
        assert!(g.matches("abaaba") && g.matches("aba-aba"));
        assert!(!g.matches("aba") && !g.matches("ababa"));
        let g = Glob::new("x?");
        assert_eq!((&*g.prefix, &*g.suffix), ("x", ""));
        assert!(g.matches("xé") && !g.matches("x") && !g.matches("xab"));
        assert_eq!((&*Glob::new("*").prefix, &*Glob::new("*").suffix), ("", ""));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let g = Glob::new("a*a*a*a*a*a*a*a*b");
        let text = "a".repeat(5000);
        assert!(!g.matches(&text));
    }

    #[test]
    fn specificity_counts_literals() {
        assert!(Glob::new("claude-3-*").specificity() > Glob::new("claude-*").specificity());
        assert!(is_glob("x*") && is_glob("x?") && !is_glob("x"));
    }
}
