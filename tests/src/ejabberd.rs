//! A private ejabberd: generated config, free loopback ports, temp dir.
//!
//! Started through `ejabberdctl foreground` with its own ctl config: the
//! Erlang node listens for distribution on a free loopback port of its own
//! (`ERL_DIST_PORT`), so no epmd is started, and `ejabberdctl register`
//! reaches the node through that port. ejabberdctl runs the node only as
//! the `ejabberd` user the Debian package creates (as root it would switch
//! to it through `su`, out of our reach), so the fixture runs ejabberdctl
//! as that user directly, the temp dir given to it and used as `HOME` for
//! a private Erlang cookie. Each node runs in a process group of its own,
//! killed on drop; a graceful stop is SIGTERM to the Erlang VM.
//!
//! ejabberd opens its listening sockets before its modules are up, so an
//! open port is not enough: readiness is the "is started" log line, then
//! the ports.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

pub use crate::prosody::COMPONENT;
use crate::server::{MUC, Options};
use crate::{
    free_port, output_within, require_tool, terminate, wait_exit, wait_for_port,
    wait_for_port_closed,
};

/// The user ejabberdctl runs the node as.
const EJABBERD_USER: &str = "ejabberd";

/// What ejabberd logs once it has started (after its modules).
const STARTED: &str = " is started in the node ";

/// How long a start or a stop may take (a start takes 1 to 2 s here).
const DEADLINE: Duration = Duration::from_secs(30);

/// A running (or stopped) ejabberd with a `localhost` host and the
/// `gw.localhost` component.
pub struct Ejabberd {
    dir: tempfile::TempDir,
    /// Client port.
    pub c2s_port: u16,
    /// Component port.
    pub component_port: u16,
    /// The TLS component port (`tls: true`), with [`Options::tls`].
    pub tls_port: Option<u16>,
    /// The HTTP port of WebSocket and BOSH, with [`Options::web`].
    pub http_port: Option<u16>,
    /// The component secret.
    pub secret: String,
    /// Erlang distribution port (ejabberdctl talks to the node on it).
    dist_port: u16,
    /// Who runs ejabberdctl: `Some((uid, gid))` of the ejabberd user when
    /// the tests run as root.
    run_as: Option<(u32, u32)>,
    options: Options,
    child: Option<Child>,
}

