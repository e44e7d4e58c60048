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
            let _ = writeln!(io::stderr(), "recovery-store: {}", sanitize(&message(&err)));
            ExitCode::from(ERROR)
        }
    }
}

/// The error and its causes joined by `: `, like `{err:#}`, but without a cause whose text
/// the line already holds: library errors show their source inline and also return it.
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Prints a clap error (or help, or version) and gives its exit status: 2 for bad usage.
pub fn usage(err: &clap::Error) -> ExitCode {
    if !err.use_stderr() {
        // --help and --version; a closed stdout is not worth reporting.
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = one_line(&err.render().to_string());
    let _ = writeln!(io::stderr(), "recovery-store: {}", sanitize(&text));
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(ERROR))
}

/// Folds clap's multi-paragraph error into one line: `<problem> (usage: …): see --help`.
fn one_line(rendered: &str) -> String {
    let rendered = rendered.strip_prefix("error: ").unwrap_or(rendered);
    let mut problem = Vec::new();
    let mut usage = None;
    for paragraph in rendered.split("\n\n") {
        let folded = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(u) = folded.strip_prefix("Usage: ") {
            usage = Some(u.to_owned());
        } else if !folded.is_empty() && !folded.starts_with("For more information") {
            problem.push(folded);
        }
    }
    let problem = problem.join("; ");
    match usage {
        Some(u) => format!("{problem} (usage: {u}): see --help"),
        None => format!("{problem}: see --help"),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_fold_into_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  <KEY>\n\n\
                        Usage: recovery-store show <KEY>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: <KEY> \
             (usage: recovery-store show <KEY>): see --help"
        );
        let rendered = "error: invalid value 'fish2' for '<SHELL>'\n  [possible values: bash, fish]\n\n  \
                        tip: a similar value exists: 'fish'\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "invalid value 'fish2' for '<SHELL>' [possible values: bash, fish]; \
             tip: a similar value exists: 'fish': see --help"
        );
    }

    #[test]
    fn causes_already_shown_are_not_repeated() {
        let io = io::Error::new(ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io).context("cannot read x: gone: check it");
        assert_eq!(message(&err), "cannot read x: gone: check it");
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(message(&err), "outer: inner");
    }
}
