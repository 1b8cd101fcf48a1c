//! A small matcher for the XML Schema regular expressions used as `pattern`
//! facets in the BBF data models.
//!
//! Supported: literals, `.`, escapes (`\d`, `\w`, `\s`, `\D`, `\W`, `\S` and
//! escaped metacharacters), character classes with ranges and negation,
//! groups, alternation and the quantifiers `?`, `*`, `+`, `{n}`, `{n,}` and
//! `{n,m}` (a trailing lazy `?` is accepted and ignored, since the whole value
//! must match either way). XSD patterns are implicitly anchored at both ends.
//! Anything else makes [`compile`] return `None`, and the caller treats the
//! pattern as unchecked. Matching tracks sets of positions instead of
//! backtracking, so its cost stays polynomial in the value length.

use std::collections::BTreeSet;

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    alternatives: Vec<Vec<Piece>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    atom: Atom,
    min: u32,
    max: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Char(char),
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Group(Vec<Vec<Piece>>),
}

/// Largest repetition count accepted in `{n}` / `{n,m}`.
const MAX_REPEAT: u32 = 10_000;

/// Compiles `source`, or returns `None` if it uses syntax this matcher does
/// not support.
pub(crate) fn compile(source: &str) -> Option<Pattern> {
    let chars: Vec<char> = source.chars().collect();
    let mut pos = 0;
    let alternatives = parse_alternatives(&chars, &mut pos, 0)?;
    if pos != chars.len() {
        return None;
    }
    Some(Pattern { alternatives })
}

impl Pattern {
    /// Whether the whole of `text` matches.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let matcher = Matcher { text: &chars };
        matcher
            .alternatives(&self.alternatives, 0)
            .contains(&chars.len())
    }
}

fn parse_alternatives(chars: &[char], pos: &mut usize, depth: u32) -> Option<Vec<Vec<Piece>>> {
    if depth > 32 {
        return None;
    }
    let mut alternatives = vec![parse_sequence(chars, pos, depth)?];
    while chars.get(*pos) == Some(&'|') {
        *pos += 1;
        alternatives.push(parse_sequence(chars, pos, depth)?);
    }
    Some(alternatives)
}

fn parse_sequence(chars: &[char], pos: &mut usize, depth: u32) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    while let Some(&c) = chars.get(*pos) {
        let atom = match c {
            '|' | ')' => break,
            '(' => {
                *pos += 1;
                let inner = parse_alternatives(chars, pos, depth + 1)?;
                if chars.get(*pos) != Some(&')') {
                    return None;
                }
                *pos += 1;
                Atom::Group(inner)
            }
            '[' => {
                *pos += 1;
                parse_class(chars, pos)?
            }
            '.' => {
                *pos += 1;
                Atom::Any
            }
            '\\' => {
                *pos += 1;
                let escaped = *chars.get(*pos)?;
                *pos += 1;
                escape_atom(escaped)?
            }
            '*' | '+' | '?' | '{' | '}' | ']' | '^' | '$' => return None,
            _ => {
                *pos += 1;
                Atom::Char(c)
            }
        };
        let (min, max) = parse_quantifier(chars, pos)?;
        pieces.push(Piece { atom, min, max });
    }
    Some(pieces)
}

fn parse_quantifier(chars: &[char], pos: &mut usize) -> Option<(u32, Option<u32>)> {
    let quantifier = match chars.get(*pos) {
        Some('?') => (0, Some(1)),
        Some('*') => (0, None),
        Some('+') => (1, None),
        Some('{') => {
            let close = chars[*pos..].iter().position(|&c| c == '}')? + *pos;
            let body: String = chars[*pos + 1..close].iter().collect();
            *pos = close;
            match body.split_once(',') {
                None => {
                    let n = body.parse().ok()?;
                    (n, Some(n))
                }
                Some((lo, "")) => (lo.parse().ok()?, None),
                Some((lo, hi)) => {
                    let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
                    if hi < lo {
                        return None;
                    }
                    (lo, Some(hi))
                }
            }
        }
        _ => return Some((1, Some(1))),
    };
    if quantifier.0 > MAX_REPEAT || quantifier.1.is_some_and(|max| max > MAX_REPEAT) {
        return None;
    }
    *pos += 1;
    // Lazy quantifiers match the same whole strings as greedy ones.
    if chars.get(*pos) == Some(&'?') {
        *pos += 1;
    }
    Some(quantifier)
}

