//! The demo page end to end in headless Chromium: `tests/browser/demo.test.mjs` (Node with
//! `playwright-core`, driving Debian's `/usr/bin/chromium`) against the `sockeye` binary.
//!
//! Skipped with a message when Node, the npm packages (`npm ci` in `tests/browser/`) or
//! Chromium are missing, unless `SOCKEYE_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes
//! a missing part a failure. The screenshots land in `target/browser/`.

use std::path::PathBuf;
use std::process::Command;

mod common;

#[test]
fn demo_page_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = [
        (!dir.join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci in tests/browser)"),
        (!PathBuf::from(&chromium).exists()).then_some("chromium (apt-get install chromium)"),
        Command::new("node")
            .arg("--version")
            .output()
            .map_or(true, |o| !o.status.success())
            .then_some("node"),
    ];
    let missing: Vec<&str> = missing.into_iter().flatten().collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_BROWSER").is_none(),
            "missing for the browser test: {missing:?}"
        );
        eprintln!("skipped: missing {missing:?}");
        return;
    }
    // (a relative CARGO_TARGET_DIR is relative to the workspace root, where cargo runs)
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
    let stdout = common::stdout_of(
        Command::new("node")
            .arg(dir.join("demo.test.mjs"))
            .env("SOCKEYE_BIN", env!("CARGO_BIN_EXE_sockeye"))
            .env("SCREENSHOT_DIR", target.join("browser"))
            .env("CHROMIUM", &chromium),
        "the browser test",
    );
    assert!(stdout.contains(" ok (screenshots in "), "{stdout}");
    print!("{stdout}");
    assert!(target.join("browser/demo.png").exists());
}
