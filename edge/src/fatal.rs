//! Worker answers after which this relay process must stop: retrying them
//! would only warn forever while the network silently stops routing to it.

use std::fmt;

use crate::rpc::{Code, RpcError};

/// Why the coordinator gave up. See [`crate::WorkerCoordinator::fatal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// The Worker refused the relay token on Heartbeat (UNAUTHENTICATED or
    /// PERMISSION_DENIED): it expired, was revoked, or is not valid for this
    /// relay URL.
    TokenRejected { code: Code, message: String },
    /// FAILED_PRECONDITION naming the epoch: a newer process registered
    /// for this relay URL and retired this one's epoch.
    EpochRetired { message: String },
}

impl Fatal {
    /// Process exit code for the binary (2 is clap's usage error, 1 any
    /// other failure).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::TokenRejected { .. } => 3,
            Self::EpochRetired { .. } => 4,
        }
    }

    /// The fatal condition `err` reports, if any. Token errors count only on
    /// Heartbeat: elsewhere PERMISSION_DENIED is about one request (a scope
    /// the token may not use), not about the relay.
    pub fn of(err: &RpcError, on_heartbeat: bool) -> Option<Self> {
        let RpcError::Status { code, message, .. } = err else {
            return None;
        };
        match code {
            Code::FailedPrecondition if message.to_ascii_lowercase().contains("epoch") => {
                Some(Self::EpochRetired {
                    message: message.clone(),
                })
            }
            Code::Unauthenticated | Code::PermissionDenied if on_heartbeat => {
                Some(Self::TokenRejected {
                    code: *code,
                    message: message.clone(),
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenRejected { code, message } => write!(
                f,
                "the coordinator rejected this relay's token ({code}: {message}); it expired, was \
                 revoked or was issued for another relay URL. Issue a new one with \
                 AdminService/CreateRelayToken for this relay's --public-url, set \
                 MOQ_COORDINATOR_TOKEN and start the relay again"
            ),
            Self::EpochRetired { message } => write!(
                f,
                "another process registered as this relay URL and the coordinator retired this \
                 process's epoch ({message}); two relays are running with the same --public-url \
                 and token. Stop the duplicate, or give each relay its own URL and token"
            ),
        }
    }
}

impl std::error::Error for Fatal {}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> RpcError {
        RpcError::Status {
            method: "Heartbeat",
            code,
            message: message.into(),
        }
    }

    #[test]
    fn classifies_worker_errors() {
        let retired = Fatal::of(
            &status(Code::FailedPrecondition, "epoch retired by a newer process"),
            false,
        );
        assert!(matches!(retired, Some(Fatal::EpochRetired { .. })));
        assert_eq!(retired.unwrap().exit_code(), 4);

        let revoked = Fatal::of(&status(Code::Unauthenticated, "token revoked"), true);
        assert!(matches!(revoked, Some(Fatal::TokenRejected { .. })));
        assert_eq!(revoked.unwrap().exit_code(), 3);
        assert!(Fatal::of(&status(Code::PermissionDenied, "x"), true).is_some());

        // Not fatal: a denied request elsewhere, another precondition, outages.
        assert_eq!(Fatal::of(&status(Code::PermissionDenied, "x"), false), None);
        assert_eq!(
            Fatal::of(&status(Code::FailedPrecondition, "quota"), true),
            None
        );
        assert_eq!(Fatal::of(&status(Code::Unavailable, "later"), true), None);
    }

    #[test]
    fn the_message_says_what_to_do() {
        let msg = Fatal::TokenRejected {
            code: Code::Unauthenticated,
            message: "expired".into(),
        }
        .to_string();
        assert!(
            msg.contains("CreateRelayToken") && msg.contains("expired"),
            "{msg}"
        );
    }
}
