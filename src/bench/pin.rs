//! Pinning for `diagproxy bench`: the load generator (with the origins) and the proxy each get
//! cores of their own, so the proxy is neither slowed by nor credited for the load generator
//! competing with it for the same core. Linux only (`sched_setaffinity`); elsewhere, or with
//! a single usable core, nothing is pinned and the table says so.

/// Which cores each side of the benchmark runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores {
    /// The bench process: load generator and loopback origins.
    pub load: Vec<usize>,
    /// The proxy under test.
    pub proxy: Vec<usize>,
}

impl Cores {
    /// Splits the cores this process may use: the upper half for the proxy, the rest for the
    /// load generator. `None` with fewer than two cores (nothing to split).
    pub fn split(usable: &[usize]) -> Option<Cores> {
        if usable.len() < 2 {
            return None;
        }
        let at = usable.len() - usable.len() / 2;
        Some(Cores {
            load: usable[..at].to_vec(),
            proxy: usable[at..].to_vec(),
        })
    }

    /// "load generator on core 0, proxy on core 1", for the table's heading.
    pub fn describe(&self) -> String {
        format!("{}, proxy on {}", self.describe_load(), list(&self.proxy))
    }

    /// "load generator on core 0", when the proxy is not ours to pin.
    pub fn describe_load(&self) -> String {
        format!("load generator on {}", list(&self.load))
    }
}

fn list(cores: &[usize]) -> String {
    let names: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
    let noun = if cores.len() == 1 { "core" } else { "cores" };
    format!("{noun} {}", names.join(","))
}

/// The cores this process may run on.
#[cfg(target_os = "linux")]
pub fn usable() -> Vec<usize> {
    // SAFETY: `set` is a plain bit set owned by this frame; the kernel writes at most
    // `size_of::<cpu_set_t>()` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins one thread (`tid`, 0 for the calling thread) to `cores`.
#[cfg(target_os = "linux")]
pub fn pin_thread(tid: i32, cores: &[usize]) -> Result<(), String> {
    // SAFETY: as above; `sched_setaffinity` only reads the set.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot pin thread {tid} to {}: {}",
            list(cores),
            std::io::Error::last_os_error()
        ))
    }
}

/// Pins every thread of process `pid` to `cores` (threads it starts later inherit it).
#[cfg(target_os = "linux")]
pub fn pin_process(pid: u32, cores: &[usize]) -> Result<(), String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| format!("cannot list the threads of {pid}: {e}"))?;
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            pin_thread(tid, cores)?;
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn usable() -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
pub fn pin_thread(_tid: i32, _cores: &[usize]) -> Result<(), String> {
    Err("pinning needs Linux".into())
}

#[cfg(not(target_os = "linux"))]
pub fn pin_process(_pid: u32, _cores: &[usize]) -> Result<(), String> {
    Err("pinning needs Linux".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_cores_one_each() {
        let cores = Cores::split(&[0, 1]).expect("two cores split");
        assert_eq!(cores.load, vec![0]);
        assert_eq!(cores.proxy, vec![1]);
        assert_eq!(
            cores.describe(),
            "load generator on core 0, proxy on core 1"
        );
        assert_eq!(cores.describe_load(), "load generator on core 0");
    }

    #[test]
    fn odd_counts_give_the_load_generator_the_extra_core() {
        let cores = Cores::split(&[2, 3, 5]).expect("three cores split");
        assert_eq!(cores.load, vec![2, 3]);
        assert_eq!(cores.proxy, vec![5]);
    }

    #[test]
    fn one_core_is_not_split() {
        assert_eq!(Cores::split(&[0]), None);
        assert_eq!(Cores::split(&[]), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pinning_this_thread_shows_in_its_affinity() {
        let all = usable();
        assert!(!all.is_empty());
        let one = [all[all.len() - 1]];
        // A scratch thread, so the test runner's own threads keep their affinity.
        let seen = std::thread::spawn(move || pin_thread(0, &one).map(|()| usable()))
            .join()
            .expect("thread ran");
        assert_eq!(seen, Ok(one.to_vec()));
    }
}
