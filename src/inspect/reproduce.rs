//! The `curl` command that shows what happened without diagproxy, along the same path (the
//! corporate proxy and the `--resolve` pin the session used).

use std::net::IpAddr;

use crate::text::shell;

/// The way out a reproduce command takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<'a> {
    /// The corporate proxy's URL without credentials, and whether it needs some (they are
    /// never printed: the command says `USER:PASS`).
    pub proxy: Option<(&'a str, bool)>,
    /// A `--resolve` pin: host, port, address.
    pub pin: Option<(&'a str, u16, IpAddr)>,
}

/// `curl` that shows the same thing as `url` did, through `path`.
pub fn command(url: &str, path: &Path<'_>) -> String {
    let mut cmd = String::from("curl -sv -o /dev/null");
    if let Some((proxy, has_credentials)) = path.proxy {
        // curl's own SOCKS flags: the proxy resolves for SOCKS5 (as browsers do), this
        // machine for SOCKS4.
        let flag = [
            ("socks5h://", "--socks5-hostname"),
            ("socks4a://", "--socks4a"),
            ("socks4://", "--socks4"),
        ]
        .into_iter()
        .find_map(|(scheme, flag)| proxy.strip_prefix(scheme).map(|hp| (flag, hp)));
        match flag {
            Some((flag, hostport)) => cmd.push_str(&format!(" {flag} {}", shell(hostport))),
            None => cmd.push_str(&format!(" -x {}", shell(proxy))),
        }
        if has_credentials {
            cmd.push_str(" --proxy-user USER:PASS");
        }
    }
    if let Some((host, port, ip)) = path.pin {
        let ip = if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        cmd.push_str(&format!(
            " --resolve {}",
            shell(&format!("{host}:{port}:{ip}"))
        ));
    }
    // Always quoted, as before, so a URL reads the same whether or not it needs it.
    cmd.push_str(&format!(" '{}'", url.replace('\'', r"'\''")));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduce_commands_follow_the_same_path() {
        assert_eq!(
            command("https://chatgpt.com/", &Path::default()),
            "curl -sv -o /dev/null 'https://chatgpt.com/'"
        );
        let path = Path {
            proxy: Some(("http://corp:3128", true)),
            pin: Some(("chatgpt.com", 8443, "127.0.0.1".parse().unwrap())),
        };
        let pinned = command("https://chatgpt.com:8443/", &path);
        assert_eq!(pinned, "curl -sv -o /dev/null -x http://corp:3128 --proxy-user USER:PASS --resolve chatgpt.com:8443:127.0.0.1 'https://chatgpt.com:8443/'");
        let socks = command(
            "https://chatgpt.com/",
            &Path {
                proxy: Some(("socks5h://127.0.0.1:1080", false)),
                pin: None,
            },
        );
        assert_eq!(
            socks,
            "curl -sv -o /dev/null --socks5-hostname 127.0.0.1:1080 'https://chatgpt.com/'"
        );
        let socks4 = command(
            "https://chatgpt.com/",
            &Path {
                proxy: Some(("socks4://s:1080", false)),
                pin: None,
            },
        );
        assert!(socks4.contains(" --socks4 s:1080 "), "{socks4}");
    }

    #[test]
    fn a_hostile_url_stays_one_shell_word() {
        let url = "http://chatgpt.com/x'$(touch${IFS}/tmp/p)'err";
        let cmd = command(url, &Path::default());
        assert_eq!(
            cmd,
            r"curl -sv -o /dev/null 'http://chatgpt.com/x'\''$(touch${IFS}/tmp/p)'\''err'"
        );
        let Ok(out) = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd.replace("curl -sv -o /dev/null", "printf %s"))
            .output()
        else {
            return; // no sh here: the string comparison above still holds
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), url);
    }
}
