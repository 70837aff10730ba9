//! Log set-up: simplelog to stdout, and to a rotating file when `LOG_FILE`
//! is set. Log levels: INFO is one line per request and per Hetzner write;
//! DEBUG adds internals. No level ever shows a key, the token, an
//! `Authorization` header or a query string (which may carry `pass=`).

use simplelog::{CombinedLogger, ConfigBuilder, LevelFilter, SharedLogger, WriteLogger};

use crate::config::Config;

/// Install the logger; `to_stderr` for commands whose stdout is their
/// output (`keys`). A second call in one process (tests) is a no-op.
pub fn init(config: &Config, to_stderr: bool) -> Result<(), String> {
    let level = if config.debug { LevelFilter::Debug } else { LevelFilter::Info };
    let log_config = ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        // Only our own crate and the HTTP layer's connection-limit and accept
        // errors: rustls and ureq debug output could show headers.
        .add_filter_allow_str("dyndns_server")
        .add_filter_allow_str("tiny_http")
        .build();
    let console: Box<dyn SharedLogger> = if to_stderr {
        WriteLogger::new(level, log_config.clone(), std::io::stderr())
    } else {
        WriteLogger::new(level, log_config.clone(), std::io::stdout())
    };
    let mut loggers = vec![console];
    if let Some(path) = &config.log_file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("LOG_FILE: cannot create {}: {e}", dir.display()))?;
        }
        let file = file_rotate::FileRotate::new(
            path,
            file_rotate::suffix::AppendCount::new(config.log_backup_count),
            file_rotate::ContentLimit::Bytes(config.log_max_bytes as usize),
            file_rotate::compression::Compression::None,
            Some(0o640),
        );
        loggers.push(WriteLogger::new(level, log_config, file));
    }
    let _ = CombinedLogger::init(loggers);
    Ok(())
}
