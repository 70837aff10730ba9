//! Reading settings from the environment: one small reader per kind of
//! setting (text, flag, number, secret), with the same rules for the server
//! and the agent, so the two cannot drift apart.
//!
//! Rules:
//! - a value is trimmed; unset and empty mean "use the default";
//! - a flag is `1/true/yes/on` or `0/false/no/off`; anything else is an error;
//! - a number is a whole number within the setting's range; anything else is
//!   an error (a typo must stop the program, not run it with a default);
//! - a secret comes from `NAME` or from the file named by `NAME_FILE`, never
//!   both; it must be one word, not wrapped in quotes, not a placeholder from
//!   `.secrets.example`, and a file must not look like an env file.
//!
//! Every problem is collected, so one start reports all of them; each names
//! the variable, quotes the value (never a secret's) and says what to do.

use std::fmt;

/// A value that must never be printed: its `Debug` is redacted and it has
/// no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Settings the program cannot run with, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Is `value` one of the placeholders `.secrets.example` ships (or shaped
/// like one)? `replace-with-…`, `tk_...`, `the-43-character-key-…`.
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    lower.starts_with("replace-with-") || lower.contains("...") || lower.starts_with("the-43-character-key")
}

/// `scheme://authority rest` of a URL: the scheme (if any), the authority
/// (up to the first `/`, `?` or `#`) and the rest.
pub fn url_parts(url: &str) -> (Option<&str>, &str, &str) {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (scheme, &rest[..end], &rest[end..])
}

