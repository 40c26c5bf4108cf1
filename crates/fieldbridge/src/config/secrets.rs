//! The XMPP component secret: from `xmpp.secret`, the environment
//! (`FIELDBRIDGE__XMPP__SECRET`) or `xmpp.secret_file`, read safely.

use fieldbridge_core::files::{self, KIB};
use fieldbridge_xmpp::XmppConfig;

use super::load::{Loader, Purpose};
use super::tree::{Kind, Node, Origin};

/// `xmpp.secret_file` larger than this is refused: a secret is a line.
pub const SECRET_FILE_LIMIT: u64 = 4 * KIB;

impl Loader<'_> {
    /// The secret `cfg` (read from `node`) names; None after recording why
    /// there is none. In `check`, a secret file the system refuses to read
    /// gives an empty secret and a note.
    pub(super) fn secret(&self, node: &Node, cfg: &XmppConfig) -> Option<String> {
        // FIELDBRIDGE__XMPP__SECRET overrides `secret_file`; both written in
        // the file is a doubt about which one is meant.
        let from_file = |key: &str| {
            node.get(key).is_some_and(|n| {
                matches!(n.origin, Origin::File { .. }) && !matches!(n.kind, Kind::Null)
            })
        };
        if from_file("secret") && from_file("secret_file") {
            let at = node.get("secret_file").unwrap_or(node);
            self.problems.push(
                &at.origin,
                "xmpp.secret_file",
                "both `secret` and `secret_file` are set; keep only one (preferably `secret_file`)",
            );
            return None;
        }
        match (&cfg.secret, &cfg.secret_file) {
            (Some(s), _) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            (Some(_), _) => {
                let at = node.get("secret").unwrap_or(node);
                self.problems
                    .push(&at.origin, "xmpp.secret", "the secret is empty");
                None
            }
            (None, Some(file)) => {
                let full = if file.is_absolute() {
                    file.clone()
                } else {
                    self.base.join(file)
                };
                let at = node.get("secret_file").unwrap_or(node);
                match files::read_text_limited(&full, SECRET_FILE_LIMIT) {
                    Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                    Ok(_) => {
                        self.problems.push(
                            &at.origin,
                            "xmpp.secret_file",
                            format!(
                                "{} is empty; put the component secret in it",
                                full.display()
                            ),
                        );
                        None
                    }
                    // `check` may run as another user than the gateway:
                    // what the system refuses here may work there. A
                    // file of the wrong kind or size is wrong for anyone.
                    Err(e) => match e.problem() {
                        files::Problem::Io(io) if self.purpose == Purpose::Check => {
                            self.notes.borrow_mut().push(format!(
                                "the secret file {} cannot be read here ({io}); the gateway's own user must be able to read it",
                                full.display()
                            ));
                            Some(String::new())
                        }
                        problem => {
                            let hint = if matches!(problem, files::Problem::TooLarge(_)) {
                                ": is this the secret?"
                            } else {
                                ""
                            };
                            self.problems.push(
                                &at.origin,
                                "xmpp.secret_file",
                                format!("{e}{hint}"),
                            );
                            None
                        }
                    },
                }
            }
            (None, None) => {
                self.problems.push(
                    &node.origin,
                    "xmpp",
                    "no component secret: set `secret_file`, or the environment variable FIELDBRIDGE__XMPP__SECRET",
                );
                None
            }
        }
    }
}
