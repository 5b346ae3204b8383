//! The MoQT version this build speaks, as the Worker is told it.
//!
//! Drafts do not interoperate (a draft-18 relay refuses a draft-16 session's
//! CONNECT; the other way round SETUP hangs), so every call to the Worker
//! names the versions in the `Moq-Relay-Versions` header and the Worker
//! routes this relay only to relays that share one. The identifiers are the
//! MoQT ALPN protocol names the transport crate negotiates with.

use crate::moq_transport;

/// The header every coordinator call and watch channel carries.
pub const HEADER: &str = "moq-relay-versions";

/// The MoQT versions this build speaks, most preferred first.
#[cfg(feature = "draft-18")]
pub fn moqt_versions() -> Vec<&'static str> {
    moq_transport::setup::SUPPORTED_ALPNS.to_vec()
}

/// The MoQT versions this build speaks, most preferred first.
#[cfg(feature = "draft-16")]
pub fn moqt_versions() -> Vec<&'static str> {
    vec![std::str::from_utf8(moq_transport::setup::ALPN).expect("the ALPN is ASCII")]
}

/// The header's value: the versions, comma-separated.
pub fn header_value() -> String {
    moqt_versions().join(",")
}

/// moq-relay-ietf's own version line, for logs ("0.8" or "0.7").
pub const RELAY_LINE: &str = if cfg!(feature = "draft-18") {
    "0.8"
} else {
    "0.7"
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_draft_of_the_build() {
        let expected = if cfg!(feature = "draft-18") {
            "moqt-18"
        } else {
            "moqt-16"
        };
        assert_eq!(moqt_versions(), [expected]);
        assert_eq!(header_value(), expected);
    }
}
