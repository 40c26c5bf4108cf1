//! A real browser on the web dashboard: `dashboard/test/drive.mjs` runs
//! Debian's chromium headless through puppeteer-core, logs in as a person
//! would, and prints what it saw as one JSON object, which the tests assert
//! on. The page is the built one (`scripts/build-dashboard`), served by the
//! gateway under test.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{output_within, repo_root, require_tool};

/// The dashboard's directory in the repository.
pub fn dashboard_dir() -> PathBuf {
    repo_root().join("dashboard")
}

/// The built page (`dashboard/dist`), failing with how to build it when it
/// or the driver's npm packages are missing, and when chromium or node is.
pub fn built_dashboard() -> PathBuf {
    require_tool("node", "nodejs");
    require_tool("chromium", "chromium");
    let dir = dashboard_dir();
    let dist = dir.join("dist");
    for needed in [
        dist.join("index.html"),
        dir.join("node_modules/puppeteer-core"),
    ] {
        assert!(
            needed.exists(),
            "{} is missing: run scripts/build-dashboard (npm ci and the build)",
            needed.display()
        );
    }
    dist
}

/// Runs the driver with `args` (see drive.mjs for the keys); returns its
/// report. Fails when it cannot run or does not answer within two minutes.
pub fn drive(args: &Value) -> anyhow::Result<Value> {
    let out = output_within(
        Command::new("node")
            .arg(dashboard_dir().join("test/drive.mjs"))
            .arg(args.to_string())
            .current_dir(dashboard_dir()),
        Duration::from_secs(120),
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "drive.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| anyhow::anyhow!("drive.mjs printed no report ({e}):\n{stdout}\n{stderr}"))
}
