//! This machine's own addresses, for the connect programs: a connection to
//! one of them reaches a process here, like one to 127.0.0.1.
//!
//! The kernel tells the enforcer when an address comes or goes (rtnetlink's
//! address groups); each notice makes it read the whole list again with
//! `getifaddrs` and bring the map in line. Listening, rather than polling,
//! leaves no second in which a new address is unknown, and costs nothing
//! while nothing changes. Loopback, `0.0.0.0`, `::`, broadcast and multicast
//! need no entry: the programs recognise them.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use airlock_common::kernel::LocalAddr;
use airlock_daemon::lock::MutexExt;
use anyhow::Context;
use nix::sys::socket::{
    bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use tokio::io::unix::AsyncFd;

use crate::sessions::Sessions;

/// The map key of an address: IPv4 ones IPv4-mapped.
pub fn key(ip: IpAddr) -> LocalAddr {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    LocalAddr { addr: v6.octets() }
}

fn ip_of(addr: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Every address of every interface, and the IPv4 broadcast addresses
/// (a datagram to one is delivered here too).
pub fn current() -> anyhow::Result<BTreeSet<LocalAddr>> {
    let mut addrs = BTreeSet::new();
    for interface in nix::ifaddrs::getifaddrs().context("listing this machine's addresses")? {
        for addr in [&interface.address, &interface.broadcast]
            .into_iter()
            .flatten()
        {
            if let Some(ip) = ip_of(addr).filter(|ip| *ip != IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
                addrs.insert(key(ip));
            }
        }
    }
    Ok(addrs)
}

/// A socket the kernel writes to whenever an address is added or removed.
pub struct Changes(AsyncFd<OwnedFd>);

impl Changes {
    /// Subscribes; done before the first reading, so that no change falls
    /// between the two.
    pub fn subscribe() -> anyhow::Result<Changes> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkRoute,
        )
        .context("opening an rtnetlink socket")?;
        let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))
            .context("subscribing to address changes")?;
        // SAFETY: the AsyncFd owns the fd for as long as it lives, and the fd
        // is not closed or registered elsewhere meanwhile.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Changes(fd))
    }

    /// Waits for the next change (or several), reading what the kernel
    /// sent: its content does not matter, the list is read again.
    async fn next(&self) -> anyhow::Result<()> {
        let mut buf = [0u8; 8192];
        loop {
            let mut guard = self.0.readable().await?;
            let mut read_any = false;
            loop {
                match nix::unistd::read(self.0.get_ref().as_raw_fd(), &mut buf) {
                    Ok(0) => break,
                    Ok(_) => read_any = true,
                    Err(nix::errno::Errno::EAGAIN) => break,
                    // Too many notices to queue: the list is read anyway.
                    Err(nix::errno::Errno::ENOBUFS) => read_any = true,
                    Err(e) => return Err(e).context("reading address changes"),
                }
            }
            guard.clear_ready();
            if read_any {
                return Ok(());
            }
        }
    }
}

/// Keeps the kernel's map equal to [`current`] until the enforcer stops.
pub async fn watch(changes: Changes, sessions: Arc<Mutex<Sessions>>) -> anyhow::Result<()> {
    loop {
        changes.next().await?;
        let addrs = current()?;
        let changed = sessions.locked().kernel.set_local_addrs(&addrs)?;
        if changed {
            tracing::info!("this machine's addresses changed: {} known", addrs.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_are_kept_ipv4_mapped() {
        let k = key("192.0.2.7".parse().unwrap());
        assert_eq!(&k.addr[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&k.addr[12..], &[192, 0, 2, 7]);
        assert_eq!(key("::1".parse().unwrap()).addr[15], 1);
    }

    #[test]
    fn this_machine_has_its_loopback_addresses() {
        let addrs = current().unwrap();
        assert!(
            addrs.contains(&key("127.0.0.1".parse().unwrap())),
            "{addrs:?}"
        );
    }
}
