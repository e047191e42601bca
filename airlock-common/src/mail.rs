//! The mail operations Airlock performs on an IMAP service for an agent.
//!
//! The set is closed and read-only: an operation is one of these four, and
//! nothing else is ever asked of a mail server. The proxy serves them as
//! `POST /SERVICE/OP` with a JSON body; the gateway checks the name before
//! it releases a login, and audits each.

/// A read-only mail operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailOp {
    /// The newest messages of a mailbox: `{mailbox?, limit?}`.
    ListMessages,
    /// Messages whose text matches: `{mailbox?, query, limit?}`.
    Search,
    /// One message, headers and text: `{mailbox?, uid}`.
    GetMessage,
    /// How many messages are unseen: `{mailbox?}`.
    CountUnread,
}

impl MailOp {
    pub const ALL: [MailOp; 4] = [
        MailOp::ListMessages,
        MailOp::Search,
        MailOp::GetMessage,
        MailOp::CountUnread,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MailOp::ListMessages => "list_messages",
            MailOp::Search => "search",
            MailOp::GetMessage => "get_message",
            MailOp::CountUnread => "count_unread",
        }
    }

    pub fn parse(name: &str) -> Option<MailOp> {
        MailOp::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Why `name` is refused: mail is read-only, and these are the reads.
    pub fn refusal(name: &str) -> String {
        let shown: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
        format!(
            "{shown:?} is not a mail operation Airlock performs: mail is read-only through \
             Airlock (nothing is sent, moved, deleted or marked read); the operations are {}",
            MailOp::ALL.map(MailOp::as_str).join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_writes_are_not_operations() {
        for op in MailOp::ALL {
            assert_eq!(MailOp::parse(op.as_str()), Some(op));
        }
        for write in [
            "store", "expunge", "append", "move", "copy", "delete", "STORE", "",
        ] {
            assert_eq!(MailOp::parse(write), None);
        }
        assert!(MailOp::refusal("move\n").contains("read-only"));
    }
}
