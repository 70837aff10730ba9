//! `.secrets.example` is what a new user copies: every placeholder in it
//! must be refused by the program that reads it, and everything else in it
//! must be accepted as written.

use std::collections::HashMap;

/// `(name, value)` of every `NAME=value` line, commented out or not.
fn example_lines() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.secrets.example");
    let text = std::fs::read_to_string(path).expect(".secrets.example");
    text.lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const SECRETS: &[&str] = &["HETZNER_TOKEN", "BASIC_AUTH_PASSWORD", "NTFY_TOKEN", "NTFY_PASSWORD", "PRE_SHARED_KEY"];

fn server_config(vars: &[(&str, &str)]) -> Result<dyndns_server::config::Config, String> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    dyndns_server::config::Config::from_lookup(&move |k| map.get(k).cloned()).map_err(|e| e.0)
}

#[test]
fn every_placeholder_in_secrets_example_is_refused() {
    let placeholders: Vec<(String, String)> =
        example_lines().into_iter().filter(|(k, v)| SECRETS.contains(&k.as_str()) && !v.is_empty()).collect();
    let names: Vec<&str> = placeholders.iter().map(|(k, _)| k.as_str()).collect();
    for secret in SECRETS {
        assert!(names.contains(secret), "{secret} has no placeholder in .secrets.example: {names:?}");
    }
    for (name, value) in &placeholders {
        let err = if name == "PRE_SHARED_KEY" {
            let vars: HashMap<&str, &str> = [
                ("BACKEND_URL", "https://dyndns.example.com"),
                ("FQDN", "home.example.com"),
                ("PRE_SHARED_KEY", value.as_str()),
            ]
            .into();
            dyndns_agent::config::Config::load(&[], &|k| vars.get(k).map(|v| v.to_string()))
                .map(|_| ())
                .map_err(|e| e.0)
        } else {
            // Each secret with what it needs around it.
            let mut vars = vec![(name.as_str(), value.as_str())];
            match name.as_str() {
                "BASIC_AUTH_PASSWORD" => vars.push(("BASIC_AUTH_USERNAME", "admin")),
                "NTFY_TOKEN" | "NTFY_PASSWORD" => {
                    vars.extend([("NTFY_URL", "https://ntfy.sh"), ("NTFY_TOPIC", "t")]);
                    if name == "NTFY_PASSWORD" {
                        vars.push(("NTFY_USERNAME", "u"));
                    }
                }
                _ => {}
            }
            server_config(&vars).map(|_| ())
        };
        let err = err.expect_err(&format!("{name}={value} was accepted"));
        assert!(err.contains(&format!("{name} is still the placeholder")), "{name}: {err}");
        assert!(!err.contains(value.as_str()), "the refusal quotes the secret: {err}");
    }
}

#[test]
fn the_rest_of_secrets_example_is_accepted_as_written() {
    let real = |name: &str| match name {
        "HETZNER_TOKEN" => Some("a-real-looking-token"),
        "BASIC_AUTH_PASSWORD" => Some("a-long-enough-password"),
        "NTFY_TOKEN" => Some("tk_realtoken"),
        // One way to log in to ntfy, one way to give each secret.
        "NTFY_USERNAME" | "NTFY_PASSWORD" => None,
        n if n.ends_with("_FILE") => None,
        _ => Some(""),
    };
    let lines = example_lines();
    let vars: Vec<(&str, &str)> = lines
        .iter()
        .filter(|(k, _)| !["BACKEND_URL", "FQDN", "PRE_SHARED_KEY", "INTERVAL", "IP_VERSION"].contains(&k.as_str()))
        .filter_map(|(k, v)| match real(k) {
            Some("") => Some((k.as_str(), v.as_str())),
            Some(r) => Some((k.as_str(), r)),
            None => None,
        })
        .collect();
    let config = server_config(&vars).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.registered, vec!["home.example.com", "nas.example.com", "proxy.example.com"]);
    assert_eq!(config.acme_only, vec!["proxy.example.com"]);
    assert_eq!(config.lan_hosts.len(), 1, "the IPV6_LAN_HOSTS example is valid");
}

#[test]
fn keys_state_and_secrets_never_reach_git_or_an_image() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    // What the Quick start and a local run write into the checkout.
    for path in
        ["pre-shared-key", "dyndns-state.json", "dyndns-state.dry-run.json", ".secrets", "target/x", ".keys.tmp-1a2b"]
    {
        let ignored = std::process::Command::new("git")
            .args(["check-ignore", "-q", "--no-index", path])
            .current_dir(root)
            .status()
            .map(|s| s.success());
        // Without git (a source tarball) there is nothing to check.
        if let Ok(ignored) = ignored {
            assert!(ignored, "{path} is not in .gitignore");
        }
    }
    let docker = std::fs::read_to_string(format!("{root}/.dockerignore")).expect(".dockerignore");
    let lines: Vec<&str> = docker.lines().map(str::trim).collect();
    for pattern in [".git", "target", ".secrets", "pre-shared-key", "dyndns-state*.json*"] {
        assert!(lines.contains(&pattern), "{pattern} is not in .dockerignore");
    }
}
