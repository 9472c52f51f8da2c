//! `tm-gateway` binary: parses the command line, sets up logging, runs the command.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = tm_gateway::cli::Cli::parse();
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `TM_LOG` when set; otherwise `warn` until the configuration's `log_level` is applied
    // (`tm_gateway::config::Config::load`).
    let filter = std::env::var(tm_gateway::sync::commands::LOG_ENV)
        .ok()
        .and_then(|spec| tm_gateway::config::log_filter(&spec).ok())
        .unwrap_or_else(|| tm_gateway::config::log_filter("warn").expect("a level is a filter"));
    // Reloadable, so the provider's `set-log-level` command can change it at run time.
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    tm_gateway::sync::commands::set_log_reloader(move |spec| {
        let filter = tm_gateway::config::log_filter(spec).map_err(|e| e.to_string())?;
        reload.reload(filter).map_err(|e| e.to_string())
    });
    match tm_gateway::cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {}", tm_protocol::report::error_chain(e.as_ref()));
            std::process::ExitCode::from(1)
        }
    }
}

/// One malloc arena for the whole process. glibc gives each thread that allocates while another
/// holds the lock an arena of its own (up to eight per core), and every arena keeps the pages
/// it once used: the idle agent (two runtime workers, the outbox writer, the blocking pool)
/// held about 0.3 MB in arenas besides the main heap. Its threads mostly wait, and glibc's
/// per-thread caches still serve small allocations without the lock. `MALLOC_ARENA_MAX` (or
/// the `glibc.malloc.arena_max` tunable) in the environment is left to decide.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    let tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && !tunables
            .to_string_lossy()
            .contains("glibc.malloc.arena_max")
    {
        // SAFETY: `mallopt` only sets an allocator parameter, and it runs first thing in
        // `main`, before the process has any other thread.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
