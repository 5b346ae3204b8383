//! Self-signed certificates for local relays (development only).

use std::path::PathBuf;

use anyhow::Context;

/// A generated certificate and key, written as PEM files that
/// `moq_native_ietf::tls::Args` can load.
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Generate a self-signed certificate valid for `names` (DNS names or IP
/// literals) and write it under `dir`, creating the directory.
pub fn self_signed(names: &[String], dir: &std::path::Path) -> anyhow::Result<SelfSigned> {
    anyhow::ensure!(!names.is_empty(), "a certificate needs at least one name");
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .context("failed to generate a self-signed certificate")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.key_pair.serialize_pem())?;
    Ok(SelfSigned { cert, key })
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_loadable_pem() {
        let dir = tempfile::tempdir().unwrap();
        let out =
            super::self_signed(&["localhost".into(), "127.0.0.1".into()], dir.path()).unwrap();
        let args = moq_native_ietf::tls::Args {
            cert: vec![out.cert],
            key: vec![out.key],
            root: vec![],
            disable_verify: true,
        };
        let config = args.load().unwrap();
        assert!(config.server.is_some());
        assert_eq!(config.fingerprints.len(), 1);
    }
}