fn escape_atom(c: char) -> Option<Atom> {
    let class = |negated, ranges: &[(char, char)]| Atom::Class {
        negated,
        ranges: ranges.to_vec(),
    };
    Some(match c {
        'd' => class(false, DIGIT),
        'D' => class(true, DIGIT),
        'w' => class(false, WORD),
        'W' => class(true, WORD),
        's' => class(false, SPACE),
        'S' => class(true, SPACE),
        'n' => Atom::Char('\n'),
        'r' => Atom::Char('\r'),
        't' => Atom::Char('\t'),
        c if c.is_ascii_alphanumeric() => return None,
        c => Atom::Char(c),
    })
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')];
const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\t'), ('\n', '\n'), ('\r', '\r')];

fn parse_class(chars: &[char], pos: &mut usize) -> Option<Atom> {
    let negated = chars.get(*pos) == Some(&'^');
    if negated {
        *pos += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(*pos)?;
        *pos += 1;
        let lo = match c {
            ']' if !first => break,
            '[' => return None,
            '\\' => {
                let escaped = *chars.get(*pos)?;
                *pos += 1;
                match escape_atom(escaped)? {
                    Atom::Char(ch) => ch,
                    Atom::Class {
                        negated: false,
                        ranges: r,
                    } => {
                        ranges.extend(r);
                        first = false;
                        continue;
                    }
                    _ => return None,
                }
            }
            c => c,
        };
        first = false;
        if chars.get(*pos) == Some(&'-') && chars.get(*pos + 1).is_some_and(|&n| n != ']') {
            let hi = *chars.get(*pos + 1)?;
            *pos += 2;
            let hi = if hi == '\\' {
                let escaped = *chars.get(*pos)?;
                *pos += 1;
                match escape_atom(escaped)? {
                    Atom::Char(ch) => ch,
                    _ => return None,
                }
            } else {
                hi
            };
            if hi < lo {
                return None;
            }
            ranges.push((lo, hi));
        } else {
            ranges.push((lo, lo));
        }
    }
    Some(Atom::Class { negated, ranges })
}

/// Matching works on sets of positions: for each piece, the set of places
/// where it can end given the places where it can start. That is polynomial in
/// the value length, so no input can make it backtrack exponentially.
struct Matcher<'t> {
    text: &'t [char],
}

type Positions = BTreeSet<usize>;

impl Matcher<'_> {
    fn alternatives(&self, alternatives: &[Vec<Piece>], start: usize) -> Positions {
        let mut ends = Positions::new();
        for sequence in alternatives {
            let mut positions = Positions::from([start]);
            for piece in sequence {
                positions = self.piece(piece, &positions);
                if positions.is_empty() {
                    break;
                }
            }
            ends.extend(positions);
        }
        ends
    }

    fn piece(&self, piece: &Piece, starts: &Positions) -> Positions {
        let mut ends = Positions::new();
        if piece.min == 0 {
            ends.extend(starts.iter().copied());
        }
        // Positions reached with at least `min` occurrences; a position seen
        // again later was reached with fewer occurrences before, which leaves
        // at least as many repetitions available, so it need not be expanded.
        let mut settled = Positions::new();
        let mut frontier = starts.clone();
        let mut count = 0u32;
        while !frontier.is_empty() && piece.max.is_none_or(|max| count < max) {
            count += 1;
            let mut next = Positions::new();
            for &p in &frontier {
                next.extend(self.atom(&piece.atom, p));
            }
            if count >= piece.min {
                next.retain(|p| settled.insert(*p));
                ends.extend(next.iter().copied());
            }
            frontier = next;
        }
        ends
    }

    fn atom(&self, atom: &Atom, pos: usize) -> Positions {
        match atom {
            Atom::Group(alternatives) => self.alternatives(alternatives, pos),
            atom => match self.text.get(pos) {
                Some(&c) if single_matches(atom, c) => Positions::from([pos + 1]),
                _ => Positions::new(),
            },
        }
    }
}

fn single_matches(atom: &Atom, c: char) -> bool {
    match atom {
        Atom::Char(expected) => *expected == c,
        Atom::Any => c != '\n' && c != '\r',
        Atom::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
        Atom::Group(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        compile(pattern).unwrap().is_match(text)
    }

    #[test]
    fn mac_address() {
        let p = "([0-9A-Fa-f][0-9A-Fa-f]:){5}([0-9A-Fa-f][0-9A-Fa-f])";
        assert!(m(p, "00:1a:2B:3c:4D:5e"));
        assert!(!m(p, "00:1a:2B:3c:4D"));
        assert!(!m(p, "00:1a:2B:3c:4D:5e:"));
        assert!(!m(p, "00-1a-2B-3c-4D-5e"));
    }

    #[test]
    fn ipv4_address() {
        let p =
            r"((25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])";
        assert!(m(p, "192.168.1.254"));
        assert!(m(p, "0.0.0.0"));
        assert!(!m(p, "256.1.1.1"));
        assert!(!m(p, "1.2.3"));
        assert!(!m(p, "1.2.3.4.5"));
    }

    #[test]
    fn empty_pattern_matches_only_empty() {
        assert!(m("", ""));
        assert!(!m("", "x"));
    }

    #[test]
    fn escapes_classes_and_counts() {
        assert!(m(r"\d+(\.\d+)*", "1.22.333"));
        assert!(!m(r"\d+(\.\d+)*", "1..2"));
        assert!(m(r"\d{4}|\d{8}", "1234"));
        assert!(m(r"\d{4}|\d{8}", "12345678"));
        assert!(!m(r"\d{4}|\d{8}", "123456"));
        assert!(m("[0-9]{1,15}?[BKMGT]", "100M"));
        assert!(m("[A-Z][A-Z][ OI]", "US "));
        assert!(m("X_.+", "X_ACME_Thing"));
        assert!(!m("X_.+", "X_"));
        assert!(m(r"SIP(/\d+\.\d+)?", "SIP"));
        assert!(m(r"SIP(/\d+\.\d+)?", "SIP/2.0"));
        assert!(!m("[^a-c]", "b"));
        assert!(m("[^a-c]", "d"));
        assert!(m(
            "urn:[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]:.+",
            "urn:bbf:x"
        ));
    }

    #[test]
    fn unsupported_syntax_is_refused() {
        assert!(compile("a{2").is_none());
        assert!(compile("(ab").is_none());
        assert!(compile(r"\p{L}").is_none());
        assert!(compile("*a").is_none());
    }

    #[test]
    fn nested_empty_repetition_terminates() {
        assert!(m("(a*)*b", "aaab"));
        assert!(!m("(a*)*b", "aaaa"));
    }
}
