//! The RSA signing key: generation (first start), loading from PEM, its `kid`, and its
//! public JWK.
//!
//! Owns key material. The private key is parsed once into an aws-lc-rs key pair and never
//! formatted, logged or serialised except into a 0600 file on generation.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;

/// A key that could not be generated, read or used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: not an RSA private key in PEM (PKCS#8 'PRIVATE KEY' or PKCS#1 'RSA PRIVATE KEY')")]
    NotRsaPem { path: PathBuf },
    #[error("{path}: RSA key rejected: {reason}")]
    Rejected { path: PathBuf, reason: String },
    #[error("{path}: RSA keys must be at least 2048 bits")]
    TooSmall { path: PathBuf },
    #[error("RSA key generation failed")]
    Generate,
}

/// A public key as published in JWKS.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: &'static str,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// An RSA key pair ready to sign RS256.
#[derive(Debug)]
pub struct SigningKey {
    pair: KeyPair,
    kid: String,
    jwk: Jwk,
}

impl SigningKey {
    /// Parses a PEM private key (PKCS#8 or PKCS#1).
    pub fn from_pem(pem: &str, path: &Path) -> Result<Self, KeyError> {
        let rejected =
            |e: aws_lc_rs::error::KeyRejected| KeyError::Rejected { path: path.to_owned(), reason: e.to_string() };
        let pair = if let Some(der) = pem_block(pem, "PRIVATE KEY") {
            KeyPair::from_pkcs8(&der).map_err(rejected)?
        } else if let Some(der) = pem_block(pem, "RSA PRIVATE KEY") {
            KeyPair::from_der(&der).map_err(rejected)?
        } else {
            return Err(KeyError::NotRsaPem { path: path.to_owned() });
        };
        if pair.public_modulus_len() < 256 {
            return Err(KeyError::TooSmall { path: path.to_owned() });
        }
        Ok(Self::from_pair(pair))
    }

    /// Generates a fresh RSA 2048 key and its PKCS#8 PEM.
    pub fn generate() -> Result<(Self, String), KeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let der: Pkcs8V1Der<'_> = pair.as_der().map_err(|_| KeyError::Generate)?;
        let pem = to_pem(der.as_ref(), "PRIVATE KEY");
        Ok((Self::from_pair(pair), pem))
    }

    fn from_pair(pair: KeyPair) -> Self {
        let public = pair.public_key();
        // kid: base64url(SHA-256(PKCS#1 DER of the public key)) — stable per key.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public.as_ref());
        let kid = URL_SAFE_NO_PAD.encode(digest.as_ref());
        let jwk = Jwk {
            kty: "RSA",
            alg: "RS256",
            use_: "sig",
            kid: kid.clone(),
            n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        };
        SigningKey { pair, kid, jwk }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) over `msg`.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), msg, &mut sig)
            .map_err(|_| KeyError::Generate)?;
        Ok(sig)
    }
}

/// Loads a configured PEM file.
pub fn load_pem_file(path: &Path) -> Result<SigningKey, KeyError> {
    let pem =
        std::fs::read_to_string(path).map_err(|e| KeyError::File { path: path.to_owned(), reason: e.to_string() })?;
    SigningKey::from_pem(&pem, path)
}

/// Writes `bytes` to `path` with mode 0600 (directory 0700), through a temporary file and a
/// rename so a reader never sees half a file.
pub fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let err = |e: std::io::Error| KeyError::File { path: path.to_owned(), reason: e.to_string() };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let b64: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

fn to_pem(der: &[u8], label: &str) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_pem_with_the_same_kid() {
        let (key, pem) = SigningKey::generate().expect("generate");
        let again = SigningKey::from_pem(&pem, Path::new("mem")).expect("parse");
        assert_eq!(key.kid(), again.kid());
        assert_eq!(key.kid().len(), 43);
        assert_eq!(key.jwk().e, "AQAB");
    }

    #[test]
    fn private_files_are_written_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k/key.pem");
        write_private(&dir.path().join("k"), &path, b"secret").expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn non_key_pem_is_rejected_naming_the_file() {
        let e =
            SigningKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", Path::new("x.pem"))
                .expect_err("not a key");
        assert!(e.to_string().starts_with("x.pem:"), "{e}");
    }
}
