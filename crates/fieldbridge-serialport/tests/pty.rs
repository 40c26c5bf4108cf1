//! The opener on a real pseudo-terminal made by socat: the settings a pty
//! keeps reach the port, a second opener is refused, and every failure names
//! the port.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fieldbridge_serialport::{FlowControl, LineSettings, Parity, open};
use tokio::process::{Child, Command};
use tokio_serial::SerialPort;

const WAIT: Duration = Duration::from_secs(10);

/// A socat pty pair; `dev` is the end under test.
struct Pty {
    dir: tempfile::TempDir,
    _socat: Child,
}

impl Pty {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let link = |p: PathBuf| format!("pty,raw,echo=0,link={}", p.display());
        let socat = Command::new("socat")
            .args([link(dir.path().join("dev")), link(dir.path().join("peer"))])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("socat not found: run scripts/test (or apt-get install -y socat)");
        let pty = Self { dir, _socat: socat };
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(pty.dev().exists() && pty.dir.path().join("peer").exists()) {
            assert!(tokio::time::Instant::now() < deadline, "socat made no ptys");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        pty
    }

    fn dev(&self) -> PathBuf {
        self.dir.path().join("dev")
    }
}

const LINE: LineSettings = LineSettings {
    baud: 19200,
    data_bits: 7,
    parity: Parity::Even,
    stop_bits: 2,
    flow_control: FlowControl::Software,
};

#[tokio::test]
async fn the_port_takes_its_settings_and_refuses_a_second_opener() {
    let pty = Pty::start().await;
    let port = open(&pty.dev(), &LINE).expect("open the pty");
    // Linux ptys force 8 data bits and no parity whatever is asked, so
    // those two are checked by the unit tests of the mapping instead.
    assert_eq!(port.baud_rate().ok(), Some(19200));
    assert_eq!(port.stop_bits().ok(), Some(tokio_serial::StopBits::Two));
    assert_eq!(
        port.flow_control().ok(),
        Some(tokio_serial::FlowControl::Software)
    );
    assert!(port.exclusive());

    let Err(busy) = open(&pty.dev(), &LINE) else {
        panic!("a second opener got the port");
    };
    assert_eq!(busy.port, pty.dev());
    let prefix = format!("{}: ", pty.dev().display());
    assert!(busy.to_string().starts_with(&prefix), "{busy}");

    drop(port);
    assert!(open(&pty.dev(), &LINE).is_ok(), "closing frees the port");
}

#[tokio::test]
async fn a_missing_port_or_a_bad_setting_is_an_error_naming_the_port() {
    let missing = Path::new("/nonexistent/ttyFB0");
    let Err(e) = open(missing, &LINE) else {
        panic!("opened a missing port");
    };
    assert!(e.to_string().starts_with("/nonexistent/ttyFB0: "), "{e}");

    let pty = Pty::start().await;
    let bad = LineSettings {
        data_bits: 9,
        ..LINE
    };
    let Err(e) = open(&pty.dev(), &bad) else {
        panic!("opened with 9 data bits");
    };
    assert_eq!(
        e.to_string(),
        format!("{}: data_bits must be 5 to 8, not 9", pty.dev().display())
    );
}
