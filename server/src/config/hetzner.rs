//! Where records are written: the Hetzner tokens (`HETZNER_TOKEN`,
//! `HETZNER_TOKENS_FILE`) and the API URL.

use super::DEFAULT_API_URL;
use crate::env::{redact_url, Env};
use crate::projects::{self, ProjectToken};

/// `HETZNER_TOKEN` (the project `default`) and `HETZNER_TOKENS_FILE`; a
/// dry run does not read them at all (so a placeholder left in `.secrets`
/// does not stop a trial run).
pub(super) fn hetzner_tokens(env: &mut Env<'_>, dry_run: bool) -> Vec<ProjectToken> {
    let file = env.text("HETZNER_TOKENS_FILE");
    if dry_run {
        if env.text("HETZNER_TOKEN").is_some() || env.text("HETZNER_TOKEN_FILE").is_some() || file.is_some() {
            env.warn("DRY_RUN=1: HETZNER_TOKEN is ignored; nothing is written to Hetzner");
        }
        return Vec::new();
    }
    let mut projects: Vec<ProjectToken> = env
        .secret("HETZNER_TOKEN")
        .map(|token| ProjectToken { name: crate::projects::DEFAULT_PROJECT.into(), token })
        .into_iter()
        .collect();
    let Some(path) = file else { return projects };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            env.error(format!(
                "HETZNER_TOKENS_FILE: cannot read {path:?}: {e}; point it at a file of `name token` lines"
            ));
            return projects;
        }
    };
    if let Some(mode) = others_may_read(&path) {
        env.warn(format!(
            "HETZNER_TOKENS_FILE: {path:?} has mode {mode:o}: other users may read the tokens; chmod 600 it"
        ));
    }
    match projects::parse(&text, &projects) {
        Ok(more) => projects.extend(more),
        Err(errors) => {
            for e in errors {
                env.error(e);
            }
        }
    }
    projects
}

/// The mode of a file that users other than its owner may read.
pub(super) fn others_may_read(path: &str) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

pub(super) fn api_url(env: &mut Env<'_>) -> String {
    let url = env.text("HETZNER_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let url = url.trim_end_matches('/').to_string();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        let shown = redact_url(&url);
        env.error(format!("HETZNER_API_URL={shown:?} is not an http(s) URL; leave it unset for {DEFAULT_API_URL}"));
    } else if url.contains("dns.hetzner.com") {
        env.error(format!(
            "HETZNER_API_URL={:?} is the old DNS API, shut down in May 2026; leave it unset for {DEFAULT_API_URL} and use a Cloud API token",
            redact_url(&url)
        ));
    }
    url
}
