//! Text that crosses a trust boundary, made safe for where it goes. Pure.
//!
//! - [`terminal`]: network-controlled text (certificate names, SNI, URLs, headers) on a
//!   terminal: C0, DEL and C1 control characters are shown escaped (`\x1b`), never
//!   interpreted, so a certificate cannot retitle or recolour the engineer's terminal.
//! - [`shell`]: a value pasted into a POSIX shell: single-quoted when it is not plainly safe.
//! - [`glob_match`]: `*` globs (`--intercept`, `--upstream-auth-proxies`), linear.
//! - [`html`]: a value inside an HTML page or a quoted attribute.
//! - [`markdown`]: a value inside a Markdown table cell or line.
//! - [`is_host`]: whether a host is a DNS name or an IP literal (anything else is refused
//!   before it can reach a command, a hint or a file name).
//! - [`collapse_whitespace`]: runs of whitespace as one space, trimmed (block-page markers
//!   and page text are compared in this form).
//! - [`sha256_hex`]: a SHA-256 as the files write it (lower-case hex).
//! - [`displays_as`]: whether a value's `Display` is a given text, without writing it out.

use std::borrow::Cow;
use std::fmt::Write;
use std::net::IpAddr;

/// Whether `value` displays as `text`, compared piece by piece as `Display` writes it: no
/// `String` is made (the summary asks this of every request's route).
pub fn displays_as(value: &impl std::fmt::Display, text: &str) -> bool {
    /// What of `text` is still to match.
    struct Rest<'a>(&'a str);
    impl Write for Rest<'_> {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            match self.0.strip_prefix(piece) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(())
                }
                None => Err(std::fmt::Error),
            }
        }
    }
    let mut rest = Rest(text);
    write!(rest, "{value}").is_ok() && rest.0.is_empty()
}

