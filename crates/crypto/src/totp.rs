//! TOTP (RFC 6238) over totp-rs: 160-bit secrets from the OS generator,
//! SHA-1, 6 digits, 30-second steps, one step of skew either way; the
//! otpauth URI and an SVG QR code for enrolment. totp-rs does not stop a
//! code being used twice: callers keep the last accepted step.

use std::fmt;

use qrcode::QrCode;
use qrcode::render::svg;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

use crate::CryptoError;

/// A TOTP shared secret (20 bytes). Zeroized, never printed.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    pub fn generate() -> Result<Self, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; 20]);
        crate::random_bytes(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The raw secret, to encrypt for storage.
    pub fn expose_for_storage(&self) -> &[u8] {
        &self.0
    }

    /// Takes a secret back from storage.
    pub fn from_bytes(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// Reads a base32 secret (as shown at enrolment).
    pub fn from_base32(text: &str) -> Option<Self> {
        let bytes = Secret::try_from_base32(text.trim()).ok()?.as_ref().to_vec();
        Some(Self(Zeroizing::new(bytes)))
    }

    /// The secret in base32, as authenticator apps take it by hand.
    pub fn base32(&self) -> Zeroizing<String> {
        Zeroizing::new(Secret::from(self.0.to_vec()).to_base32())
    }

    fn totp(&self, issuer: &str, account: &str) -> Result<Totp, CryptoError> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(self.0.to_vec())
            .with_issuer(Some(issuer.replace(':', " ")))
            .with_account_name(account.replace(':', " "))
            .build()
            .map_err(|e| CryptoError::Kdf(format!("TOTP: {e}")))
    }

    /// The `otpauth://totp/...` URI for enrolment.
    pub fn uri(&self, issuer: &str, account: &str) -> Result<Zeroizing<String>, CryptoError> {
        self.totp(issuer, account)?.to_url().map(Zeroizing::new).map_err(|e| CryptoError::Kdf(format!("TOTP: {e}")))
    }

    /// The step a code is valid for at `unix_time` (one step of skew either
    /// way), if any.
    pub fn check(&self, code: &str, unix_time: u64) -> Option<u64> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.totp("strongroom", "check").ok()?.check(code, unix_time)
    }

    /// The code for a moment (tests, and nothing else).
    pub fn code_at(&self, unix_time: u64) -> String {
        self.totp("strongroom", "check").map(|t| t.generate(unix_time).to_string()).unwrap_or_default()
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

/// An SVG QR code of a URI.
pub fn qr_svg(uri: &str) -> Result<String, CryptoError> {
    let code = QrCode::new(uri.as_bytes()).map_err(|e| CryptoError::Kdf(format!("QR: {e}")))?;
    Ok(code.render::<svg::Color<'_>>().min_dimensions(200, 200).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, with totp-rs directly: 8 digits, T = 59 s.
    #[test]
    fn rfc_6238_vectors() {
        let check = |alg: Algorithm, seed: &[u8], t: u64, expected: &str| {
            let totp = Builder::new()
                .with_algorithm(alg)
                .with_digits(8)
                .with_skew(0)
                .with_step_duration(30)
                .with_secret(seed.to_vec())
                .build_noncompliant();
            assert_eq!(totp.generate(t).to_string(), expected, "{alg:?} at {t}");
        };
        let sha1 = b"12345678901234567890";
        let sha256 = b"12345678901234567890123456789012";
        check(Algorithm::SHA1, sha1, 59, "94287082");
        check(Algorithm::SHA256, sha256, 59, "46119246");
        check(Algorithm::SHA1, sha1, 1_111_111_109, "07081804");
        check(Algorithm::SHA1, sha1, 20_000_000_000, "65353130");
    }

    #[test]
    fn codes_check_within_one_step_and_name_the_step() {
        let Ok(s) = TotpSecret::generate() else { return };
        let t = 1_700_000_000;
        let code = s.code_at(t);
        assert_eq!(s.check(&code, t), Some(t / 30));
        assert_eq!(s.check(&code, t + 30), Some(t / 30), "one step late is fine");
        assert_eq!(s.check(&code, t + 90), None, "three steps late is not");
        assert_eq!(s.check("12345", t), None);
        assert_eq!(s.check("abcdef", t), None);
    }

    #[test]
    fn the_uri_and_qr_are_made() {
        let Ok(s) = TotpSecret::generate() else { return };
        let uri = s.uri("Strongroom", "jane@example.com").map(|u| u.to_string()).unwrap_or_default();
        assert!(uri.starts_with("otpauth://totp/Strongroom:jane%40example.com?secret="), "{uri}");
        assert!(uri.contains(&*s.base32()));
        let svg = qr_svg(&uri).unwrap_or_default();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        assert_eq!(format!("{s:?}"), "TotpSecret([redacted])");
    }
}
