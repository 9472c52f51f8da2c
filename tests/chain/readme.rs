//! The README's command examples, run as written with the binaries this test run built.
//!
//! Blocks marked `<!-- tests/chain/readme.rs runs this block ... -->` in `README.md` are run:
//!
//! - the `tm-gateway decode` block: each `$ ` line is a command, the lines under it its output
//!   (stdout, or stderr where the command's comment says `on stderr, exit status N`);
//! - the BlueZ simulator block: a shell script from its second line on (its first line builds
//!   the binaries and puts them on `PATH`, which this test does with the binaries it built),
//!   with `/tmp/` moved into the test's own directory. It must exit 0, scan the demo household
//!   and pair the cuff.
//!
//! The script runs in a process group of its own; whatever is left of it when it ends (the
//! simulator, when the script failed before stopping it) is stopped through that group.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::bins;

/// The fenced block after the marker line starting with `marker`.
fn block(readme: &str, marker: &str) -> Vec<String> {
    let mut lines = readme.lines().skip_while(|l| !l.starts_with(marker));
    assert!(
        lines.next().is_some(),
        "README.md has no block marked {marker:?}"
    );
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "the marker {marker:?} is not above a block"
    );
    lines
        .take_while(|l| !l.starts_with("```"))
        .map(str::to_owned)
        .collect()
}

/// A command line without its trailing comment (`  # ...`), and that comment.
fn split_comment(line: &str) -> (&str, &str) {
    match line.find("  #") {
        Some(i) => (
            line[..i].trim_end(),
            line[i..].trim_start_matches([' ', '#']),
        ),
        None => (line, ""),
    }
}

fn path_with(bin_dir: &Path) -> String {
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

/// One `$` command of the decode block and what it must print.
struct Example {
    command: String,
    output: Vec<String>,
    on_stderr: bool,
    status: i32,
}

fn examples(lines: &[String]) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    for line in lines {
        if let Some(command) = line.strip_prefix("$ ") {
            let (command, comment) = split_comment(command);
            let on_stderr = comment.contains("on stderr");
            let status = comment
                .split("exit status ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .map_or(0, |s| s.parse().unwrap());
            out.push(Example {
                command: command.to_owned(),
                output: Vec::new(),
                on_stderr,
                status,
            });
        } else {
            out.last_mut()
                .expect("the block starts with a command")
                .output
                .push(line.clone());
        }
    }
    out
}

#[test]
fn the_decode_examples_print_what_the_readme_shows() {
    let bin_dir = bins().gateway.parent().unwrap().to_owned();
    let block = block(
        &readme(),
        "<!-- tests/chain/readme.rs runs this block: each command",
    );
    let examples = examples(&block);
    assert!(examples.len() >= 4, "the decode block lost its examples");
    for ex in &examples {
        let out = Command::new("bash")
            .args(["-c", &ex.command])
            .env("PATH", path_with(&bin_dir))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (printed, other) = if ex.on_stderr {
            (&out.stderr, &out.stdout)
        } else {
            (&out.stdout, &out.stderr)
        };
        let printed = String::from_utf8_lossy(printed);
        assert_eq!(
            out.status.code(),
            Some(ex.status),
            "`{}` exited {}: {}",
            ex.command,
            out.status,
            String::from_utf8_lossy(other)
        );
        let printed: Vec<&str> = printed.lines().collect();
        assert_eq!(printed, ex.output, "`{}` printed otherwise", ex.command);
    }
}

#[test]
fn the_simulator_example_scans_and_pairs_as_written() {
    let bin_dir = bins().gateway.parent().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let block = block(
        &readme(),
        "<!-- tests/chain/readme.rs runs this block (after its first line)",
    );
    assert!(
        block[0].contains("cargo build") && block[0].contains("PATH="),
        "the block's first line builds the binaries and puts them on PATH: {}",
        block[0]
    );
    let tmp = format!("{}/", dir.path().display());
    let script = block[1..].join("\n").replace("/tmp/", &tmp);
    let mut child = Command::new("bash")
        .args(["-e", "-c", &script])
        .env("PATH", path_with(&bin_dir))
        .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
        .env_remove("TM_GATEWAY_CONFIG")
        .env("TM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Whatever the script left running (it started the group, so the group is ours).
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        status.is_some_and(|s| s.success()),
        "the README's simulator example failed ({status:?}):\n{stdout}\n{stderr}"
    );
    for device in ["SIM-Scale", "SIM-Cuff", "SIM-Oxi"] {
        assert!(
            stdout.contains(device),
            "scan did not list {device}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("paired C0:FF:EE:00:00:02"),
        "the cuff was not paired:\n{stdout}"
    );
    assert!(
        dir.path().join("tm-gw/paired-devices.json").exists(),
        "the pairing was not recorded in the example's state directory"
    );
}
