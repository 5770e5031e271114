//! Who is running adeploy, for the audit log.
//!
//! Why not just `$USER`: it is whatever the caller's environment says. The
//! audit log records the real uid of the process and its account name from
//! `/etc/passwd`, and, when run through sudo, who invoked sudo.

/// `alice (uid 1000)`, `root (uid 0, via sudo from alice)`; `$USER` when the
/// uid cannot be read (not Linux).
pub fn current_user() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        });
    let Some(uid) = uid else {
        return std::env::var("USER").unwrap_or_else(|_| "unknown".to_string());
    };
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id = f.nth(1)?;
            (id == uid).then(|| name.to_string())
        })
    });
    let mut who = format!("{} (uid {uid}", name.as_deref().unwrap_or("?"));
    if let Ok(by) = std::env::var("SUDO_USER") {
        who.push_str(&format!(", via sudo from {by}"));
    }
    who.push(')');
    who
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_real_uid() {
        let who = super::current_user();
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        assert!(who.contains(&format!("(uid {uid}")), "{who}");
        assert!(!who.starts_with('?'), "{who}");
    }
}
