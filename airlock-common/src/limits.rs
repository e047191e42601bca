//! Every size and count limit that crosses a process boundary, defined once.
//!
//! Both ends of an interface (`airlockctl`, the gateway, the enforcer) take
//! their limits from here, so a value one end sends is never refused by the
//! other for being one byte longer than it expected. The functions that
//! apply them to D-Bus arguments are in [`validate`](crate::validate).

use crate::kernel;

/// Longest free-text argument: a reason, a note.
pub const MAX_TEXT_LEN: usize = 1024;

/// Most argv elements a policy check accepts.
pub const MAX_ARGV: usize = 256;
/// Longest single argv element of a policy check.
pub const MAX_ARG_LEN: usize = 4096;

/// Longest request, grant or session id any interface accepts.
pub const MAX_ID_LEN: usize = 64;
/// Longest policy or role id a policy file may define (and so the longest
/// role a caller may name).
pub const MAX_POLICY_ID_LEN: usize = 64;

/// Most directories of an agent's `PATH` the enforcer searches for the
/// files rule heads name; the gateway keeps at most this many.
pub const MAX_SEARCH_PATH: usize = 64;
/// Most `PATH` entries a caller may send when starting a session. Larger
/// than [`MAX_SEARCH_PATH`] because relative and oversized entries are
/// dropped before the first [`MAX_SEARCH_PATH`] usable ones are kept.
pub const MAX_SEARCH_PATH_SENT: usize = 4 * MAX_SEARCH_PATH;
/// `PATH_MAX`, terminating NUL included: a search-path entry of this many
/// bytes or more cannot name a directory.
pub const MAX_PATH_LEN: usize = 4096;

/// Digits of a TOTP code (RFC 6238 as Airlock uses it).
pub const TOTP_DIGITS: usize = 6;
/// Longest TOTP code accepted at all; anything longer is junk, refused
/// before it reaches the TOTP daemon.
pub const MAX_CODE_LEN: usize = 16;

/// Most argv elements of an enforcement event the gateway records.
pub const MAX_EVENT_ARGV: usize = 64;
/// Longest argv element of an enforcement event.
pub const MAX_EVENT_ARG_LEN: usize = 256;
/// Longest peer of an enforcement event (a Unix socket's address, each
/// byte escaped to at most 4).
pub const MAX_EVENT_PEER_LEN: usize = 512;

/// Most rules in one session spec the enforcer accepts.
pub const MAX_SPEC_RULES: usize = 100_000;
/// Most command grants in one session spec the enforcer accepts.
pub const MAX_SPEC_GRANTS: usize = 1024;
/// Most tool grammars in one session spec the enforcer accepts (one per
/// distinct rule head at most).
pub const MAX_SPEC_TOOLS: usize = 1024;

/// Longest signed-grant payload or signature any interface accepts (a real
/// one is a few hundred bytes).
pub const MAX_SIGNED_GRANT_LEN: usize = 8192;

/// Longest grant scope text.
pub const MAX_SCOPE_LEN: usize = 512;
/// Most services one grant scope may name.
pub const MAX_SERVICES: usize = 16;

// The enforcer builds events from the kernel's event record: whatever the
// kernel can report must be within what the gateway records, even when each
// byte of a word is invalid UTF-8 and decodes to U+FFFD (3 bytes).
const _: () = assert!(kernel::EVENT_WORDS <= MAX_EVENT_ARGV);
const _: () = assert!(3 * kernel::EVENT_WORD_LEN <= MAX_EVENT_ARG_LEN);
const _: () = assert!(16 + 4 * kernel::PEER_PATH_LEN <= MAX_EVENT_PEER_LEN);
const _: () = assert!(TOTP_DIGITS <= MAX_CODE_LEN);
const _: () = assert!(MAX_CODE_LEN <= MAX_TEXT_LEN);
