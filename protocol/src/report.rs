//! One line for an error and its causes, as the binaries print it before exiting.
//!
//! Many errors already say their cause in their own message (`cannot read configuration
//! /etc/x: No such file or directory`) and also return it as their `source()`; printing the
//! whole chain would then say the cause twice. [`error_chain`] joins the chain with `": "` and
//! leaves out a cause whose text the line already holds.

/// `error: cause: cause`, each cause once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

/// The exit status of a binary whose `run` returned `result`: success, or failure after
/// printing `error: ` and the [`error_chain`] to stderr.
pub fn exit_status<E: AsRef<dyn std::error::Error + Send + Sync>>(
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `TM_LOG` when it is set and valid, else by `default`
/// (a `tracing` filter such as `info` or `warn,tm_provider=debug`).
#[cfg(feature = "logging")]
pub fn init_stderr_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read configuration /etc/x: {source}")]
    struct Says {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the agent cannot start")]
    struct Wraps {
        source: Says,
    }

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(
            error_chain(&Says { source: io() }),
            "cannot read configuration /etc/x: no such file"
        );
        assert_eq!(
            error_chain(&Wraps {
                source: Says { source: io() }
            }),
            "the agent cannot start: cannot read configuration /etc/x: no such file"
        );
    }
}
