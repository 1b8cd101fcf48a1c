//! A line diff in unified format, for comparing two configuration backups. Pure.
//!
//! The common head and tail are cut first; the rest is aligned by a longest common
//! subsequence when it is small enough (at most 4 million line pairs), otherwise shown as
//! replaced as a whole. Configuration files differ in a few lines, so the exact path is the
//! usual one.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Ins(usize),
}

const MAX_CELLS: usize = 4_000_000;

fn ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut out: Vec<Op> = (0..head).map(|i| Op::Same(i, i)).collect();
    let (n, m) = (ma.len(), mb.len());
    if (n + 1).saturating_mul(m + 1) > MAX_CELLS {
        out.extend((0..n).map(|i| Op::Del(head + i)));
        out.extend((0..m).map(|j| Op::Ins(head + j)));
    } else {
        // lcs[i][j] = length of the LCS of ma[i..] and mb[j..].
        let w = m + 1;
        let mut lcs = vec![0u32; (n + 1) * w];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && ma[i] == mb[j] {
                out.push(Op::Same(head + i, head + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                out.push(Op::Del(head + i));
                i += 1;
            } else {
                out.push(Op::Ins(head + j));
                j += 1;
            }
        }
    }
    let (sa, sb) = (a.len() - tail, b.len() - tail);
    out.extend((0..tail).map(|k| Op::Same(sa + k, sb + k)));
    out
}

/// A unified diff of `old` to `new` with `context` lines around each change; empty when the
/// texts are equal.
pub fn unified(old_name: &str, new_name: &str, old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = ops(&a, &b);
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(k, _)| k)
        .collect();
    if changes.is_empty() {
        return String::new();
    }
    // Ranges of ops forming hunks: each change with its context, overlapping ones merged.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changes {
        let (lo, hi) = (k.saturating_sub(context), (k + context + 1).min(ops.len()));
        match hunks.last_mut() {
            Some(h) if lo <= h.1 => h.1 = h.1.max(hi),
            _ => hunks.push((lo, hi)),
        }
    }
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (lo, hi) in hunks {
        let slice = &ops[lo..hi];
        // Where the hunk starts in each file (1-based), and how many lines it spans.
        let (mut a_start, mut b_start) = (None, None);
        let (mut a_len, mut b_len) = (0, 0);
        for o in slice {
            match *o {
                Op::Same(i, j) => {
                    a_start.get_or_insert(i);
                    b_start.get_or_insert(j);
                    a_len += 1;
                    b_len += 1;
                }
                Op::Del(i) => {
                    a_start.get_or_insert(i);
                    a_len += 1;
                }
                Op::Ins(j) => {
                    b_start.get_or_insert(j);
                    b_len += 1;
                }
            }
        }
        let pos = |start: Option<usize>, len: usize, before: usize| match start {
            Some(s) => format!("{},{len}", s + 1),
            None => format!("{before},0"),
        };
        // An empty side is named by the line before the hunk.
        let a_before = ops[..lo]
            .iter()
            .filter(|o| !matches!(o, Op::Ins(_)))
            .count();
        let b_before = ops[..lo]
            .iter()
            .filter(|o| !matches!(o, Op::Del(_)))
            .count();
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            pos(a_start, a_len, a_before),
            pos(b_start, b_len, b_before)
        ));
        for o in slice {
            match *o {
                Op::Same(i, _) => out.push_str(&format!(" {}\n", a[i])),
                Op::Del(i) => out.push_str(&format!("-{}\n", a[i])),
                Op::Ins(j) => out.push_str(&format!("+{}\n", b[j])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("a", "b", "x\ny\n", "x\ny\n", 3), "");
    }

    #[test]
    fn one_changed_line_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        assert_eq!(
            unified("old", "new", old, new, 2),
            "--- old\n+++ new\n@@ -3,5 +3,5 @@\n c\n d\n-e\n+E\n f\n g\n"
        );
    }

    #[test]
    fn insertions_deletions_and_separate_hunks() {
        let old: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "").replace("l18\n", "l18\nnew\n");
        let d = unified("o", "n", &old, &new, 1);
        assert_eq!(
            d,
            "--- o\n+++ n\n@@ -1,3 +1,2 @@\n l1\n-l2\n l3\n@@ -18,2 +17,3 @@\n l18\n+new\n l19\n"
        );
    }

    #[test]
    fn from_or_to_empty() {
        assert_eq!(
            unified("o", "n", "", "x\n", 3),
            "--- o\n+++ n\n@@ -0,0 +1,1 @@\n+x\n"
        );
        assert_eq!(
            unified("o", "n", "x\n", "", 3),
            "--- o\n+++ n\n@@ -1,1 +0,0 @@\n-x\n"
        );
    }
}
