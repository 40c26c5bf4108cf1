//! A test CA generated at test time, and a server certificate it signs,
//! for the encrypted component link (as the MQTT adapter's TLS tests do).

use std::path::{Path, PathBuf};

/// A CA and a server certificate it signed, as PEM files in a directory.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate: what the gateway's `xmpp.tls.ca_file` names.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server certificate's private key.
    pub key: PathBuf,
    /// The certificate, the CA's and the key, for ejabberd's `certfile`.
    pub bundle: PathBuf,
}

impl TestCa {
    /// Generates a CA named `label` and a certificate for `names` in
    /// `dir` (files prefixed `label-`).
    pub fn generate(dir: &Path, label: &str, names: &[&str]) -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        // Valid from yesterday for 30 days: ejabberd's expiry timer cannot
        // take a certificate that expires more than ~49 days ahead.
        let now = time::OffsetDateTime::now_utc();
        let (from, until) = (
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        );
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.not_before = from;
        ca.not_after = until;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("fieldbridge test CA {label}"));
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let mut server =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        server.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        server.not_before = from;
        server.not_after = until;
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key)?;
        let files = Self {
            ca: dir.join(format!("{label}-ca.pem")),
            cert: dir.join(format!("{label}-server.crt")),
            key: dir.join(format!("{label}-server.key")),
            bundle: dir.join(format!("{label}-server-bundle.pem")),
        };
        std::fs::write(&files.ca, ca_cert.pem())?;
        std::fs::write(&files.cert, server_cert.pem())?;
        std::fs::write(&files.key, server_key.serialize_pem())?;
        std::fs::write(
            &files.bundle,
            format!(
                "{}{}{}",
                server_cert.pem(),
                ca_cert.pem(),
                server_key.serialize_pem()
            ),
        )?;
        Ok(files)
    }
}
