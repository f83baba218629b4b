//! The packet holder behind `latency` where the kernel has no netem: a netfilter queue (NFQUEUE)
//! that iptables feeds with the packets to delay, read on a dedicated OS thread that holds each
//! packet `delay ± jitter` (uniform), then accepts it.
//!
//! The netlink protocol is spoken directly (a few messages, `nix` sockets, no `unsafe`): the socket
//! is ours, so the thread sleeps in `poll(2)` until the next packet is due or arrives, and wakes at
//! once when asked to stop. Packets are queued metadata-only (`NFQNL_COPY_META`): we never look at
//! a payload, so nothing is copied but the header.
//!
//! **Invariant:** the queue fails open. The kernel accepts packets when the queue is full
//! (`NFQA_CFG_F_FAIL_OPEN`), and the iptables rule carries `--queue-bypass`, so packets flow
//! undelayed when no holder is bound (this process died). Stopping the holder accepts every packet
//! it still holds.
//!
//! A socket belongs to the network namespace of the thread that created it: [`Holder::start`]
//! opens it on the calling thread, before handing it to the holding thread.

// The holder is a real OS thread on the real clock, which tokio's paused clock has no say over.
#![allow(clippy::disallowed_types)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, sendto,
    setsockopt, socket, sockopt,
};
use rand::Rng;

use super::registry::{Registry, Worker};
use crate::spec::MAX_HOLD;

/// Packets the kernel keeps queued for us at most (beyond that it accepts them: fail open).
pub const QUEUE_MAX_LEN: u32 = 65_536;

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NFQA_CFG_F_GSO: u32 = 4;
const NF_ACCEPT: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

/// Holders alive in this process, by the iptables chain that feeds them (unique per fault).
static HOLDERS: Registry<Holder> = Registry::new();

/// A running holder: its thread and the pipe that wakes it to stop.
pub struct Holder {
    stop: OwnedFd,
    thread: JoinHandle<Stats>,
}

impl Worker for Holder {
    type Stats = Stats;

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    fn stop(self) -> Option<Stats> {
        let _ = nix::unistd::write(&self.stop, b"x");
        self.thread.join().ok()
    }
}

/// What a holder did, for the revert's detail.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub packets: u64,
    pub max_held: usize,
}

/// Binds queue `queue` (in the calling thread's network namespace) and starts holding its packets
/// for `delay ± jitter`; registered under `key` for [`stop`].
pub fn start(key: &str, queue: u16, delay: Duration, jitter: Duration) -> Result<(), String> {
    let socket =
        open(queue).map_err(|err| format!("cannot bind netfilter queue {queue}: {err}"))?;
    let (wake_read, wake_write) = nix::unistd::pipe().map_err(|err| format!("pipe: {err}"))?;
    let thread = thread::Builder::new()
        .name(format!("chaos-nfq-{queue}"))
        .spawn(move || hold(&socket, &wake_read, queue, delay, jitter))
        .map_err(|err| format!("cannot start the holding thread: {err}"))?;
    HOLDERS.insert(
        key,
        Holder {
            stop: wake_write,
            thread,
        },
    );
    Ok(())
}

/// Whether a holder registered under `key` runs in this process.
pub fn is_running(key: &str) -> bool {
    HOLDERS.is_running(key)
}

/// Stops the holder registered under `key` (accepting what it holds); `None` when none runs here.
pub fn stop(key: &str) -> Option<Stats> {
    HOLDERS.stop(key)
}

