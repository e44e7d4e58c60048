//! How the command ends: exit codes, one-line errors, quiet broken pipes, a quiet panic hook.

use std::io::{self, ErrorKind, Write};
use std::process::ExitCode;
use std::sync::Mutex;

use super::sanitize::sanitize;

/// Exit status for errors and bad usage.
const ERROR: u8 = 2;

/// The last panic's message and location, kept by the hook for [`internal_error`].
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the default panic hook, which dumps a message and a backtrace hint, with one that
/// only remembers the panic. The library catches storage-engine panics on damaged files and
/// returns them as errors, which the user then sees as one clean line; a panic that escapes
/// `run` is reported by [`internal_error`] as one line too.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(format!("{message}{place}"));
        }
    }));
}

/// The error for a panic that escaped `run`.
pub fn internal_error() -> anyhow::Error {
    let what = LAST_PANIC
        .lock()
        .ok()
        .and_then(|mut last| last.take())
        .unwrap_or_else(|| "unknown panic".into());
    anyhow::anyhow!("internal error ({what}): please report this as a bug")
}

/// Turns the outcome of `run` into the process's exit status, printing any error as one line.
pub fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let text = format!("{err:#}");
            let _ = writeln!(io::stderr(), "recovery-store: {}", sanitize(&text));
            ExitCode::from(ERROR)
        }
    }
}

/// Prints a clap error (or help, or version) and gives its exit status: 2 for bad usage.
pub fn usage(err: &clap::Error) -> ExitCode {
    if !err.use_stderr() {
        // --help and --version; a closed stdout is not worth reporting.
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = err.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let _ = write!(io::stderr(), "recovery-store: {}", sanitize_multiline(text));
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(ERROR))
}

fn sanitize_multiline(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(body) => format!("{}\n", sanitize(body)),
            None => sanitize(line).into_owned(),
        })
        .collect()
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
    })
}
