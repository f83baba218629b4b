//! Signals to a fault's target processes, through a pidfd where the kernel has them (Linux 5.3+).
//!
//! A pidfd holds the process itself, not its number: a signal sent through it cannot reach a
//! process that took the pid after ours exited, and its exit can be waited on (the pidfd becomes
//! readable) instead of looked for in `/proc` every few hundred microseconds.

use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{PidfdFlags, pidfd_open, pidfd_send_signal};
use tokio::time::Instant;

use super::Target;
use crate::error::FaultError;
use crate::process;

/// A process a signal reached, held by a pidfd where the kernel has them.
pub(super) struct Sent {
    pidfd: Option<OwnedFd>,
}

/// Sends `signal` to `target` if it is still the same process; `None` when it has exited.
pub(super) fn send(target: &Target, signal: Signal) -> Result<Option<Sent>, FaultError> {
    let pidfd = match rustix::process::Pid::from_raw(target.pid)
        .map(|pid| pidfd_open(pid, PidfdFlags::empty()))
    {
        Some(Ok(pidfd)) => Some(pidfd),
        Some(Err(rustix::io::Errno::SRCH)) => return Ok(None),
        // No pidfds here (an older kernel, a seccomp filter): the pid, checked just before.
        _ => None,
    };
    // Checked after the pidfd is open: if it is still the process that was planned, the pidfd
    // holds that process for as long as we keep it.
    if !process::is_same_process(target.pid, target.start_time) {
        return Ok(None);
    }
    let named = rustix::process::Signal::from_named_raw(signal as i32);
    let sent = match (&pidfd, named) {
        (Some(pidfd), Some(named)) => {
            pidfd_send_signal(pidfd, named).map_err(|err| Errno::from_raw(err.raw_os_error()))
        }
        _ => signal::kill(Pid::from_raw(target.pid), signal),
    };
    match sent {
        Ok(()) => Ok(Some(Sent { pidfd })),
        Err(Errno::ESRCH) => Ok(None),
        Err(source) => Err(FaultError::Signal {
            pid: target.pid,
            comm: target.comm.clone(),
            signal: signal.as_str().to_string(),
            source,
            hint: match source {
                Errno::EPERM => "; run the agent as root or as the process's owner",
                _ => "",
            },
        }),
    }
}

/// Waits until every process of `sent` has exited, for at most `limit`: whether they all have.
/// `None` when one of them has no pidfd to wait on: the caller looks in `/proc` instead.
pub(super) fn all_exited(sent: &[Sent], limit: Duration) -> Option<bool> {
    let mut waiting: Vec<&OwnedFd> = sent
        .iter()
        .map(|s| s.pidfd.as_ref())
        .collect::<Option<_>>()?;
    let deadline = Instant::now() + limit;
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some(false);
        }
        let mut fds: Vec<PollFd<'_>> = waiting
            .iter()
            .map(|pidfd| PollFd::new(*pidfd, PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut fds, Timespec::try_from(left).ok().as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return None,
        }
        let exited: Vec<bool> = fds.iter().map(|fd| !fd.revents().is_empty()).collect();
        waiting = waiting
            .into_iter()
            .zip(exited)
            .filter_map(|(pidfd, exited)| (!exited).then_some(pidfd))
            .collect();
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn target_of(child: &std::process::Child) -> Target {
        let info = process::read(child.id() as i32).expect("the child in /proc");
        Target::from_info(&info)
    }

    #[test]
    fn a_killed_child_is_seen_exiting_through_its_pidfd() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let target = target_of(&child);
        let sent = send(&target, Signal::SIGKILL).unwrap().expect("delivered");
        assert!(sent.pidfd.is_some(), "this kernel has pidfds (5.3+)");
        let started = Instant::now();
        assert_eq!(all_exited(&[sent], Duration::from_secs(5)), Some(true));
        assert!(started.elapsed() < Duration::from_secs(1));
        child.wait().unwrap();
    }

    #[test]
    fn a_live_process_is_waited_on_for_the_limit_only() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let target = target_of(&child);
        let sent = send(&target, Signal::SIGCONT).unwrap().expect("delivered");
        let started = Instant::now();
        assert_eq!(all_exited(&[sent], Duration::from_millis(50)), Some(false));
        assert!(started.elapsed() >= Duration::from_millis(50));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_process_that_is_not_the_planned_one_any_more_gets_no_signal() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut target = target_of(&child);
        // A start time that is not this process's: its pid was taken by another.
        target.start_time += 1;
        assert!(send(&target, Signal::SIGKILL).unwrap().is_none());
        assert!(child.try_wait().unwrap().is_none(), "still running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
