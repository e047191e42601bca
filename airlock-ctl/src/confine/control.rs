//! The control socket between `airlockctl run` and the session's first
//! process: a `SOCK_SEQPACKET` pair, one message each way at a time.
//!
//! 1. `run` sends the plan ([`Plan`], JSON) once the session exists.
//! 2. `session-init` installs its filter and, when the plan asks for a
//!    supervisor, sends the listener (`SCM_RIGHTS`) and closes its own copy.
//! 3. `run` hands it to the gateway, which hands it to the enforcer, and
//!    answers [`ATTACHED`] or the error; only then does the agent start.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use anyhow::{anyhow, Context};

use super::plan::Plan;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// The answer that lets the agent start.
pub const ATTACHED: &str = "attached";
/// The longest message either side sends (a plan with a long protect list
/// included); a longer one is refused, not cut.
const MAX_MESSAGE: usize = 1 << 16;

/// One end of the control socket.
pub struct Control(OwnedFd);

impl Control {
    /// A connected pair: `run`'s end (closed on exec) and the end the held
    /// child keeps through its exec of `session-init`.
    pub fn pair() -> anyhow::Result<(Control, OwnedFd)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .context("creating the session's control socket")?;
        // The child's end must survive the exec of session-init.
        nix::fcntl::fcntl(
            theirs.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )?;
        Ok((Control(ours), theirs))
    }

    /// Takes over an inherited end (`session-init --control FD`) and makes
    /// sure the agent does not inherit it.
    pub fn inherited(fd: RawFd) -> anyhow::Result<Control> {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)
            .with_context(|| format!("control socket {fd} is not open"))?;
        // SAFETY: the fd was inherited for this purpose and nothing else in
        // this process uses it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok(Control(fd))
    }

    pub fn send(&self, text: &str, fd: Option<&OwnedFd>) -> anyhow::Result<()> {
        let raw = fd.map(|fd| [fd.as_raw_fd()]);
        let rights: Vec<ControlMessage> =
            raw.iter().map(|r| ControlMessage::ScmRights(r)).collect();
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &[IoSlice::new(text.as_bytes())],
            &rights,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .context("writing to the session's control socket")?;
        Ok(())
    }

    /// The next message and the descriptor sent with it, if any; an error
    /// when the other side closed its end.
    pub fn receive(&self) -> anyhow::Result<(String, Option<OwnedFd>)> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                self.0.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .context("reading the session's control socket")?;
            let mut fd = None;
            for cmsg in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for raw in fds {
                        // SAFETY: the kernel just installed this fd in our
                        // table for us; nothing else owns it.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                return Err(anyhow!(
                    "a message on the session's control socket is longer than {MAX_MESSAGE} bytes"
                ));
            }
            (msg.bytes, fd)
        };
        if len == 0 && fd.is_none() {
            return Err(anyhow!(
                "the other side closed the session's control socket"
            ));
        }
        buf.truncate(len);
        Ok((String::from_utf8_lossy(&buf).into_owned(), fd))
    }

    pub fn send_plan(&self, plan: &Plan) -> anyhow::Result<()> {
        self.send(&serde_json::to_string(plan)?, None)
    }

    pub fn receive_plan(&self) -> anyhow::Result<Plan> {
        let (text, _) = self.receive()?;
        serde_json::from_str(&text).with_context(|| format!("a malformed plan {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_survives_the_control_socket() {
        let plan = Plan::Session {
            protect: vec!["~/.aws".parse().unwrap(), "!~/.ssh/*.pub".parse().unwrap()],
            confinement: airlock_common::dbus::Confinement {
                supervise: true,
                allow_debugging: false,
            },
        };
        let (ours, theirs) = Control::pair().unwrap();
        ours.send_plan(&plan).unwrap();
        assert_eq!(Control(theirs).receive_plan().unwrap(), plan);
    }
}
