//! The limit of open files. A run keeps a connection open to every agent it talks to, on top of
//! its report files and the agents' own: a fleet of a few hundred hosts passes the soft limit
//! many systems start a process with (1024), and every connection past it fails with "Too many
//! open files". The hard limit is usually far higher, and a process may raise its soft limit to
//! it without privileges, so chaosctl and chaosd do at their start.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft limit of open files to the hard limit: the limit now in force.
pub fn raise() -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read the limit of open files: {e}"))?;
    if soft >= hard {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .map_err(|e| format!("cannot raise the limit of open files from {soft} to {hard}: {e}"))?;
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_of_open_files_rises_to_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        // Just below the hard limit, so that there is something to raise; the other tests of
        // this process still have plenty.
        setrlimit(Resource::RLIMIT_NOFILE, hard - 1, hard).expect("lower the soft limit");
        let limit = raise().expect("raise");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        assert_eq!((limit, soft), (hard, hard));
    }
}
