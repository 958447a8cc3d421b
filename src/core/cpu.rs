//! Wall and CPU time of a stretch of work, for the phase timings `build`
//! prints: CPU seconds (this process's threads and the children it has
//! waited for, maintainer scripts included) say where the work goes on a
//! machine shared with other jobs, where wall time alone says little.

use std::time::{Duration, Instant};

/// A point in time: the wall clock and the CPU time used so far.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    wall: Instant,
    cpu: Duration,
}

impl Stamp {
    /// Now.
    pub fn now() -> Stamp {
        Stamp {
            wall: Instant::now(),
            cpu: cpu_used(),
        }
    }

    /// Wall and CPU time since this stamp.
    pub fn elapsed(&self) -> (Duration, Duration) {
        (self.wall.elapsed(), cpu_used().saturating_sub(self.cpu))
    }
}

/// User + system time of this process (all threads) and of its waited-for
/// children.
fn cpu_used() -> Duration {
    let of = |who| {
        // SAFETY: getrusage only writes the struct it is given.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return Duration::ZERO;
        }
        let tv = |t: libc::timeval| {
            Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000)
        };
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    of(libc::RUSAGE_SELF) + of(libc::RUSAGE_CHILDREN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_takes_cpu_time() {
        let start = Stamp::now();
        let mut x: u64 = 1;
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (wall, cpu) = start.elapsed();
        assert!(wall >= Duration::from_millis(50));
        assert!(cpu >= Duration::from_millis(10), "{cpu:?}");
    }
}
