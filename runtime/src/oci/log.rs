//! `--log FILE` and `--log-format text|json`, as runc does them: every error (and, with
//! `--debug`, progress) is appended to the log file; containerd's shim reads the last
//! `"level":"error"` line of a JSON log to explain a failed create. Errors also go to stderr.
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

struct Config {
    path: Option<PathBuf>,
    format: Format,
    debug: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

pub fn init(path: Option<PathBuf>, format: Format, debug: bool) {
    let _ = CONFIG.set(Config {
        path,
        format,
        debug,
    });
}

fn write(level: &str, msg: &str) {
    let Some(c) = CONFIG.get() else { return };
    let Some(path) = &c.path else { return };
    let time = super::state::now_rfc3339();
    let line = match c.format {
        Format::Json => serde_json::json!({"level": level, "msg": msg, "time": time}).to_string(),
        Format::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn warn(msg: &str) {
    write("warning", msg);
    if CONFIG.get().map(|c| c.path.is_none()).unwrap_or(true) {
        eprintln!("vslice-runc: warning: {msg}");
    }
}

pub fn debug(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.debug) {
        write("debug", msg);
        if CONFIG.get().is_some_and(|c| c.path.is_none()) {
            eprintln!("vslice-runc: debug: {msg}");
        }
    }
}
