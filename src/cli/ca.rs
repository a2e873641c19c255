//! `diagproxy ca init|show|export`: the local CA used for interception.

use super::{CaCommand, CertFormat, Failed};
use crate::profile::Profile;
use crate::tls::ca;

pub fn ca(command: CaCommand) -> Result<(), Failed> {
    match command {
        CaCommand::Init(args) => {
            let profile = match &args.profile {
                Some(path) => {
                    Profile::load(path).map_err(|e| format!("--profile {}: {e}", path.display()))?
                }
                None => Profile::builtin(),
            };
            let options = ca::InitOptions {
                dir: args.dir.ca_dir.clone(),
                days: args.days,
                unconstrained: args.unconstrained,
                force: args.force,
            };
            let path = ca::init(&options, &profile)?;
            let loaded = ca::load(&args.dir.ca_dir)?;
            println!(
                "created {} (key: {}, mode 0600)\n",
                path.display(),
                args.dir.ca_dir.join(ca::KEY_FILE).display()
            );
            print!(
                "{}\n{}",
                ca::describe(&loaded.cert_der)?,
                ca::trust_instructions(&path)
            );
        }
        CaCommand::Show(args) => {
            let loaded = ca::load(&args.ca_dir)?;
            let path = args.ca_dir.join(ca::CERT_FILE);
            print!("{}\n{}", path.display(), ca::describe(&loaded.cert_der)?);
            print!("\n{}", ca::trust_instructions(&path));
        }
        CaCommand::Export(args) => {
            let loaded = ca::load(&args.dir.ca_dir)?;
            let bytes = match args.format {
                CertFormat::Pem => loaded.cert_pem.into_bytes(),
                CertFormat::Der => loaded.cert_der.to_vec(),
            };
            match &args.out {
                Some(path) => std::fs::write(path, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                None => std::io::Write::write_all(&mut std::io::stdout(), &bytes)
                    .map_err(|e| e.to_string())?,
            }
        }
    }
    Ok(())
}