/// The host of an http(s) URL: no user info, no port, no brackets; empty
/// when there is no `scheme://`.
pub fn url_host(url: &str) -> &str {
    let (Some(_), authority, _) = url_parts(url) else { return "" };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

/// A URL as it may be printed: user information (`user:password@`) and
/// the query (`?auth=…`) replaced by `***`, since either may hold a secret.
pub fn redact_url(url: &str) -> String {
    let (scheme, authority, rest) = url_parts(url);
    let scheme = scheme.map(|s| format!("{s}://")).unwrap_or_default();
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    let rest = match rest.split_once('?') {
        Some((path, _)) => format!("{path}?***"),
        None => rest.to_string(),
    };
    format!("{scheme}{host}{rest}")
}

/// Variables in `present` that look like settings of ours (`prefixes`, or
/// within two edits of a name in `read`) but are not among the names the
/// program read: a typo that would otherwise be ignored without a word.
/// One line each, naming the setting it probably meant.
pub fn unknown_settings(read: &[String], present: impl Iterator<Item = String>, prefixes: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut present: Vec<String> = present.collect();
    present.sort();
    for var in present {
        if read.contains(&var) {
            continue;
        }
        let closest = read.iter().map(|r| (edit_distance(&var, r), r)).min();
        // Short names (TZ, PWD) are too close to everything to guess.
        let near = closest.filter(|(d, _)| *d <= 2 && var.len() >= 6);
        let ours = prefixes.iter().any(|p| var.starts_with(p));
        match (near, ours) {
            (Some((_, name)), _) => out.push(format!("{var} is not a setting; did you mean {name}? (it is ignored)")),
            (None, true) => out.push(format!(
                "{var} is not a setting of this program; it is ignored (check the spelling in the settings table)"
            )),
            (None, false) => {}
        }
    }
    out
}

/// Settings read by `load` from the process environment, with the
/// variables that look like misspelt settings (`unknown_settings`) added to
/// the warnings `warnings` picks out of the result — or, when `load` fails,
/// to its errors, since a typo is often why it failed.
pub fn from_process<T>(
    prefixes: &[&str],
    load: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> Result<T, ConfigError>,
    warnings: impl FnOnce(&mut T) -> &mut Vec<String>,
) -> Result<T, ConfigError> {
    let read = std::cell::RefCell::new(Vec::<String>::new());
    let result = load(&|name| {
        read.borrow_mut().push(name.to_string());
        std::env::var(name).ok()
    });
    let typos = unknown_settings(&read.into_inner(), std::env::vars().map(|(k, _)| k), prefixes);
    match result {
        Ok(mut value) => {
            warnings(&mut value).extend(typos);
            Ok(value)
        }
        Err(ConfigError(text)) if !typos.is_empty() => Err(ConfigError(format!("{text}\n{}", typos.join("\n")))),
        Err(e) => Err(e),
    }
}

/// Levenshtein distance of two ASCII-ish names.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Reads settings through a lookup function (the process environment, or a
/// map in tests) and collects what is wrong.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<String>,
    /// Problems that do not stop the program, logged at start.
    pub warnings: Vec<String>,
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        Env { lookup, errors: Vec::new(), warnings: Vec::new() }
    }

    /// The trimmed value; `None` when unset or empty.
    pub fn text(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// Record a problem that stops the program.
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// A yes/no setting.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.text(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => default,
            Some("1" | "true" | "yes" | "on") => true,
            Some("0" | "false" | "no" | "off") => false,
            Some(other) => {
                self.error(format!("{name}={other:?} is not a yes/no value; use 1 or 0"));
                default
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn number(&mut self, name: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(raw) = self.text(name) else { return default };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            Ok(_) => {
                self.error(format!("{name}={raw:?} is outside {min}..={max}; use a value in that range"));
                default
            }
            Err(_) => {
                self.error(format!("{name}={raw:?} is not a whole number; use e.g. {name}={default}"));
                default
            }
        }
    }

    /// A secret from `NAME` or from the file `NAME_FILE` names.
    pub fn secret(&mut self, name: &str) -> Option<Secret> {
        let file_var = format!("{name}_FILE");
        let value = match (self.text(name), self.text(&file_var)) {
            (Some(_), Some(_)) => {
                self.error(format!("{name} and {file_var} are both set; set only one of them"));
                return None;
            }
            (Some(v), None) => v,
            (None, Some(path)) => self.secret_file(name, &file_var, &path)?,
            (None, None) => return None,
        };
        let quoted = value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\'')));
        let problem = if quoted {
            Some("is wrapped in quotes; remove them (env files and compose take the value literally)")
        } else if value.chars().any(char::is_whitespace) {
            Some("contains white space; it must be a single word")
        } else if is_placeholder(&value) {
            Some("is still the placeholder from .secrets.example; replace it with your real value")
        } else {
            None
        };
        match problem {
            Some(p) => {
                self.error(format!("{name} {p}"));
                None
            }
            None => Some(Secret(value)),
        }
    }

    fn secret_file(&mut self, name: &str, file_var: &str, path: &str) -> Option<String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.error(format!(
                    "{file_var}: cannot read {path:?}: {e}; point it at a readable file holding only the secret"
                ));
                return None;
            }
        };
        let value = text.trim().to_string();
        if value.is_empty() {
            self.error(format!("{file_var}: {path:?} is empty; put the secret in it"));
            return None;
        }
        if value.starts_with(&format!("{name}=")) || (value.contains('=') && value.contains('\n')) {
            self.error(format!(
                "{file_var}: {path:?} looks like an env file (KEY=value); it must hold only the secret itself"
            ));
            return None;
        }
        Some(value)
    }

    /// The value built from the settings, or every problem found.
    pub fn finish<T>(self, value: T) -> Result<(T, Vec<String>), ConfigError> {
        if self.errors.is_empty() {
            Ok((value, self.warnings))
        } else {
            Err(ConfigError(self.errors.join("\n")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with<T>(vars: &[(&str, &str)], read: impl FnOnce(&mut Env) -> T) -> (T, Result<(), ConfigError>) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| map.get(k).cloned();
        let mut env = Env::new(&lookup);
        let value = read(&mut env);
        (value, env.finish(()).map(|_| ()))
    }

    #[test]
    fn flags_and_numbers_that_do_not_parse_are_errors() {
        let (v, r) = with(&[("DRY_RUN", "2")], |e| e.flag("DRY_RUN", false));
        assert!(!v);
        assert_eq!(r.expect_err("bad flag").0, "DRY_RUN=\"2\" is not a yes/no value; use 1 or 0");
        let (v, r) = with(&[("X", " Yes ")], |e| e.flag("X", false));
        assert!(v && r.is_ok());
        let (_, r) = with(&[("PORT", "70000")], |e| e.number("PORT", 80, 1, 65535));
        assert!(r.expect_err("range").0.contains("PORT=\"70000\" is outside 1..=65535"));
        let (_, r) = with(&[("TTL", "5m")], |e| e.number("TTL", 60, 60, 100));
        assert!(r.expect_err("nan").0.contains("TTL=\"5m\" is not a whole number"));
        let (v, r) = with(&[("TTL", "")], |e| e.number("TTL", 60, 60, 100));
        assert!(v == 60 && r.is_ok());
    }

    #[test]
    fn urls_are_printed_without_their_secrets() {
        assert_eq!(redact_url("https://user:pw@ntfy.example.com/topic"), "https://***@ntfy.example.com/topic");
        assert_eq!(redact_url("https://ntfy.sh/t?auth=secret"), "https://ntfy.sh/t?***");
        assert_eq!(redact_url("https://api.hetzner.cloud/v1"), "https://api.hetzner.cloud/v1");
        assert_eq!(redact_url("http://a:b@[::1]:8080"), "http://***@[::1]:8080");
        assert_eq!(redact_url("https://u:p@h?x=1#f"), "https://***@h?***");
        assert_eq!(url_host("http://localhost@attacker.example/x"), "attacker.example");
        assert_eq!(url_host("http://[::1]:8080/"), "::1");
        assert_eq!(url_host("dyndns.example.com"), "");
    }

    #[test]
    fn typos_of_settings_are_named_with_what_was_meant() {
        let read: Vec<String> = ["LISTEN_PORT", "REGISTERED_FQDNS", "DRY_RUN"].iter().map(|s| s.to_string()).collect();
        let present = ["LISTEN_PROT", "REGISTERD_FQDNS", "DRYRUN", "LISTEN_PORT", "HOME", "LISTEN_SOMETHING"];
        let w = unknown_settings(&read, present.iter().map(|s| s.to_string()), &["LISTEN_"]);
        assert!(w.iter().any(|l| l.starts_with("LISTEN_PROT ") && l.contains("did you mean LISTEN_PORT")), "{w:?}");
        assert!(w.iter().any(|l| l.starts_with("REGISTERD_FQDNS ") && l.contains("REGISTERED_FQDNS")), "{w:?}");
        assert!(w.iter().any(|l| l.starts_with("DRYRUN ") && l.contains("DRY_RUN")), "{w:?}");
        assert!(w.iter().any(|l| l.starts_with("LISTEN_SOMETHING ") && l.contains("not a setting")), "{w:?}");
        assert!(!w.iter().any(|l| l.starts_with("HOME") || l.starts_with("LISTEN_PORT ")), "{w:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (_, r) = with(&[("A", "x"), ("B", "y")], |e| (e.flag("A", false), e.number("B", 1, 0, 9)));
        assert_eq!(r.expect_err("two").0.lines().count(), 2);
    }

    #[test]
    fn secrets_follow_the_rules_and_are_never_quoted_back() {
        for (value, problem) in [
            ("\"abc\"", "quotes"),
            ("'abc'", "quotes"),
            ("ab c", "white space"),
            ("replace-with-your-hetzner-cloud-api-token", "placeholder"),
            ("tk_...", "placeholder"),
        ] {
            let (v, r) = with(&[("TOKEN", value)], |e| e.secret("TOKEN"));
            assert!(v.is_none());
            let err = r.expect_err(value).0;
            assert!(err.starts_with("TOKEN ") && err.contains(problem) && !err.contains("abc"), "{err}");
        }
        let (v, r) = with(&[("TOKEN", "t0k"), ("TOKEN_FILE", "/x")], |e| e.secret("TOKEN"));
        assert!(v.is_none() && r.expect_err("both").0.contains("both set"));
        let (v, r) = with(&[("TOKEN", "t0k")], |e| e.secret("TOKEN"));
        assert_eq!(v.as_ref().map(Secret::expose), Some("t0k"));
        assert!(r.is_ok() && format!("{v:?}") == "Some([redacted])");
    }

    #[test]
    fn secret_files_are_read_and_env_files_refused() {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let dir = scratch.path();
        let good = dir.join("token");
        std::fs::write(&good, "tok-from-file\n").expect("write");
        let bad = dir.join("envfile");
        std::fs::write(&bad, "TOKEN=tok\n").expect("write");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let path = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
        let (v, r) = with(&[("TOKEN_FILE", &path(&good))], |e| e.secret("TOKEN"));
        assert_eq!(v.as_ref().map(Secret::expose), Some("tok-from-file"));
        assert!(r.is_ok());
        let (_, r) = with(&[("TOKEN_FILE", &path(&bad))], |e| e.secret("TOKEN"));
        assert!(r.expect_err("env file").0.contains("looks like an env file"));
        let (_, r) = with(&[("TOKEN_FILE", &path(&empty))], |e| e.secret("TOKEN"));
        assert!(r.expect_err("empty").0.contains("is empty"));
        let (_, r) = with(&[("TOKEN_FILE", "/nonexistent/token")], |e| e.secret("TOKEN"));
        let err = r.expect_err("missing").0;
        assert!(err.starts_with("TOKEN_FILE: cannot read \"/nonexistent/token\""), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