/// `text` with every control character (C0 but `\n` when `keep_newlines`, DEL, C1) written
/// as a visible escape. Borrowed when there is nothing to escape (the common case).
pub fn terminal(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| is_control(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(bad) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if bad(c) {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` for HTML (text or a quoted attribute): control characters made visible as in
/// [`terminal`], then `& < > " '` escaped (`html-escape`). The one HTML escaper: reports,
/// the live page and the answer pages all use it.
pub fn html(text: &str) -> String {
    html_escape::encode_quoted_attribute(&terminal(text, true)).into_owned()
}

/// `*` matches any run of characters (dots included); everything else matches itself.
///
/// Linear in the text: the first piece must start it, the last must end it, and each piece
/// between is taken at its first occurrence (leftmost is always safe when the only
/// wildcard is `*`), so no pattern can make it backtrack.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = pieces.collect();
    let Some((last, middle)) = middle.split_last() else {
        return rest.is_empty(); // no `*` at all: an exact match
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether `a` and `b` are equal, in time that does not depend on where they first differ
/// (credentials and tokens compared with what a client sent).
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The most bytes of a URL or request target kept in the session files.
pub const MAX_RECORDED: usize = 8 * 1024;

/// `text` cut to [`MAX_RECORDED`] bytes (at a character boundary), saying how much went.
pub fn bounded(text: String) -> String {
    clip(&text, MAX_RECORDED).into_owned()
}

/// `text` cut to `max` bytes (at a character boundary), saying how much went.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}…(truncated, {} bytes in all)",
        &text[..end],
        text.len()
    ))
}

/// C0 (U+0000–U+001F), DEL (U+007F) and C1 (U+0080–U+009F).
fn is_control(c: char) -> bool {
    let c = c as u32;
    c < 0x20 || (0x7f..=0x9f).contains(&c)
}

/// `value` as one POSIX shell word: as it is when it holds only characters no shell
/// treats specially, else in single quotes (a `'` inside becomes `'\''`).
pub fn shell(value: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-:/@%+=,".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(format!("'{}'", value.replace('\'', r"'\''")))
}

/// `text` for a Markdown line or table cell: one line, `|` escaped, and the characters that
/// start HTML or code (`<`, `>`, `&`, backticks) written as entities; control characters
/// escaped as on a terminal.
pub fn markdown(text: &str) -> String {
    let text = terminal(text, false);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push_str("&#96;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `host` (brackets allowed around IPv6) is an IP literal or a DNS name: labels of
/// letters, digits, `-` and `_`, 1–63 characters each, at most 253 in all, an optional
/// final dot.
pub fn is_host(host: &str) -> bool {
    let bare = crate::upstream::addr::unbracket(host);
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    is_dns_name(host)
}

/// Whether `name` is a DNS name (see [`is_host`]); an IP literal is not one.
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Runs of whitespace (including no-break spaces) as one space, trimmed.
pub fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The SHA-256 of `bytes` in lower-case hex: how PAC files, SPKIs and kept bodies are named.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = String::with_capacity(64);
    push_hex(&mut out, digest.as_ref());
    out
}

/// Appends `bytes` as lower-case hex digits.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// `%XX` escapes undone (a `%` not followed by two hex digits stays as it is); with
/// `plus_as_space`, `+` is a space as in a query string. Invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(text: &str, plus_as_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) if plus_as_space => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_compares_what_display_would_write() {
        let hop = format_args!("PROXY {}:{}", "proxy.corp", 3128);
        assert!(displays_as(&hop, "PROXY proxy.corp:3128"));
        assert!(!displays_as(&hop, "PROXY proxy.corp:312"));
        assert!(!displays_as(&hop, "PROXY proxy.corp:31280"));
        assert!(!displays_as(&hop, "DIRECT"));
        assert!(displays_as(&"", ""));
    }

    #[test]
    fn html_escapes_markup_and_shows_control_bytes() {
        assert_eq!(
            html("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
        );
        let shown = html("CN=EVIL\x1b]0;pwned\x07\u{9b}31m");
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(shown.contains("\\x1b]0;pwned\\x07"), "{shown}");
    }

    #[test]
    fn terminal_escapes_are_shown_not_interpreted() {
        let evil = "CN=EVIL\x1b]0;PWNED\x07\x1b[31m\u{9b}2J\x7f";
        let shown = terminal(evil, false);
        assert_eq!(shown, "CN=EVIL\\x1b]0;PWNED\\x07\\x1b[31m\\x9b2J\\x7f");
        assert!(!shown.chars().any(is_control));
        assert_eq!(terminal("a\nb", true), "a\nb");
        assert_eq!(terminal("a\nb", false), "a\\x0ab");
        assert!(matches!(terminal("chatgpt.com é", false), Cow::Borrowed(_)));
    }

    #[test]
    fn shell_words_cannot_run_anything() {
        assert_eq!(shell("https://chatgpt.com/x"), "https://chatgpt.com/x");
        let url = "http://chatgpt.com/x'$(touch${IFS}/tmp/p)'err";
        let quoted = shell(url);
        assert_eq!(
            quoted,
            r"'http://chatgpt.com/x'\''$(touch${IFS}/tmp/p)'\''err'"
        );
        assert_eq!(shell("a b"), "'a b'");
        assert_eq!(shell(""), "''");
        assert_eq!(shell("[::1]:443"), "'[::1]:443'");
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        let Ok(out) = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell("x'$(id)`id`\"y\\ z")))
            .output()
        else {
            return; // no sh on this machine: the string test above still holds
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), "x'$(id)`id`\"y\\ z");
    }

    #[test]
    fn markdown_cells_carry_no_markup() {
        assert_eq!(
            markdown("<script>a|b</script> `x` & y\nz"),
            "&lt;script&gt;a\\|b&lt;/script&gt; &#96;x&#96; &amp; y\\x0az"
        );
    }

    #[test]
    fn long_targets_are_cut_and_say_so() {
        assert_eq!(bounded("short".into()), "short");
        let long = format!("http://a/{}", "é".repeat(10_000));
        let cut = bounded(long.clone());
        assert!(cut.len() < MAX_RECORDED + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!("…(truncated, {} bytes in all)", long.len())));
    }

    #[test]
    fn hosts_are_names_or_addresses() {
        for ok in [
            "chatgpt.com",
            "chatgpt.com.",
            "a-b_c.d",
            "127.0.0.1",
            "::1",
            "[::1]",
            "x",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        let long = format!("{}.com", "a".repeat(64));
        for bad in [
            "",
            "x$(id)'y.invalid",
            "a..b",
            "a b",
            "a/b",
            "é.com",
            long.as_str(),
            ".",
        ] {
            assert!(!is_host(bad), "{bad:?}");
        }
        assert!(!is_dns_name("127.0.0.1:80"));
    }
}
