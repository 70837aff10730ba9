//! Where notifications go: ntfy (`NTFY_*`) and `NOTIFY_URLS`.

use crate::env::{redact_url, Env};
use crate::notifiers::{NtfyAuth, Target};

/// ntfy from `NTFY_*`, then `NOTIFY_URLS`.
pub(super) fn notifiers(env: &mut Env<'_>) -> Vec<Target> {
    let mut targets: Vec<Target> = ntfy(env).into_iter().collect();
    if let Some(list) = env.text("NOTIFY_URLS") {
        match crate::notifiers::parse_urls(&list) {
            Ok(more) => targets.extend(more),
            Err(e) => env.error(e),
        }
    }
    targets
}

pub(super) fn ntfy(env: &mut Env<'_>) -> Option<Target> {
    let (url, topic) = match (env.text("NTFY_URL"), env.text("NTFY_TOPIC")) {
        (None, None) => return None,
        (Some(u), Some(t)) => (u, t),
        (Some(_), None) => {
            env.error("NTFY_URL is set but NTFY_TOPIC is not; set both (or neither)");
            return None;
        }
        (None, Some(t)) => {
            env.error(format!("NTFY_TOPIC={t:?} is set but NTFY_URL is not; set it, e.g. https://ntfy.sh"));
            return None;
        }
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        env.error(format!("NTFY_URL={:?} is not an http(s) URL, e.g. https://ntfy.sh", redact_url(&url)));
    }
    if topic.contains(['/', '?', '#', ' ']) {
        env.error(format!("NTFY_TOPIC={topic:?} must be a bare topic name"));
    }
    let auth = match (env.text("NTFY_USERNAME"), env.secret("NTFY_PASSWORD"), env.secret("NTFY_TOKEN")) {
        (None, None, None) => NtfyAuth::None,
        (Some(username), Some(password), None) => NtfyAuth::Basic { username, password },
        (None, None, Some(t)) => NtfyAuth::Token(t),
        (_, _, Some(_)) => {
            env.error("NTFY_TOKEN and NTFY_USERNAME/NTFY_PASSWORD are both set; use one way to log in");
            NtfyAuth::None
        }
        _ => {
            env.error("NTFY_USERNAME and NTFY_PASSWORD go together; set both or neither");
            NtfyAuth::None
        }
    };
    Some(Target::Ntfy { topic_url: format!("{}/{topic}", url.trim_end_matches('/')), auth })
}