/// Opens a netfilter netlink socket and configures queue `queue`: bound, metadata only, GSO
/// packets whole, fail open, a long queue.
fn open(queue: u16) -> Result<OwnedFd, String> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(|err| format!("netlink socket: {err}"))?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|err| format!("bind: {err}"))?;
    // A large receive buffer: a burst must not overflow it (the kernel would drop those packets).
    let _ = setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20));
    let _ = setsockopt(&fd, sockopt::RcvBuf, &(8 << 20));

    config(&fd, queue, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0])
        .map_err(|err| format!("bind the queue: {err} (is another program bound to it?)"))?;
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    config(&fd, queue, NFQA_CFG_PARAMS, &params).map_err(|err| format!("copy mode: {err}"))?;
    config(
        &fd,
        queue,
        NFQA_CFG_QUEUE_MAXLEN,
        &QUEUE_MAX_LEN.to_be_bytes(),
    )
    .map_err(|err| format!("queue length: {err}"))?;
    let flags = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO;
    let mut attrs = Vec::new();
    put_attr(&mut attrs, NFQA_CFG_MASK, &flags.to_be_bytes());
    put_attr(&mut attrs, NFQA_CFG_FLAGS, &flags.to_be_bytes());
    request(&fd, queue, NFQNL_MSG_CONFIG, &attrs, true)
        .map_err(|err| format!("fail-open flag: {err}"))?;
    Ok(fd)
}

fn config(fd: &OwnedFd, queue: u16, attr: u16, value: &[u8]) -> Result<(), Errno> {
    let mut attrs = Vec::new();
    put_attr(&mut attrs, attr, value);
    request(fd, queue, NFQNL_MSG_CONFIG, &attrs, true)
}

fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// One nfnetlink message of the queue subsystem: header, nfgenmsg (resource id = queue), attrs.
fn message(queue: u16, msg: u16, attrs: &[u8], ack: bool) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.len();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    let flags = NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 };
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // seq
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    buf.push(libc::AF_UNSPEC as u8);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&queue.to_be_bytes());
    buf.extend_from_slice(attrs);
    buf
}

/// Sends a request and, with `ack`, waits for the kernel's answer (packets arriving meanwhile are
/// not possible: the queue has no rule feeding it before it is configured).
fn request(fd: &OwnedFd, queue: u16, msg: u16, attrs: &[u8], ack: bool) -> Result<(), Errno> {
    let buf = message(queue, msg, attrs, ack);
    sendto(
        fd.as_raw_fd(),
        &buf,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    if !ack {
        return Ok(());
    }
    let mut answer = [0u8; 8192];
    loop {
        let n = recv(fd.as_raw_fd(), &mut answer, MsgFlags::empty())?;
        let mut at = 0;
        while at + NLMSG_HDRLEN <= n {
            let len = u32_at(&answer, at) as usize;
            let kind = u16::from_ne_bytes([answer[at + 4], answer[at + 5]]);
            if kind == NLMSG_ERROR && at + NLMSG_HDRLEN + 4 <= n {
                let code = i32::from_ne_bytes(
                    answer[at + NLMSG_HDRLEN..at + NLMSG_HDRLEN + 4]
                        .try_into()
                        .unwrap_or([0; 4]),
                );
                return if code == 0 {
                    Ok(())
                } else {
                    Err(Errno::from_raw(-code))
                };
            }
            if len < NLMSG_HDRLEN {
                break;
            }
            at += align(len);
        }
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The packet ids in a batch of netlink messages read from the queue socket.
fn packet_ids(buf: &[u8], out: &mut Vec<u32>) {
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, at) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            let mut attr = at + NLMSG_HDRLEN + NFGENMSG_LEN;
            let end = at + len;
            while attr + 4 <= end {
                let alen = u16::from_ne_bytes([buf[attr], buf[attr + 1]]) as usize;
                let akind = u16::from_ne_bytes([buf[attr + 2], buf[attr + 3]]) & 0x3fff;
                if alen < 4 || attr + alen > end {
                    break;
                }
                if akind == NFQA_PACKET_HDR && alen >= 8 {
                    let id =
                        u32::from_be_bytes(buf[attr + 4..attr + 8].try_into().unwrap_or([0; 4]));
                    out.push(id);
                    break;
                }
                attr += align(alen);
            }
        }
        at += align(len);
    }
}