impl Ejabberd {
    /// Writes the config and starts ejabberd; returns when both ports listen.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&Options::default()).await
    }

    /// [`Ejabberd::start`] with `options`.
    pub async fn start_with(options: &Options) -> anyhow::Result<Self> {
        require_tool("ejabberdctl", "ejabberd");
        let run_as = run_as()?;
        let dir = tempfile::tempdir()?;
        let mut e = Self {
            dir,
            c2s_port: free_port(),
            component_port: free_port(),
            tls_port: options.tls.as_ref().map(|_| free_port()),
            http_port: options.web.then(free_port),
            secret: format!("secret-{}", std::process::id()),
            dist_port: free_port(),
            run_as,
            options: options.clone(),
            child: None,
        };
        let d = e.dir.path();
        std::fs::create_dir_all(d.join("logs"))?;
        std::fs::create_dir_all(d.join("db"))?;
        std::fs::write(d.join("ejabberd.yml"), e.config())?;
        std::fs::write(d.join("ejabberdctl.cfg"), e.ctl_config())?;
        std::fs::copy("/etc/ejabberd/inetrc", d.join("inetrc"))?;
        if let Some(ca) = &options.tls {
            // Readable by the ejabberd user after the chown below.
            std::fs::copy(&ca.bundle, d.join("component.pem"))?;
        }
        if run_as.is_some() {
            let out = output_within(
                Command::new("chown")
                    .args(["-R", &format!("{EJABBERD_USER}:{EJABBERD_USER}")])
                    .arg(d),
                Duration::from_secs(30),
            )?;
            anyhow::ensure!(
                out.status.success(),
                "chown -R {EJABBERD_USER} {}: {}",
                d.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        e.spawn().await?;
        Ok(e)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// ejabberd's log, for failure messages (what the node printed on its
    /// console when it died before its logger started).
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.path("logs/ejabberd.log")).unwrap_or_default();
        if log.is_empty() {
            std::fs::read_to_string(self.path("console.log")).unwrap_or_default()
        } else {
            log
        }
    }

    /// `ws://127.0.0.1:PORT/ws`, with [`Options::web`].
    pub fn websocket_url(&self) -> Option<String> {
        self.http_port.map(|p| format!("ws://127.0.0.1:{p}/ws"))
    }

    /// `http://127.0.0.1:PORT/bosh`, with [`Options::web`].
    pub fn bosh_url(&self) -> Option<String> {
        self.http_port.map(|p| format!("http://127.0.0.1:{p}/bosh"))
    }

    fn config(&self) -> String {
        // In-band registration (XEP-0077) from anywhere (the listeners are
        // on loopback), with no pause between two from one address.
        let register = if self.options.in_band_registration {
            "registration_timeout: infinity\n"
        } else {
            ""
        };
        let register_module = if self.options.in_band_registration {
            "  mod_register: {ip_access: all, access: all}\n"
        } else {
            ""
        };
        let level = if self.options.info_log {
            "info"
        } else {
            "debug"
        };
        // The component also on a TLS port, with a certificate for its name.
        let (certfiles, tls_listener) = match self.tls_port {
            Some(port) => (
                format!("[\"{}/component.pem\"]", self.dir.path().display()),
                format!(
                    "  - port: {port}\n    ip: \"127.0.0.1\"\n    module: ejabberd_service\n    tls: true\n    \
                     certfile: \"{}/component.pem\"\n    hosts:\n      \"{COMPONENT}\":\n        password: \"{}\"\n",
                    self.dir.path().display(),
                    self.secret
                ),
            ),
            None => ("[]".to_owned(), String::new()),
        };
        // WebSocket and BOSH on plain HTTP, loopback only; ejabberd takes a
        // WebSocket from any origin unless `websocket_origin` names some.
        let (files_handler, files_module) = match &self.options.web_files {
            Some(dir) => (
                "      /dashboard: mod_http_fileserver\n",
                format!(
                    "  mod_http_fileserver:\n    docroot: \"{}\"\n    directory_indices: [index.html]\n",
                    dir.display()
                ),
            ),
            None => ("", String::new()),
        };
        let (web_listener, web_module) = match self.http_port {
            Some(port) => (
                format!(
                    "  - port: {port}\n    ip: \"127.0.0.1\"\n    module: ejabberd_http\n    \
                     request_handlers:\n      /ws: ejabberd_http_ws\n      /bosh: mod_bosh\n{files_handler}"
                ),
                format!("  mod_bosh: {{}}\n{files_module}"),
            ),
            None => (String::new(), String::new()),
        };
        // As deploy/ejabberd/alerts-room.yml: rooms created by local users
        // and by the gateway's component (whose JID has no user part).
        let (muc_acl, muc_rules, muc_module) = if self.options.muc {
            (
                format!("  gateway:\n    server: \"{COMPONENT}\"\n"),
                "  muc_create:\n    - allow: local\n    - allow: gateway\n",
                format!(
                    "  mod_muc:\n    host: \"{MUC}\"\n    access: all\n    access_create: muc_create\n    \
                     access_persistent: muc_create\n    access_admin: none\n"
                ),
            )
        } else {
            (String::new(), "", String::new())
        };
        format!(
            r#"hosts:
  - localhost
loglevel: {level}
log_rotate_count: 0
certfiles: {certfiles}
listen:
  - port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: false
  - port: {comp}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      "{COMPONENT}":
        password: "{secret}"
{tls_listener}{web_listener}auth_method: internal
auth_password_format: plain
{register}acl:
  local:
    user_regexp: ""
{muc_acl}access_rules:
  local:
    allow: local
{muc_rules}modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
{register_module}{web_module}{muc_module}"#,
            c2s = self.c2s_port,
            comp = self.component_port,
            secret = self.secret,
        )
    }

    /// The node listens for distribution on 127.0.0.1 only. The kernel
    /// option is given directly rather than as `INET_DIST_INTERFACE`, for
    /// which ejabberdctl boots one more Erlang VM on every command to
    /// parse the address (half a second each).
    fn ctl_config(&self) -> String {
        format!(
            "ERLANG_NODE=fieldbridge{dist}@localhost\n\
             ERL_OPTIONS=\"-kernel inet_dist_use_interface {{127,0,0,1}}\"\n\
             ERL_DIST_PORT={dist}\n\
             EJABBERD_PID_PATH={d}/ejabberd.pid\n\
             EJABBERD_BYPASS_WARNINGS=true\n",
            dist = self.dist_port,
            d = self.dir.path().display(),
        )
    }

    /// `ejabberdctl` with this instance's config, logs and spool, run as
    /// the ejabberd user.
    fn ejabberdctl(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("ejabberdctl");
        cmd.current_dir(d)
            .env("HOME", d)
            .arg("--config-dir")
            .arg(d)
            .arg("--config")
            .arg(d.join("ejabberd.yml"))
            .arg("--ctl-config")
            .arg(d.join("ejabberdctl.cfg"))
            .arg("--logs")
            .arg(d.join("logs"))
            .arg("--spool")
            .arg(d.join("db"));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// How many times ejabberd logged that it started (the log is kept
    /// across restarts).
    fn started_count(&self) -> usize {
        std::fs::read_to_string(self.path("logs/ejabberd.log"))
            .unwrap_or_default()
            .matches(STARTED)
            .count()
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let started_before = self.started_count();
        // Written anew by this start; none left from the last one.
        let _ = std::fs::remove_file(self.path("ejabberd.pid"));
        let console = std::fs::File::create(self.path("console.log"))?;
        let child = self
            .ejabberdctl()
            .arg("foreground")
            // A group of its own, so that drop kills the node with its shell.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console)
            .spawn()?;
        self.child = Some(child);
        // The ports may open before the modules and their tables are up
        // (`ejabberdctl register` then fails with `no_exists passwd`): wait
        // for the line ejabberd logs once it has started, then the ports.
        let deadline = Instant::now() + DEADLINE;
        let result = loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                break Err(anyhow::anyhow!(
                    "ejabberdctl foreground exited with {status}"
                ));
            }
            if self.started_count() > started_before
                && wait_for_port(self.c2s_port, Duration::ZERO).await.is_ok()
                && wait_for_port(self.component_port, Duration::ZERO)
                    .await
                    .is_ok()
            {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(anyhow::anyhow!(
                    "ejabberd not started with 127.0.0.1:{} and :{} listening after {DEADLINE:?}",
                    self.c2s_port,
                    self.component_port
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if let Err(e) = result {
            self.kill();
            anyhow::bail!("{e}; ejabberd log:\n{}", self.log());
        }
        Ok(())
    }

    /// The Erlang VM's process id (`beam.smp`, which does the work), while
    /// it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref()?;
        self.vm_pid()
    }

    /// Registers `user@localhost` with `password`.
    pub fn register(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let out = output_within(
            self.ejabberdctl()
                .args(["register", user, "localhost", password]),
            Duration::from_secs(60),
        )?;
        anyhow::ensure!(
            out.status.success(),
            "ejabberdctl register {user} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Stops ejabberd gracefully (SIGTERM to the Erlang VM, which stops
    /// the node as `ejabberdctl stop` does, a second sooner), killed if it
    /// does not stop in time, and waits until its ports are closed.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let tree = descendants(child.id());
            match self.vm_pid() {
                Some(pid) => terminate(pid),
                None => kill_group(child.id()),
            }
            let exited = wait_exit(&mut child, DEADLINE).await;
            if exited.is_none() {
                kill_tree(child.id(), &tree);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !all_gone(&tree) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::ensure!(
                exited.is_some(),
                "ejabberd did not stop within {DEADLINE:?}; log:\n{}",
                self.log()
            );
        }
        wait_for_port_closed(self.c2s_port, Duration::from_secs(10)).await?;
        wait_for_port_closed(self.component_port, Duration::from_secs(10)).await?;
        wait_for_port_closed(self.dist_port, Duration::from_secs(10)).await
    }

    /// Starts ejabberd again on the same ports, with the same data.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "ejabberd is still running");
        self.spawn().await
    }

    /// Kills the node's whole process group (the ejabberdctl shell and the
    /// Erlang VM under it); its port programs exit with the VM.
    ///
    /// The VM is killed first, so that the shell reaps it and no zombie
    /// `beam.smp` is left to init.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let tree = descendants(child.id());
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            if let Some(pid) = self.vm_pid() {
                signal("KILL", &pid.to_string());
                while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            kill_tree(child.id(), &tree);
            let _ = child.wait();
            // The VM's port programs are orphans now: wait until init has
            // reaped them, so that none is seen after the test.
            while !all_gone(&tree) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The Erlang VM's pid, from the pid file ejabberd writes at start,
    /// if that process is this node's VM.
    fn vm_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.path("ejabberd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline).contains(&*self.dir.path().to_string_lossy());
        ours.then_some(pid)
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines = without_debug_records(&log);
            let tail = &lines[lines.len().saturating_sub(300)..];
            eprintln!(
                "--- ejabberd log (last lines, debug records left out) ---\n{}",
                tail.join("\n")
            );
        }
    }
}

/// The log's lines without its `[debug]` records (Erlang terms printed over
/// many lines each); the stanza traces (`[notice]`) stay.
fn without_debug_records(log: &str) -> Vec<&str> {
    let mut debug = false;
    log.lines()
        .filter(|line| {
            if line.starts_with(|c: char| c.is_ascii_digit()) {
                debug = line.contains(" [debug] ");
            }
            !debug
        })
        .collect()
}

/// Every process under `root` (the VM, and its port programs, which run
/// in sessions of their own), from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut children: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...; comm may hold spaces and parentheses.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.push((ppid, pid));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            children
                .iter()
                .filter(|(pp, _)| *pp == parent)
                .map(|(_, p)| *p),
        );
        i += 1;
    }
    tree.remove(0);
    tree
}

