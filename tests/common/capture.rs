//! A real packet capture of the loopback interface (`tcpdump`) and its reading (`tshark`):
//! how the key-log tests show that Wireshark decrypts what diagproxy's key log says it can.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `tcpdump -i lo` writing a pcap file.
pub struct Capture {
    child: Child,
    pub file: PathBuf,
}

impl Capture {
    /// Starts capturing TCP on `ports` and waits until tcpdump says it is listening.
    /// `--immediate-mode` and `-U`: packets reach the file as they arrive (without them an
    /// interrupted capture can hold none on these kernels).
    pub fn start(dir: &Path, name: &str, ports: &[u16]) -> Capture {
        let file = dir.join(name);
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-n", "-s", "0", "-U", "--immediate-mode", "-w"])
            .arg(&file)
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("tcpdump never said it is listening");
            if line.contains("listening on") {
                break;
            }
        }
        Capture { child, file }
    }

    /// Stops the capture (SIGINT, so tcpdump writes what it holds) and returns the file.
    pub fn stop(mut self) -> PathBuf {
        // Packets of the last exchange are still on their way through the loopback.
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.file.clone()
    }
}

/// `tshark -r FILE ARGS`, its standard output (panics when tshark fails).
pub fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
