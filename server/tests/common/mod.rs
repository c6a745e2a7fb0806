//! Helpers shared by the tests that drive other programs (peers, the browser).

use std::process::Command;

/// Runs `cmd` to completion and returns its standard output; fails the test, with both
/// outputs and `what`, if it does not exit successfully.
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}
