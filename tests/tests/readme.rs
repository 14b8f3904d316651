//! The library snippets of the README ("Three ways to adopt it") and of
//! docs/LIBRARY.md are code that compiles: each is found, line for line and
//! in order, in the example or doctest it is taken from.

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The ```rust blocks of one README section.
fn snippets(readme: &str, section: &str) -> Vec<Vec<String>> {
    let start = readme.find(section).expect("section present");
    let end = readme[start + section.len()..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + section.len() + i);
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in readme[start..end].lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(Vec::new()),
            (Some(_), "```") => out.extend(current.take()),
            (Some(block), l) if !l.trim().is_empty() => block.push(normalize(l).to_owned()),
            _ => {}
        }
    }
    out
}

/// The source's lines as compiled: doc-comment prefixes removed (a doctest
/// is compiled code too), hidden doctest lines dropped.
fn compiled_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().starts_with("//! # "))
        .map(normalize)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A line without indentation or a doc-comment prefix, so a doc comment in
/// a snippet and code in a doctest both compare as their text.
fn normalize(line: &str) -> &str {
    let t = line.trim();
    t.strip_prefix("//! ")
        .or(t.strip_prefix("/// "))
        .unwrap_or(t)
        .trim_start()
}

fn contains_in_order(haystack: &[String], needle: &[String]) -> bool {
    let mut it = haystack.iter();
    needle.iter().all(|n| it.any(|h| h == n))
}

#[test]
fn library_snippets_are_compiled_code() {
    let sources: Vec<(String, Vec<String>)> =
        ["tests/examples/axum.rs", "jose-binding/src/serve/stamp.rs"]
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(repo().join(p)).unwrap();
                (p.to_string(), compiled_lines(&text))
            })
            .collect();
    for (page, section, at_least) in [
        ("README.md", "## Three ways to adopt it", 1),
        ("docs/LIBRARY.md", "## Using the library", 3),
    ] {
        let text = std::fs::read_to_string(repo().join(page)).unwrap();
        let blocks = snippets(&text, section);
        assert!(
            blocks.len() >= at_least,
            "{page}: found {} snippets",
            blocks.len()
        );
        for block in &blocks {
            assert!(
                sources
                    .iter()
                    .any(|(_, lines)| contains_in_order(lines, block)),
                "{page}: snippet not found in any compiled source:\n{}",
                block.join("\n")
            );
        }
    }
}
