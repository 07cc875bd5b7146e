//! The operating-system boundary that has no better home: facts about processes on this host.

/// The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat), which
/// tells a process from a later one that was given the same PID.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) is in parentheses and may hold spaces or parentheses itself
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_a_start_time_and_a_dead_pid_has_none() {
        let me = super::process_start_ticks(std::process::id());
        assert!(me.is_some());
        assert_eq!(me, super::process_start_ticks(std::process::id()));
        assert_eq!(super::process_start_ticks(u32::MAX - 1), None);
    }
}