/// Accepts every packet of `ids` in one `sendto` (several netlink messages back to back).
fn accept(fd: &OwnedFd, queue: u16, ids: &[u32]) {
    let mut buf = Vec::with_capacity(ids.len() * 32);
    for chunk in ids.chunks(256) {
        buf.clear();
        for id in chunk {
            let mut attrs = Vec::with_capacity(12);
            let mut hdr = NF_ACCEPT.to_be_bytes().to_vec();
            hdr.extend_from_slice(&id.to_be_bytes());
            put_attr(&mut attrs, NFQA_VERDICT_HDR, &hdr);
            buf.extend_from_slice(&message(queue, NFQNL_MSG_VERDICT, &attrs, false));
        }
        let _ = sendto(
            fd.as_raw_fd(),
            &buf,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        );
    }
}

/// The holding loop: wait for packets or the next release, release what is due, until woken on
/// `stop`; then accept everything still held.
fn hold(fd: &OwnedFd, stop: &OwnedFd, queue: u16, delay: Duration, jitter: Duration) -> Stats {
    let mut held: BinaryHeap<Reverse<(Instant, u32)>> = BinaryHeap::new();
    let mut stats = Stats::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut ids = Vec::new();
    let mut due = Vec::new();
    let mut rng = rand::rng();
    loop {
        let now = Instant::now();
        while let Some(Reverse((at, id))) = held.peek().copied() {
            if at > now {
                break;
            }
            held.pop();
            due.push(id);
        }
        if !due.is_empty() {
            accept(fd, queue, &due);
            due.clear();
        }
        let timeout = match held.peek() {
            // Round up: waking a little late is fine, waking early spins.
            Some(Reverse((at, _))) => {
                let wait = at.saturating_duration_since(now);
                PollTimeout::try_from(wait.as_micros().div_ceil(1000) as u64)
                    .unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [
            PollFd::new(fd.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
        let stopping = fds[1].revents().is_some_and(|r| !r.is_empty());
        let readable = fds[0].revents().is_some_and(|r| !r.is_empty());
        if stopping {
            break;
        }
        if !readable {
            continue;
        }
        // Drain what is there without blocking.
        loop {
            match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => break,
                Ok(n) => {
                    let arrived = Instant::now();
                    ids.clear();
                    packet_ids(&buf[..n], &mut ids);
                    for &id in &ids {
                        let wait = if jitter.is_zero() {
                            delay
                        } else {
                            let lo = delay.saturating_sub(jitter).as_micros() as u64;
                            let hi = delay.saturating_add(jitter).as_micros() as u64;
                            Duration::from_micros(rng.random_range(lo..=hi))
                        };
                        // Bounded, so a huge delay from a request cannot overflow the clock.
                        held.push(Reverse((arrived + wait.min(MAX_HOLD), id)));
                    }
                    stats.packets += ids.len() as u64;
                    stats.max_held = stats.max_held.max(held.len());
                }
                Err(Errno::EAGAIN | Errno::EINTR) => break,
                // ENOBUFS: the kernel dropped messages; go on with what comes next.
                Err(Errno::ENOBUFS) => continue,
                Err(_) => break,
            }
        }
    }
    let rest: Vec<u32> = held.into_iter().map(|Reverse((_, id))| id).collect();
    accept(fd, queue, &rest);
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_aligned_and_parse_back() {
        let mut attrs = Vec::new();
        let mut hdr = 7u32.to_be_bytes().to_vec();
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(1);
        put_attr(&mut attrs, NFQA_PACKET_HDR, &hdr);
        let mut batch = message(5, NFQNL_MSG_PACKET, &attrs, false);
        assert_eq!(batch.len() % 4, 0);
        let mut attrs = Vec::new();
        put_attr(&mut attrs, NFQA_PACKET_HDR, &9u32.to_be_bytes());
        batch.extend_from_slice(&message(5, NFQNL_MSG_PACKET, &attrs, false));
        let mut ids = Vec::new();
        packet_ids(&batch, &mut ids);
        assert_eq!(ids, [7, 9]);
    }
}