/// Kills the process group of `pgid` and every process in `tree`.
fn kill_tree(pgid: u32, tree: &[u32]) {
    kill_group(pgid);
    for pid in tree {
        signal("KILL", &pid.to_string());
    }
}

/// True when none of `pids` exists any more (not even as a zombie).
fn all_gone(pids: &[u32]) -> bool {
    pids.iter()
        .all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

fn kill_group(pgid: u32) {
    signal("KILL", &format!("-{pgid}"));
}

/// `kill -SIG -- TARGET` (a negative target is a process group).
fn signal(sig: &str, target: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .stderr(Stdio::null())
        .status();
}

/// ejabberdctl runs only as root (switching to the ejabberd user with
/// `su`) or as the ejabberd user. As root, run it as that user directly:
/// the node then stays in our process group instead of a `su` session.
fn run_as() -> anyhow::Result<Option<(u32, u32)>> {
    let me = id(&["-u"])?;
    if me != 0 {
        let name = Command::new("id").arg("-un").output()?;
        anyhow::ensure!(
            String::from_utf8_lossy(&name.stdout).trim() == EJABBERD_USER,
            "the ejabberd tests run as root or as the {EJABBERD_USER} user (ejabberdctl refuses others)"
        );
        return Ok(None);
    }
    Ok(Some((
        id(&["-u", EJABBERD_USER])?,
        id(&["-g", EJABBERD_USER])?,
    )))
}

fn id(args: &[&str]) -> anyhow::Result<u32> {
    let out = Command::new("id").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "id {}: {} (is ejabberd installed? apt-get install -y ejabberd)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}
